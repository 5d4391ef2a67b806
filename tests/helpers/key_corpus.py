"""The event-key corpus: mapped frames of every form that feeds an event's key.

``tests/validate/test_event_key_pin.py`` pins their keys; other tests validate the same
frames (typed sources must give no earlier keys for them).
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import polars as pl

from kraiter_sync.validate import ValidationOptions

NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)

EMAILS = [
    "user0@example.com",
    "  User1@Example.COM  ",
    "mailto:Bob@Example.org",
    "Ann Example <ANN@Example.com>",
    "\u00a0zw\u200b@example.com\u200b",
    "x@B\u00fccher.de",
    "first.last+tag@sub.example.co.uk",
    "o'neil_{x}@example.io",
    "a" * 64 + "@example.com",
    "x@" + ".".join(["d" * 60] * 3) + ".com",
    "info@xn--bcher-kva.de",
    "user0@EXAMPLE.com",
]
CONTACT_IDS = [None, None, None, "c_1", "  c_2  ", "kontakt-\u00fc-3", None, "\u4e2d\u6587"]
NAMES = [
    "signup",
    " Page View ",
    "purchase.completed",
    "Sign-Up",
    "\u00fcn\u00efc\u00f6d\u00e9 event",
    "\U0001f642 emoji",
    "\u540d\u524d",
    "\u05e9\u05dc\u05d5\u05dd",
    "n" * 255,
    "email",
    'quote " and \\ backslash',
    "CamelCase",
]
ISO_STRINGS = [
    "2024-01-01T00:00:00Z",
    "2024-01-01T00:00:00z",
    "2024-01-01 10:00:00+02:00",
    "2024-01-01t10:00:00+02:00",
    "2024-02-03T04:05:06.789+0530",
    "2024-02-03T04:05:06.123456-03:30",
    "2024-02-03T04:05:06.123456789+00:00",
    "2024-06-01T00:00:00-07:00",
    "2024-01-01T10:00+01:00",
    "2024-03-10T12:00:00.5Z",
    "  2024-07-04T12:34:56Z  ",
    "2024-01-01T10:00",
    "2024-01-01T10:00:00",
    "2024-01-01 10:00:00.999999",
    "2024-03-31T02:30:00",
    "2024-11-03T01:30:00",
    "2024-05-05",
    "1700000000",
    "1700000000123",
    "1700000000123456",
    "1700000000123456789",
    "1700000000.5",
    "1700000000.0001",
]
EPOCH_INTS = [
    1_700_000_000,
    1_700_000_000_123,
    1_700_000_000_123_456,
    1_700_000_000_123_456_789,
    946_684_800,
    1_748_736_000,
]
EPOCH_FLOATS = [1_700_000_000.5, 1_700_000_000_123.25, 1.7e9, 1_700_000_000.000999]
AWARE = [
    dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    dt.datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=dt.UTC),
    dt.datetime(2024, 7, 4, 12, 0, 0, 500, tzinfo=dt.UTC),
    dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
]
NAIVE = [
    dt.datetime(2024, 1, 1),
    dt.datetime(2024, 3, 31, 3, 30),
    dt.datetime(2024, 10, 27, 2, 30),
    dt.datetime(2024, 6, 15, 8, 9, 10, 11_000),
]
DATES = [dt.date(2024, 1, 1), dt.date(2024, 2, 29), dt.date(2024, 12, 31)]

TEXT_PROPERTIES: list[str | None] = [
    None,
    "",
    "   ",
    "{}",
    '{"plan":"pro","amount":12.5}',
    '{"b":2,"a":{"x":1,"y":null}}',
    '{"z":-0.0,"big":1e300,"tenth":0.1,"one":1.0,"third":0.3333333333333333}',
    '{"n":-3,"huge":123456789012345678901234567890,"t":true,"f":false}',
    '{"caf\\u00e9":"cr\\u00e8me","\u043a\u043b\u044e\u0447":"\u0437\u043d\u0430\u0447",'
    '"\U0001f642":"\U0001f600"}',
    '{"s":"line\\nbreak\\ttab \\"quoted\\" back\\\\slash \\u0001 ctl"}',
    '{"deep":{"a":{"b":{"c":{"d":1}}}},"deep.x":2}',
    '{"utm":{"source":"g","campaign":"c1"},"count":3,"empty":{}}',
    '{"only_null":null}',
    '  {"padded": "yes"}  ',
    '{"e":1E-7,"neg":-1.5e-10,"int_like":5e3}',
    '{"dup":1,"dup":2}',
]


def _struct_properties(i: int) -> dict[str, Any] | None:
    """Row ``i``'s nested struct; every value kind, unicode keys, nulls, empty rows."""
    if i % 9 == 4:
        return None
    floats = [-0.0, 1e300, 0.1, 1 / 3, 5e-324, 1e16, 1e21, 123.0, -2.5, None]
    return {
        "plan": ["free", "pro", None, "caf\u00e9 \U0001f642", 'a "q"\n\\'][i % 5],
        "amount": floats[i % len(floats)],
        "count": [0, -1, 2**53 + 1, -(2**63), 2**63 - 1, None][i % 6],
        "flag": [True, False, None][i % 3],
        "caf\u00e9": ["\u00e9t\u00e9", None][i % 2],
        "\u043a\u043b\u044e\u0447": i % 4 if i % 3 else None,
        "utm": {
            "source": ["google", None, "news\u00e9"][i % 3],
            "campaign": f"c{i % 5}",
            "deep": {"x": i % 2 == 0, "y": None},
        },
        "seen": dt.datetime(2024, 1, 1, 12, i % 60, 30, 250_000) if i % 2 else None,
        "day": dt.date(2024, 1, 1 + i % 28),
    }


