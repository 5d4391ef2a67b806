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

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import polars as pl

from kraiter_sync.export.paging import SortKey, id_key, scheduled_key

__all__ = [
    "SCHEMAS",
    "STREAMS",
    "StreamSpec",
    "flatten_json_column",
    "rows_to_frame",
    "stream_spec",
]

Item = dict[str, Any]
Source = Literal["feed", "contact_pages", "contact_list"]

UTC_DT = pl.Datetime("us", "UTC")
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


@dataclass(frozen=True)
class Column:
    """One output column: its name, type, and the API field it is read from."""

    name: str
    dtype: pl.DataType
    field: str
    #: ``json``: the value is an object serialised to a JSON string.
    how: Literal["plain", "json", "contact_email", "contact_user"] = "plain"


def _c(name: str, dtype: pl.DataType, field: str, how: Any = "plain") -> Column:
    return Column(name, dtype, field, how)


S, B, I64 = pl.String(), pl.Boolean(), pl.Int64()

_COLUMNS: dict[str, tuple[Column, ...]] = {
    "contacts": (
        _c("id", S, "id"),
        _c("email", S, "email"),
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
        _c("user_id", S, "userId", "contact_user"),
        _c("timestamp", UTC_DT, "timestamp"),
        _c("created_at", UTC_DT, "createdAt"),
        _c("properties", S, "properties", "json"),
    ),
    "timelines": (
        _c("id", S, "id"),
        _c("contact_id", S, "contactId"),
        _c("email", S, "email", "contact_email"),
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

    @property
    def columns(self) -> tuple[Column, ...]:
        return _COLUMNS[self.name]

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
        StreamSpec("enrolments", "contact_list", "contacts.sequences", False, None, "updated_at"),
        StreamSpec("memberships", "contact_list", "contacts.segments", False, None, "joined_at"),
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
    """ISO 8601 strings → Datetime(us, UTC); the contract's ``…sssZ`` on the fast path."""
    fast = values.str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%.fZ", time_unit="us", time_zone="UTC", strict=False
    )
    bad = fast.is_null() & values.is_not_null()
    if not bad.any():
        return fast
    # Other ISO 8601 spellings (an offset instead of Z, no fraction): rare, per value.
    parsed = [
        _parse_one(v) if b else f
        for v, f, b in zip(values.to_list(), fast.to_list(), bad.to_list(), strict=True)
    ]
    return pl.Series(values.name, parsed, dtype=UTC_DT)


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
    email_of: Callable[[Any], str | None] | None = None,
    user_id_of: Callable[[Any], str | None] | None = None,
) -> pl.DataFrame:
    """API objects → a frame with exactly the stream's schema (column by column)."""
    data: dict[str, pl.Series] = {}
    for col in spec.columns:
        if col.how == "contact_email":
            # Per-contact rows carry the email the driver put in; events carry only
            # the contact id (or, linked later, the email they wait for).
            if email_of is None:
                raw: list[Any] = [it.get("email") for it in items]
            else:
                raw = [it.get("email") or email_of(it.get("contactId")) for it in items]
        elif col.how == "contact_user":
            if user_id_of is None:
                raw = [it.get("userId") for it in items]
            else:
                raw = [it.get("userId") or user_id_of(it.get("contactId")) for it in items]
        elif col.how == "json":
            raw = [None if (v := it.get(col.field)) is None else _dumps(v) for it in items]
        else:
            raw = [it.get(col.field) for it in items]
        if col.dtype == UTC_DT:
            data[col.name] = _parse_times(pl.Series(col.name, raw, dtype=pl.String))
        else:
            data[col.name] = pl.Series(col.name, raw, dtype=col.dtype, strict=False)
    return pl.DataFrame(data)


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
