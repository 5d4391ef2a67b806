"""The upload engine, driven directly: every write is an engine operation, with the
ledger's bookkeeping (inflight before a request leaves), retries and verification."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.api.retry import RetryPolicy
from kraiter_sync.emulator import EmulatorConfig, asgi_transport, create_app
from kraiter_sync.state.ledger import Ledger
from kraiter_sync.upload.engine import ContactRow, Engine, EngineOptions, EventRow

T = TypeVar("T")
TARGET = "test-target"


class Watching(httpx.AsyncBaseTransport):
    """Passes requests through; before each event POST, records the ledger's word on it."""

    def __init__(self, inner: httpx.AsyncBaseTransport, ledger: Ledger) -> None:
        self.inner = inner
        self.ledger = ledger
        self.states_seen: list[str | None] = []
        self.requests: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        if request.method == "POST" and request.url.path == "/api/events":
            body = json.loads(request.content)
            key = body["properties"]["key"]
            self.states_seen.append(self.ledger.known_states(TARGET, [key]).get(key))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def run(
    tmp_path: Path,
    work: Callable[[Engine, Watching], Awaitable[T]],
    *,
    config: EmulatorConfig | None = None,
) -> T:
    async def go() -> T:
        app = create_app(config or EmulatorConfig())
        with Ledger(tmp_path / "ledger.db") as ledger:
            watching = Watching(asgi_transport(app, close_app=True), ledger)
            async with KraiterClient("http://kraiter.test", "kr_engine", transport=watching) as c:
                options = EngineOptions(
                    concurrency=4, retry=RetryPolicy(max_retries=8, sleep=_no_sleep)
                )
                engine = Engine(c, ledger, target=TARGET, run_id=1, options=options)
                return await work(engine, watching)

    return asyncio.run(go())


async def _no_sleep(_seconds: float) -> None:
    return None


def _event(i: int, contact_id: str) -> EventRow:
    props = json.dumps({"key": f"k{i}"}, separators=(",", ":"))
    return EventRow(f"k{i}", contact_id, "signup", f"2024-01-01T00:00:{i:02d}.000Z", props, "f", i)


def test_every_event_is_inflight_in_the_ledger_before_its_request_leaves(tmp_path: Path) -> None:
    async def work(engine: Engine, watching: Watching) -> dict[str, str]:
        ids = (await engine.ensure_contacts(["ann@example.com"])).ids
        await engine.send_events([_event(i, ids["ann@example.com"]) for i in range(12)])
        return engine.store.known_states(TARGET, [f"k{i}" for i in range(12)])

    states = run(tmp_path, work)
    assert set(states.values()) == {"done"}
    assert len(states) == 12


def test_inflight_before_sending_and_no_duplicate_when_answers_are_lost(tmp_path: Path) -> None:
    """Dropped responses (applied, then the connection cut) and 5xx: each event is in
    Kraiter exactly once, and each POST found its key already inflight."""
    seen: list[str | None] = []

    async def work(engine: Engine, watching: Watching) -> list[dict[str, Any]]:
        ids = (await engine.ensure_contacts(["bob@example.com"])).ids
        await engine.send_events([_event(i, ids["bob@example.com"]) for i in range(30)])
        seen.extend(watching.states_seen)
        assert engine.stats.events_failed == 0

        async def stored() -> list[dict[str, Any]]:  # the faults hit this read too
            return [e async for e in engine.client.list_events(contact_id=ids["bob@example.com"])]

        return await engine.with_retry(stored)

    events = run(tmp_path, work, config=EmulatorConfig(drop_rate=0.2, fail_rate=0.1, seed=3))
    keys = [e["properties"]["key"] for e in events if e.get("name") == "signup"]
    assert sorted(keys) == sorted(f"k{i}" for i in range(30))  # each once
    assert seen  # requests were made, several of them again after a lost answer
    assert set(seen) == {"inflight"}


