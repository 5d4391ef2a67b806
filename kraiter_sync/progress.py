"""Progress of a long run, for people (a bar on stderr) and for machines (JSON lines).

The bar is drawn only when stderr is a terminal and ``--quiet`` is off; with
``--log-format json`` a ``progress`` log record with the counters is emitted at most
every :attr:`Progress.interval` seconds instead. The ETA comes from the current rate
budget (the rate controller's), not from the average so far, because the budget is
what bounds the rest of the run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from kraiter_sync.logs import get_logger

__all__ = ["Progress", "ProgressState"]

log = get_logger("progress")


@dataclass
class ProgressState:
    total: int | None = None
    sent: int = 0
    retries: int = 0
    rate_limited: int = 0
    rate: float | None = None

    def eta(self) -> float | None:
        """Seconds left at the current rate budget (None when unknown)."""
        if self.total is None or not self.rate or self.rate <= 0:
            return None
        return max(0, self.total - self.sent) / self.rate


class Progress:
    """A small object the engine updates; it decides how (and whether) to show it."""

    interval: float = 5.0

    def __init__(
        self,
        total: int | None = None,
        *,
        description: str = "sending",
        quiet: bool = False,
        log_format: str = "text",
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = ProgressState(total=total)
        self._clock = clock
        self._json = log_format == "json"
        out = stream if stream is not None else sys.stderr
        self.bar_enabled = not quiet and not self._json and out.isatty()
        self._last_emit: float | None = None
        self._bar: Any = None
        self._task: Any = None
        if self.bar_enabled:
            from rich.console import Console
            from rich.progress import BarColumn, TextColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.fields[info]}"),
                console=Console(file=out),
                transient=True,
            )
            self._task = self._bar.add_task(description, total=total, info="")
            self._bar.start()

    def update(
        self,
        *,
        sent: int | None = None,
        retries: int | None = None,
        rate_limited: int | None = None,
        rate: float | None = None,
    ) -> None:
        """Set the counters that changed (absolute values, not increments)."""
        st = self.state
        if sent is not None:
            st.sent = sent
        if retries is not None:
            st.retries = retries
        if rate_limited is not None:
            st.rate_limited = rate_limited
        if rate is not None:
            st.rate = rate
        if self._bar is not None:
            self._bar.update(self._task, completed=st.sent, info=self.describe())
        elif self._json:
            now = self._clock()
            if self._last_emit is None or now - self._last_emit >= self.interval:
                self._last_emit = now
                self._emit()

    def describe(self) -> str:
        st = self.state
        parts = []
        if st.rate:
            parts.append(f"{st.rate:,.0f}/s")
        eta = st.eta()
        if eta is not None:
            parts.append(f"ETA {_clock_text(eta)}")
        parts.append(f"429s {st.rate_limited}")
        parts.append(f"retries {st.retries}")
        return "  ".join(parts)

    def _emit(self) -> None:
        st = self.state
        log.info(
            "progress",
            extra={
                "event": "progress",
                "sent": st.sent,
                "total": st.total,
                "retries": st.retries,
                "rate_limited": st.rate_limited,
                "rate": st.rate,
                "eta_s": st.eta(),
            },
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self._json:
            self._emit()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _clock_text(seconds: float) -> str:
    s = round(seconds)
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
