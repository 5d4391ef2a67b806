"""The export streams: where each comes from and its stable, typed schema.

Every stream has one schema whatever the format (docs/export.md lists them): snake_case
columns, timestamps as ``Datetime("us", "UTC")`` (ISO 8601 ``…sssZ`` strings in CSV and
NDJSON), free-form objects (event properties, timeline data) as one compact JSON String
column. Rows are converted from the API's dicts once per chunk, column by column.

Two kinds of stream (see :attr:`StreamSpec.incremental`):

* **incremental** (``events``, ``timelines``, ``sends``): append-only lists ordered by
  id; each run writes only the rows after the last run's watermark.
* **snapshot** (``contacts``, ``scheduled``, ``enrolments``, ``memberships``): current
  state that changes in place (a contact is updated, a scheduled send is delivered and
  disappears, an enrolment completes) and that the API cannot list "changed since". Each
  run writes a complete new snapshot that replaces the previous one atomically.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from typing import Any, Literal

import idna
import polars as pl

from kraiter_sync.export.paging import SortKey, id_key, scheduled_key

__all__ = [
    "SCHEMAS",
    "STREAMS",
    "StreamSpec",
    "flatten_json_column",
    "rows_to_frame",
    "shape_rows",
    "stream_spec",
    "unicode_emails",
]

Item = dict[str, Any]
Source = Literal["feed", "contact_pages", "contact_list"]

UTC_DT = pl.Datetime("us", "UTC")
_dumps_slow = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


def _not_json(value: Any) -> Any:
    msg = f"not JSON serialisable: {type(value).__name__}"
    raise TypeError(msg)


# The C encoder built once (JSONEncoder.encode builds it again on every call, which is
# half the cost of serialising a small properties object). Same output: compact
# separators, keys sorted, non-ASCII kept, NaN refused.
_C_ENCODER = getattr(json.encoder, "c_make_encoder", None)
_encode_one = (
    _C_ENCODER(None, _not_json, json.encoder.encode_basestring, None, ":", ",", True, False, False)
    if _C_ENCODER is not None
    else None
)


def _dumps(value: Any) -> str:
    if _encode_one is None:  # pragma: no cover - interpreters without the C accelerator
        return _dumps_slow(value)
    return "".join(_encode_one(value, 0))


@dataclass(frozen=True)
class Column:
    """One output column: its name, type, and the API field it is read from."""

    name: str
    dtype: pl.DataType
    field: str
    #: ``json``: the value is an object serialised to a JSON string; ``unicode``: the
    #: ``email`` column with its domain in Unicode (filled after the row is built).
    how: Literal["plain", "json", "contact_email", "contact_user", "unicode"] = "plain"


def _c(name: str, dtype: pl.DataType, field: str, how: Any = "plain") -> Column:
    return Column(name, dtype, field, how)


S, B, I64 = pl.String(), pl.Boolean(), pl.Int64()

_COLUMNS: dict[str, tuple[Column, ...]] = {
    "contacts": (
        _c("id", S, "id"),
        _c("email", S, "email"),
        _c("email_unicode", S, "email", "unicode"),
        _c("user_id", S, "userId"),
        _c("suppressed", B, "suppressed"),
        _c("unsubscribed", B, "unsubscribed"),
        _c("created_at", UTC_DT, "createdAt"),
        _c("updated_at", UTC_DT, "updatedAt"),
        _c("properties", S, "properties", "json"),
    ),
    "events": (
        _c("id", S, "id"),
        _c("name", S, "name"),
        _c("contact_id", S, "contactId"),
        _c("email", S, "email", "contact_email"),
        _c("email_unicode", S, "email", "unicode"),
        _c("user_id", S, "userId", "contact_user"),
        _c("timestamp", UTC_DT, "timestamp"),
        _c("created_at", UTC_DT, "createdAt"),
        _c("properties", S, "properties", "json"),
    ),
    "timelines": (
        _c("id", S, "id"),
        _c("contact_id", S, "contactId"),
        _c("email", S, "email", "contact_email"),
        _c("email_unicode", S, "email", "unicode"),
        _c("user_id", S, "userId", "contact_user"),
        _c("type", S, "type"),
        _c("name", S, "name"),
        _c("timestamp", UTC_DT, "timestamp"),
        _c("data", S, "data", "json"),
    ),
    "sends": (
        _c("id", S, "id"),
        _c("contact_id", S, "contactId"),
        _c("email", S, "email"),
        _c("email_unicode", S, "email", "unicode"),
        _c("template_id", S, "templateId"),
        _c("template_name", S, "templateName"),
        _c("subject", S, "subject"),
        _c("status", S, "status"),
        _c("source", S, "source"),
        _c("source_id", S, "sourceId"),
        _c("sent_at", UTC_DT, "sentAt"),
        _c("delivered_at", UTC_DT, "deliveredAt"),
        _c("opened_at", UTC_DT, "openedAt"),
        _c("clicked_at", UTC_DT, "clickedAt"),
    ),
    "scheduled": (
        _c("id", S, "id"),
        _c("contact_id", S, "contactId"),
        _c("email", S, "email"),
        _c("email_unicode", S, "email", "unicode"),
        _c("template_id", S, "templateId"),
        _c("template_name", S, "templateName"),
        _c("subject", S, "subject"),
        _c("scheduled_for", UTC_DT, "scheduledFor"),
        _c("source", S, "source"),
        _c("source_id", S, "sourceId"),
        _c("step", I64, "step"),
        _c("created_at", UTC_DT, "createdAt"),
    ),
    "enrolments": (
        _c("contact_id", S, "contactId"),
        _c("email", S, "email", "contact_email"),
        _c("email_unicode", S, "email", "unicode"),
        _c("user_id", S, "userId", "contact_user"),
        _c("sequence_id", S, "sequenceId"),
        _c("status", S, "status"),
        _c("current_step", I64, "currentStep"),
        _c("enrolled_at", UTC_DT, "enrolledAt"),
        _c("updated_at", UTC_DT, "updatedAt"),
    ),
    "memberships": (
        _c("contact_id", S, "contactId"),
        _c("email", S, "email", "contact_email"),
        _c("email_unicode", S, "email", "unicode"),
        _c("user_id", S, "userId", "contact_user"),
        _c("segment_id", S, "segmentId"),
        _c("segment_name", S, "segmentName"),
        _c("joined_at", UTC_DT, "joinedAt"),
    ),
}

#: The stable schema of every stream (column → polars type), in output order.
SCHEMAS: Mapping[str, Mapping[str, pl.DataType]] = {
    stream: {c.name: c.dtype for c in cols} for stream, cols in _COLUMNS.items()
}


@dataclass(frozen=True)
class StreamSpec:
    """Where a stream's rows come from and how they are written."""

    name: str
    source: Source
    route: str
    incremental: bool
    #: Datetime column whose UTC date names the hive partition (``date=YYYY-MM-DD``).
    partition: str | None = None
    #: Column compared with ``--since``.
    since_column: str | None = None
    #: The JSON object column that ``--flatten-properties`` spreads.
    json_column: str | None = None
    key: SortKey = id_key
    #: Whether the rows carry only a contact id and need the directory for the email.
    needs_emails: bool = False
    #: The columns that identify a row (a table's primary key; upserts match on them).
    keys: tuple[str, ...] = ("id",)

    @property
    def columns(self) -> tuple[Column, ...]:
        return _COLUMNS[self.name]

    @property
    def object_columns(self) -> tuple[str, ...]:
        """Columns holding a JSON object (``json`` / ``jsonb`` in a database table)."""
        return tuple(c.name for c in self.columns if c.how == "json")

    @property
    def schema(self) -> Mapping[str, pl.DataType]:
        return SCHEMAS[self.name]


