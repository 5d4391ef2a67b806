"""Timestamp parsing: ISO strings with offsets, naive values, native types, epoch units."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kraiter_sync.validate.options import ValidationOptions
from kraiter_sync.validate.timestamps import ISO_FORMAT, parse_timestamps, to_iso

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
OPTS = ValidationOptions(now=NOW)


def iso(values: pl.Series, options: ValidationOptions = OPTS) -> list[str | None]:
    return to_iso(parse_timestamps(values, options).timestamp).to_list()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-05-01T10:00:00Z", "2024-05-01T10:00:00.000Z"),
        ("2024-05-01T10:00:00.123456z", "2024-05-01T10:00:00.123Z"),
        ("2024-05-01T10:00:00+02:00", "2024-05-01T08:00:00.000Z"),
        ("2024-05-01 10:00:00-05:00", "2024-05-01T15:00:00.000Z"),
        ("2024-05-01T10:00:00+0530", "2024-05-01T04:30:00.000Z"),
        ("2024-05-01T10:00+01:00", "2024-05-01T09:00:00.000Z"),
        ("2024-05-01T10:00:00", "2024-05-01T10:00:00.000Z"),
        ("2024-05-01 10:00:00.5", "2024-05-01T10:00:00.500Z"),
        ("2024-05-01", "2024-05-01T00:00:00.000Z"),
        (" 2024-05-01T10:00:00Z ", "2024-05-01T10:00:00.000Z"),
    ],
)
def test_iso_strings(raw: str, expected: str) -> None:
    assert iso(pl.Series([raw])) == [expected]


def test_mixed_offsets_in_one_column() -> None:
    s = pl.Series(["2024-01-01T00:00:00+01:00", "2024-01-01T00:00:00-01:00"])
    assert iso(s) == ["2023-12-31T23:00:00.000Z", "2024-01-01T01:00:00.000Z"]


def test_naive_values_take_the_timezone_and_are_reported() -> None:
    options = ValidationOptions(now=NOW, timezone="America/New_York")
    parsed = parse_timestamps(pl.Series(["2024-07-01T12:00:00", "2024-07-01T12:00:00Z"]), options)
    assert to_iso(parsed.timestamp).to_list() == [
        "2024-07-01T16:00:00.000Z",
        "2024-07-01T12:00:00.000Z",
    ]
    assert parsed.naive == 1
    assert parsed.formats == {"iso8601_naive": 1, "iso8601_offset": 1}


@pytest.mark.parametrize(
    ("value", "unit"),
    [
        (1_714_557_600, "epoch_s"),
        (1_714_557_600_123, "epoch_ms"),
        (1_714_557_600_123_456, "epoch_us"),
        (1_714_557_600_123_456_789, "epoch_ns"),
    ],
)
def test_epoch_unit_detected_by_magnitude(value: int, unit: str) -> None:
    parsed = parse_timestamps(pl.Series([value]), OPTS)
    assert to_iso(parsed.timestamp).to_list()[0].startswith("2024-05-01T10:00:00")
    assert parsed.formats == {unit: 1}


def test_epoch_unit_given_wins() -> None:
    options = ValidationOptions(now=NOW, epoch_unit="ms")
    assert iso(pl.Series([1_714_557_600]), options) == ["1970-01-20T20:15:57.600Z"]


def test_float_epoch_and_epoch_strings() -> None:
    assert iso(pl.Series([1_714_557_600.25])) == ["2024-05-01T10:00:00.250Z"]
    assert iso(pl.Series(["1714557600123"])) == ["2024-05-01T10:00:00.123Z"]


def test_native_datetime_and_date() -> None:
    aware = pl.Series([dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)]).dt.convert_time_zone(
        "Asia/Tokyo"
    )
    assert iso(aware) == ["2024-05-01T12:00:00.000Z"]
    naive = pl.Series([dt.datetime(2024, 5, 1, 12)])
    parsed = parse_timestamps(naive, ValidationOptions(now=NOW, timezone="Europe/Paris"))
    assert to_iso(parsed.timestamp).to_list() == ["2024-05-01T10:00:00.000Z"]
    assert parsed.naive == 1
    assert iso(pl.Series([dt.date(2024, 5, 1)])) == ["2024-05-01T00:00:00.000Z"]


def test_rules() -> None:
    s = pl.Series(
        [
            "not a date",
            None,
            "",
            "2025-06-01T12:04:59Z",  # within 5 minutes: fine
            "2025-06-01T12:05:01Z",  # just beyond
            "1999-12-31T23:59:59Z",
            "2024-02-30T00:00:00Z",
        ]
    )
    assert parse_timestamps(s, OPTS).rule.to_list() == [
        "timestamp.unparseable",
        "timestamp.missing",
        "timestamp.missing",
        None,
        "timestamp.future",
        "timestamp.too_old",
        "timestamp.unparseable",
    ]


def test_floor_is_configurable() -> None:
    options = ValidationOptions(now=NOW, floor=dt.datetime(1970, 1, 1, tzinfo=dt.UTC))
    assert parse_timestamps(pl.Series(["1990-01-01T00:00:00Z"]), options).rule.to_list() == [None]


def test_dst_gap_is_unparseable_not_shifted() -> None:
    options = ValidationOptions(now=NOW, timezone="Europe/London")
    rule = parse_timestamps(pl.Series(["2024-03-31T01:30:00"]), options).rule
    assert rule.to_list() == ["timestamp.unparseable"]


@pytest.mark.parametrize("span_days", [3, 40_000, 400_000])
def test_to_iso_matches_strftime(span_days: int) -> None:
    """The table-based formatter is byte-identical to strftime (both paths, edge values)."""
    start = -86_400_000_000 * 2  # two days before the epoch: floor division matters
    step = span_days * 86_400_000_000 // 5000 + 7
    values: list[int | None] = [start + i * step for i in range(5000)]
    values += [-1, -999, 0, 999, 1000, 86_399_999_999, 946_684_800_000_000, None]
    ts = pl.Series("t", values, dtype=pl.Int64).cast(pl.Datetime("us", "UTC"))
    assert to_iso(ts).to_list() == ts.dt.strftime(ISO_FORMAT).to_list()
    assert to_iso(ts).name == "t"
    assert to_iso(ts.clear()).to_list() == []
    assert to_iso(pl.Series([None], dtype=pl.Datetime("us", "UTC"))).to_list() == [None]


_DAY_US = 86_400_000_000
_micros = st.one_of(
    st.integers(-62_135_596_800_000_000, 253_402_300_799_999_999),  # years 1..9999
    st.integers(1_500_000_000_000_000, 1_800_000_000_000_000),
    st.integers(-(2**62), 2**62),  # far outside: a span past the day tables
)


@settings(max_examples=150, deadline=None)
@given(values=st.lists(_micros, min_size=1, max_size=40), sort=st.booleans())
def test_to_iso_matches_strftime_on_any_instant(values: list[int], sort: bool) -> None:
    if sort:
        values.sort()
    ts = pl.Series("ts", values, dtype=pl.Int64).cast(pl.Datetime("us", "UTC"))
    assert to_iso(ts).to_list() == ts.dt.strftime(ISO_FORMAT).to_list()


def test_to_iso_around_the_epoch() -> None:
    ts = pl.Series([0, _DAY_US - 1, -1, None], dtype=pl.Int64).cast(pl.Datetime("us", "UTC"))
    assert to_iso(ts).to_list() == [
        "1970-01-01T00:00:00.000Z",
        "1970-01-01T23:59:59.999Z",
        "1969-12-31T23:59:59.999Z",
        None,
    ]
