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
import hashlib
import itertools
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import polars as pl

from kraiter_sync.config import Settings
from kraiter_sync.errors import (
    EXIT_BUSY,
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
from kraiter_sync.objectstore.changes import SeenObjects
from kraiter_sync.pipeline import ChunkSource, InputOptions, prepare_inputs
from kraiter_sync.sources import open_source
from kraiter_sync.sql import CursorFilter, CursorValue, SqlSource
from kraiter_sync.syncconfig import JobConfig, SyncConfig
from kraiter_sync.validate import ValidationOptions

__all__ = [
    "CheckResult",
    "CursorWindow",
    "JobCheck",
    "JobResult",
    "SyncResult",
    "check_jobs",
    "decode_cursor",
    "encode_cursor",
    "open_job_source",
    "run_job",
    "run_sync",
    "worst_exit_code",
]

log = get_logger("sync")

#: Most severe first: a configuration problem beats a failure, which beats a job that
#: found something busy (nothing started), an incomplete run, then rejected rows.
_SEVERITY = (EXIT_USAGE, EXIT_FAILED, EXIT_BUSY, EXIT_INCOMPLETE, EXIT_REJECTED, EXIT_OK)


#: How loud a job's outcome is: a good night says nothing at the default level (cron
#: mails any output), rejected rows warn, everything else is an error.
_LEVELS = {EXIT_OK: logging.INFO, EXIT_REJECTED: logging.WARNING}


def worst_exit_code(codes: Sequence[int]) -> int:
    """The exit code of a run made of several jobs: the most severe of theirs."""
    for code in _SEVERITY:
        if code in codes:
            return code
    return max(codes, default=EXIT_OK)


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
            names = [n for n in schema.names() if n not in ("source_file", "source_row")]
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


def open_job_source(
    job: JobConfig,
    *,
    since: CursorValue | None = None,
    chunk_size: int | None = None,
    limit: int | None = None,
    seen: SeenObjects | None = None,
) -> ChunkSource:
    """The job's source, windowed by ``since`` when the job has a cursor; ``limit`` caps
    the rows a SQL query returns (a check's sample: files are read chunk by chunk); with
    ``seen``, objects an earlier complete run read (same key, size and ETag) are left out."""
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
            limit=limit,
        )
    else:
        inner = open_source(
            job.paths(), encoding=job.encoding, chunk_size=size, storage=job.storage
        )
        if seen is not None:
            inner.files = seen.unread(inner.files)
    if job.cursor is None:
        return inner
    return CursorWindow(
        inner,
        job.cursor,
        since=since,
        filter_rows=not job.is_sql,
        label=f"job {job.name}",
        display=getattr(inner, "display", None) or job.source_label,
    )


# --------------------------------------------------------------------------------------
# the source-row cache (contacts)
# --------------------------------------------------------------------------------------

_PROVENANCE = ("source_file", "source_row")


#: Parquet key-value metadata of a row cache: ``[[file, slots], ...]`` in slot order.
_FILES_KEY = "kraiter-sync.files"


class KnownRows:
    """Last complete run's row hashes: by position (per source file, slot = row - 1, null
    where no row was kept) and, built only if needed, as one sorted set."""

    def __init__(self, slots: pl.Series, files: Sequence[tuple[str, int]]) -> None:
        """From every file's slots, one file after the other (see :func:`row_slots`)."""
        self._slots = slots
        self.rows = slots.len() - slots.null_count()
        self._ordered: pl.Series | None = None
        self.by_file: dict[str, pl.Series] = {}
        offset = 0
        for name, length in files:
            self.by_file[name] = slots.slice(offset, length)
            offset += length

    @classmethod
    def from_rows(cls, frame: pl.DataFrame) -> KnownRows:
        """From (source_file, source_row, h) rows, in any order."""
        return cls(*row_slots(frame))

    @property
    def ordered(self) -> pl.Series:
        if self._ordered is None:
            self._ordered = self._slots.drop_nulls().unique().sort()
        return self._ordered


