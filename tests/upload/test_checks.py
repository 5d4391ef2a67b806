"""Grouped checks: sends whose outcome is unknown (answer lost, 5xx) wait inflight and are
checked once per (contact, name) group, late, never sent again before their check."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.api.retry import RetryPolicy
from kraiter_sync.emulator import EmulatorConfig, asgi_transport, create_app
from kraiter_sync.state.ledger import Ledger
from kraiter_sync.upload.engine import Engine, EngineOptions, EventRow

T = TypeVar("T")
TARGET = "t"
NAMES = ("signed_up", "paid")


class Recording(httpx.AsyncBaseTransport):
    """Logs every request as (method, key or "contact/name" of a listing, status or None
    when no answer came); ``fail_first`` answers each key's first POST 503 unapplied."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, fail_first: bool = False) -> None:
        self.inner = inner
        self.fail_first = fail_first
        self.log: list[tuple[str, str, int | None]] = []
        self._failed: set[str] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/events" and request.method == "POST":
            body = json.loads(request.content)
            what = f"{body['contactId']}/{body['name']}/{body['properties']['key']}"
        elif request.url.path == "/api/events":
            q = request.url.params
            what = f"{q.get('contactId')}/{q.get('name')}"
        else:
            what = request.url.path
        if self.fail_first and request.method == "POST" and what not in self._failed:
            self._failed.add(what)
            self.log.append(("POST", what, 503))
            body = {"error": {"code": "SERVICE_UNAVAILABLE", "message": "busy"}}
            return httpx.Response(503, json=body)
        try:
            response = await self.inner.handle_async_request(request)
        except httpx.HTTPError:
            self.log.append((request.method, what, None))
            raise
        self.log.append((request.method, what, response.status_code))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    def posts(self) -> list[str]:
        return [what for method, what, _s in self.log if method == "POST" and what.count("/") == 2]

    def listings(self) -> list[str]:
        """The event listings that were answered (a lost one is read again)."""
        return [
            what
            for method, what, status in self.log
            if method == "GET" and what.count("/") == 1 and status == 200
        ]


async def _no_sleep(_seconds: float) -> None:
    return None


def run(
    tmp_path: Path,
    work: Callable[[Engine, Recording, list[EventRow]], Awaitable[T]],
    *,
    faults: dict[str, Any],
    fail_first: bool = False,
    per_group: int = 40,
    **options: Any,
) -> T:
    """``work`` gets an engine over the emulator and rows for two contacts x two names."""

    db = str(tmp_path / "kraiter.db")

    async def go() -> T:
        setup = asgi_transport(create_app(EmulatorConfig(db_path=db)), close_app=True)
        async with KraiterClient("http://k.test", "kr_checks", transport=setup) as client:
            ids = [(await client.create_contact(f"{n}@example.com"))["id"] for n in ("a", "b")]
        app = create_app(EmulatorConfig(db_path=db, **faults))
        rows = [
            EventRow(
                f"{c}-{name}-{i}",
                cid,
                name,
                f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}.000Z",
                json.dumps({"key": f"{c}-{name}-{i}"}),
                "f",
                i,
            )
            for c, cid in enumerate(ids)
            for name in NAMES
            for i in range(per_group)
        ]
        recording = Recording(asgi_transport(app, close_app=True), fail_first=fail_first)
        with Ledger(tmp_path / "ledger.db") as ledger:
            async with KraiterClient("http://k.test", "kr_checks", transport=recording) as c:
                retry = RetryPolicy(max_retries=options.pop("max_retries", 8), sleep=_no_sleep)
                engine_options = EngineOptions(concurrency=8, retry=retry, **options)
                engine = Engine(c, ledger, target=TARGET, run_id=1, options=engine_options)
                return await work(engine, recording, rows)

    return asyncio.run(go())


async def _stored(engine: Engine) -> Counter[str]:
    """Every custom event's key as Kraiter holds it (read with retries: faults hit reads)."""

    async def read() -> Counter[str]:
        events = engine.client.list_events()
        return Counter([e["properties"]["key"] async for e in events if e.get("name") in NAMES])

    return await engine.with_retry(read)


def test_lost_answers_cost_one_listing_per_group_and_nothing_is_sent_twice(
    tmp_path: Path,
) -> None:
    async def work(engine: Engine, rec: Recording, rows: list[EventRow]) -> tuple[Any, ...]:
        await engine.send_events(rows)
        return rec.posts(), rec.listings(), rec.log, await _stored(engine), engine.stats

    faults = {"drop_rate": 0.3, "seed": 4}
    posts, listings, log, stored, stats = run(tmp_path, work, faults=faults)
    lost = sum(1 for method, what, status in log if method == "POST" and status is None)
    assert lost >= 20  # the faults really happened
    assert len(posts) == 160  # a lost answer was applied: found, never sent again
    assert sorted(listings) == sorted(set(listings))  # one listing per (contact, name) group
    assert len(listings) == 4
    assert len(stored) == 160
    assert set(stored.values()) == {1}
    assert (stats.events_sent + stats.events_verified, stats.events_failed) == (160, 0)


