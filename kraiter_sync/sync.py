"""``kraiter-sync sync``: the jobs of kraiter-sync.toml, run unattended (cron, systemd, Airflow).

Each job reads a source (files or a SQL query), maps it with a connector and goes
through the same import engine as ``kraiter-sync import``, so the ledger guarantees
that nothing is lost or sent twice. What sync adds:

- **Incremental events.** A job with ``cursor = "column"`` keeps a *watermark* (the
  largest cursor value of the last complete run). The next run reads only rows with
  ``cursor >= watermark - lag`` (pushed into the SQL as a bound parameter; filtered
  while streaming for files); rows re-read inside the lag window are de-duplicated
  by the ledger, so late arrivals are caught and nothing is sent twice. Rows whose
  cursor is NULL are always read (the ledger skips them once sent). The watermark
  moves only after a run that left nothing pending.
- **Contacts** cost nothing when unchanged: the import engine keeps a hash of what it
  last wrote per email (the ledger's contact cache) and skips equal rows. A full
  pass (``--full``, or ``full_every = "7d"``) re-checks every contact.
- **One lock per state directory** for the whole run, a run record per job, a
  machine summary (``--json``) and an exit code for cron: a failing job does not stop
  the others, and the run exits with the most severe code of all jobs.

Cursor values in the ledger are typed JSON (``{"type": "datetime", "value": ISO}``)
so a numeric cursor never turns into a string comparison.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import polars as pl

from kraiter_sync.config import Settings
from kraiter_sync.connectors import resolve_connector
from kraiter_sync.errors import (
    EXIT_FAILED,
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    ConfigError,
    InputError,
    KraiterSyncError,
)
from kraiter_sync.logs import get_logger
from kraiter_sync.sources import open_source
from kraiter_sync.sql import CursorFilter, CursorValue, SqlSource
from kraiter_sync.syncconfig import JobConfig, SyncConfig

__all__ = [
    "CheckResult",
    "ChunkSource",
    "CursorWindow",
    "JobCheck",
    "check_jobs",
    "decode_cursor",
    "encode_cursor",
    "open_job_source",
    "worst_exit_code",
]

log = get_logger("sync")

#: Most severe first: a configuration problem beats a failure, which beats an
#: incomplete run, which beats rejected rows.
_SEVERITY = (EXIT_USAGE, EXIT_FAILED, EXIT_INCOMPLETE, EXIT_REJECTED, EXIT_OK)


def worst_exit_code(codes: Sequence[int]) -> int:
    """The exit code of a run made of several jobs: the most severe of theirs."""
    for code in _SEVERITY:
        if code in codes:
            return code
    return max(codes, default=EXIT_OK)


class ChunkSource(Protocol):
    """What the pipeline reads: ``sources.Source``, ``sql.SqlSource``, or a wrapper."""

    @property
    def schema(self) -> pl.Schema: ...

    def iter_chunks(self, *, chunk_size: int | None = None) -> Iterator[pl.DataFrame]: ...

    def close(self) -> None: ...


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
    watermark: CursorValue, lag: dt.timedelta | int | float | None, job: str
) -> CursorValue:
    """``watermark - lag``: where an incremental run starts reading."""
    if lag is None or lag == 0:
        return watermark
    if isinstance(lag, dt.timedelta):
        if isinstance(watermark, dt.datetime):
            return watermark - lag
        if isinstance(watermark, dt.date):
            return watermark - dt.timedelta(days=max(1, lag.days))
        if isinstance(watermark, str):
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
    ) -> None:
        self.inner = inner
        self.column = column
        self.since = since
        self.filter_rows = filter_rows
        self.label = label
        self.max_value: CursorValue | None = None
        self.rows_read = 0
        self.rows_kept = 0
        self._parse_text: bool | None = None

    @property
    def schema(self) -> pl.Schema:
        schema = self.inner.schema
        if self.column not in schema:
            names = [n for n in schema.names() if n not in ("source_file", "source_row")]
            msg = (
                f"{self.label}: cursor column {self.column!r} is not in the source; "
                f"columns: {', '.join(names)}"
            )
            raise InputError(msg)
        return schema

    @property
    def files(self) -> Any:
        return getattr(self.inner, "files", [])

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


def open_job_source(
    job: JobConfig, *, since: CursorValue | None = None, chunk_size: int | None = None
) -> ChunkSource:
    """The job's source, windowed by ``since`` when the job has a cursor."""
    size = chunk_size or job.chunk_size
    inner: ChunkSource
    if job.is_sql:
        if job.query is None:  # the config validator guarantees one
            msg = f"job {job.name}: a SQL source needs a query"
            raise ConfigError(msg)
        pushdown = CursorFilter(job.cursor, since) if job.cursor and since is not None else None
        inner = SqlSource(
            job.source[0],
            job.query,
            label=job.name,
            chunk_size=size,
            since=pushdown,
            base_dir=job.base_dir,
        )
    else:
        inner = open_source(job.paths(), encoding=job.encoding, chunk_size=size)
    if job.cursor is None:
        return inner
    return CursorWindow(
        inner, job.cursor, since=since, filter_rows=not job.is_sql, label=f"job {job.name}"
    )