def row_slots(frame: pl.DataFrame) -> tuple[pl.Series, list[tuple[str, int]]]:
    """(source_file, source_row, h) rows → every file's hashes by position (slot
    ``row - 1``, null for a row not kept), one file after the other, and (file, slots)
    pairs: the row cache's layout, read back without rebuilding anything."""
    if not frame.height:
        return pl.Series("h", [], dtype=pl.UInt64), []
    ordered = frame.sort("source_file", "source_row", maintain_order=True)
    single = ordered["source_file"].n_unique() == 1
    parts = [ordered] if single else ordered.partition_by("source_file", maintain_order=True)
    slots: list[pl.Series] = []
    files: list[tuple[str, int]] = []
    for part in parts:
        rows = part["source_row"]
        hashes = part["h"].cast(pl.UInt64)
        if rows[0] != 1 or rows[-1] != part.height:  # gaps: rows not kept last time
            hashes = (
                pl.Series("h", [None], dtype=pl.UInt64)
                .extend_constant(None, int(rows[-1]) - 1)
                .scatter(rows - 1, hashes)
            )
        slots.append(hashes.alias("h"))
        files.append((str(part["source_file"][0]), hashes.len()))
    return pl.concat(slots, rechunk=True), files


class RowCache:
    """Hashes of the source rows a job last pushed completely, in one Parquet file per
    (job, target, configuration) under ``<state-dir>/sync/``.

    Why a second cache in front of the import engine's per-email one: that one is
    checked *after* validation, and validating a million unchanged rows every night
    costs far more than reading them. Source rows equal to last run's are dropped
    while streaming, so only new or changed rows reach validation. It is only an
    accelerator: the hash (polars ``hash_rows``) is not promised stable across polars
    versions, so the version is part of the file's fingerprint, and a lost or stale
    file just means one slower night in which the engine's own cache still sends
    nothing unchanged. Any change to the job's source, query, mapping or options
    starts a new one.

    Layout (read every night, so made cheap to load): one uncompressed ``h`` column of
    every file's slots (:func:`row_slots`), the files and their slot counts in the
    Parquet metadata.
    """

    def __init__(self, state_dir: Path, job: JobConfig, target: str) -> None:
        identity = json.dumps(
            {
                "target": target,
                "source": list(job.source),
                "query": job.query,
                "kind": job.kind,
                "connector": job.connector,
                "map": dict(job.mapping),
                # (only when set: fingerprints of jobs without types stay as they were)
                **({"types": dict(job.types)} if job.types else {}),
                "timezone": job.timezone,
                "encoding": job.encoding,
                "polars": pl.__version__,
                "format": 3,
            },
            sort_keys=True,
        )
        digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
        self.directory = state_dir / "sync"
        self.prefix = f"{job.name}.rows."
        self.path = self.directory / f"{self.prefix}{digest}.parquet"

    def load(self) -> KnownRows | None:
        try:
            meta = pl.read_parquet_metadata(self.path)
            files = [(str(name), int(n)) for name, n in json.loads(meta[_FILES_KEY])]
            slots = pl.read_parquet(self.path, columns=["h"])["h"]
        except FileNotFoundError:
            return None
        except (OSError, KeyError, TypeError, ValueError, pl.exceptions.PolarsError) as exc:
            log.warning("ignoring the unreadable row cache %s (%s)", self.path, exc)
            return None  # damaged: rebuilt tonight
        if sum(n for _name, n in files) != slots.len():
            log.warning("ignoring the row cache %s: its layout does not add up", self.path)
            return None
        known = KnownRows(slots, files)
        return known if known.rows else None

    def save(self, rows: pl.DataFrame) -> None:
        """Atomically replace the cache with (source_file, source_row, h) rows, and
        drop the caches of older configurations."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        slots, files = row_slots(rows)
        # Uncompressed: the hashes are random bits that no codec shrinks, and the file is
        # read every night, where decompressing a million rows costs more than the I/O.
        pl.DataFrame({"h": slots}).write_parquet(
            tmp,
            compression="uncompressed",
            statistics=False,
            metadata={_FILES_KEY: json.dumps(files)},
        )
        tmp.replace(self.path)
        for old in self.directory.glob(f"{self.prefix}*.parquet"):
            if old != self.path:
                old.unlink(missing_ok=True)


class ChangedRows:
    """Wraps a chunk source: hashes every row and passes on only rows unlike last
    run's (every row when ``known`` is None); remembers every row's hash.

    A row is unchanged when its hash equals the hash of the same row number of the same
    file last time (one vectorised comparison: the common case for tables and append-only
    exports), or else appears anywhere in last run's set (rows that moved).
    """

    def __init__(self, inner: ChunkSource, known: KnownRows | None) -> None:
        self.inner = inner
        self.known = known
        self.seen: list[pl.DataFrame] = []
        self.rows_read = 0
        self.skipped = 0
        #: Rows equal to the same row (file and number) last time.
        self.in_place = 0

    @property
    def schema(self) -> pl.Schema:
        return self.inner.schema

    @property
    def display(self) -> str:
        return str(getattr(self.inner, "display", None) or self.inner)

    @property
    def text_columns(self) -> frozenset[str]:
        return frozenset(getattr(self.inner, "text_columns", ()))

    def close(self) -> None:
        self.inner.close()

    def _fresh(self, chunk: pl.DataFrame, hashes: pl.Series, known: KnownRows) -> pl.Series:
        """Positions (ascending) of the chunk's rows that are new or changed."""
        height = chunk.height
        files = chunk["source_file"]
        rows = chunk["source_row"]
        first, last = rows[0], rows[-1]
        previous = known.by_file.get(files[0])
        if (
            previous is not None
            and files[0] == files[-1]
            and last - first + 1 == height
            and first >= 1
        ):
            old = previous.slice(first - 1, height)
            # a null slot is a row that was not there last time: changed
            moved = hashes.head(old.len()).ne_missing(old).arg_true()
            if old.len() < height:  # rows past last run's end
                beyond = pl.int_range(old.len(), height, eager=True, dtype=pl.get_index_type())
                moved = moved.append(beyond)
        else:
            moved = pl.int_range(0, height, eager=True, dtype=pl.get_index_type())
        self.in_place += height - moved.len()
        # Rows that only moved are found in the whole set; when few rows differ it is
        # cheaper to let validation see them (the engine's cache still skips the
        # unchanged) than to build and search that set.
        if moved.len() <= max(100, height // 50):
            return moved
        absent = _rows_not_in(known.ordered, hashes.gather(moved))
        return moved.gather(absent)

    def iter_chunks(self, *, chunk_size: int | None = None) -> Iterator[pl.DataFrame]:
        """The rows that changed, re-grouped into chunks of up to ``chunk_size`` rows:
        validation has a cost per chunk, and 1 % of 100k-row chunks would pay it for
        a thousand rows each."""
        size = chunk_size or getattr(self.inner, "chunk_size", None) or 100_000
        pending: list[pl.DataFrame] = []
        held = 0
        for chunk in self.inner.iter_chunks(chunk_size=chunk_size):
            hashes = chunk.drop(*[c for c in _PROVENANCE if c in chunk.columns]).hash_rows()
            self.seen.append(chunk.select(*_PROVENANCE).with_columns(hashes.alias("h")))
            self.rows_read += chunk.height
            if self.known is None or not chunk.height:
                yield chunk
                continue
            kept = chunk.gather(self._fresh(chunk, hashes, self.known))
            self.skipped += chunk.height - kept.height
            if kept.height:
                pending.append(kept)
                held += kept.height
            if held >= size:
                yield pl.concat(pending, how="diagonal_relaxed")
                pending, held = [], 0
        if pending:
            yield pl.concat(pending, how="diagonal_relaxed")

    @property
    def same_as_before(self) -> bool:
        """Every row is where and what it was last time, and none is new or gone: the
        cache would be written back unchanged."""
        return self.known is not None and self.in_place == self.rows_read == self.known.rows

    def rows(self, *, excluding: pl.DataFrame | None = None) -> pl.DataFrame:
        """(source_file, source_row, h) of every row read, minus rows in ``excluding``."""
        if not self.seen:
            return pl.DataFrame(
                schema={"source_file": pl.String, "source_row": pl.Int64, "h": pl.UInt64}
            )
        frame = pl.concat(self.seen)
        if excluding is not None and excluding.height:
            frame = frame.join(excluding, on=list(_PROVENANCE), how="anti")
        return frame


def _rows_not_in(haystack: pl.Series, needles: pl.Series) -> pl.Series:
    """Positions (ascending) of the ``needles`` absent from the sorted, non-empty
    ``haystack``. The needles are sorted first: a binary search of sorted needles is
    ~3x faster than of unsorted ones, and than ``is_in``, at a million cached rows."""
    order = needles.arg_sort()
    ordered = needles.gather(order)
    at = haystack.search_sorted(ordered, side="left").clip(0, haystack.len() - 1)
    found = (haystack.gather(at) == ordered).fill_null(False)
    return order.filter(~found).sort()


def _rejected_rows(path: Path | None) -> pl.DataFrame | None:
    """(source_file, source_row) of the rows a run rejected, to keep them out of the
    row cache so they are reported again until fixed."""
    if path is None or not path.is_file():
        return None
    try:
        frame = pl.read_csv(path, columns=list(_PROVENANCE), infer_schema=False)
    except (OSError, pl.exceptions.PolarsError):
        return None
    return frame.with_columns(pl.col("source_row").cast(pl.Int64, strict=False)).unique()


# --------------------------------------------------------------------------------------
# --check
# --------------------------------------------------------------------------------------


@dataclass
class JobCheck:
    """One job's check: its source opened, its mapping resolved, its first rows validated."""

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


def _check_code(exc: KraiterSyncError) -> int:
    """A failed check is a usage error (fix the config) or a failure — never "resume"."""
    return EXIT_USAGE if exc.exit_code == EXIT_USAGE else EXIT_FAILED


#: Rows a check reads from each source: the first chunk of the run, at this size.
CHECK_ROWS = 1_000


#: The validator's switches a job can turn on (``ValidationOptions`` fields of the name).
_SWITCH_KEYS = (
    "allow_smtputf8",
    "allow_special_use_domains",
    "allow_secret_keys",
    "allow_card_numbers",
)


def _validation(job: JobConfig) -> ValidationOptions:
    """The job's validator switches (``allow_*`` keys)."""
    return ValidationOptions(**{key: getattr(job, key) for key in _SWITCH_KEYS})


def _input_options(job: JobConfig, *, kind: str | None = None) -> InputOptions:
    """How a job's source is read, mapped and validated: the same for its run and its
    check."""
    return InputOptions(
        kind=cast(Any, kind or job.kind),
        connector=job.connector,
        mapping=dict(job.mapping),
        types=dict(job.types),
        encoding=job.encoding,
        chunk_size=job.chunk_size,
        timezone=job.timezone,
        validation=_validation(job),
    )


def _check_job(job: JobConfig) -> JobCheck:
    """Open the job's source as the run does and put its first rows through the same
    mapping and validation (the validator's read-ahead thread included): a source that
    cannot be read the way the run reads it fails here, not at night."""
    from kraiter_sync.validate import ChunkedValidation

    options = _input_options(job, kind="contacts" if job.mode == "mirror" else None)
    try:
        with contextlib.ExitStack() as stack:
            source = open_job_source(job, chunk_size=CHECK_ROWS, limit=CHECK_ROWS)
            stack.callback(source.close)
            (prepared,) = prepare_inputs([source], options, stack=stack)
            detection = prepared.detection
            if job.kind is not None and detection.kind != job.kind:
                msg = f"job {job.name}: kind is {job.kind} but the mapping reads {detection.kind}"
                raise ConfigError(msg)
            columns = [n for n in source.schema.names() if n not in _PROVENANCE]
            validation = ChunkedValidation(
                kind=detection.kind, options=prepared.validation_options(options)
            )
            for _valid in validation.run(itertools.islice(prepared.mapped_chunks(), 1)):
                pass
            report = validation.report
    except KraiterSyncError as exc:
        return JobCheck(job.name, False, str(exc), _check_code(exc))
    details = [
        f"source: {job.source_label} ({len(columns)} columns)",
        *detection.lines(),
        f"first {report.rows_read:,} row(s) read and validated: {report.valid:,} valid, "
        f"{report.rejected:,} rejected",
    ]
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
        return JobCheck("target", False, f"{where}: {exc}", _check_code(exc))
    return JobCheck("target", True, f"{where} answers and accepts the key")


def check_jobs(
    config: SyncConfig,
    settings: Settings,
    jobs: Sequence[str] = (),
    *,
    client_factory: Callable[[Settings], Any] | None = None,
) -> CheckResult:
    """Validate connections without sending anything: each source opened and its first
    :data:`CHECK_ROWS` rows read, mapped and validated as the run does (the same code,
    threads included), the cursor column found, and one read from Kraiter."""
    selected = config.select(jobs)
    return CheckResult(
        jobs=[_check_job(job) for job in selected],
        target=_check_target(settings, client_factory),
    )


# --------------------------------------------------------------------------------------
# running jobs
# --------------------------------------------------------------------------------------


def cursor_stream(job: str) -> str:
    """The ledger watermark that holds a job's cursor."""
    return f"sync:{job}:cursor"


def objects_stream(job: str) -> str:
    """The watermark holding the objects a job has read: URL → size and ETag."""
    return f"sync:{job}:objects"


def _files_of(source: ChunkSource) -> list[Any]:
    """The files under a (possibly windowed) file source."""
    inner: Any = source
    while not hasattr(inner, "files") and hasattr(inner, "inner"):
        inner = inner.inner
    return list(getattr(inner, "files", []))


def full_stream(job: str) -> str:
    """The ledger watermark that holds when a job last made a full pass."""
    return f"sync:{job}:last_full"


@dataclass
class JobResult:
    """What one job did; ``exit_code`` follows design.md §8."""

    job: str
    status: str
    exit_code: int
    kind: str | None = None
    message: str = ""
    run_id: int | None = None
    full: bool = False
    window_from: str | None = None
    watermark_before: str | None = None
    watermark_after: str | None = None
    rows_read: int | None = None
    #: Source rows skipped before validation because they equal last run's (row cache).
    unchanged_rows: int = 0
    duration_s: float = 0.0
    counts: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "status": self.status,
            "exit_code": self.exit_code,
            "kind": self.kind,
            "message": self.message,
            "run_id": self.run_id,
            "full": self.full,
            "window_from": self.window_from,
            "watermark_before": self.watermark_before,
            "watermark_after": self.watermark_after,
            "rows_read": self.rows_read,
            "unchanged_rows": self.unchanged_rows,
            "duration_s": round(self.duration_s, 3),
            "counts": self.counts,
        }


