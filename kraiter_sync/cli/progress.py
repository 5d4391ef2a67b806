"""Progress on stderr for long runs: a bar on a terminal, JSON lines for machines.

The bar shows records done out of the planned total, records/s, the ETA computed from
the *current rate budget* (what the rate controller allows now, not a historical
average that a 429 pause would distort), and the 429 and retry counts. It is drawn
only when stderr is a terminal and ``--quiet`` is not given; with
``--log-format json`` a progress line is logged every few seconds instead.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from kraiter_sync.logs import LogFormat, get_logger

__all__ = ["ImportProgress", "Snapshot", "eta_seconds"]

log = get_logger("progress")


@dataclass(frozen=True)
class Snapshot:
    """Where a run stands."""

    done: int
    total: int
    retries: int
    rate_limited: int
    #: Requests/s the rate controller currently allows (None: unpaced).
    rate_budget: float | None


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


class ImportProgress:
    """Receives snapshots from the importer; renders them if anyone is watching."""

    def __init__(self, *, mode: str = "off", interval: float = 5.0) -> None:
        self.mode = mode  # "bar" | "json" | "off"
        self.interval = interval
        self._started = time.monotonic()
        self._last_log = 0.0
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    @classmethod
    def for_cli(cls, *, quiet: bool, log_format: LogFormat) -> ImportProgress:
        if quiet:
            return cls(mode="off")
        if log_format == "json":
            return cls(mode="json")
        return cls(mode="bar" if sys.stderr.isatty() else "off")

    def __enter__(self) -> ImportProgress:
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
            self._task = self._bar.add_task("sending", total=None, info="")
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

    def update(self, snapshot: Snapshot) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        observed = snapshot.done / elapsed
        eta = eta_seconds(snapshot, observed)
        if self._bar is not None and self._task is not None:
            info = (
                f"{observed:,.0f}/s · {_fmt_eta(eta)} · 429s: {snapshot.rate_limited:,} · "
                f"{snapshot.retries:,} retries"
            )
            self._bar.update(
                self._task, completed=snapshot.done, total=snapshot.total or None, info=info
            )
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