def test_upsert_creates_then_patches_only_what_differs_and_caches(tmp_path: Path) -> None:
    async def work(engine: Engine, watching: Watching) -> tuple[Any, ...]:
        row = ContactRow("cat@example.com", '{"plan":"pro"}', None, "f", 1, "h1")
        first = await engine.write_contacts([row])
        again = await engine.write_contacts([row])  # CONFLICT, same properties
        changed = ContactRow("cat@example.com", '{"plan":"team","seats":3}', "u9", "f", 1, "h2")
        patched = await engine.write_contacts([changed])
        cached = engine.store.get_contacts(TARGET, ["cat@example.com"])
        stored = await engine.client.get_contact_by_email("cat@example.com")
        return first, again, patched, cached, stored, list(watching.requests)

    first, again, patched, cached, stored, requests = run(tmp_path, work)
    assert (first.created, again.unchanged, patched.updated) == (1, 1, 1)
    assert stored is not None
    assert stored["properties"] == {"plan": "team", "seats": 3}
    assert stored["userId"] == "u9"
    assert cached["cat@example.com"] == (stored["id"], "h2")
    patches = [r for r in requests if r[0] == "PATCH"]
    assert len(patches) == 1  # the unchanged write sent no PATCH


def test_a_cached_id_that_is_gone_is_written_by_email_again(tmp_path: Path) -> None:
    async def work(engine: Engine, watching: Watching) -> tuple[Any, ...]:
        row = ContactRow("dan@example.com", '{"a":1}', None, "f", 1, "h", "c_deleted_long_ago")
        written = await engine.write_contacts([row])
        found = await engine.client.get_contact_by_email("dan@example.com")
        return written, found

    written, found = run(tmp_path, work)
    assert written.created == 1
    assert found is not None
    assert found["properties"] == {"a": 1}


def test_update_delete_and_restore_are_engine_operations(tmp_path: Path) -> None:
    async def work(engine: Engine, watching: Watching) -> tuple[Any, ...]:
        client = engine.client
        made = await client.create_contact("eve@example.com", properties={"a": 1, "b": 2})
        await engine.write_contacts([ContactRow("eve@example.com", '{"a":1,"b":2}', None, "f", 1)])
        updated = await engine.update_contacts(
            [ContactRow("eve@example.com", '{"b":null,"c":3}', None, "f", 1, None, made["id"])]
        )
        after_update = await client.get_contact(made["id"])
        deleted = await engine.delete_contacts(
            [ContactRow("eve@example.com", None, None, None, None, None, made["id"])]
        )
        gone = engine.store.get_contacts(TARGET, ["eve@example.com"])
        again = await engine.delete_contacts(
            [ContactRow("eve@example.com", None, None, None, None, None, made["id"])]
        )
        restored = await engine.restore_contacts(
            [{"email": "eve@example.com", "properties": {"a": 1}, "unsubscribed": True}]
        )
        twice = await engine.restore_contacts([{"email": "eve@example.com"}])
        back = await client.get_contact_by_email("eve@example.com")
        return updated, after_update, deleted, gone, again, restored, twice, back

    updated, after_update, deleted, gone, again, restored, twice, back = run(tmp_path, work)
    assert updated.updated == 1
    assert after_update["properties"] == {"a": 1, "c": 3}
    assert deleted.deleted == 1
    assert gone == {}  # the ledger's cache forgot it: a later import recreates it
    assert again.deleted == 1  # already gone: the goal is reached
    assert (restored.created, twice.existing) == (1, 1)
    assert back is not None
    assert back["unsubscribed"] is True


def test_a_refusal_is_a_rejected_outcome_not_an_exception(tmp_path: Path) -> None:
    async def work(engine: Engine, watching: Watching) -> Any:
        return await engine.write_contacts(
            [ContactRow("not-an-email", "{}", None, "in.csv", 7, "h")]
        )

    written = run(tmp_path, work)
    assert written.created == 0
    (outcome,) = written.rejected
    assert outcome.code == "VALIDATION_ERROR"
    assert outcome.row.source_row == 7
