"""The one progress display for every long command: validate, import, retry, reconcile,
restore, export, sync, state rebuild.

The library reports where it stands through callbacks; this module only draws:

* on a terminal, a rich bar on stderr: records done of the planned total, records/s,
  requests/s, the ETA computed from the *current rate budget* (what the rate controller
  allows now, not a historical average that a 429 pause would distort), 429s, retries;
* off a terminal (cron, systemd, Airflow), a heartbeat line on stderr every
  ``--heartbeat`` seconds (default 30) from a timer thread, so a log shows life even
  while one request is stuck in a retry pause, and one more when the command ends (the
  last line says where it ended); with ``--log-format json`` the same heartbeat is a
  JSON line (``"msg": "progress"``);
* nothing with ``--quiet``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from kraiter_sync.logs import LogFormat, get_logger

if TYPE_CHECKING:
    from kraiter_sync.upload.core import Snapshot
    from kraiter_sync.verbs.rebuild import RebuildProgress

__all__ = ["DEFAULT_HEARTBEAT", "ProgressSink", "Status", "eta_seconds"]

log = get_logger("progress")

#: Seconds between heartbeat lines off a terminal.
DEFAULT_HEARTBEAT = 30.0


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


@dataclass(frozen=True)
class Status:
    """Where a command stands: what it is doing (``phase``), how far, how fast."""

    phase: str
    done: int = 0
    total: int | None = None
    unit: str = "rows"
    per_s: float | None = None
    requests: int | None = None
    requests_per_s: float | None = None
    eta_s: float | None = None
    rate_limited: int | None = None
    retries: int | None = None
    #: This run's part of the tenant's rate limit (0-1) when runs share it.
    share: float | None = None

    def line(self) -> str:
        """The heartbeat's text: ``sending: 1,200/5,000 rows · 410/s · …``."""
        of = f"/{self.total:,}" if self.total else ""
        parts = [f"{self.done:,}{of} {self.unit}"]
        if self.per_s is not None:
            parts.append(f"{self.per_s:,.0f} {self.unit}/s")
        if self.requests_per_s is not None:
            parts.append(f"{self.requests_per_s:,.1f} requests/s")
        if self.share is not None:
            parts.append(f"share {self.share:.0%} of the limit")
        if self.total:
            parts.append(_fmt_eta(self.eta_s))
        if self.rate_limited is not None:
            parts.append(f"{self.rate_limited:,} answered 429")
        if self.retries is not None:
            parts.append(f"{self.retries:,} retries")
        return f"{self.phase}: " + " · ".join(parts)

    def fields(self) -> dict[str, Any]:
        """The heartbeat's JSON fields."""
        out: dict[str, Any] = {"phase": self.phase, "done": self.done, "total": self.total}
        out["unit"] = self.unit
        names = ("per_s", "requests", "requests_per_s", "eta_s", "rate_limited", "retries", "share")
        for name in names:
            value = getattr(self, name)  # (None: not known for this phase)
            out[name] = round(value, 1) if isinstance(value, float) else value
        return out


