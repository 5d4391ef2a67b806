"""What an export is asked to do and what it reports: options, the result, progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from kraiter_sync.errors import (
    UsageError,
)
from kraiter_sync.export.paging import Fetcher
from kraiter_sync.export.writers import (
    FORMATS,
    Format,
)
from kraiter_sync.logs import get_logger

__all__ = ["Clock", "ExportOptions", "ExportResult", "Progress", "ProgressSink", "log_progress"]

log = get_logger("export")
Clock = Callable[[], float]


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how (the CLI's flags)."""

    format: Format = "parquet"
    #: Re-export everything (replaces the stream's output when complete).
    full: bool = False
    #: Re-export rows at or after this moment (on the stream's time column), replacing
    #: the stream's output; ignores the watermark.
    since: datetime | None = None
    #: Limit per-contact streams to these contacts (ids or emails).
    contacts: tuple[str, ...] | None = None
    #: Add one String column per property key next to the JSON column.
    flatten_properties: bool = False
    #: Write CSV cells exactly as they are (no formula neutralisation).
    raw_csv: bool = False
    #: Events / timelines: leave out Kraiter's system events (``email.*``, sequences).
    custom_only: bool = False
    page_size: int = 100
    chunk_rows: int = 50_000
    commit_seconds: float = 30.0
    #: Retries per request after the first attempt (0 = none).
    retries: int = 5
    #: Ceiling in requests/s for the rate controller (None: as fast as Kraiter allows).
    rate: float | None = None
    #: Export into a stream directory that holds files this tool did not write (they are
    #: left alone: only the files in the manifest are ever replaced or deleted).
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            msg = f"format must be one of {', '.join(FORMATS)}, not {self.format!r}"
            raise UsageError(msg)
        if self.since is not None and self.since.tzinfo is None:
            msg = "--since must carry a time zone (e.g. 2025-01-01T00:00:00Z)"
            raise UsageError(msg)

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


@dataclass
class ExportResult:
    """What one run did."""

    stream: str
    directory: Path | None
    format: Format
    mode: Literal["incremental", "full", "snapshot"]
    rows: int = 0
    files: list[Path] = field(default_factory=list)
    requests: int = 0
    retries: int = 0
    resumed: bool = False
    seconds: float = 0.0
    contacts_not_found: list[str] = field(default_factory=list)


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