STREAMS: Mapping[str, StreamSpec] = {
    s.name: s
    for s in (
        StreamSpec("contacts", "feed", "contacts.list", False, None, "updated_at", "properties"),
        StreamSpec(
            "events",
            "feed",
            "events.list",
            True,
            "timestamp",
            "timestamp",
            "properties",
            needs_emails=True,
        ),
        StreamSpec(
            "timelines",
            "contact_pages",
            "contacts.timeline",
            True,
            "timestamp",
            "timestamp",
            "data",
        ),
        StreamSpec("sends", "feed", "sends.list", True, None, "sent_at"),
        StreamSpec(
            "scheduled", "feed", "scheduled.list", False, None, "created_at", key=scheduled_key
        ),
        StreamSpec(
            "enrolments",
            "contact_list",
            "contacts.sequences",
            False,
            None,
            "updated_at",
            keys=("contact_id", "sequence_id"),
        ),
        StreamSpec(
            "memberships",
            "contact_list",
            "contacts.segments",
            False,
            None,
            "joined_at",
            keys=("contact_id", "segment_id"),
        ),
    )
}


def stream_spec(name: str) -> StreamSpec:
    from kraiter_sync.errors import UsageError

    try:
        return STREAMS[name]
    except KeyError:
        msg = f"unknown stream {name!r}; streams: {', '.join(STREAMS)}"
        raise UsageError(msg) from None


