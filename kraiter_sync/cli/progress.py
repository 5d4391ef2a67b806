"""The one progress display for every long command: import, retry, sync, export, reconcile.

A rich bar on stderr when stderr is a terminal (records done of the planned total,
records/s, the ETA computed from the *current rate budget* — what the rate controller
allows now, not a historical average that a 429 pause would distort — and the 429 and
retry counts); JSON log lines every few seconds with ``--log-format json``; nothing with
``--quiet`` or when nobody watches. The library reports; this module only draws.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from kraiter_sync.logs import LogFormat, get_logger

if TYPE_CHECKING:
    from kraiter_sync.upload.core import Snapshot
    from kraiter_sync.verbs.rebuild import RebuildProgress

__all__ = ["ProgressSink", "eta_seconds"]

log = get_logger("progress")


def eta_seconds(snapshot: Snapshot, observed_rate: float) -> float | None:
    """Remaining records ÷ the rate they can go out at now (budget, else observed)."""
    remaining = max(snapshot.total - snapshot.done, 0)
    rate = snapshot.rate_budget or observed_rate
    return remaining / rate if rate > 0 else None


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA -"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"ETA {hours}:{minutes:02d}:{secs:02d}" if hours else f"ETA {minutes}:{secs:02d}"


class ProgressSink:
    """Receives progress from the library and renders it if anyone is watching.

    Use as a context manager; pass :meth:`sending` (import, retry, sync),
    :meth:`exporting` or :meth:`reading` (reconcile) as the library's progress callback.
    """

    def __init__(self, *, mode: str = "off", interval: float = 5.0) -> None:
        self.mode = mode  # "bar" | "json" | "off"
        self.interval = interval
        self._started = time.monotonic()
        self._last_log = 0.0
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    @classmethod
    def for_cli(cls, *, quiet: bool, log_format: LogFormat) -> ProgressSink:
        if quiet:
            return cls(mode="off")
        if log_format == "json":
            return cls(mode="json")
        return cls(mode="bar" if sys.stderr.isatty() else "off")

    def __enter__(self) -> ProgressSink:
        if self.mode == "bar":
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def _draw(self, description: str, done: int, total: int | None, info: str) -> None:
        if self._bar is None:
            return
        if self._task is None:
            self._task = self._bar.add_task(description, total=total, info=info)
        self._bar.update(
            self._task, description=description, completed=done, total=total, info=info
        )

    def sending(self, snapshot: Snapshot) -> None:
        """Records settled of the run's valid records (import, retry, sync jobs)."""
        elapsed = max(time.monotonic() - self._started, 1e-9)
        observed = snapshot.done / elapsed
        eta = eta_seconds(snapshot, observed)
        if self.mode == "bar":
            info = (
                f"{observed:,.0f}/s · {_fmt_eta(eta)} · 429s: {snapshot.rate_limited:,} · "
                f"{snapshot.retries:,} retries"
            )
            self._draw("sending", snapshot.done, snapshot.total or None, info)
        elif self.mode == "json":
            now = time.monotonic()
            if now - self._last_log >= self.interval or snapshot.done >= snapshot.total:
                self._last_log = now
                log.info(
                    "progress",
                    extra={
                        "done": snapshot.done,
                        "total": snapshot.total,
                        "per_s": round(observed, 1),
                        "eta_s": None if eta is None else round(eta, 1),
                        "rate_limited": snapshot.rate_limited,
                        "retries": snapshot.retries,
                    },
                )

    def exporting(self) -> Callable[[dict[str, Any]], None] | None:
        """The export's progress callback on a terminal; None leaves the export's own
        INFO lines (shown with -v, or as JSON lines)."""
        if self.mode != "bar":
            return None

        def show(info: dict[str, Any]) -> None:
            detail = (
                f"{info['rows_per_s']:,.0f} rows/s · {info['requests']:,} requests "
                f"({info['requests_per_s']:.1f}/s) · {info['retries']} retries"
            )
            self._draw(f"export {info['stream']}", info["rows"], None, detail)

        return show

    def reading(self) -> Callable[[int], None] | None:
        """Contacts read from Kraiter so far (reconcile), on a terminal."""
        if self.mode != "bar":
            return None

        def show(count: int) -> None:
            self._draw("reading Kraiter", count, None, "contacts")

        return show

    def rebuilding(self) -> Callable[[RebuildProgress], None] | None:
        """Contacts and events read from Kraiter so far (``state rebuild``), on a terminal;
        otherwise the rebuild's own INFO lines (shown with -v, or as JSON lines)."""
        if self.mode != "bar":
            return None

        def show(progress: RebuildProgress) -> None:
            done = progress.events if progress.stage == "events" else progress.contacts
            info = f"{progress.keys:,} keys recorded · {progress.requests:,} requests"
            self._draw(f"reading Kraiter's {progress.stage}", done, None, info)

        return show
