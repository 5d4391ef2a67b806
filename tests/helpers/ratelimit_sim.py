"""A simulated rate-limited server and the workers that hit it, in virtual time: the real
check of the rate controller (tests/api/test_ratelimit.py) and its benchmark."""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass, field

from kraiter_sync.api.ratelimit import RateController
from tests.helpers.virtual_time import run_virtual

WALL_OFFSET = 1_700_000_000.0


@dataclass
class SimServer:
    """A token bucket per tenant, like the emulator: rate R, burst B, starts full."""

    rate: float
    burst: float
    hide_headers: bool = False
    #: "full": Reset is when the bucket is full again; "next": when the next token comes.
    reset_mode: str = "full"
    #: What X-RateLimit-Limit announces: "rate" or "burst".
    limit_mode: str = "rate"
    tokens: float = field(init=False)
    at: float | None = None
    served: int = 0
    limited: int = 0

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def handle(self, now: float) -> tuple[int, dict[str, str]]:
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        headers: dict[str, str] = {}
        if self.tokens >= 1:
            self.tokens -= 1
            status = 201
            self.served += 1
        else:
            status = 429
            self.limited += 1
            headers["Retry-After"] = str(math.ceil((1 - self.tokens) / self.rate))
        if not self.hide_headers:
            if self.reset_mode == "full":
                reset = now + (self.burst - self.tokens) / self.rate
            else:
                reset = now + max(0.0, 1 - self.tokens) / self.rate
            limit = self.rate if self.limit_mode == "rate" else self.burst
            headers["X-RateLimit-Limit"] = str(int(limit))
            headers["X-RateLimit-Remaining"] = str(math.floor(self.tokens))
            headers["X-RateLimit-Reset"] = str(math.ceil(reset + WALL_OFFSET))
        return status, headers


@dataclass
class SimResult:
    duration: float
    served: int
    limited: int
    requests: int
    controller: RateController

    @property
    def share_429(self) -> float:
        return self.limited / self.requests


def simulate(
    server: SimServer,
    *,
    events: int = 6000,
    concurrency: int = 16,
    ceiling: float | None = None,
    seed: int = 1,
) -> SimResult:
    """Send ``events`` successful requests through the controller; 429s are retried."""

    async def main() -> SimResult:
        loop = asyncio.get_running_loop()
        controller = RateController(
            ceiling, clock=loop.time, wall_clock=lambda: loop.time() + WALL_OFFSET
        )
        rng = random.Random(seed)
        todo = [events]
        start = loop.time()

        async def worker() -> None:
            while todo[0] > 0:
                todo[0] -= 1
                while True:
                    await controller.before_request()
                    await asyncio.sleep(rng.uniform(0.001, 0.010))
                    status, headers = server.handle(loop.time())
                    await asyncio.sleep(rng.uniform(0.001, 0.010))
                    controller.after_response(status, headers)
                    if status != 429:
                        break

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return SimResult(
            duration=loop.time() - start,
            served=server.served,
            limited=server.limited,
            requests=server.served + server.limited,
            controller=controller,
        )

    return run_virtual(main())


def sustained_ratio(result: SimResult, server: SimServer) -> float:
    """Throughput as a fraction of R, not counting the initial burst the server gave away."""
    return (result.served - server.burst) / result.duration / server.rate
