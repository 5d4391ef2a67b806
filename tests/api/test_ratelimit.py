"""The rate controller: unit behaviour, and a simulation against a token-bucket server.

The simulation is the real check of the design (the rate-budget benchmark): a
server with rate R and burst B answers 429 when its bucket is empty, with or without
``X-RateLimit-*`` headers, and concurrent workers drive it through the controller in
virtual time.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from kraiter_sync.api.ratelimit import RateController
from kraiter_sync.api.retry import parse_retry_after
from tests.helpers.ratelimit_sim import WALL_OFFSET, SimServer, simulate, sustained_ratio
from tests.helpers.virtual_time import run_virtual

# --------------------------------------------------------------------------- simulation


@pytest.mark.parametrize(
    ("burst", "reset_mode", "limit_mode"),
    [(100, "full", "rate"), (20, "full", "rate"), (200, "next", "burst"), (5, "full", "rate")],
)
def test_simulation_with_headers_reaches_95_percent_with_under_1_percent_429(
    burst: int, reset_mode: str, limit_mode: str
) -> None:
    server = SimServer(rate=100, burst=burst, reset_mode=reset_mode, limit_mode=limit_mode)
    result = simulate(server)
    assert result.served == 6000
    assert result.share_429 < 0.01, result.share_429
    assert sustained_ratio(result, server) >= 0.95
    assert result.controller.stats().headers_seen


@pytest.mark.parametrize("burst", [100, 20])
def test_simulation_without_headers_reaches_85_percent(burst: int) -> None:
    server = SimServer(rate=100, burst=burst, hide_headers=True)
    result = simulate(server)
    assert result.served == 6000
    assert sustained_ratio(result, server) >= 0.85
    stats = result.controller.stats()
    assert not stats.headers_seen
    assert stats.rate_limited == server.limited > 0  # 429 alone slowed it down
    assert stats.rate is not None


def test_simulation_ceiling_caps_below_server_rate() -> None:
    server = SimServer(rate=100, burst=100)
    result = simulate(server, events=1000, ceiling=40)
    assert server.limited == 0
    assert 1000 / result.duration == pytest.approx(40, rel=0.03)


# --------------------------------------------------------------------------- unit behaviour


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + WALL_OFFSET

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make(ft: FakeTime, ceiling: float | None = None) -> RateController:
    return RateController(ceiling, clock=ft.clock, wall_clock=ft.wall, sleep=ft.sleep)


def test_429_pauses_all_workers_for_retry_after() -> None:
    ft = FakeTime()
    ctl = make(ft)

    async def go() -> None:
        await ctl.before_request()
        ctl.after_response(429, {"Retry-After": "3"})
        start = ft.now
        await ctl.before_request()
        assert ft.now - start >= 3.0
        assert ft.now - start < 3.3

    asyncio.run(go())
    stats = ctl.stats()
    assert stats.rate_limited == 1
    assert stats.pauses == 1
    assert stats.paused_seconds == pytest.approx(3.0)


@pytest.mark.parametrize("value", ["0", "-5", "", "soon", None])
def test_429_without_usable_retry_after_uses_default_backoff(value: str | None) -> None:
    ft = FakeTime()
    ctl = make(ft)
    headers = {} if value is None else {"Retry-After": value}

    async def go() -> None:
        await ctl.before_request()
        ctl.after_response(429, headers)
        start = ft.now
        await ctl.before_request()
        assert ft.now - start >= RateController.default_backoff

    asyncio.run(go())


def test_in_flight_429s_extend_one_pause_not_many() -> None:
    ft = FakeTime()
    ctl = make(ft)

    async def go() -> None:
        for _ in range(3):
            await ctl.before_request()
        ctl.after_response(429, {"Retry-After": "1"})
        ft.now += 0.1
        ctl.after_response(429, {"Retry-After": "1"})
        ctl.after_response(429, {"retry-after": "1"})

    asyncio.run(go())
    stats = ctl.stats()
    assert stats.pauses == 1
    assert stats.rate_limited == 3
    assert ctl.paused_until == pytest.approx(ft.now + 1.0)


def test_ceiling_paces_evenly() -> None:
    ft = FakeTime()
    ctl = make(ft, ceiling=10)

    async def go() -> list[float]:
        times = []
        for _ in range(21):
            await ctl.before_request()
            times.append(ft.now)
            ctl.after_response(200, {})
        return times

    times = asyncio.run(go())
    assert times[-1] - times[0] == pytest.approx(2.0)
    assert ctl.rate == 10


def test_first_request_goes_alone_until_an_answer_arrives() -> None:
    ft = FakeTime()
    ctl = make(ft)

    async def go() -> tuple[float, float]:
        await ctl.before_request()
        start = ft.now
        await ctl.before_request()  # no answer ever comes: held until the first expires
        held = ft.now - start
        ctl.after_response(201, {})
        start = ft.now
        await ctl.before_request()  # an answer arrived: no more holding
        return held, ft.now - start

    held, free = asyncio.run(go())
    assert held >= RateController.inflight_expiry
    assert free == 0


def test_headers_pace_to_remaining_budget() -> None:
    ft = FakeTime()
    ctl = make(ft)

    def answer(remaining: int) -> None:
        ctl.after_response(
            201,
            {
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": "0",
            },
        )

    async def go() -> None:
        await ctl.before_request()
        answer(9)  # a full bucket of 10 shows 9 left
        start = ft.now
        await ctl.before_request()
        assert ft.now == start  # tokens to spare: no wait
        answer(0)
        start = ft.now
        await ctl.before_request()
        # empty bucket refilling at 5/s, one token in reserve: 2 tokens → 0.4 s
        assert ft.now - start == pytest.approx(0.4)

    asyncio.run(go())
    assert ctl.stats().headers_seen
    assert ctl.rate == 5


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:30 GMT", now=now) == pytest.approx(10.0)
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("nan") is None


def test_invalid_ceiling_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        RateController(0)


def test_faults_neither_stall_the_mirror_nor_flip_header_mode() -> None:
    """5xx answers without headers and answers lost in transit (the emulator's faults)
    must not make the controller forget the headers or count ghosts as in flight."""
    server = SimServer(rate=100, burst=10)
    events = 2000

    async def main() -> tuple[float, RateController]:
        loop = asyncio.get_running_loop()
        controller = RateController(
            None, clock=loop.time, wall_clock=lambda: loop.time() + WALL_OFFSET
        )
        rng = random.Random(4)
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
                    roll = rng.random()
                    if status != 429 and roll < 0.03:
                        controller.after_failure()  # applied, answer lost
                        break
                    if status != 429 and roll < 0.08:
                        controller.after_response(503, {})  # a gateway error, no headers
                        continue
                    controller.after_response(status, headers)
                    if status != 429:
                        break

        await asyncio.gather(*(worker() for _ in range(16)))
        return loop.time() - start, controller

    duration, controller = run_virtual(main())
    throughput = (server.served - server.burst) / duration / server.rate
    assert controller.stats().headers_seen
    assert throughput >= 0.9, throughput
    assert server.limited / (server.served + server.limited) < 0.01


def test_a_share_of_a_shared_budget_paces_evenly_and_knows_the_limit() -> None:
    ft = FakeTime()
    ctl = make(ft)

    async def go() -> list[float]:
        times = []
        for _ in range(51):
            await ctl.before_request()
            times.append(ft.now)
            ctl.after_response(200, {"X-RateLimit-Limit": "200", "X-RateLimit-Remaining": "150"})
            if len(times) == 1:
                assert ctl.known_limit == 200
                ctl.set_share(200 * 0.5 / 4)  # max share 0.5, four runs: 25/s each
        return times

    times = asyncio.run(go())
    # 25/s, with requests let out late made up within share_slack (here: a burst of
    # 0.2 s worth when the share was first set)
    assert times[-1] - times[1] == pytest.approx(49 / 25 - RateController.share_slack)
    assert times[-1] - times[-11] == pytest.approx(10 / 25)  # then evenly
    assert ctl.rate == 25
    assert ctl.share == 25
    with pytest.raises(ValueError, match="positive"):
        ctl.set_share(0)
