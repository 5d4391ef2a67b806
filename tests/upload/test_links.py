"""Contacts for events (``upload.links``): the fewest requests under each of Kraiter's three
ways with unknown emails, and the same end state under all three: every contact exists,
every event is linked to it."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.api.retry import RetryPolicy
from kraiter_sync.config import Settings, resolve_settings
from kraiter_sync.emulator import EmulatorConfig, asgi_transport, create_app
from kraiter_sync.state.ledger import Ledger
from kraiter_sync.upload.engine import Engine, EngineOptions, EventRow
from kraiter_sync.upload.links import STREAM
from kraiter_sync.verbs.importer import import_
from tests.helpers.imports import LocalKraiter

KEY = "kr_links_test_secret_0123456789"
MODES = ["create", "not-found", "link-later"]
EVENTS = "POST /api/events"
UPSERT = "POST /api/contacts/upsert"
LOOKUP = "GET /api/contacts/by-email/{email}"


def _settings(tmp_path: Path, name: str = "st") -> Settings:
    return resolve_settings(
        api_key=KEY, base_url="http://127.0.0.1:9", state_dir=tmp_path / name, env={}
    )


def _events_csv(path: Path, emails: list[str], per_contact: int, start: int = 0) -> set[tuple]:
    """``per_contact`` events for each email; returns (email, name, timestamp, props)."""
    base = datetime(2024, 1, 1, tzinfo=UTC)
    lines = ["email,event,timestamp,n"]
    expected = set()
    for i in range(per_contact * len(emails)):
        email = emails[i % len(emails)]
        ts = (base + timedelta(minutes=start + i)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        lines.append(f"{email},signed_up,{ts},{start + i}")
        expected.add((email, "signed_up", ts, json.dumps({"n": start + i})))
    path.write_text("\n".join(lines) + "\n")
    return expected


def _contacts(kraiter: LocalKraiter) -> dict[str, dict[str, Any]]:
    app = create_app(EmulatorConfig(db_path=str(kraiter.db)))

    async def collect() -> dict[str, dict[str, Any]]:
        transport = asgi_transport(app)
        async with KraiterClient("http://local.kraiter", KEY, transport=transport) as client:
            return {c["email"]: c async for c in client.list_contacts()}

    try:
        return asyncio.run(collect())
    finally:
        app.close()


def _create(kraiter: LocalKraiter, emails: list[str]) -> None:
    """Contacts made in Kraiter by someone else (not in this state directory)."""
    app = create_app(EmulatorConfig(db_path=str(kraiter.db)))

    async def make() -> None:
        transport = asgi_transport(app)
        async with KraiterClient("http://local.kraiter", KEY, transport=transport) as client:
            for email in emails:
                await client.create_contact(email, properties={"by": "crm"})

    try:
        asyncio.run(make())
    finally:
        app.close()


def _behaviour(settings: Settings) -> str | None:
    with Ledger(settings.state_dir / "ledger.db") as ledger:
        return ledger.get_watermark(settings.target, STREAM)


def test_where_kraiter_creates_contacts_events_only_cost_one_request_each(
    tmp_path: Path,
) -> None:
    kraiter = LocalKraiter(tmp_path, KEY)
    emails = [f"u{i}@example.com" for i in range(12)]
    src = tmp_path / "events.csv"
    expected = _events_csv(src, emails, per_contact=3)
    settings = _settings(tmp_path)

    result = import_([src], settings=settings, client_factory=kraiter.factory)

    assert (result.events.sent, result.exit_code) == (36, 0)
    # the trigger guard, the lost-state guard's one read (Kraiter holds no event yet), one
    # look-up to learn the behaviour, the events: nothing else
    assert kraiter.transports[-1].routes == {
        "GET /api/sequences": 1,
        "GET /api/events": 1,
        LOOKUP: 1,
        EVENTS: 36,
    }
    assert kraiter.events() == Counter(expected)  # each linked to its contact, once
    assert set(_contacts(kraiter)) == set(emails)  # nothing absent from the input
    assert _behaviour(settings) == "create"
    with Ledger(settings.state_dir / "ledger.db") as ledger:  # ids from the answers
        cached = ledger.get_contacts(settings.target, emails)
    assert {e: cid for e, (cid, _h) in cached.items()} == {
        e: c["id"] for e, c in _contacts(kraiter).items()
    }


@pytest.mark.parametrize("mode", MODES)
def test_every_behaviour_is_learned_once_and_ends_with_linked_events(
    tmp_path: Path, mode: str
) -> None:
    kraiter = LocalKraiter(tmp_path, KEY, unknown_email=mode)
    settings = _settings(tmp_path)
    first_src = tmp_path / "first.csv"
    first = _events_csv(first_src, [f"a{i}@example.com" for i in range(6)], per_contact=4)

    result = import_([first_src], settings=settings, client_factory=kraiter.factory)

    assert (result.events.sent, result.events.rejected, result.exit_code) == (24, 0, 0)
    assert _behaviour(settings) == mode
    assert kraiter.events() == Counter(first)

    # Known now: new emails cost nothing where Kraiter creates contacts, and elsewhere
    # one listing and a create for each missing one, before any event (no 404).
    second_src = tmp_path / "second.csv"
    new = [f"b{i}@example.com" for i in range(5)]
    second = _events_csv(second_src, new, per_contact=2, start=1000)
    again = import_([second_src], settings=settings, client_factory=kraiter.factory)

    assert (again.events.sent, again.exit_code) == (10, 0)
    routes, answers = kraiter.transports[-1].routes, kraiter.transports[-1].answers
    if mode == "create":
        assert routes == {"GET /api/sequences": 1, EVENTS: 10}
    else:
        assert routes == {"GET /api/sequences": 1, "GET /api/contacts": 1, UPSERT: 5, EVENTS: 10}
    assert answers[(EVENTS, 201)] == 10
    assert kraiter.events() == Counter(first | second)
    assert set(_contacts(kraiter)) == {e for (e, *_rest) in first | second}


@pytest.mark.parametrize("mode", MODES)
def test_contacts_kraiter_holds_cost_no_write_with_a_fresh_ledger(
    tmp_path: Path, mode: str
) -> None:
    kraiter = LocalKraiter(tmp_path, KEY, unknown_email=mode)
    emails = [f"crm{i}@example.com" for i in range(8)]
    _create(kraiter, emails)
    src = tmp_path / "events.csv"
    expected = _events_csv(src, emails, per_contact=3)

    result = import_([src], settings=_settings(tmp_path), client_factory=kraiter.factory)

    assert (result.events.sent, result.exit_code) == (24, 0)
    # The look-up finds the first contact, so the behaviour stays unknown; every event
    # goes by email and Kraiter links it to the contact it holds. (The lost-state guard
    # reads one page of events: Kraiter holds none yet.)
    assert kraiter.transports[-1].routes == {
        "GET /api/sequences": 1,
        "GET /api/events": 1,
        LOOKUP: 1,
        EVENTS: 24,
    }
    assert kraiter.events() == Counter(expected)
    assert {c["properties"]["by"] for c in _contacts(kraiter).values()} == {"crm"}


@pytest.mark.parametrize("mode", ["not-found", "link-later"])
def test_a_known_behaviour_finds_existing_contacts_in_a_listing(tmp_path: Path, mode: str) -> None:
    kraiter = LocalKraiter(tmp_path, KEY, unknown_email=mode)
    settings = _settings(tmp_path)
    src = tmp_path / "first.csv"
    _events_csv(src, ["first@example.com"], per_contact=1)
    import_([src], settings=settings, client_factory=kraiter.factory)
    assert _behaviour(settings) == mode
    crm = [f"crm{i}@example.com" for i in range(7)]
    _create(kraiter, crm)  # in Kraiter, unknown to this ledger
    mixed = tmp_path / "mixed.csv"
    expected = _events_csv(mixed, [*crm, "new@example.com"], per_contact=2, start=50)

    result = import_([mixed], settings=settings, client_factory=kraiter.factory)

    assert (result.events.sent, result.exit_code) == (16, 0)
    assert kraiter.transports[-1].routes == {
        "GET /api/sequences": 1,
        "GET /api/contacts": 1,  # one page holds all of them
        UPSERT: 1,  # only the missing one
        EVENTS: 16,
    }
    assert Counter(expected) <= kraiter.events()


@pytest.mark.parametrize("mode", ["not-found", "link-later"])
def test_an_answer_that_contradicts_the_kept_behaviour_is_learned_again(
    tmp_path: Path, mode: str
) -> None:
    kraiter = LocalKraiter(tmp_path, KEY, unknown_email=mode)
    settings = _settings(tmp_path)
    with Ledger(settings.state_dir / "ledger.db") as ledger:  # learned earlier, now wrong
        ledger.set_watermark(settings.target, STREAM, "create")
    src = tmp_path / "events.csv"
    expected = _events_csv(src, [f"c{i}@example.com" for i in range(4)], per_contact=3)

    result = import_([src], settings=settings, client_factory=kraiter.factory)

    # a 404 for an event sent by email is "create the contact, then send", never a
    # reject; an event stored unlinked gets its contact
    assert (result.events.sent, result.events.rejected, result.exit_code) == (12, 0, 0)
    assert _behaviour(settings) == mode
    assert kraiter.events() == Counter(expected)
    assert len(_contacts(kraiter)) == 4


class FailingUpserts(httpx.AsyncBaseTransport):
    """Answers every contact upsert 503 (without applying it) while ``failing``."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.failing = True

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.failing and request.url.path == "/api/contacts/upsert":
            body = {"error": {"code": "SERVICE_UNAVAILABLE", "message": "try later"}}
            return httpx.Response(503, json=body)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _no_sleep(_seconds: float) -> None:
    return None


