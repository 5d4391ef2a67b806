"""What recording a run's request timeline costs, and how big the record and the report get.

Four numbers, ratios taken in one run (absolute times on a shared machine mean little):

1. **Per request.** Nanoseconds the timeline adds per request (``before_request`` +
   ``after_response`` through :class:`TimelineObserver` around a do-nothing observer,
   against the bare observer), 1M requests.
2. **Client path.** Requests/s of :class:`KraiterClient` over an in-memory transport
   (the cheapest real request path: no network, no server), with and without the
   timeline. The ratio bounds what an import can lose (a real request costs far more).
3. **Bounds.** Buckets and stored JSON size after 10M requests spread over 10 hours of
   virtual time (a long import), against 1M over one hour.
4. **Report.** Bytes of the HTML report of such a run (plotly.js inlined once).

    python benchmarks/report_timeline.py
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kraiter_sync.api.client import KraiterClient  # noqa: E402
from kraiter_sync.api.timeline import Timeline, TimelineObserver, record_requests  # noqa: E402
from kraiter_sync.report.contents import build_report  # noqa: E402
from kraiter_sync.report.html import render_html  # noqa: E402
from kraiter_sync.state.runs import RunRecord  # noqa: E402


class Bare:
    async def before_request(self) -> None:
        return None

    def after_response(self, status: int, headers: Mapping[str, str]) -> None:
        return None

    def after_failure(self) -> None:
        return None


async def _observer_loop(observer: Bare | TimelineObserver, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await observer.before_request()
        observer.after_response(201, {})
    return time.perf_counter() - started


def per_request(n: int = 1_000_000) -> None:
    bare = asyncio.run(_observer_loop(Bare(), n))
    timed = asyncio.run(_observer_loop(TimelineObserver(Bare(), Timeline()), n))
    print(
        f"1. per request: {1e9 * (timed - bare) / n:,.0f} ns added "
        f"({1e9 * bare / n:,.0f} ns bare observer, {1e9 * timed / n:,.0f} ns with timeline)"
    )


def _client_rate(with_timeline: bool, n: int) -> float:
    body = json.dumps({"id": "c1", "email": "a@example.com"}).encode()

    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})

    async def run() -> float:
        client = KraiterClient(
            "http://127.0.0.1:9",
            "kr_bench",
            transport=httpx.MockTransport(handler),
            observer=Bare(),
        )
        if with_timeline:
            record_requests(client, Timeline())
        async with client:
            started = time.perf_counter()
            for _ in range(n):
                await client.get_contact("c1")
            return n / (time.perf_counter() - started)

    return asyncio.run(run())


def client_path(n: int = 30_000) -> None:
    rates = {flag: [] for flag in (False, True)}  # type: dict[bool, list[float]]
    for _ in range(3):  # interleaved, best of three: the machine is shared
        for flag in (False, True):
            rates[flag].append(_client_rate(flag, n))
    without, with_ = max(rates[False]), max(rates[True])
    print(
        f"2. client path: {with_:,.0f} req/s with the timeline vs {without:,.0f} without "
        f"(ratio {with_ / without:.3f})"
    )


def _simulated(requests: int, seconds: float) -> Timeline:
    now = [0.0]
    timeline = Timeline(clock=lambda: now[0])
    step = seconds / requests
    for i in range(requests):
        now[0] = i * step
        timeline.request()
        timeline.response(429 if i % 997 == 0 else 201)
        if i % 331 == 0:
            timeline.retry()
    return timeline


def bounds() -> Timeline:
    small = _simulated(1_000_000, 3_600)
    large = _simulated(10_000_000, 36_000)
    for label, t in (("1M requests / 1 h", small), ("10M requests / 10 h", large)):
        size = len(json.dumps(t.as_dict()))
        print(f"3. {label}: {len(t)} buckets of {t.bucket_seconds:g} s, {size:,} bytes stored")
    return large


def report_size(timeline: Timeline) -> None:
    record = RunRecord(
        id=1,
        command="import",
        target="https://api.kraiter.com#0123456789abcdef",
        args={"paths": ["events.parquet"]},
        started_at=timeline.started_at,
        finished_at=timeline.started_at + 36_000,
        status="ok",
        counts={"events": {"read": 10_000_000, "sent": 10_000_000}, "requests": 10_000_000},
        details={"timeline": timeline.as_dict()},
    )
    page = render_html(build_report(record)).encode()
    print(f"4. report of the 10M run: {len(page):,} bytes")


if __name__ == "__main__":
    per_request()
    client_path()
    report_size(bounds())
