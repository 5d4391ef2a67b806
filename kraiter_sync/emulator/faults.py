"""Rate limiting and fault injection: what makes the local Kraiter hard to talk to.

Both are deterministic given their inputs: the token bucket reads an injectable clock,
and every fault decision is drawn from one RNG seeded by ``EmulatorConfig.seed``.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from kraiter_sync.emulator.config import EmulatorConfig

__all__ = ["FaultPlan", "Faults", "RateDecision", "RateLimiter"]


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # unix seconds when the bucket is full again
    retry_after: int  # whole seconds, rounded up; 0 when allowed

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-reset", str(self.reset).encode()),
        ]


class RateLimiter:
    """A token bucket per tenant: ``rate`` tokens per second, at most ``burst`` stored.

    Headers describe the bucket: ``X-RateLimit-Limit`` is its capacity,
    ``-Remaining`` the whole tokens left, ``-Reset`` the unix second at which it is
    full again. A refused request costs nothing and gets ``Retry-After`` = seconds
    until one token is back, rounded up.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._monotonic = monotonic
        self._wall = wall
        self._buckets: dict[int, tuple[float, float]] = {}  # tenant → (tokens, at)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, tenant: int) -> RateDecision:
        now = self._monotonic()
        with self._lock:
            tokens, at = self._buckets.get(tenant, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[tenant] = (tokens, now)
        wall = self._wall()
        reset = math.ceil(wall + (self.burst - tokens) / self.rate)
        retry_after = 0 if allowed else max(1, math.ceil((1.0 - tokens) / self.rate))
        return RateDecision(allowed, self.burst, int(tokens), reset, retry_after)


@dataclass(frozen=True)
class FaultPlan:
    """What happens to one request: answered 5xx unapplied, or applied then cut."""

    fail_status: int | None = None
    drop: bool = False


NO_FAULT = FaultPlan()
_FAIL_STATUSES = (500, 502, 503, 504)


class Faults:
    """Seeded fault decisions, one draw sequence per app."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.latency = config.latency_ms / 1000.0
        self.fail_rate = config.fail_rate
        self.drop_rate = config.drop_rate
        self.rng = random.Random(config.seed)  # noqa: S311 - reproducible faults, not secrets
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self.fail_rate > 0 or self.drop_rate > 0

    def plan(self) -> FaultPlan:
        if not self.active:
            return NO_FAULT
        with self._lock:
            if self.fail_rate and self.rng.random() < self.fail_rate:
                return FaultPlan(fail_status=self.rng.choice(_FAIL_STATUSES))
            if self.drop_rate and self.rng.random() < self.drop_rate:
                return FaultPlan(drop=True)
        return NO_FAULT
