"""What an export is asked to do and what it reports: options, the result, progress."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from kraiter_sync.config.storage import StorageOptions
from kraiter_sync.errors import UsageError
from kraiter_sync.export.paging import Fetcher
from kraiter_sync.export.writers import FORMATS, Format
from kraiter_sync.logs import get_logger

__all__ = [
    "Clock",
    "ExportOptions",
    "ExportResult",
    "Mode",
    "Progress",
    "ProgressSink",
    "log_progress",
]

log = get_logger("export")
Clock = Callable[[], float]


#: A table name prefix: lower-case letters, digits and underscores (never quoted wrong).
_PREFIX = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how (the CLI's flags)."""

    format: Format = "parquet"
    #: Export the stream again in full and replace the output this tool wrote (the files
    #: in the manifest; a table's rows not found again). Snapshot streams always do.
    replace: bool = False
    #: Deprecated name of ``replace`` (``--full``).
    full: bool = False
    #: The window ``since <= time < until`` (on the stream's time column): exported into
    #: its own folder (``<stream>-since-…``), never replacing the stream's output.
    since: datetime | None = None
    until: datetime | None = None
    #: Limit per-contact streams to these contacts (ids or emails).
    contacts: tuple[str, ...] | None = None
    #: Add one String column per property key next to the JSON column.
    flatten_properties: bool = False
    #: Write CSV cells exactly as they are (no formula neutralisation).
    raw_csv: bool = False
    #: Events / timelines: leave out Kraiter's system events (``email.*``, sequences).
    custom_only: bool = False
    page_size: int = 100
    #: Rows read between two checkpoints (a crash loses at most this much reading).
    chunk_rows: int = 50_000
    commit_seconds: float = 30.0
    #: Retries per request after the first attempt (0 = none).
    retries: int = 5
    #: Ceiling in requests/s for the rate controller (None: as fast as Kraiter allows).
    rate: float | None = None
    #: Export into a stream directory that holds files this tool did not write (they are
    #: left alone: only the files in the manifest are ever replaced or deleted).
    overwrite: bool = False
    #: Contacts fetched at once by the per-contact streams (timelines, enrolments,
    #: memberships), all under the one rate controller.
    concurrency: int = 16
    #: Database targets: tables are named ``<prefix><stream>`` (``kraiter_events``).
    table_prefix: str = "kraiter_"
    #: Endpoints and profiles for an object-store ``--out`` (``[storage]``; never secrets).
    storage: StorageOptions | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            msg = f"format must be one of {', '.join(FORMATS)}, not {self.format!r}"
            raise UsageError(msg)
        for name in ("since", "until"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                msg = f"--{name} must carry a time zone (e.g. 2025-01-01T00:00:00Z)"
                raise UsageError(msg)
        if self.since is not None and self.until is not None and self.since >= self.until:
            msg = (
                f"--since {self.since.isoformat()} is not before --until "
                f"{self.until.isoformat()}: the window would be empty"
            )
            raise UsageError(msg)
        if not 1 <= self.concurrency <= 64:
            msg = f"concurrency must be between 1 and 64, not {self.concurrency}"
            raise UsageError(msg)
        if not _PREFIX.match(self.table_prefix):
            msg = (
                f"--table-prefix {self.table_prefix!r}: use lower-case letters, digits and "
                "underscores, starting with a letter or _ (e.g. kraiter_)"
            )
            raise UsageError(msg)

    @property
    def replacing(self) -> bool:
        return self.replace or self.full

    @property
    def windowed(self) -> bool:
        return self.since is not None or self.until is not None

    def layout(self, *, with_contacts: bool = False) -> dict[str, Any]:
        """The options that shape the files (appending with others would mix layouts)."""
        layout: dict[str, Any] = {
            "format": self.format,
            "custom_only": self.custom_only,
            "flatten_properties": self.flatten_properties,
            "raw_csv": self.raw_csv,
        }
        if with_contacts:
            layout["contacts"] = list(self.contacts) if self.contacts is not None else None
        return layout


Mode = Literal["incremental", "full", "snapshot", "window"]


@dataclass
class ExportResult:
    """What one run did: a summary, never a list of every file (``paths()`` reads them).

    ``rows`` / ``files`` are this run's; ``rows_total`` / ``files_total`` what the output
    holds now (the manifest, or the table). ``reason`` says why a run exported in full
    although it was not asked to (the output was missing or did not match its state).
    """

    stream: str
    directory: Path | None
    format: str
    mode: Mode
    rows: int = 0
    files: int = 0
    rows_total: int = 0
    files_total: int = 0
    #: Where the state document that holds the manifest (every file with its rows and
    #: bytes) is: a file path, or the state store and the document's name.
    manifest: str | None = None
    #: ``<redacted url>#<table>`` for a database target.
    table: str | None = None
    #: The folder's URL for an object-store output (``directory`` is then None).
    url: str | None = None
    #: The window, as its folder names it (``since-2026-11-01``), or None.
    window: str | None = None
    reason: str | None = None
    #: Files (or table rows) this run deleted because they were replaced.
    replaced: int = 0
    requests: int = 0
    retries: int = 0
    resumed: bool = False
    seconds: float = 0.0
    contacts_not_found: list[str] = field(default_factory=list)
    #: The manifest's files (relative paths), kept out of the printed summary.
    manifest_files: list[str] = field(default_factory=list, repr=False)

    def paths(self) -> list[Path]:
        """Every file of the output now, from the manifest (an empty list for tables)."""
        if self.directory is None:
            return []
        return [self.directory / rel for rel in self.manifest_files]


ProgressSink = Callable[[dict[str, Any]], None]


def log_progress(info: dict[str, Any]) -> None:
    """The default progress sink: an INFO line (shown with -v, or as JSON lines)."""
    log.info(
        "export %s: %s rows, %s requests (%.1f req/s), %d retries",
        info["stream"],
        f"{info['rows']:,}",
        f"{info['requests']:,}",
        info["requests_per_s"],
        info["retries"],
        extra={"progress": info},
    )


class Progress:
    """Throttled progress reports (rows, requests, rate, retries) to a sink."""

    def __init__(
        self, stream: str, fetcher: Fetcher, clock: Clock, sink: ProgressSink, every: float = 1.0
    ) -> None:
        self.stream = stream
        self.fetcher = fetcher
        self.clock = clock
        self.sink = sink
        self.every = every
        self.start = clock()
        self.last = self.start

    def tick(self, rows: int, *, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self.last < self.every:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        self.sink(
            {
                "stream": self.stream,
                "rows": rows,
                "requests": self.fetcher.requests,
                "requests_per_s": self.fetcher.requests / elapsed,
                "rows_per_s": rows / elapsed,
                "retries": self.fetcher.retries,
                "done": force,
            }
        )