def test_an_event_stored_without_its_contact_stays_inflight_until_the_contact_exists(
    tmp_path: Path,
) -> None:
    """link-later: the event is stored, but creating its contact fails. The key must not
    be ``done`` (a re-run would skip it and the contact would never exist); the next run
    finds the stored event, creates the contact, which links it, and sends nothing."""
    app = create_app(EmulatorConfig(db_path=str(tmp_path / "k.db"), unknown_email="link-later"))
    row = EventRow(
        "key-1", None, "signed_up", "2024-01-01T00:00:00.000Z", "{}", "f", 1, "ann@example.com"
    )

    async def go() -> tuple[Any, ...]:
        transport = FailingUpserts(asgi_transport(app, close_app=True))
        options = EngineOptions(retry=RetryPolicy(max_retries=1, sleep=_no_sleep))
        with Ledger(tmp_path / "ledger.db") as ledger:
            async with KraiterClient("http://k.test", KEY, transport=transport) as client:
                engine = Engine(client, ledger, target="t", run_id=1, options=options)
                await engine.send_events([row])
                after_first = (ledger.known_states("t", ["key-1"]), engine.stats.events_failed)
                stored = [e async for e in client.list_events(email="ann@example.com")]
                transport.failing = False
                again = Engine(client, ledger, target="t", run_id=2, options=options)
                left = await again.recover([row])
                contact = await client.get_contact_by_email("ann@example.com")
                linked = [e async for e in client.list_events()]
                return (
                    after_first,
                    stored,
                    left,
                    ledger.known_states("t", ["key-1"]),
                    contact,
                    linked,
                )

    after_first, stored, left, states, contact, linked = asyncio.run(go())
    assert after_first == ({"key-1": "inflight"}, 1)
    assert [e["contactId"] for e in stored] == [None]  # stored, waiting for its contact
    assert left == []  # found: nothing to send again
    assert states == {"key-1": "done"}
    assert contact is not None
    assert [(e["id"], e["contactId"]) for e in linked] == [(stored[0]["id"], contact["id"])]