@dataclass
class SyncResult:
    """A whole ``sync`` run: one result per job, in the order they ran."""

    jobs: list[JobResult]
    dry_run: bool = False
    duration_s: float = 0.0

    @property
    def exit_code(self) -> int:
        return worst_exit_code([j.exit_code for j in self.jobs])

    def as_dict(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "dry_run": self.dry_run,
            "duration_s": round(self.duration_s, 3),
            "jobs": [j.as_dict() for j in self.jobs],
        }


def _status(code: int, dry_run: bool) -> str:
    if dry_run and code in (EXIT_OK, EXIT_REJECTED):
        return "dry-run"
    return {
        EXIT_OK: "ok",
        EXIT_REJECTED: "rejected-rows",
        EXIT_INCOMPLETE: "incomplete",
        EXIT_USAGE: "error",
    }.get(code, "failed")


def _describe(value: CursorValue | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def _is_due(last_full: str | None, every: dt.timedelta | None, now: dt.datetime) -> bool:
    if every is None:
        return False
    if last_full is None:
        return True
    return now - dt.datetime.fromisoformat(last_full) >= every


def run_job(
    job: JobConfig,
    *,
    settings: Settings,
    dry_run: bool = False,
    full: bool = False,
    now: dt.datetime | None = None,
    client_factory: Callable[[Any], Any] | None = None,
    concurrency: int | None = None,
) -> JobResult:
    """Run one job (the caller holds the state lock); raises on a failure of the job."""
    from kraiter_sync.importer import ImportOptions, import_
    from kraiter_sync.ledger import Ledger

    started = time.monotonic()
    now = now or dt.datetime.now(dt.UTC)
    if job.mode == "mirror":
        return _mirror_job(job, settings=settings, dry_run=dry_run, started=started)
    target = settings.target
    raw_mark = last_full = None
    if job.cursor or (job.full_every and not full):  # else the ledger has nothing for us yet
        with Ledger(settings.ledger_path) as ledger:
            raw_mark = ledger.get_watermark(target, cursor_stream(job.name)) if job.cursor else None
            last_full = ledger.get_watermark(target, full_stream(job.name))
    full_pass = full or _is_due(last_full, job.full_every, now)
    watermark = decode_cursor(raw_mark) if raw_mark is not None else None
    since = None
    if job.cursor and watermark is not None and not full_pass:
        since = window_start(watermark, job.lag, job.name, parse_text=not job.is_sql)
    seen = objects = None
    if job.reads_objects:
        with Ledger(settings.ledger_path) as ledger:
            seen = SeenObjects.decode(ledger.get_watermark(target, objects_stream(job.name)))
        if full_pass:
            seen = SeenObjects()
    source = open_job_source(job, since=since, seen=seen)
    if seen is not None:
        remaining = _files_of(source)
        objects = seen.listed(remaining)
        if not remaining:
            source.close()
            return JobResult(
                job=job.name,
                status=_status(EXIT_OK, dry_run),
                exit_code=EXIT_OK,
                kind=job.kind,
                full=full_pass,
                rows_read=0,
                duration_s=time.monotonic() - started,
                message="no new or changed objects since the last run",
            )
    row_cache: RowCache | None = None
    changed: ChangedRows | None = None
    if job.cursor is None:
        row_cache = RowCache(settings.state_dir, job, target)
        changed = ChangedRows(source, None if full_pass else row_cache.load())
        source = changed
    options = ImportOptions(
        input=_input_options(job),
        dry_run=dry_run,
        concurrency=concurrency or job.concurrency,
        rate=job.rate,
        max_retries=job.max_retries,
        allow_triggers=job.allow_triggers,
        ignore_contact_cache=full_pass and job.kind != "events",
    )
    args = {
        "job": job.name,
        "source": job.source_label,
        "kind": job.kind,
        "full": full_pass,
        "since": _describe(since),
        "dry_run": dry_run,
    }
    result = import_(
        [source],
        settings=settings,
        options=options,
        client_factory=client_factory,
        args=args,
        command=f"sync:{job.name}",
    )
    code = result.exit_code
    after = watermark
    complete = code in (EXIT_OK, EXIT_REJECTED) and not dry_run
    if isinstance(source, CursorWindow) and source.max_value is not None and complete:
        top = source.max_value
        if after is None or not _comparable(top, after) or top > after:  # type: ignore[operator]
            after = top
        with Ledger(settings.ledger_path) as ledger:
            ledger.set_watermark(target, cursor_stream(job.name), encode_cursor(after))
    if row_cache is not None and changed is not None and complete and not changed.same_as_before:
        rejected = _rejected_rows(result.rejects_path) if code == EXIT_REJECTED else None
        row_cache.save(changed.rows(excluding=rejected))
    if full_pass and complete:
        with Ledger(settings.ledger_path) as ledger:
            ledger.set_watermark(target, full_stream(job.name), now.isoformat())
    if seen is not None and objects and complete:
        seen.add(objects)
        with Ledger(settings.ledger_path) as ledger:
            ledger.set_watermark(target, objects_stream(job.name), seen.encode())
    kind = "events" if result.events.read else ("contacts" if result.contacts.read else job.kind)
    return JobResult(
        job=job.name,
        status=_status(code, dry_run),
        exit_code=code,
        kind=kind,
        run_id=result.run_id,
        full=full_pass,
        window_from=_describe(since),
        watermark_before=_describe(watermark),
        watermark_after=_describe(after),
        rows_read=source.rows_read if isinstance(source, CursorWindow | ChangedRows) else None,
        unchanged_rows=changed.skipped if changed is not None else 0,
        duration_s=time.monotonic() - started,
        counts=result.as_dict(),
        message=_summary(result, changed.skipped if changed is not None else 0)
        + (
            f"; rejected rows in {result.rejects_path}"
            if code == EXIT_REJECTED and result.rejects_path
            else ""
        ),
    )


def _mirror_job(job: JobConfig, *, settings: Settings, dry_run: bool, started: float) -> JobResult:
    """``mode = "mirror"``: make Kraiter's contacts equal the source, deletions included.

    Every night is a full reconcile (all of the source against all of Kraiter) with its
    guards: an empty source, rejected rows, or deleting more than ``max_delete_ratio``
    of Kraiter's contacts stop the job (exit 2) before anything is written; deleted
    contacts go to a tombstone file (``kraiter-sync restore`` undoes them).
    """
    from kraiter_sync.reconcile_run import ReconcileOptions, reconcile

    source = open_job_source(job)
    result = reconcile(
        [source],
        settings=settings,
        inputs=_input_options(job, kind="contacts"),
        options=ReconcileOptions(
            mirror=True,
            max_delete_ratio=job.max_delete_ratio,
            apply=not dry_run,
            concurrency=job.concurrency,
            max_retries=job.max_retries,
            rate=job.rate,
        ),
        command=f"sync:{job.name}",
        args={"job": job.name, "source": job.source_label, "mode": "mirror", "dry_run": dry_run},
    )
    code = result.exit_code
    plan = result.plan.counts() if result.plan is not None else {}
    parts = [f"{plan.get(k, 0)} to {k}" for k in ("create", "update", "delete")]
    message = "mirror plan: " + ", ".join(parts) + f", {plan.get('unchanged', 0)} unchanged"
    applied = result.applied
    if applied is not None:
        message += (
            f"; applied: {applied.created} created, {applied.updated} updated, "
            f"{applied.deleted} deleted"
        )
        if applied.tombstone is not None:
            message += f" (tombstone {applied.tombstone})"
    return JobResult(
        job=job.name,
        status=_status(code, dry_run),
        exit_code=code,
        kind="contacts",
        message=message,
        run_id=result.run_id,
        duration_s=time.monotonic() - started,
        counts=result.counts(),
    )


def _comparable(a: object, b: object) -> bool:
    """Whether two cursor values can be ordered (a cursor column may change type)."""
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers):
        return True
    return type(a) is type(b)


