"""SyncKraiterClient: the blocking facade runs the async client on a private loop."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import pytest
import respx

from kraiter_sync.api.blocking import SyncKraiterClient
from kraiter_sync.api.client import Page
from kraiter_sync.config import Settings
from kraiter_sync.errors import ConflictError

BASE = "https://api.kraiter.test"
KEY = "kr_sync_test_key"


def mocked(router: respx.MockRouter) -> httpx.AsyncBaseTransport:
    """The client drives its transport directly: hand it respx's router as one."""
    return httpx.MockTransport(router.async_handler)


def test_sync_round_trip() -> None:
    threads_before = threading.active_count()
    with respx.mock(base_url=BASE, using="httpx", assert_all_called=True) as router:
        create = router.post("/api/contacts").respond(201, json={"contactId": "con_1"})
        by_email = router.get("/api/contacts/by-email/gone%40example.com").respond(
            404, json={"error": {"code": "NOT_FOUND", "message": "no"}}
        )
        events = router.get("/api/events").mock(
            side_effect=[
                httpx.Response(200, json={"data": [{"id": "evt_1"}], "nextCursor": "c1"}),
                httpx.Response(200, json={"items": [{"id": "evt_2"}], "hasMore": False}),
            ]
        )
        upsert = router.post("/api/contacts/upsert").respond(
            409, json={"error": {"code": "CONFLICT", "message": "taken"}}
        )
        with SyncKraiterClient(BASE, KEY, transport=mocked(router)) as client:
            assert threading.active_count() == threads_before + 1
            assert client.create_contact("ann@example.com", properties={"a": 1}) == {
                "contactId": "con_1",
                "id": "con_1",
            }
            assert client.get_contact_by_email("gone@example.com") is None
            assert client.list_events(contact_id="con_1") == [{"id": "evt_1"}, {"id": "evt_2"}]
            with pytest.raises(ConflictError):
                client.upsert_contact("ann@example.com")
            assert KEY not in repr(client)
        assert threading.active_count() == threads_before
    assert json.loads(create.calls.last.request.content) == {
        "email": "ann@example.com",
        "properties": {"a": 1},
    }
    assert by_email.call_count == 1
    assert [c.request.url.params.get("cursor") for c in events.calls] == [None, "c1"]
    assert upsert.calls.last.request.headers["authorization"] == f"Bearer {KEY}"


def test_sync_client_works_inside_a_running_event_loop() -> None:
    async def inside() -> dict[str, object]:
        with SyncKraiterClient.from_settings(
            Settings(base_url=BASE, api_key=KEY), transport=mocked(router)
        ) as client:
            return client.track_event("signup", contact_id="cnt_1")

    with respx.mock(base_url=BASE, using="httpx", assert_all_called=True) as router:
        router.post("/api/events").respond(201, json={"id": "evt_1"})
        assert asyncio.run(inside()) == {"id": "evt_1"}


def test_close_is_idempotent() -> None:
    client = SyncKraiterClient(BASE, KEY)
    client.close()
    client.close()


LIST = {"data": [{"id": "x_1"}], "nextCursor": None}
SYNC_CALLS: list[tuple[str, tuple[object, ...], dict[str, object], str, str, object, object]] = [
    ("get_contact", ("cnt_1",), {}, "GET", "/api/contacts/cnt_1", {"id": "cnt_1"}, {"id": "cnt_1"}),
    ("list_contacts", (), {"search": "a"}, "GET", "/api/contacts", LIST, [{"id": "x_1"}]),
    ("update_contact", ("cnt_1",), {"unsubscribed": True}, "PATCH", "/api/contacts/cnt_1",
     {"id": "cnt_1"}, {"id": "cnt_1"}),
    ("upsert_contact", ("a@example.com",), {}, "POST", "/api/contacts/upsert",
     {"id": "cnt_1"}, ({"id": "cnt_1"}, False)),
    ("delete_contact", ("cnt_1",), {}, "DELETE", "/api/contacts/cnt_1", None, None),
    ("contact_sends", ("cnt_1",), {}, "GET", "/api/contacts/cnt_1/sends", LIST, [{"id": "x_1"}]),
    ("contact_scheduled", ("cnt_1",), {}, "GET", "/api/contacts/cnt_1/scheduled", LIST,
     [{"id": "x_1"}]),
    ("contact_timeline", ("cnt_1",), {}, "GET", "/api/contacts/cnt_1/timeline", LIST,
     [{"id": "x_1"}]),
    ("contact_sequences", ("cnt_1",), {}, "GET", "/api/contacts/cnt_1/sequences", LIST,
     [{"id": "x_1"}]),
    ("contact_segments", ("cnt_1",), {}, "GET", "/api/contacts/cnt_1/segments", LIST,
     [{"id": "x_1"}]),
    ("list_sends", (), {"status": "sent"}, "GET", "/api/sends", LIST, [{"id": "x_1"}]),
    ("list_scheduled", (), {}, "GET", "/api/scheduled", LIST, [{"id": "x_1"}]),
    ("put_sequence", ("seq_1",), {"name": "W", "status": "active", "triggers": ["a"]}, "PUT",
     "/api/sequences/seq_1", {"id": "seq_1"}, {"id": "seq_1"}),
    ("list_sequences", (), {}, "GET", "/api/sequences", LIST, [{"id": "x_1"}]),
    ("get_page", ("events.list",), {"limit": 5}, "GET", "/api/events", LIST,
     Page([{"id": "x_1"}], None)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "verb", "path", "answer", "expected"),
    [pytest.param(*row, id=row[0]) for row in SYNC_CALLS],
)
def test_every_sync_method_delegates(
    method: str,
    args: tuple[object, ...],
    kwargs: dict[str, object],
    verb: str,
    path: str,
    answer: object,
    expected: object,
) -> None:
    with respx.mock(base_url=BASE, using="httpx", assert_all_called=True) as router:
        status = 204 if answer is None else 200
        route = router.route(method=verb, path=path).respond(status, json=answer)
        with SyncKraiterClient(BASE, KEY, transport=mocked(router)) as client:
            assert getattr(client, method)(*args, **kwargs) == expected
    assert route.call_count == 1