def _parse_times(values: pl.Series) -> pl.Series:
    """The slow path for timestamps the fast format missed: any ISO 8601, per value."""
    return pl.Series(
        values.name, [None if v is None else _parse_one(v) for v in values], dtype=UTC_DT
    )


_ISO_FAST = "%Y-%m-%dT%H:%M:%S%.fZ"


def _parse_one(value: str) -> datetime | None:
    from datetime import UTC

    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        from kraiter_sync.errors import ApiError

        msg = f"Kraiter sent a timestamp that is not ISO 8601: {value!r}"
        raise ApiError(msg, method="GET", path="", code="UNEXPECTED_RESPONSE") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def rows_to_frame(
    spec: StreamSpec,
    items: Sequence[Item],
    *,
    emails: Mapping[str, str | None] | None = None,
    user_ids: Mapping[str, str | None] | None = None,
) -> pl.DataFrame:
    """API objects → a frame with exactly the stream's schema.

    Columns are gathered with C-level loops where possible, then built and typed by
    polars in two calls (building; parsing every timestamp column with the contract's
    ``…sssZ`` format); only values that format misses go through the per-value parser.
    ``emails`` / ``user_ids`` (contact id → value) fill the contact columns of rows
    that carry only a contact id; a value the row carries itself wins.
    """
    data: dict[str, list[Any]] = {}
    coalesce: list[str] = []
    contact_ids: list[Any] | None = None
    for col in spec.columns:
        if col.how == "unicode":
            continue  # derived from the email column below
        raw: list[Any] = list(map(dict.get, items, repeat(col.field)))
        if col.how == "json":
            raw = [None if v is None else _dumps(v) for v in raw]
        elif col.how in ("contact_email", "contact_user"):
            table = emails if col.how == "contact_email" else user_ids
            if table is not None:
                if contact_ids is None:
                    contact_ids = list(map(dict.get, items, repeat("contactId")))
                looked = list(map(table.get, contact_ids))
                if raw.count(None) == len(raw):  # the usual case: only the id is known
                    raw = looked
                else:
                    data[f"__{col.name}"] = looked
                    coalesce.append(col.name)
        data[col.name] = raw
    schema: dict[str, pl.DataType] = {
        c.name: pl.String() if c.dtype == UTC_DT else c.dtype
        for c in spec.columns
        if c.how != "unicode"
    }
    schema.update({f"__{name}": pl.String() for name in coalesce})
    built = pl.DataFrame(data, schema=schema, strict=False)
    times = {c.name for c in spec.columns if c.dtype == UTC_DT}
    exprs: list[pl.Expr] = []
    for col in spec.columns:
        if col.how == "unicode":
            continue
        if col.name in times:
            exprs.append(
                pl.col(col.name).str.to_datetime(
                    _ISO_FAST, time_unit="us", time_zone="UTC", strict=False
                )
            )
        elif col.name in coalesce:
            exprs.append(pl.coalesce(col.name, f"__{col.name}").alias(col.name))
        else:
            exprs.append(pl.col(col.name))
    frame = built.select(exprs)
    for name in times:
        if frame[name].null_count() != built[name].null_count():
            # Another ISO 8601 spelling (an offset instead of Z, no fraction): rare.
            frame = frame.with_columns(_parse_times(built[name]))
    derived = [c.name for c in spec.columns if c.how == "unicode"]
    if derived:
        frame = frame.with_columns(unicode_emails(frame["email"]).alias(derived[0]))
        frame = frame.select([c.name for c in spec.columns])
    return frame


