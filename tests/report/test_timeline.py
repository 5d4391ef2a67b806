"""The request timeline: per-bucket counters in virtual time, bounded however long the run,
and fed by real requests through the client's observer and the engine's retries."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.api.ratelimit import RateController
from kraiter_sync.api.retry import RetryPolicy
from kraiter_sync.api.timeline import SERIES, Timeline, TimelineObserver, record_requests
from kraiter_sync.config import resolve_settings
from kraiter_sync.errors import ConnectError
from kraiter_sync.state.ledger import Ledger
from kraiter_sync.upload.engine import Engine, EngineOptions
from kraiter_sync.verbs.importer import import_
from tests.helpers.imports import write_events


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_counts_each_class_in_the_bucket_of_its_second() -> None:
    clock = Clock()
    timeline = Timeline(clock=clock, wall_clock=lambda: 1_700_000_000.0)
    timeline.request()
    timeline.response(201)
    clock.now += 1.5
    for status in (429, 404, 503, 302):
        timeline.request()
        timeline.response(status)
    timeline.failure()
    timeline.retry()
    clock.now += 1.0
    timeline.retry(ConnectError("refused"), 2)  # usable as a retry hook
    recorded = timeline.as_dict()
    assert recorded["started_at"] == 1_700_000_000.0
    assert recorded["bucket_seconds"] == 1.0
    assert recorded["series"] == {
        "requests": [1, 4, 0],
        "2xx": [1, 0, 0],
        "4xx": [0, 1, 0],
        "429": [0, 1, 0],
        "5xx": [0, 1, 0],
        "other": [0, 1, 0],
        "transport": [0, 1, 0],
        "retries": [0, 1, 1],
    }


def test_a_long_run_coarsens_buckets_and_keeps_every_count() -> None:
    clock = Clock()
    timeline = Timeline(max_buckets=50, clock=clock)
    events = 0
    for second in range(10_000):  # 10,000 s with 3 requests a second, one 429 every 7 s
        clock.now = 100.0 + second + 0.5
        for _ in range(3):
            timeline.request()
            events += 1
        if second % 7 == 0:
            timeline.response(429)
    assert len(timeline) <= 50
    assert timeline.bucket_seconds == 256.0  # 1 s doubled until 10,000 s fit in 50
    totals = timeline.totals()
    assert totals["requests"] == events == 30_000
    assert totals["429"] == len(range(0, 10_000, 7))
    series = timeline.as_dict()["series"]
    assert sum(series["requests"]) == 30_000
    assert series["requests"][0] == 3 * 256  # a full first bucket after merging


def test_memory_stays_bounded_for_millions_of_events() -> None:
    clock = Clock()
    timeline = Timeline(clock=clock)
    for i in range(2_000_000):
        clock.now = 100.0 + i * 0.02  # 50 requests/s for 40,000 s
        timeline.request()
    assert len(timeline) <= timeline.max_buckets
    assert timeline.totals()["requests"] == 2_000_000


def test_zero_series_are_left_out_and_invalid_settings_refused() -> None:
    timeline = Timeline(clock=Clock())
    timeline.request()
    assert set(timeline.as_dict()["series"]) == {"requests"}
    assert set(SERIES) >= {"requests", "2xx", "429", "retries", "transport"}
    with pytest.raises(ValueError, match="bucket_seconds"):
        Timeline(bucket_seconds=0)


class Recorder:
    """An inner observer that notes what it was told (the rate controller's place)."""

    def __init__(self) -> None:
        self.calls: list[object] = []

    async def before_request(self) -> None:
        self.calls.append("before")

    def after_response(self, status: int, headers: Mapping[str, str]) -> None:
        self.calls.append(status)

    def after_failure(self) -> None:
        self.calls.append("failure")


def test_the_observer_passes_everything_on_and_records_real_requests() -> None:
    answers = iter([httpx.Response(200, json={"id": "c1", "email": "a@example.com"}), None])

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if answer is None:
            raise httpx.ConnectError("refused", request=request)
        return answer

    inner = Recorder()
    timeline = Timeline()

    async def run() -> None:
        client = KraiterClient(
            "http://127.0.0.1:9", "kr_test", transport=httpx.MockTransport(handler), observer=inner
        )
        record_requests(client, timeline)
        assert isinstance(client.observer, TimelineObserver)
        async with client:
            await client.get_contact("c1")
            with pytest.raises(ConnectError):
                await client.get_contact("c2")

    asyncio.run(run())
    assert inner.calls == ["before", 200, "before", "failure"]
    totals = timeline.totals()
    assert (totals["requests"], totals["2xx"], totals["transport"]) == (2, 1, 1)


def test_engine_retries_reach_the_timeline(tmp_path: Path) -> None:
    statuses = iter([503, 503, 201])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(statuses)
        if status == 201:
            return httpx.Response(201, json={"id": "e1"})
        return httpx.Response(status, json={"error": {"code": "SERVICE_UNAVAILABLE"}})

    timeline = Timeline()

    async def no_sleep(_seconds: float) -> None:
        return None

    async def run() -> None:
        client = KraiterClient(
            "http://127.0.0.1:9", "kr_test", transport=httpx.MockTransport(handler)
        )
        record_requests(client, timeline)
        with Ledger(tmp_path / "ledger.db") as ledger:
            engine = Engine(
                client,
                ledger,
                target="t",
                run_id=1,
                options=EngineOptions(retry=RetryPolicy(max_retries=3, sleep=no_sleep)),
                on_retry=timeline.retry,
            )
            async with client:
                await engine.with_retry(lambda: client.track_event("x", contact_id="c1"))
            assert engine.stats.retries == 2

    asyncio.run(run())
    totals = timeline.totals()
    assert (totals["requests"], totals["5xx"], totals["2xx"], totals["retries"]) == (3, 2, 1, 2)


def test_an_import_records_its_timeline_with_the_run(tmp_path: Path) -> None:
    from kraiter_sync.emulator import EmulatorConfig, asgi_transport, create_app

    src = tmp_path / "events.parquet"
    write_events(src, rows=40)
    app_config = EmulatorConfig(db_path=str(tmp_path / "kraiter.db"))

    def factory(controller: RateController) -> KraiterClient:
        transport = asgi_transport(create_app(app_config), close_app=True)
        return KraiterClient(
            "http://local.kraiter", "kr_timeline_test", transport=transport, observer=controller
        )

    settings = resolve_settings(
        api_key="kr_timeline_test",
        base_url="http://127.0.0.1:9",
        state_dir=tmp_path / "st",
        env={},
    )
    result = import_([src], settings=settings, client_factory=factory)
    with Ledger(settings.ledger_path) as ledger:
        run = ledger.get_run(result.run_id)
    assert run is not None
    assert run.details is not None
    series = run.details["timeline"]["series"]
    assert sum(series["requests"]) == result.requests > 0
    # a fault-free Kraiter answers each, all with 2xx but the one look-up that learns how
    # the target treats unknown emails: the first email is not a contact yet (404)
    assert sum(series["2xx"]) == result.requests - 1
    assert sum(series["4xx"]) == 1
    assert run.details["rejects"]["by_rule"] == {
        "email.invalid": 1,
        "name.reserved": 1,
        "timestamp.future": 1,
    }
    assert run.details["rejects"]["file"] == str(result.rejects_path.absolute())  # type: ignore[union-attr]
