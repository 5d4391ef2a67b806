"""The adaptive rate controller: send as fast as Kraiter allows, and barely faster.

Kraiter's limit (numbers, window, headers) is unknown (kraiter-api.md §4), so
:class:`RateController` learns it from what comes back. It implements the client's
``RequestObserver`` protocol: ``await before_request()`` before every HTTP request,
``after_response(status, headers)`` after every answer. All workers share one
controller, so one 429 pauses everyone.

Three limits are combined; a request leaves when all of them allow it:

* **Pause.** A 429 sets one shared "paused until" deadline from ``Retry-After``
  (seconds; a value ≤ 0 or none at all means :attr:`default_backoff`, never a hot
  loop). Later 429s only ever extend it.
* **Ceiling.** ``--rate`` requests/s, a hard cap paced evenly (no bursts).
* **Share.** Runs that share one tenant's budget through the state store
  (``state.work.RateShares``) each get a part of the limit (:meth:`set_share`), paced
  evenly like the ceiling.
* **The server's budget**, by whichever signal the answers give:

  - *With* ``X-RateLimit-Remaining``: the controller **mirrors the server's bucket**.
    Each answer resynchronises the mirror to ``Remaining`` minus the requests still in
    flight (which the server may not have counted yet: a conservative bias that costs a
    constant offset in the bucket level, not throughput); between answers the mirror
    refills at the estimated server rate. The rate is estimated from the answers
    themselves (tokens generated = change of ``Remaining`` + requests served, per second
    of a window in which the bucket was not full), with ``X-RateLimit-Limit`` per second
    as the first guess. The burst is used while it lasts, then requests are paced so the
    bucket stays just above empty: no 429s in steady state.
  - *Without* headers: AIMD on 429s alone. Until the first 429 nothing but the ceiling
    limits the rate. The first 429 halves the rate actually sent. From then on, each
    429 starts an *episode*; because a token bucket is empty whenever it answers 429,
    the requests served between two episodes per second not paused measures the
    server's rate (capped by the rate we sent at). The rate is set to
    :attr:`backoff_factor` (0.97) times that measurement, closes the gap to the rate
    that drew the 429 at :attr:`approach` per second, and probes very slowly near it
    (:attr:`probe_increase`, 0.2 %/s), so 429 episodes (each costing a ``Retry-After``
    pause) stay rare.

How well this works, and its known weak spots, is measured by
``benchmarks/ratelimit_simulation.py`` (results in ``benchmarks/README.md``).

Before the first answer only one request is let out, so the headers, if any, are
known before a burst of concurrent requests can overrun a small server bucket.

Concurrency: the engine runs in one asyncio loop. Waiting requests queue on a FIFO
lock; only the head waits, and it re-evaluates after at most :attr:`max_wait_slice`
seconds, so a resynchronisation or a pause applies to it at once. ``after_response`` is
synchronous and never blocks. Clocks and sleep are injectable, so the tests run in
virtual time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from kraiter_sync.api.retry import MAX_RETRY_AFTER, parse_retry_after

__all__ = ["RateController", "RateStats"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

#: Response header names (compared case-insensitively).
H_LIMIT = "x-ratelimit-limit"
H_REMAINING = "x-ratelimit-remaining"
H_RESET = "x-ratelimit-reset"
H_RETRY_AFTER = "retry-after"


@dataclass(frozen=True)
class RateStats:
    """A snapshot for the progress bar, the ETA and the final summary."""

    #: The rate budget in requests/s the controller currently paces to (None: unpaced).
    rate: float | None
    #: Requests let out so far.
    requests: int
    #: Responses with status 429.
    rate_limited: int
    #: Times all workers were paused by a 429.
    pauses: int
    #: Total seconds spent paused.
    paused_seconds: float
    #: Whether the server sends ``X-RateLimit-*`` headers.
    headers_seen: bool


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    for key, val in headers.items():
        if key.lower() == name:
            return val
    return None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


class RateController:
    """Adaptive, shared pacing of requests to Kraiter (see the module docstring).

    ``ceiling`` is ``--rate`` in requests/s (None: none). ``initial_rate`` paces the
    no-header mode before the first 429 (None: only the ceiling). ``clock`` is monotonic
    seconds, ``wall_clock`` unix seconds (for ``X-RateLimit-Reset`` and HTTP dates).
    """

    #: Seconds to pause on a 429 without a usable ``Retry-After``.
    default_backoff: float = 1.0
    #: No-header mode: the rate after a measured episode, as a fraction of the measurement.
    backoff_factor: float = 0.97
    #: No-header mode: multiplicative cut on the first 429 (nothing measured yet).
    first_cut: float = 0.5
    #: No-header mode: relative increase per second once the server rate was measured.
    probe_increase: float = 0.002
    #: No-header mode: fraction of the gap to the last 429's rate closed per second.
    approach: float = 0.1
    #: No-header mode: relative increase per second before any measurement.
    fast_increase: float = 0.10
    #: Header mode: tokens kept in reserve in the mirrored bucket.
    margin: float = 1.0
    #: Header mode: seconds per rate-estimation window.
    estimate_window: float = 1.0
    #: The lowest rate estimate the controller will pace to, in requests/s.
    min_rate: float = 0.5
    #: Seconds by which the share's pacer may catch up with requests let out late.
    share_slack: float = 0.2
    #: Longest single sleep of a waiting request before it re-evaluates.
    max_wait_slice: float = 0.25
    #: Requests without an answer after this many seconds no longer count as in flight
    #: (their answer was lost; the client does not report those).
    inflight_expiry: float = 10.0

    def __init__(
        self,
        ceiling: float | None = None,
        *,
        initial_rate: float | None = None,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if ceiling is not None and ceiling <= 0:
            msg = f"rate ceiling must be positive, got {ceiling}"
            raise ValueError(msg)
        self.ceiling = ceiling
        self._clock = clock
        self._wall = wall_clock
        self._sleep = sleep
        self._gate = asyncio.Lock()
        # shared pause
        self._paused_until = -math.inf
        self._pauses = 0
        self._paused_seconds = 0.0
        # ceiling pacer (GCRA without burst)
        self._next_ceiling = -math.inf
        # this run's part of a budget shared with other runs (same pacing as the ceiling)
        self._share: float | None = None
        self._next_share = -math.inf
        # no-header AIMD pacer
        self._rate: float | None = (
            min(initial_rate, ceiling) if initial_rate and ceiling else initial_rate
        )
        self._next_paced = -math.inf
        self._last_paced_at = -math.inf
        self._last_increase_at: float | None = None
        self._episode_at: float | None = None
        self._served_since_episode = 0
        self._measured: float | None = None
        self._measurements: deque[float] = deque(maxlen=3)
        self._bad_rate: float | None = None
        self._paused_in_episode = 0.0
        self._recent_sends: deque[float] = deque()
        # header mode: the mirrored server bucket
        self._headers_seen = False
        self._tokens = 0.0
        self._tokens_at = 0.0
        self._cap = math.inf
        self._server_rate: float | None = None
        self._rate_estimated = False
        self._win_start: tuple[float, float, int] | None = None
        self._win_capped = False
        self._win_peak = 0.0
        self._limit: float | None = None
        self._best_sample: float | None = None
        self._served = 0
        # bookkeeping
        self._outstanding: deque[float] = deque()
        self._answered = 0
        self._requests = 0
        self._rate_limited = 0

    # ------------------------------------------------------------------ observer API

    async def before_request(self) -> None:
        """Wait until a request may leave; awaited by the client before every request."""
        async with self._gate:
            while True:
                now = self._clock()
                wait = self._wait_needed(now)
                if wait <= 1e-6:  # below clock resolution: waiting would not advance time
                    break
                await self._sleep(min(wait, self.max_wait_slice))
            self._consume(self._clock())

    def after_response(self, status: int, headers: Mapping[str, str]) -> None:
        """Learn from one answer (any status); never blocks."""
        now = self._clock()
        self._expire_outstanding(now)
        if self._outstanding:
            self._outstanding.popleft()
        self._answered += 1
        remaining = _number(_header(headers, H_REMAINING))
        limit = _number(_header(headers, H_LIMIT))
        if remaining is not None:
            self._observe_bucket(now, status, remaining, limit)
        elif self._headers_seen and status < 500:
            # The server stopped sending them: fall back to AIMD. A 5xx without them says
            # nothing (gateways and crashed handlers answer before any rate limiter).
            self._headers_seen = False
        if status == 429:
            self._rate_limited += 1
            self._on_429(now, headers, remaining)
        else:
            self._served += 1
            self._served_since_episode += 1

    def after_failure(self) -> None:
        """A request ended with no answer at all (connection cut, timeout).

        It no longer counts as in flight; it taught nothing about the server's budget.
        """
        self._expire_outstanding(self._clock())
        if self._outstanding:
            self._outstanding.popleft()

    # ------------------------------------------------------------------ stats

    @property
    def rate(self) -> float | None:
        """The current budget in requests/s (None: not limited by anything known)."""
        candidates: list[float] = []
        if self.ceiling is not None:
            candidates.append(self.ceiling)
        if self._headers_seen and self._server_rate is not None:
            candidates.append(self._server_rate)
        elif not self._headers_seen and self._rate is not None:
            candidates.append(self._rate)
        if self._share is not None:
            candidates.append(self._share)
        return min(candidates) if candidates else None

    @property
    def known_limit(self) -> float | None:
        """The tenant's limit in requests/s as far as known: ``--rate``, else the
        ``X-RateLimit-Limit`` header per second (None: neither)."""
        return self.ceiling if self.ceiling is not None else self._limit

    @property
    def share(self) -> float | None:
        """This run's part of a shared budget in requests/s (None: not shared)."""
        return self._share

    def set_share(self, rate: float | None) -> None:
        """Pace this run to ``rate`` requests/s, its part of a shared budget (None: no part)."""
        if rate is not None and rate <= 0:
            msg = f"a share must be positive, got {rate}"
            raise ValueError(msg)
        self._share = rate

    @property
    def paused_until(self) -> float:
        """Monotonic deadline of the current pause (in the past when not paused)."""
        return self._paused_until

    def stats(self) -> RateStats:
        return RateStats(
            rate=self.rate,
            requests=self._requests,
            rate_limited=self._rate_limited,
            pauses=self._pauses,
            paused_seconds=self._paused_seconds,
            headers_seen=self._headers_seen,
        )

    # ------------------------------------------------------------------ internals

    def _expire_outstanding(self, now: float) -> None:
        limit = now - self.inflight_expiry
        while self._outstanding and self._outstanding[0] < limit:
            self._outstanding.popleft()

    def _mirror_tokens(self, now: float) -> float:
        rate = self._server_rate or 0.0
        return min(self._cap, self._tokens + rate * max(0.0, now - self._tokens_at))

    def _wait_needed(self, now: float) -> float:
        waits = [self._paused_until - now]
        if self.ceiling is not None:
            waits.append(self._next_ceiling - now)
        if self._share is not None:
            waits.append(self._next_share - now)
        if self._answered == 0 and self._outstanding:
            # Nothing learnt yet: one request at a time until the first answer.
            self._expire_outstanding(now)
            if self._outstanding:
                waits.append(self.max_wait_slice)
        if self._headers_seen:
            self._expire_outstanding(now)
            available = self._mirror_tokens(now) - len(self._outstanding)
            # One token for this request plus the reserve, which a tiny bucket may not have.
            need = min(1.0 + self.margin, max(1.0, self._cap))
            if available < need:
                rate = self._server_rate
                if rate and rate > 0:
                    wait = (need - available) / rate
                    if not self._outstanding:
                        # Nothing in flight to learn from: probe at least once a second.
                        wait = min(wait, self.default_backoff)
                    waits.append(wait)
                elif not self._outstanding:
                    waits.append(0.0)  # no rate known and nothing in flight: probe
                else:
                    waits.append(self.max_wait_slice)
        elif self._rate is not None:
            paced = self._next_paced - now
            waits.append(paced)
        return max(waits)

    def _consume(self, now: float) -> None:
        self._requests += 1
        self._outstanding.append(now)
        if self.ceiling is not None:
            self._next_ceiling = max(now, self._next_ceiling) + 1.0 / self.ceiling
        if self._share is not None:
            # A request let out late (sleep overshoots by a millisecond or two, which is
            # a third of the interval at 200/s) is made up for within share_slack.
            self._next_share = max(now - self.share_slack, self._next_share) + 1.0 / self._share
        if not self._headers_seen:
            self._recent_sends.append(now)
            while self._recent_sends and self._recent_sends[0] < now - 1.0:
                self._recent_sends.popleft()
            if self._rate is not None:
                if self._next_paced >= now - 1e-9:
                    self._last_paced_at = now
                self._next_paced = max(now, self._next_paced) + 1.0 / self._rate
                self._grow(now)

    def _grow(self, now: float) -> None:
        """Additive probing while the pacer, not demand, limits the rate."""
        if self._rate is None:
            return
        last = self._last_increase_at
        self._last_increase_at = now
        if last is None or now < self._paused_until or now - self._last_paced_at > 1.0:
            return
        dt = now - last
        if self._measured is None:
            self._rate *= 1.0 + self.fast_increase * dt
        else:
            # Close the gap to the rate that drew the last 429 at a pace proportional to
            # it (a measurement below the server's rate, e.g. after its bucket
            # overflowed, is left quickly), and probe very slowly near and past it.
            gap = (self._bad_rate or 0.0) - self._rate
            step = max(self.probe_increase * self._rate, self.approach * gap)
            self._rate += step * dt
        if self.ceiling is not None:
            self._rate = min(self._rate, self.ceiling)

    def _observe_bucket(
        self, now: float, status: int, remaining: float, limit: float | None
    ) -> None:
        if not self._headers_seen:
            self._headers_seen = True
            self._win_start = None
        if limit is not None and limit > 0:
            self._limit = limit
            if self._server_rate is None:
                self._server_rate = limit  # first guess: Limit per second
        # The bucket size: the first answer, on a full bucket, shows it minus one.
        self._cap = max(self._cap if math.isfinite(self._cap) else 0.0, remaining + 1)
        # Resynchronise the mirror: what the server has minus what it has not seen yet.
        self._tokens = remaining
        self._tokens_at = now
        full = remaining >= self._cap - 1
        served = self._served + (0 if status == 429 else 1)
        if self._win_start is None:
            self._win_start = (now, remaining, served)
            self._win_capped = full
            self._win_peak = remaining
            return
        self._win_capped = self._win_capped or full
        self._win_peak = max(self._win_peak, remaining)
        start, start_remaining, start_served = self._win_start
        elapsed = now - start
        if elapsed < self.estimate_window:
            return
        if not self._win_capped and self._win_peak >= 2 + self.margin:
            # Tokens generated = change of Remaining + requests served. (A window in
            # which the bucket never held spare tokens only measures our own pacing,
            # and one in which it was full lost tokens to overflow: neither is a sample.)
            sample = max(
                self.min_rate, (remaining - start_remaining + served - start_served) / elapsed
            )
            self._best_sample = max(self._best_sample or 0.0, sample)
            if self._rate_estimated and self._server_rate is not None:
                self._server_rate = 0.5 * self._server_rate + 0.5 * sample
            else:
                self._server_rate = sample
                self._rate_estimated = True
        elif self._win_capped and self._server_rate is not None:
            # The bucket filled up: we are slower than the server. Speed up, but not
            # beyond what was ever measured or announced.
            bound = 1.1 * self._best_sample if self._best_sample else self._limit
            raised = self._server_rate * 1.1
            self._server_rate = max(self._server_rate, min(raised, bound or raised))
        self._win_start = (now, remaining, served)
        self._win_capped = full
        self._win_peak = remaining

    def _on_429(self, now: float, headers: Mapping[str, str], remaining: float | None) -> None:
        wall = self._wall()
        delay = parse_retry_after(_header(headers, H_RETRY_AFTER), now=wall)
        if delay is None:
            reset = _number(_header(headers, H_RESET))
            if reset is not None and remaining is not None and remaining < 1 and reset > wall:
                delay = reset - wall
        if delay is None:
            delay = self.default_backoff
        delay = min(delay, MAX_RETRY_AFTER)
        new_episode = now >= self._paused_until
        until = now + delay
        if until > self._paused_until:
            start = max(now, self._paused_until)
            self._paused_seconds += until - start
            self._paused_in_episode += until - start
            self._paused_until = until
        if not new_episode:
            return
        self._pauses += 1
        if self._headers_seen:
            # The mirror was wrong: the server refills more slowly than estimated.
            if self._server_rate is not None:
                self._server_rate = max(self.min_rate, self._server_rate * 0.9)
            self._win_start = None  # a window spanning a pause would under-estimate
            return
        self._cut_rate(now)
        self._next_paced = self._paused_until

    def _cut_rate(self, now: float) -> None:
        previous = self._episode_at
        self._episode_at = now
        self._bad_rate = self._rate
        paused_before = self._paused_in_episode
        self._paused_in_episode = 0.0
        while self._recent_sends and self._recent_sends[0] < now - 1.0:
            self._recent_sends.popleft()
        sent = len(self._recent_sends)
        served = self._served_since_episode
        self._served_since_episode = 0
        if previous is not None and now - previous > 0:
            # Requests served per second of not being paused since the last episode:
            # the server's rate when its bucket is small; more when it is large enough
            # to save up the paused time, but never more than the rate we sent at.
            active = max(now - previous - paused_before, 0.1)
            measured = served / active
            if self._bad_rate is not None:
                measured = min(measured, self._bad_rate)
            self._measurements.append(measured)
            self._measured = measured
            new_rate = self.backoff_factor * self._measured
        else:
            span = min(1.0, now - self._recent_sends[0]) if self._recent_sends else 1.0
            sent_rate = max(sent, 1) / max(span, 0.05)
            current = self._rate if self._rate is not None else sent_rate
            new_rate = self.first_cut * min(current, sent_rate)
            self._bad_rate = min(current, sent_rate)
        self._rate = max(new_rate, self.min_rate)
        if self.ceiling is not None:
            self._rate = min(self._rate, self.ceiling)
        self._last_increase_at = None