def test_a_send_is_never_repeated_before_its_group_was_listed(tmp_path: Path) -> None:
    """5xx are not applied: every event is checked, found missing, and sent again, but
    only after a listing of its group that came after its previous send."""

    async def work(engine: Engine, rec: Recording, rows: list[EventRow]) -> tuple[Any, ...]:
        await engine.send_events(rows)
        return rec.log, await _stored(engine), engine.stats

    faults = {"drop_rate": 0.1, "fail_rate": 0.1, "seed": 8}
    log, stored, stats = run(tmp_path, work, faults=faults, per_group=30)
    last_send: dict[str, int] = {}
    listed_at: dict[str, list[int]] = {}
    for i, (method, what, _status) in enumerate(log):
        if method == "GET" and what.count("/") == 1:
            listed_at.setdefault(what, []).append(i)
        elif method == "POST" and what.count("/") == 2:
            group = what.rsplit("/", 1)[0]
            if what in last_send:
                assert any(last_send[what] < j < i for j in listed_at.get(group, [])), what
            last_send[what] = i
    assert len(last_send) == 120
    assert sum(1 for m, w, _s in log if m == "POST" and w.count("/") == 2) > 120  # resends
    assert set(stored.values()) == {1}
    assert len(stored) == 120
    assert stats.events_failed == 0


def test_sends_waiting_for_their_check_stay_inflight_and_a_next_run_finds_them(
    tmp_path: Path,
) -> None:
    async def work(engine: Engine, rec: Recording, rows: list[EventRow]) -> tuple[Any, ...]:
        await engine.send_events(rows, settle=False)
        keys = [row.key for row in rows]
        waiting = engine.store.known_states(TARGET, keys)
        # killed here: a new engine (the next run) checks what the ledger holds inflight
        inflight = [row for row in rows if waiting[row.key] == "inflight"]
        listings_before = len(rec.listings())
        after_kill = Engine(
            engine.client, engine.store, target=TARGET, run_id=2, options=engine.options
        )
        left = await after_kill.recover(inflight)
        return (
            waiting,
            listings_before,
            left,
            engine.store.known_states(TARGET, keys),
            await _stored(engine),
        )

    faults = {"drop_rate": 0.3, "seed": 5}
    waiting, listings_before, left, states, stored = run(tmp_path, work, faults=faults)
    assert Counter(waiting.values())["inflight"] >= 20
    assert listings_before == 0  # nothing was checked before the end
    assert left == []  # the lost answers were applied: nothing to send again
    assert set(states.values()) == {"done"}
    assert len(stored) == 160
    assert set(stored.values()) == {1}


def test_too_many_waiting_sends_are_checked_before_more_is_sent(tmp_path: Path) -> None:
    async def work(engine: Engine, rec: Recording, rows: list[EventRow]) -> tuple[Any, ...]:
        await engine.send_events(rows)
        return rec.log, await _stored(engine)

    faults = {"drop_rate": 0.3, "seed": 6}
    log, stored = run(tmp_path, work, faults=faults, batch_size=10, unchecked_limit=5)
    first_listing = next(i for i, (m, w, _s) in enumerate(log) if m == "GET" and w.count("/") == 1)
    last_post = max(i for i, (m, w, _s) in enumerate(log) if m == "POST" and w.count("/") == 2)
    assert first_listing < last_post
    assert len(stored) == 160
    assert set(stored.values()) == {1}


def test_a_stop_leaves_waiting_sends_inflight_unchecked(tmp_path: Path) -> None:
    async def work(engine: Engine, rec: Recording, rows: list[EventRow]) -> tuple[Any, ...]:
        await engine.send_events(rows, settle=False)
        engine.request_stop()
        await engine.settle_events()
        states = Counter(engine.store.known_states(TARGET, [row.key for row in rows]).values())
        return states, rec.listings(), engine.stats

    states, listings, stats = run(tmp_path, work, faults={"drop_rate": 0.3, "seed": 7})
    assert listings == []
    assert states["inflight"] == stats.events_failed > 0
    assert states["done"] == stats.events_sent == 160 - stats.events_failed


def test_with_no_retries_an_unknown_send_is_checked_but_never_sent_again(
    tmp_path: Path,
) -> None:
    async def work(engine: Engine, rec: Recording, rows: list[EventRow]) -> tuple[Any, ...]:
        await engine.send_events(rows)
        states = Counter(engine.store.known_states(TARGET, [row.key for row in rows]).values())
        return rec.posts(), rec.listings(), states, engine.stats

    posts, listings, states, stats = run(
        tmp_path, work, faults={}, fail_first=True, per_group=10, max_retries=0
    )
    assert len(posts) == 40  # one attempt each: "0 means 0"
    assert len(listings) == 4  # checked (all missing): it may go when a later run checks
    assert states == {"inflight": 40}
    assert stats.events_failed == 40
    assert stats.retries == 0
