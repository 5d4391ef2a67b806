"""A job's source and mapping, read the same way by its run and its check; the ledger
watermarks a job keeps; how a run of several jobs exits.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

from kraiter_sync.config.file import JobConfig
from kraiter_sync.connectors import VALIDATION_SWITCHES
from kraiter_sync.errors import (
    EXIT_BUSY,
    EXIT_FAILED,
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    ConfigError,
)
from kraiter_sync.inputs import ChunkSource, InputOptions
from kraiter_sync.logs import get_logger
from kraiter_sync.sources import open_source
from kraiter_sync.sources.objectstore.changes import SeenObjects
from kraiter_sync.sources.sql import CursorFilter, CursorValue, SqlSource
from kraiter_sync.sync.cursor import CursorWindow
from kraiter_sync.validate import ValidationOptions

__all__ = [
    "CHECK_ROWS",
    "LEVELS",
    "cursor_stream",
    "files_of",
    "full_stream",
    "input_options",
    "objects_stream",
    "open_job_source",
    "worst_exit_code",
]

log = get_logger("sync")


#: Most severe first: a configuration problem beats a failure, which beats a job that
#: found something busy (nothing started), an incomplete run, then rejected rows.
SEVERITY = (EXIT_USAGE, EXIT_FAILED, EXIT_BUSY, EXIT_INCOMPLETE, EXIT_REJECTED, EXIT_OK)


#: How loud a job's outcome is: a good night says nothing at the default level (cron
#: mails any output), rejected rows warn, everything else is an error.
LEVELS = {EXIT_OK: logging.INFO, EXIT_REJECTED: logging.WARNING}


def worst_exit_code(codes: Sequence[int]) -> int:
    """The exit code of a run made of several jobs: the most severe of theirs."""
    for code in SEVERITY:
        if code in codes:
            return code
    return max(codes, default=EXIT_OK)


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


#: Rows a check reads from each source: the first chunk of the run, at this size.
CHECK_ROWS = 1_000


def input_options(job: JobConfig, *, kind: str | None = None) -> InputOptions:
    """How a job's source is read, mapped and validated: the same for its run and its
    check."""
    switches = {key: getattr(job, key) for key in VALIDATION_SWITCHES}
    return InputOptions(
        kind=cast(Any, kind or job.kind),
        connector=job.connector,
        mapping=dict(job.mapping),
        types=dict(job.types),
        encoding=job.encoding,
        chunk_size=job.chunk_size,
        timezone=job.timezone,
        validation=ValidationOptions(**switches),
    )


def cursor_stream(job: str) -> str:
    """The ledger watermark that holds a job's cursor."""
    return f"sync:{job}:cursor"


def objects_stream(job: str) -> str:
    """The watermark holding the objects a job has read: URL → size and ETag."""
    return f"sync:{job}:objects"


def files_of(source: ChunkSource) -> list[Any]:
    """The files under a (possibly windowed) file source."""
    inner: Any = source
    while not hasattr(inner, "files") and hasattr(inner, "inner"):
        inner = inner.inner
    return list(getattr(inner, "files", []))


def full_stream(job: str) -> str:
    """The ledger watermark that holds when a job last made a full pass."""
    return f"sync:{job}:last_full"