def _summary(result: Any, unchanged_rows: int = 0) -> str:
    parts = [f"{unchanged_rows} source rows unchanged since the last run"] if unchanged_rows else []
    for kind in ("contacts", "events"):
        counts = getattr(result, kind)
        if not counts.read:
            continue
        bits = [f"{counts.read} read", f"{counts.sent} sent"]
        for name in ("unchanged", "already", "duplicates", "invalid", "rejected", "failed"):
            value = getattr(counts, name, 0)
            if value:
                bits.append(f"{value} {name}")
        if counts.pending:
            bits.append(f"{counts.pending} pending")
        parts.append(f"{kind}: " + ", ".join(bits))
    return "; ".join(parts) or "no rows"


def run_sync(
    config: SyncConfig,
    settings: Settings,
    jobs: Sequence[str] = (),
    *,
    dry_run: bool = False,
    full: bool = False,
    now: dt.datetime | None = None,
    client_factory: Callable[[Any], Any] | None = None,
    concurrency: int | None = None,
) -> SyncResult:
    """Run the selected jobs in order under one lock on the state directory.

    A job that fails is recorded and the next one runs; the result's ``exit_code`` is
    the most severe of all jobs. A second run on the same state directory raises
    :class:`~kraiter_sync.errors.LockHeldError` (exit 5, nothing started) at once.
    """
    from kraiter_sync.ledger import ensure_state_dir, state_lock

    selected = config.select(jobs)
    started = time.monotonic()
    results: list[JobResult] = []
    ensure_state_dir(settings.state_dir)
    with state_lock(settings.state_dir):
        for job in selected:
            job_started = time.monotonic()
            log.info("job %s: starting (%s)", job.name, job.source_label, extra={"job": job.name})
            try:
                outcome = run_job(
                    job,
                    settings=settings,
                    dry_run=dry_run,
                    full=full,
                    now=now,
                    client_factory=client_factory,
                    concurrency=concurrency,
                )
            except KraiterSyncError as exc:
                outcome = JobResult(
                    job.name,
                    "error" if exc.exit_code == EXIT_USAGE else "failed",
                    exc.exit_code,
                    kind=job.kind,
                    message=str(exc),
                    duration_s=time.monotonic() - job_started,
                )
            except Exception as exc:  # a bug must not cost the other jobs their night
                log.debug("job %s crashed", job.name, exc_info=True)
                outcome = JobResult(
                    job.name,
                    "failed",
                    EXIT_FAILED,
                    kind=job.kind,
                    message=f"unexpected {type(exc).__name__}: {exc} (re-run with -vv for details)",
                    duration_s=time.monotonic() - job_started,
                )
            log.log(
                _LEVELS.get(outcome.exit_code, logging.ERROR),
                "job %s: %s (exit %d): %s",
                job.name,
                outcome.status,
                outcome.exit_code,
                outcome.message,
                extra={"job": job.name, "status": outcome.status, "exit_code": outcome.exit_code},
            )
            results.append(outcome)
    summary = SyncResult(results, dry_run=dry_run, duration_s=time.monotonic() - started)
    tally = Counter(j.status for j in results)
    log.log(
        _LEVELS.get(summary.exit_code, logging.ERROR),
        "sync finished in %.1f s: %s (exit %d)",
        summary.duration_s,
        ", ".join(f"{n} {status}" for status, n in tally.items()) or "no jobs",
        summary.exit_code,
        extra={"exit_code": summary.exit_code},
    )
    return summary