def _unicode_address(address: str) -> str:
    """One address with each ``xn--`` label of its domain decoded; a label that is not
    valid IDNA 2008 stays as Kraiter holds it (never guessed)."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address
    labels = domain.split(".")
    for i, label in enumerate(labels):
        if label[:4].lower() == "xn--":
            with contextlib.suppress(idna.IDNAError, UnicodeError):
                labels[i] = idna.ulabel(label.lower())
    return f"{local}@{'.'.join(labels)}"


def unicode_emails(emails: pl.Series) -> pl.Series:
    """``email_unicode``: the addresses as Kraiter holds them, with IDNA domains in Unicode
    (``anna@xn--bcher-kva.de`` → ``anna@bücher.de``), so they join to source rows that
    spell the domain in Unicode. Only addresses holding ``xn--`` go through ``idna``,
    once per distinct address; the rest are the same value."""
    encoded = emails.str.contains("(?i)xn--")
    if not encoded.any():
        return emails
    mapping = {e: _unicode_address(e) for e in emails.filter(encoded).unique().to_list()}
    return emails.replace(mapping)


def _render(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return _dumps(value)


def flatten_json_column(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """Add one String column ``<column>.<key>`` per key of the JSON objects in ``column``.

    Values are strings (numbers and booleans as their JSON text) so that the type of a
    column never depends on which rows happened to be in a file. The JSON column stays:
    it is the lossless form (and what ``import`` reads back).
    """
    if frame.height == 0 or column not in frame.columns:
        return frame
    parsed = [json.loads(v) if v else {} for v in frame[column].to_list()]
    keys = sorted({k for obj in parsed if isinstance(obj, dict) for k in obj})
    extra = [
        pl.Series(
            f"{column}.{key}",
            [_render(obj.get(key)) if isinstance(obj, dict) else None for obj in parsed],
            dtype=pl.String,
        )
        for key in keys
        if f"{column}.{key}" not in frame.columns
    ]
    return frame.with_columns(extra)


def shape_rows(
    spec: StreamSpec,
    options: Any,
    items: Sequence[dict[str, Any]],
    directory: Any,
    since: datetime | None,
    until: datetime | None = None,
) -> pl.DataFrame:
    """API items → the stream's frame as the export writes it: emails and user ids filled
    in from ``directory`` (a ``paging.ContactDirectory``), ``--custom-only``, the window
    (``since`` ≤ time < ``until``) and ``--flatten-properties`` applied (``options``: an
    ``ExportOptions``)."""
    frame = rows_to_frame(
        spec,
        items,
        emails=directory.emails if directory else None,
        user_ids=directory.user_ids if directory else None,
    )
    if options.custom_only:
        if spec.name == "events":
            frame = frame.filter(~pl.col("name").str.starts_with("email."))
        elif spec.name == "timelines":
            frame = frame.filter(pl.col("type") == "event")
    if (since is not None or until is not None) and spec.since_column is not None:
        col = pl.col(spec.since_column)
        keep = pl.lit(value=True)
        if since is not None:
            keep = keep & (col >= since)
        if until is not None:
            keep = keep & (col < until)
        if spec.name == "sends" and until is None:
            # queued sends have no sentAt yet: they are recent, so in an open window
            keep = keep | col.is_null()
        frame = frame.filter(keep)
    if options.flatten_properties and spec.json_column is not None:
        frame = flatten_json_column(frame, spec.json_column)
    return frame