def _row(i: int, timestamp: Any, properties: Any) -> dict[str, Any]:
    contact = CONTACT_IDS[i % len(CONTACT_IDS)]
    return {
        "email": EMAILS[(i * 5) % len(EMAILS)] if contact is None or i % 2 else None,
        "contact_id": contact,
        "name": NAMES[(i * 7) % len(NAMES)],
        "timestamp": timestamp,
        "properties": properties,
        "source_file": "corpus",
        "source_row": i + 1,
    }


def _frame(timestamps: list[Any], ts_dtype: Any, props: str, rows: int = 0) -> pl.DataFrame:
    """One group: ``rows`` rows (at least one per timestamp) with text or struct props."""
    n = max(rows, len(timestamps))
    data = [
        _row(
            i,
            timestamps[i % len(timestamps)],
            TEXT_PROPERTIES[i % len(TEXT_PROPERTIES)] if props == "text" else _struct_properties(i),
        )
        for i in range(n)
    ]
    overrides = {"email": pl.String, "contact_id": pl.String, "name": pl.String}
    if props == "text":
        overrides["properties"] = pl.String
    return pl.DataFrame(data, schema_overrides=overrides, infer_schema_length=None).with_columns(
        pl.col("timestamp").cast(ts_dtype)
    )


def _leaf_types() -> pl.DataFrame:
    """Struct leaves of the other accepted dtypes (small ints, unsigned, Float32,
    Decimal, Categorical, Time, naive and zoned datetimes)."""
    n = 6
    base = _frame(AWARE, pl.Datetime("us", "UTC"), "struct", rows=n).drop("properties")
    leaves = pl.DataFrame(
        {
            "i8": pl.Series([-128, 127, 0, None, 1, 2], dtype=pl.Int8),
            "u16": pl.Series([65535, 0, 1, 2, None, 3], dtype=pl.UInt16),
            "u64": pl.Series([2**64 - 1, 0, 2**63, 7, 8, None], dtype=pl.UInt64),
            "f32": pl.Series([0.1, -0.0, 3.4e38, 1.5, None, 2.0], dtype=pl.Float32),
            "dec": pl.Series(
                [decimal.Decimal("1.10"), decimal.Decimal("-0.01"), None] * 2,
                dtype=pl.Decimal(10, 2),
            ),
            "cat": pl.Series(["a", "b", None, "a", "\u00e9", "b"], dtype=pl.Categorical),
            "at": pl.Series([dt.time(1, 2, 3, 4), dt.time(0), None] * 2, dtype=pl.Time),
            "naive": pl.Series(NAIVE[:3] * 2, dtype=pl.Datetime("ms")),
            "zoned": pl.Series(NAIVE[:3] * 2, dtype=pl.Datetime("us")).dt.replace_time_zone(
                "Asia/Kolkata"
            ),
        }
    )
    return base.with_columns(properties=leaves.to_struct())


#: name → (mapped frame, options). Each group is validated on its own.
def corpus() -> dict[str, tuple[pl.DataFrame, ValidationOptions]]:
    utc = ValidationOptions(now=NOW)
    return {
        "iso_text": (_frame(ISO_STRINGS, pl.String, "text", rows=48), utc),
        "iso_struct": (_frame(ISO_STRINGS, pl.String, "struct", rows=30), utc),
        "iso_new_york": (
            _frame(ISO_STRINGS, pl.String, "text"),
            ValidationOptions(now=NOW, timezone="America/New_York"),
        ),
        "epoch_int": (_frame(EPOCH_INTS, pl.Int64, "struct", rows=12), utc),
        "epoch_int_ms": (
            _frame([1_700_000_000_123, 1_600_000_000_000], pl.Int64, "text", rows=6),
            ValidationOptions(now=NOW, epoch_unit="ms"),
        ),
        "epoch_float": (_frame(EPOCH_FLOATS, pl.Float64, "text", rows=8), utc),
        "datetime_aware": (_frame(AWARE, pl.Datetime("us", "UTC"), "struct", rows=10), utc),
        "datetime_ns_paris": (
            _frame(AWARE, pl.Datetime("ns", "UTC"), "text", rows=6).with_columns(
                pl.col("timestamp").dt.convert_time_zone("Europe/Paris")
            ),
            utc,
        ),
        "datetime_naive_paris": (
            _frame(NAIVE, pl.Datetime("ms"), "struct", rows=8),
            ValidationOptions(now=NOW, timezone="Europe/Paris"),
        ),
        "date": (_frame(DATES, pl.Date, "text", rows=6), utc),
        "leaf_types": (_leaf_types(), utc),
        "before_1970": (
            _frame(
                ["1750-06-15T12:00:00.250Z", "1969-12-31T23:59:59.999Z", "1970-01-01T00:00:00Z"],
                pl.String,
                "text",
                rows=6,
            ),
            ValidationOptions(now=NOW, floor=dt.datetime(1700, 1, 1, tzinfo=dt.UTC)),
        ),
        "smtputf8": (
            _frame(AWARE, pl.Datetime("us", "UTC"), "text", rows=4).with_columns(
                email=pl.Series(
                    ["andr\u00e9@B\u00fccher.de", "ZO\u00cb@example.com", "\u00fc@x.com", None]
                )
            ),
            ValidationOptions(now=NOW, allow_smtputf8=True),
        ),
    }
