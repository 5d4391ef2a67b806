"""Cursor windows: an incremental job reads only rows at or past its watermark - lag.

Cursor values in the ledger are typed JSON (``{"type": "datetime", "value": ISO}``)
so a numeric cursor never turns into a string comparison.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import polars as pl

from kraiter_sync.errors import (
    ConfigError,
    InputError,
)
from kraiter_sync.frames import PROVENANCE
from kraiter_sync.inputs import ChunkSource
from kraiter_sync.logs import get_logger
from kraiter_sync.sources.sql import CursorValue

__all__ = ["CursorWindow", "comparable", "decode_cursor", "encode_cursor", "window_start"]

log = get_logger("sync")


# --------------------------------------------------------------------------------------
# cursor values and watermarks
# --------------------------------------------------------------------------------------


def encode_cursor(value: CursorValue) -> str:
    """A cursor value as typed JSON text for the ledger's watermarks table."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return json.dumps({"type": "naive", "value": value.isoformat()})
        return json.dumps({"type": "datetime", "value": value.astimezone(dt.UTC).isoformat()})
    if isinstance(value, dt.date):
        return json.dumps({"type": "date", "value": value.isoformat()})
    if isinstance(value, bool):
        msg = "a boolean column cannot be a cursor; use a timestamp or an increasing number"
        raise InputError(msg)
    if isinstance(value, int):
        return json.dumps({"type": "int", "value": value})
    if isinstance(value, float):
        return json.dumps({"type": "float", "value": value})
    return json.dumps({"type": "str", "value": str(value)})


def decode_cursor(text: str) -> CursorValue:
    """The inverse of :func:`encode_cursor`."""
    data = json.loads(text)
    kind, value = data["type"], data["value"]
    if kind == "datetime":
        return dt.datetime.fromisoformat(value).astimezone(dt.UTC)
    if kind == "naive":
        return dt.datetime.fromisoformat(value)
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    return str(value)


def window_start(
    watermark: CursorValue,
    lag: dt.timedelta | int | float | None,
    job: str,
    *,
    parse_text: bool = True,
) -> CursorValue:
    """``watermark - lag``: where an incremental run starts reading.

    A text watermark holding an ISO 8601 timestamp takes a duration only with
    ``parse_text`` (file sources, whose windows compare parsed timestamps); a SQL text
    column would be compared with a timestamp, so the query must cast it instead.
    """
    if lag is None or lag == 0:
        return watermark
    if isinstance(lag, dt.timedelta):
        if isinstance(watermark, dt.datetime):
            return watermark - lag
        if isinstance(watermark, dt.date):
            return watermark - dt.timedelta(days=max(1, lag.days))
        if isinstance(watermark, str) and parse_text:
            parsed = _parse_iso(watermark)
            if parsed is not None:
                return parsed - lag
    elif isinstance(watermark, int | float) and not isinstance(watermark, bool):
        return watermark - lag
    msg = (
        f"job {job}: lag {lag!r} cannot be applied to the cursor value {watermark!r}; a "
        "duration needs a timestamp cursor, a number a numeric one (cast the column in "
        "the query, e.g. CAST(col AS TIMESTAMP))"
    )
    raise ConfigError(msg)


def _parse_iso(text: str) -> dt.datetime | None:
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class CursorWindow:
    """Wraps a chunk source: keeps rows with ``cursor >= since`` (or a NULL cursor) and
    remembers the largest cursor value that went through.

    For SQL sources the filter is already in the query; this still tracks the maximum.
    Text cursors (CSV columns) that hold ISO 8601 timestamps are compared as
    timestamps, so ``2026-01-02T00:00:00Z`` and ``2026-01-02 00:00:00+00:00`` agree.
    """

    def __init__(
        self,
        inner: ChunkSource,
        column: str,
        *,
        since: CursorValue | None = None,
        filter_rows: bool = True,
        label: str = "",
        display: str | None = None,
    ) -> None:
        self.inner = inner
        self.column = column
        self.since = since
        self.filter_rows = filter_rows
        self.label = label
        self._display = display
        self.max_value: CursorValue | None = None
        self.rows_read = 0
        self.rows_kept = 0
        self._parse_text: bool | None = None

    @property
    def schema(self) -> pl.Schema:
        schema = self.inner.schema
        if self.column not in schema:
            names = [n for n in schema.names() if n not in PROVENANCE]
            msg = (
                f"{self.label}: cursor column {self.column!r} is not in the source; "
                f"columns: {', '.join(names)}"
            )
            raise InputError(msg)
        return schema

    @property
    def display(self) -> str:
        """How the pipeline labels this input (the inner source's name, password-free)."""
        return self._display or str(getattr(self.inner, "display", None) or self.label)

    @property
    def text_columns(self) -> frozenset[str]:
        return frozenset(getattr(self.inner, "text_columns", ()))

    def __repr__(self) -> str:
        return f"CursorWindow({self.display!r}, {self.column!r}, since={self.since!r})"

    def close(self) -> None:
        self.inner.close()

    def _key(self, chunk: pl.DataFrame) -> pl.Expr:
        col = pl.col(self.column)
        if chunk.schema[self.column] != pl.String:
            return col
        if self._parse_text is None:
            sample = chunk[self.column].drop_nulls().head(1).to_list()
            self._parse_text = bool(sample) and _parse_iso(str(sample[0])) is not None
        if self._parse_text:
            return col.str.to_datetime(strict=False, time_zone="UTC", time_unit="us")
        return col

    def _bound(self) -> Any:
        since = self.since
        if self._parse_text and isinstance(since, str):
            return _parse_iso(since) or since
        return since

    def iter_chunks(self, *, chunk_size: int | None = None) -> Iterator[pl.DataFrame]:
        self.schema  # noqa: B018  (fails early, naming the columns, if the cursor is missing)
        for chunk in self.inner.iter_chunks(chunk_size=chunk_size):
            self.rows_read += chunk.height
            key = self._key(chunk)
            if self.filter_rows and self.since is not None:
                chunk = chunk.filter(key.is_null() | (key >= pl.lit(self._bound())))
            self.rows_kept += chunk.height
            if chunk.height:
                top = chunk.select(key.max()).item()
                if top is not None and (self.max_value is None or top > self.max_value):
                    self.max_value = top
            yield chunk


def comparable(a: object, b: object) -> bool:
    """Whether two cursor values can be ordered (a cursor column may change type)."""
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers):
        return True
    return type(a) is type(b)
