"""A run's request timeline: what went out and came back, per time bucket, in bounded memory.

:class:`Timeline` counts, per bucket of :attr:`~Timeline.bucket_seconds` (1 s to start
with), the requests let out, the answers by class (``2xx``, ``4xx`` other than 429,
``429``, ``5xx``, ``other``), the requests that got no answer (``transport``: cut,
timed out, refused) and the retries the engine decided on. A run longer than
``max_buckets`` buckets doubles the bucket width and merges neighbouring buckets, as
often as needed, so memory and the stored record stay under ``max_buckets`` rows of
eight counters whatever the number of requests (a 10-hour import ends with 64 s buckets).

:class:`TimelineObserver` fills it: it wraps the client's request observer (the rate
controller) and sees every request and answer the controller sees; the engine's retry
hook calls :meth:`Timeline.retry`. The clock is injectable, so tests run in virtual time.

Recorded form (:meth:`Timeline.as_dict`, stored with the run)::

    {"version": 1, "started_at": <unix seconds>, "bucket_seconds": 2.0,
     "series": {"requests": [12, 30, ...], "2xx": [...], "429": [...], ...}}

Series that stayed zero are left out; every list has one count per bucket.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kraiter_sync.api.client import KraiterClient, RequestObserver

__all__ = ["SERIES", "Timeline", "TimelineObserver", "record_requests"]

#: The counters of each bucket, in storage order.
SERIES = ("requests", "2xx", "4xx", "429", "5xx", "other", "transport", "retries")
_REQUESTS, _2XX, _4XX, _429, _5XX, _OTHER, _TRANSPORT, _RETRIES = range(len(SERIES))
FORMAT_VERSION = 1


def _status_series(status: int) -> int:
    if status == 429:
        return _429
    if 200 <= status < 300:
        return _2XX
    if 400 <= status < 500:
        return _4XX
    if 500 <= status < 600:
        return _5XX
    return _OTHER


class Timeline:
    """Per-bucket request counters of one run (see the module docstring)."""

    def __init__(
        self,
        *,
        bucket_seconds: float = 1.0,
        max_buckets: int = 600,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if bucket_seconds <= 0 or max_buckets < 2:
            msg = "a timeline needs bucket_seconds > 0 and max_buckets >= 2"
            raise ValueError(msg)
        self.max_buckets = max_buckets
        self._width = float(bucket_seconds)
        self._clock = clock
        self._start = clock()
        self.started_at = wall_clock()
        self._buckets: list[list[int]] = []

    @property
    def bucket_seconds(self) -> float:
        return self._width

    def __len__(self) -> int:
        return len(self._buckets)

    # -- recording ---------------------------------------------------------------------

    def request(self) -> None:
        """A request was let out."""
        self._add(_REQUESTS)

    def response(self, status: int) -> None:
        """An answer came back with ``status``."""
        self._add(_status_series(status))

    def failure(self) -> None:
        """A request that was let out got no answer (connection cut, timeout, refused)."""
        self._add(_TRANSPORT)

    def retry(self, *_why: object) -> None:
        """The engine decided to send a request again (any arguments are ignored, so this
        is usable as a retry hook directly)."""
        self._add(_RETRIES)

    def _add(self, series: int) -> None:
        index = int((self._clock() - self._start) / self._width)
        try:
            self._buckets[index][series] += 1  # the common case: the current bucket
        except IndexError:
            if index >= self.max_buckets:
                index = self._coarsen(index)
            buckets = self._buckets
            while len(buckets) <= index:
                buckets.append([0] * len(SERIES))
            buckets[index][series] += 1

    def _coarsen(self, index: int) -> int:
        """Double the bucket width (merging pairs) until ``index`` fits; its new index."""
        while index >= self.max_buckets:
            self._width *= 2
            index //= 2
            old = self._buckets
            merged = []
            for i in range(0, len(old), 2):
                pair = old[i : i + 2]
                merged.append(
                    [sum(c) for c in zip(*pair, strict=True)] if len(pair) == 2 else pair[0]
                )
            self._buckets = merged
        return index

    # -- reading -----------------------------------------------------------------------

    def totals(self) -> dict[str, int]:
        """Each series summed over the run."""
        return {name: sum(b[i] for b in self._buckets) for i, name in enumerate(SERIES)}

    def as_dict(self) -> dict[str, Any]:
        """The recorded form (module docstring): JSON-ready, zero series left out."""
        series = {
            name: [b[i] for b in self._buckets]
            for i, name in enumerate(SERIES)
            if any(b[i] for b in self._buckets)
        }
        return {
            "version": FORMAT_VERSION,
            "started_at": self.started_at,
            "bucket_seconds": self._width,
            "series": series,
        }


def series_of(recorded: Mapping[str, Any]) -> dict[str, list[int]]:
    """Every series of a recorded timeline, zeros filled in, all of one length."""
    raw = recorded.get("series") or {}
    length = max((len(v) for v in raw.values()), default=0)
    return {
        name: [*(raw.get(name) or []), *[0] * (length - len(raw.get(name) or []))]
        for name in SERIES
    }


class TimelineObserver:
    """A client request observer that records into a :class:`Timeline` and passes every
    call on to the observer it wraps (the rate controller), so pacing is unchanged."""

    def __init__(self, inner: RequestObserver | None, timeline: Timeline) -> None:
        self.inner = inner
        self.timeline = timeline

    async def before_request(self) -> None:
        if self.inner is not None:
            await self.inner.before_request()
        self.timeline.request()

    def after_response(self, status: int, headers: Mapping[str, str]) -> None:
        if self.inner is not None:
            self.inner.after_response(status, headers)
        self.timeline.response(status)

    def after_failure(self) -> None:
        if self.inner is not None:
            self.inner.after_failure()
        self.timeline.failure()


def record_requests(client: KraiterClient, timeline: Timeline) -> None:
    """Make ``client`` record every request and answer in ``timeline`` (its observer, if
    any, keeps seeing them first)."""
    client.observer = TimelineObserver(client.observer, timeline)