class ProgressSink:
    """Receives progress from the library and shows it if anyone is watching.

    Use as a context manager; pass :meth:`sending` (import, retry, sync, restore),
    :meth:`exporting`, :meth:`reading` (reconcile), :meth:`validating` or
    :meth:`comparing` as the library's progress callback.
    """

    def __init__(
        self, *, mode: str = "off", heartbeat: float = DEFAULT_HEARTBEAT, log_format: str = "text"
    ) -> None:
        self.mode = mode  # "bar" | "lines" | "off"
        self.heartbeat = heartbeat
        self.log_format = log_format
        self._started = time.monotonic()
        self._phase_started = self._started
        self._last_update = self._started
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._status: Status | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_cli(
        cls, *, quiet: bool, log_format: LogFormat, heartbeat: float = DEFAULT_HEARTBEAT
    ) -> ProgressSink:
        if quiet:
            return cls(mode="off")
        if log_format == "text" and sys.stderr.isatty():
            return cls(mode="bar", log_format=log_format)
        if heartbeat <= 0:
            return cls(mode="off")
        return cls(mode="lines", heartbeat=heartbeat, log_format=log_format)

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
        elif self.mode == "lines":
            self._thread = threading.Thread(
                target=self._beat_loop, name="kraiter-sync-heartbeat", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
            # where it ended, however fast the job was: the last heartbeat is the final
            # state (one that ended before reporting anything says "ended"); a command
            # that failed before reporting anything leaves the last word to its error
            if self._status is not None or exc_type is None:
                self.beat(final=True)
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    # -- output ----------------------------------------------------------------------

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat):
            self.beat()

    def beat(self, *, final: bool = False) -> None:
        """One heartbeat line: where the command stands now (or that it is starting, or
        with ``final``, that it ended before reporting anything)."""
        with self._lock:
            status = self._status or Status("ended" if final else "starting", unit="rows")
        elapsed = time.monotonic() - self._started
        if self.log_format == "json":
            log.info("progress", extra={**status.fields(), "elapsed_s": round(elapsed, 1)})
        else:
            click.echo(f"progress ({elapsed:,.0f}s): {status.line()}", err=True)

    def update(self, status: Status) -> None:
        """Record where the command stands; the bar redraws, the heartbeat shows it."""
        with self._lock:
            now = time.monotonic()
            if self._status is None or self._status.phase != status.phase:
                # the phase began when the one before it last reported (or at the start)
                self._phase_started = self._last_update
                if self._bar is not None and self._task is not None:
                    self._bar.update(self._task, visible=True)
                    self._task = None
            if status.per_s is None:
                elapsed = max(now - self._phase_started, 1e-9)
                status = replace(status, per_s=status.done / elapsed)
            self._status = status
            self._last_update = now
        if self._bar is None:
            return
        info = " · ".join(status.line().split(" · ")[1:])
        if self._task is None:
            self._task = self._bar.add_task(status.phase, total=status.total, info=info)
        self._bar.update(self._task, completed=status.done, total=status.total, info=info)

    # -- the library's callbacks -------------------------------------------------------

    def sending(self, snapshot: Snapshot) -> None:
        """Records settled of the run's valid records (import, retry, sync jobs, restore)."""
        elapsed = max(time.monotonic() - self._phase_started, 1e-9)
        observed = snapshot.done / elapsed
        requests = getattr(snapshot, "requests", None)
        self.update(
            Status(
                "sending",
                done=snapshot.done,
                total=snapshot.total or None,
                unit="records",
                per_s=observed,
                requests=requests,
                requests_per_s=None if requests is None else requests / elapsed,
                eta_s=eta_seconds(snapshot, observed),
                rate_limited=snapshot.rate_limited,
                retries=snapshot.retries,
                share=snapshot.share,
            )
        )

    def exporting(self) -> Callable[[dict[str, Any]], None]:
        """The export's progress callback. Rows never go backwards here: the export counts
        a chunk's rows as written only once its files landed, after it stopped counting
        them as buffered."""
        shown = 0

        def show(info: dict[str, Any]) -> None:
            nonlocal shown
            shown = max(shown, int(info["rows"]))
            self.update(
                Status(
                    f"exporting {info['stream']}",
                    done=shown,
                    per_s=float(info["rows_per_s"]),
                    requests=int(info["requests"]),
                    requests_per_s=float(info["requests_per_s"]),
                    retries=int(info["retries"]),
                )
            )

        return show

    def reading(self) -> Callable[[int], None]:
        """Contacts read from Kraiter so far (reconcile)."""

        def show(count: int) -> None:
            self.update(Status("reading Kraiter", done=count, unit="contacts"))

        return show

    def validating(self) -> Callable[[int], None]:
        """Rows read and validated so far (validate, and the first pass of import)."""

        def show(rows: int) -> None:
            self.update(Status("validating", done=rows))

        return show

    def comparing(self) -> Callable[[int, int], None]:
        """Contacts whose events were compared with Kraiter's (reconcile --kind events)."""

        def show(done: int, total: int) -> None:
            self.update(Status("comparing events", done=done, total=total, unit="contacts"))

        return show

    def rebuilding(self) -> Callable[[RebuildProgress], None]:
        """Contacts and events read from Kraiter so far (``state rebuild``)."""

        def show(progress: RebuildProgress) -> None:
            done = progress.events if progress.stage == "events" else progress.contacts
            self.update(
                Status(
                    f"reading Kraiter's {progress.stage}",
                    done=done,
                    unit=progress.stage,
                    requests=progress.requests,
                )
            )

        return show