# --------------------------------------------------------------------------------------
# --check
# --------------------------------------------------------------------------------------


@dataclass
class JobCheck:
    """One job's check: its source opened and queried, its mapping resolved."""

    name: str
    ok: bool
    message: str
    exit_code: int = EXIT_OK
    details: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.name,
            "ok": self.ok,
            "message": self.message,
            "exit_code": self.exit_code,
            "details": self.details,
        }


@dataclass
class CheckResult:
    """``sync --check``: every selected job and the target, nothing sent."""

    jobs: list[JobCheck]
    target: JobCheck

    @property
    def exit_code(self) -> int:
        return worst_exit_code([j.exit_code for j in [*self.jobs, self.target]])

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.exit_code == EXIT_OK,
            "exit_code": self.exit_code,
            "target": self.target.as_dict(),
            "jobs": [j.as_dict() for j in self.jobs],
        }


def _check_job(job: JobConfig) -> JobCheck:
    try:
        with contextlib.closing(open_job_source(job, chunk_size=1)) as source:
            schema = source.schema
            columns = [n for n in schema.names() if n not in ("source_file", "source_row")]
            detection = resolve_connector(
                columns, connector=job.connector, kind=job.kind, overrides=job.mapping
            )
            if job.kind is not None and detection.kind != job.kind:
                msg = f"job {job.name}: kind is {job.kind} but the mapping reads {detection.kind}"
                raise ConfigError(msg)
    except KraiterSyncError as exc:
        return JobCheck(job.name, False, str(exc), exc.exit_code)
    details = [f"source: {job.source_label} ({len(columns)} columns)", *detection.lines()]
    if job.cursor:
        details.append(f"cursor: {job.cursor!r}")
    return JobCheck(job.name, True, f"{detection.kind} from {job.source_label}", details=details)


def _check_target(settings: Settings, client_factory: Callable[[Settings], Any] | None) -> JobCheck:
    """One read (the first page of contacts, limit 1): the URL answers and the key works."""
    from kraiter_sync.client import SyncKraiterClient

    where = "local Kraiter" if settings.local else settings.base_url
    try:
        factory = client_factory or SyncKraiterClient.from_settings
        with factory(settings) as client:
            client.get_page("contacts.list", limit=1)
    except KraiterSyncError as exc:
        return JobCheck("target", False, f"{where}: {exc}", exc.exit_code)
    return JobCheck("target", True, f"{where} answers and accepts the key")


def check_jobs(
    config: SyncConfig,
    settings: Settings,
    jobs: Sequence[str] = (),
    *,
    client_factory: Callable[[Settings], Any] | None = None,
) -> CheckResult:
    """Validate connections without sending anything: each source opened and queried
    (SQL with ``LIMIT 0``, files by their headers), each mapping resolved, the cursor
    column found, and one read from Kraiter."""
    selected = config.select(jobs)
    return CheckResult(
        jobs=[_check_job(job) for job in selected],
        target=_check_target(settings, client_factory),
    )
