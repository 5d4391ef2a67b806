"""KraiterClient: the exact request of every operation, tolerant decoding, paging.

respx (``using="httpx"``, so it intercepts whatever transport the client uses) checks
method, raw path, query, headers and JSON body of each operation of the contract.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import respx

from kraiter_sync.api.client import USER_AGENT, KraiterClient, Page
from kraiter_sync.api.dialect import ROUTES, Dialect, Route, decode_list, encode_segment
from kraiter_sync.config import Settings
from kraiter_sync.errors import ApiError, ResponseLostError
from tests.helpers.respx import BASE, mocked

pytestmark = pytest.mark.anyio

KEY = "kr_test_0123456789"


@pytest.fixture
async def kraiter(router: respx.MockRouter) -> AsyncIterator[KraiterClient]:
    async with KraiterClient(BASE, KEY, transport=mocked(router)) as client:
        yield client


def only_request(route: respx.Route) -> httpx.Request:
    assert route.call_count == 1
    return route.calls.last.request


def assert_common_headers(request: httpx.Request, *, has_body: bool) -> None:
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["user-agent"] == USER_AGENT
    if has_body:
        assert request.headers["content-type"] == "application/json"
    else:
        assert "content-type" not in request.headers
        assert request.content == b""


Call = Callable[[KraiterClient], Awaitable[Any]]


async def drain(iterator: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item async for item in iterator]


# (label, call, method, raw path, query, JSON body or None, answer status, answer JSON, result)
SHAPES: list[tuple[str, Call, str, str, dict[str, str], Any, int, Any, Any]] = [
    (
        "create_contact",
        lambda k: k.create_contact("ann@example.com", properties={"plan": "pro"}, user_id="u1"),
        "POST",
        "/api/contacts",
        {},
        {"email": "ann@example.com", "properties": {"plan": "pro"}, "userId": "u1"},
        201,
        {"id": "cnt_1", "email": "ann@example.com"},
        {"id": "cnt_1", "email": "ann@example.com"},
    ),
    (
        "create_contact minimal",
        lambda k: k.create_contact("ann@example.com"),
        "POST",
        "/api/contacts",
        {},
        {"email": "ann@example.com"},
        201,
        {"id": "cnt_1"},
        {"id": "cnt_1"},
    ),
    (
        "get_contact",
        lambda k: k.get_contact("cnt_1"),
        "GET",
        "/api/contacts/cnt_1",
        {},
        None,
        200,
        {"id": "cnt_1"},
        {"id": "cnt_1"},
    ),
    (
        "get_contact_by_email (URL-encoded)",
        lambda k: k.get_contact_by_email("a+b/c@example.com"),
        "GET",
        "/api/contacts/by-email/a%2Bb%2Fc%40example.com",
        {},
        None,
        200,
        {"contactId": "con_9", "email": "a+b/c@example.com"},
        {"id": "con_9", "contactId": "con_9", "email": "a+b/c@example.com"},
    ),
    (
        "list_contacts",
        lambda k: drain(k.list_contacts(search="ann", suppressed=False, page_size=50)),
        "GET",
        "/api/contacts",
        {"search": "ann", "suppressed": "false", "limit": "50"},
        None,
        200,
        {"data": [{"contactId": "con_1"}], "nextCursor": None},
        [{"id": "con_1", "contactId": "con_1"}],
    ),
    (
        "update_contact",
        lambda k: k.update_contact(
            "cnt_1",
            email="new@example.com",
            properties={"plan": None, "seats": 3},
            user_id="u2",
            unsubscribed=True,
        ),
        "PATCH",
        "/api/contacts/cnt_1",
        {},
        {
            "email": "new@example.com",
            "properties": {"plan": None, "seats": 3},
            "userId": "u2",
            "unsubscribed": True,
        },
        200,
        {"id": "cnt_1"},
        {"id": "cnt_1"},
    ),
    (
        "upsert_contact created",
        lambda k: k.upsert_contact("ann@example.com", properties={"a": True}),
        "POST",
        "/api/contacts/upsert",
        {},
        {"email": "ann@example.com", "properties": {"a": True}},
        201,
        {"id": "cnt_1"},
        ({"id": "cnt_1"}, True),
    ),
    (
        "upsert_contact updated",
        lambda k: k.upsert_contact("ann@example.com", user_id="u1"),
        "POST",
        "/api/contacts/upsert",
        {},
        {"email": "ann@example.com", "userId": "u1"},
        200,
        {"contactId": "cnt_1"},
        ({"id": "cnt_1", "contactId": "cnt_1"}, False),
    ),
    (
        "delete_contact",
        lambda k: k.delete_contact("cnt_1"),
        "DELETE",
        "/api/contacts/cnt_1",
        {},
        None,
        204,
        None,
        None,
    ),
    (
        "contact_sends",
        lambda k: drain(k.contact_sends("cnt_1")),
        "GET",
        "/api/contacts/cnt_1/sends",
        {"limit": "100"},
        None,
        200,
        {"data": [{"id": "snd_1"}], "nextCursor": None},
        [{"id": "snd_1"}],
    ),
    (
        "contact_scheduled",
        lambda k: drain(k.contact_scheduled("cnt_1", page_size=7)),
        "GET",
        "/api/contacts/cnt_1/scheduled",
        {"limit": "7"},
        None,
        200,
        {"items": [{"id": "sch_1"}]},
        [{"id": "sch_1"}],
    ),
    (
        "contact_timeline",
        lambda k: drain(k.contact_timeline("cnt_1")),
        "GET",
        "/api/contacts/cnt_1/timeline",
        {"limit": "100"},
        None,
        200,
        {"data": [{"id": "evt_1", "type": "event"}], "nextCursor": None},
        [{"id": "evt_1", "type": "event"}],
    ),
    (
        "contact_sequences",
        lambda k: k.contact_sequences("cnt_1"),
        "GET",
        "/api/contacts/cnt_1/sequences",
        {},
        None,
        200,
        {"data": [{"sequenceId": "seq_1", "status": "active"}]},
        [{"sequenceId": "seq_1", "status": "active"}],
    ),
    (
        "contact_segments",
        lambda k: k.contact_segments("cnt_1"),
        "GET",
        "/api/contacts/cnt_1/segments",
        {},
        None,
        200,
        {"items": [{"segmentId": "seg_1"}]},
        [{"segmentId": "seg_1"}],
    ),
    (
        "track_event by email, mapping properties, datetime",
        lambda k: k.track_event(
            "order.placed",
            email="ann@example.com",
            properties={"total": 9.5, "vip": True, "sku": "ä"},
            timestamp=datetime(2025, 9, 15, 12, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2))),
        ),
        "POST",
        "/api/events",
        {},
        {
            "name": "order.placed",
            "email": "ann@example.com",
            "timestamp": "2025-09-15T10:30:00.123Z",
            "properties": {"total": 9.5, "vip": True, "sku": "ä"},
        },
        201,
        {"id": "evt_1"},
        {"id": "evt_1"},
    ),
    (
        "track_event by id, pre-serialised properties, string timestamp",
        lambda k: k.track_event(
            "signup",
            contact_id="con_1",
            properties='{"plan":"pro","n":1}',
            timestamp="2025-01-01T00:00:00.000Z",
        ),
        "POST",
        "/api/events",
        {},
        {
            "name": "signup",
            "contactId": "con_1",
            "timestamp": "2025-01-01T00:00:00.000Z",
            "properties": {"plan": "pro", "n": 1},
        },
        201,
        {"id": "evt_2"},
        {"id": "evt_2"},
    ),
    (
        "track_event minimal",
        lambda k: k.track_event("signup", contact_id="cnt_1"),
        "POST",
        "/api/events",
        {},
        {"name": "signup", "contactId": "cnt_1"},
        201,
        {"id": "evt_3"},
        {"id": "evt_3"},
    ),
    (
        "list_events for a contact",
        lambda k: drain(k.list_events(contact_id="cnt_1", name="signup", page_size=20)),
        "GET",
        "/api/events",
        {"contactId": "cnt_1", "name": "signup", "limit": "20"},
        None,
        200,
        {"data": [{"id": "evt_1"}], "nextCursor": None},
        [{"id": "evt_1"}],
    ),
    (
        "list_events tenant-wide by email",
        lambda k: drain(k.list_events(email="ann@example.com")),
        "GET",
        "/api/events",
        {"email": "ann@example.com", "limit": "100"},
        None,
        200,
        {"data": []},
        [],
    ),
    (
        "list_sends",
        lambda k: drain(k.list_sends(status="bounced", contact_id="cnt_1", template_id="tpl_1")),
        "GET",
        "/api/sends",
        {"status": "bounced", "contactId": "cnt_1", "templateId": "tpl_1", "limit": "100"},
        None,
        200,
        {"data": [{"id": "snd_1"}], "nextCursor": None},
        [{"id": "snd_1"}],
    ),
    (
        "list_scheduled",
        lambda k: drain(k.list_scheduled()),
        "GET",
        "/api/scheduled",
        {"limit": "100"},
        None,
        200,
        {"data": [{"id": "sch_1"}], "nextCursor": None},
        [{"id": "sch_1"}],
    ),
    (
        "put_sequence",
        lambda k: k.put_sequence("seq/1", name="Welcome", status="active", triggers=["signup"]),
        "PUT",
        "/api/sequences/seq%2F1",
        {},
        {"name": "Welcome", "status": "active", "triggers": [{"event": "signup"}]},
        200,
        {"id": "seq/1", "name": "Welcome"},
        {"id": "seq/1", "name": "Welcome"},
    ),
    (
        "list_sequences",
        lambda k: drain(k.list_sequences()),
        "GET",
        "/api/sequences",
        {"limit": "100"},
        None,
        200,
        {"data": [{"id": "seq_1"}], "nextCursor": None},
        [{"id": "seq_1"}],
    ),
    (
        "get_page resumes from a cursor",
        lambda k: k.get_page("events.list", cursor="abc=", limit=10, email="ann@example.com"),
        "GET",
        "/api/events",
        {"email": "ann@example.com", "limit": "10", "cursor": "abc="},
        None,
        200,
        {"items": [{"id": "evt_5"}], "cursor": "def", "hasMore": True},
        Page([{"id": "evt_5"}], "def"),
    ),
    (
        "get_page with path parameters",
        lambda k: k.get_page("contacts.timeline", limit=1, path_params={"id": "cnt_1"}),
        "GET",
        "/api/contacts/cnt_1/timeline",
        {"limit": "1"},
        None,
        200,
        {"data": [], "nextCursor": None},
        Page([], None),
    ),
]


@pytest.mark.parametrize(
    ("call", "method", "raw_path", "query", "body", "status", "answer", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in SHAPES],
)
async def test_request_shape(
    router: respx.MockRouter,
    kraiter: KraiterClient,
    call: Call,
    method: str,
    raw_path: str,
    query: dict[str, str],
    body: Any,
    status: int,
    answer: Any,
    expected: Any,
) -> None:
    route = router.route(method=method).respond(status, json=answer if answer is not None else None)
    result = await call(kraiter)
    request = only_request(route)
    assert request.method == method
    assert request.url.raw_path.split(b"?")[0].decode() == raw_path
    assert dict(request.url.params) == query
    assert len(request.url.params.multi_items()) == len(query)
    assert_common_headers(request, has_body=body is not None)
    if body is not None:
        assert json.loads(request.content) == body
    assert result == expected


def test_every_route_is_exercised_by_a_shape_test() -> None:
    """A new route in the table must get a request-shape test."""
    shapes = [(row[2], row[3]) for row in SHAPES]
    for name, route in ROUTES.items():
        pattern = re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(route.template)) + "$")
        assert any(m == route.method and pattern.match(p) for m, p in shapes), name


async def test_track_event_body_is_compact_and_preserves_preserialised_text(
    kraiter: KraiterClient,
) -> None:
    raw = '{"z": 1, "a": "x"}'
    body = kraiter.event_body("signup", email="a@example.com", properties=raw)
    # Spliced verbatim (not re-parsed and re-ordered), everything else compact.
    assert body == b'{"name":"signup","email":"a@example.com","properties":{"z": 1, "a": "x"}}'
    assert json.loads(body)["properties"] == {"z": 1, "a": "x"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({}, "exactly one of contact_id or email", id="no contact reference"),
        pytest.param(
            {"contact_id": "cnt_1", "email": "a@example.com"},
            "exactly one of contact_id or email",
            id="both references",
        ),
        pytest.param(
            {"email": "a@example.com", "properties": "[1, 2]"}, "JSON object", id="string array"
        ),
        pytest.param(
            {"email": "a@example.com", "properties": {"x": float("nan")}}, "JSON", id="NaN"
        ),
        pytest.param(
            {"email": "a@example.com", "timestamp": datetime(2025, 1, 1)},
            "timezone-aware",
            id="naive datetime",
        ),
    ],
)
async def test_track_event_refuses_bad_arguments_before_sending(
    kraiter: KraiterClient, kwargs: dict[str, Any], match: str
) -> None:
    # No respx router: a request going out would fail with a connection error instead.
    with pytest.raises(ValueError, match=match):
        await kraiter.track_event("signup", **kwargs)


async def test_event_name_field_follows_the_dialect(router: respx.MockRouter) -> None:
    route = router.post("/api/events").respond(201, json={"id": "evt_1"})
    list_route = router.get("/api/events").respond(200, json={"data": []})
    dialect = Dialect(event_name_field="event", event_name_filter="event")
    async with KraiterClient(BASE, KEY, transport=mocked(router), dialect=dialect) as client:
        await client.track_event("signup", email="a@example.com", properties={"a": 1})
        await drain(client.list_events(name="signup"))
    assert json.loads(only_request(route).content) == {
        "event": "signup",
        "email": "a@example.com",
        "properties": {"a": 1},
    }
    assert only_request(list_route).url.params["event"] == "signup"


async def test_a_route_can_be_moved_in_the_dialect(router: respx.MockRouter) -> None:
    moved = {**ROUTES, "contacts.by_email": Route("GET", "/api/contacts/lookup/{email}")}
    route = router.get("/api/contacts/lookup/a%40example.com").respond(200, json={"id": "cnt_1"})
    async with KraiterClient(
        BASE, KEY, transport=mocked(router), dialect=Dialect(routes=moved)
    ) as client:
        assert await client.get_contact_by_email("a@example.com") == {"id": "cnt_1"}
    assert route.call_count == 1


async def test_get_contact_by_email_is_none_on_404(
    router: respx.MockRouter, kraiter: KraiterClient
) -> None:
    router.get("/api/contacts/by-email/nobody%40example.com").respond(
        404, json={"error": {"code": "NOT_FOUND", "message": "no such contact"}}
    )
    assert await kraiter.get_contact_by_email("nobody@example.com") is None


async def test_get_contact_by_email_raises_other_errors(
    router: respx.MockRouter, kraiter: KraiterClient
) -> None:
    router.get("/api/contacts/by-email/a%40example.com").respond(
        401, json={"error": {"code": "UNAUTHORISED", "message": "bad key"}}
    )
    with pytest.raises(ApiError) as info:
        await kraiter.get_contact_by_email("a@example.com")
    assert info.value.http_status == 401


# ---- tolerant decoding -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "items", "cursor"),
    [
        ({"data": [{"id": "a"}], "nextCursor": "c1"}, [{"id": "a"}], "c1"),
        ({"data": [{"id": "a"}], "nextCursor": None}, [{"id": "a"}], None),
        ({"data": [{"id": "a"}]}, [{"id": "a"}], None),
        ({"items": [{"id": "a"}], "cursor": "c2"}, [{"id": "a"}], "c2"),
        ({"items": [{"id": "a"}], "nextCursor": "c3"}, [{"id": "a"}], "c3"),
        ({"items": [], "cursor": "c4", "hasMore": True}, [], "c4"),
        ({"items": [{"id": "a"}], "cursor": "c5", "hasMore": False}, [{"id": "a"}], None),
        ({"data": [], "nextCursor": ""}, [], None),
        ({"data": [], "cursor": None, "hasMore": True}, [], None),
    ],
)
def test_decode_list_variants(body: dict[str, Any], items: list[Any], cursor: str | None) -> None:
    assert decode_list(body, Dialect()) == (items, cursor)


@pytest.mark.parametrize("body", [[], "x", None, {"results": []}, {"data": {"id": "a"}}])
def test_decode_list_refuses_non_envelopes(body: Any) -> None:
    assert decode_list(body, Dialect()) is None


@pytest.mark.parametrize(
    ("obj", "expected_id"),
    [
        ({"id": "cnt_1", "contactId": "other"}, "cnt_1"),
        ({"contactId": "con_2"}, "con_2"),
        ({"id": None, "contactId": "cnt_3"}, "cnt_3"),
    ],
)
def test_contact_id_falls_back_to_contact_id(obj: dict[str, Any], expected_id: str) -> None:
    assert Dialect().normalise_contact(dict(obj))["id"] == expected_id


def test_dialects_compare_and_hash_by_value() -> None:
    assert Dialect() == Dialect()
    assert hash(Dialect()) == hash(Dialect())
    assert Dialect(event_name_field="event") != Dialect()


def test_both_contact_id_prefixes_are_recognised() -> None:
    dialect = Dialect()
    assert dialect.is_contact_id("cnt_01H")
    assert dialect.is_contact_id("con_01H")
    assert not dialect.is_contact_id("evt_01H")


def test_route_paths_encode_each_segment() -> None:
    assert encode_segment("a b/c?d#e%f@g+h") == "a%20b%2Fc%3Fd%23e%25f%40g%2Bh"
    assert ROUTES["contacts.get"].path({"id": "cnt_1"}) == "/api/contacts/cnt_1"
    assert all(route.template.startswith("/api/") for route in ROUTES.values())


async def test_non_envelope_list_answer_is_an_api_error(
    router: respx.MockRouter, kraiter: KraiterClient
) -> None:
    router.get("/api/sends").respond(200, json=[{"id": "snd_1"}])
    with pytest.raises(ApiError) as info:
        await drain(kraiter.list_sends())
    assert info.value.code == "UNEXPECTED_RESPONSE"
    assert not info.value.retriable


async def test_non_json_success_answer_to_a_write_is_ambiguous(
    router: respx.MockRouter, kraiter: KraiterClient
) -> None:
    router.post("/api/events").respond(201, text="<html>ok</html>")
    with pytest.raises(ApiError) as info:
        await kraiter.track_event("signup", contact_id="cnt_1")
    assert info.value.code == "UNEXPECTED_RESPONSE"
    assert info.value.ambiguous


# ---- paging ------------------------------------------------------------------------


def page_responses(*bodies: Mapping[str, Any]) -> list[httpx.Response]:
    return [httpx.Response(200, json=dict(body)) for body in bodies]


@pytest.mark.parametrize(
    ("bodies", "expected_cursors"),
    [
        pytest.param(
            [
                {"data": [{"id": "1"}, {"id": "2"}], "nextCursor": "c1"},
                {"data": [{"id": "3"}], "nextCursor": "c2"},
                {"data": [{"id": "4"}], "nextCursor": None},
            ],
            [None, "c1", "c2"],
            id="data/nextCursor ends on null",
        ),
        pytest.param(
            [
                {"items": [{"id": "1"}, {"id": "2"}], "cursor": "c1"},
                {"items": [{"id": "3"}]},
                # a third page must never be asked for
            ],
            [None, "c1"],
            id="items/cursor ends on absent cursor",
        ),
        pytest.param(
            [
                {"items": [{"id": "1"}], "cursor": "c1", "hasMore": True},
                {"items": [{"id": "2"}, {"id": "3"}], "cursor": "c2", "hasMore": True},
                {"items": [{"id": "4"}], "cursor": "c3", "hasMore": False},
            ],
            [None, "c1", "c2"],
            id="hasMore false ends despite a cursor",
        ),
        pytest.param(
            [
                {"data": [], "nextCursor": "c1"},
                {"data": [{"id": "1"}, {"id": "2"}, {"id": "3"}, {"id": "4"}], "nextCursor": ""},
            ],
            [None, "c1"],
            id="empty page in the middle, empty cursor ends",
        ),
    ],
)
async def test_paging_follows_cursors_to_the_end(
    router: respx.MockRouter,
    kraiter: KraiterClient,
    bodies: list[dict[str, Any]],
    expected_cursors: list[str | None],
) -> None:
    route = router.get("/api/events").mock(side_effect=page_responses(*bodies))
    items = await drain(kraiter.list_events(page_size=2))
    all_ids = [item["id"] for body in bodies for item in body.get("data", body.get("items", []))]
    assert [item["id"] for item in items] == all_ids
    assert route.call_count == len(expected_cursors)
    sent = [call.request.url.params.get("cursor") for call in route.calls]
    assert sent == expected_cursors
    assert {call.request.url.params["limit"] for call in route.calls} == {"2"}


async def test_paging_stops_on_a_repeated_cursor(
    router: respx.MockRouter, kraiter: KraiterClient
) -> None:
    router.get("/api/sends").mock(
        side_effect=page_responses(
            {"data": [{"id": "1"}], "nextCursor": "same"},
            {"data": [{"id": "2"}], "nextCursor": "same"},
        )
    )
    with pytest.raises(ApiError) as info:
        await drain(kraiter.list_sends())
    assert info.value.code == "CURSOR_LOOP"


async def test_paging_normalises_contact_ids(
    router: respx.MockRouter, kraiter: KraiterClient
) -> None:
    router.get("/api/contacts").mock(
        side_effect=page_responses(
            {"items": [{"contactId": "con_1"}], "cursor": "c"},
            {"items": [{"id": "cnt_2"}], "cursor": None},
        )
    )
    assert [c["id"] for c in await drain(kraiter.list_contacts())] == ["con_1", "cnt_2"]


@pytest.mark.parametrize("limit", [0, 101, -1])
async def test_page_size_is_checked_locally(kraiter: KraiterClient, limit: int) -> None:
    with pytest.raises(ValueError, match="between 1 and 100"):
        await kraiter.get_page("events.list", limit=limit)


# ---- observer, settings, repr ------------------------------------------------------


class RecordingObserver:
    def __init__(self) -> None:
        self.log: list[tuple[str, int | None]] = []

    async def before_request(self) -> None:
        self.log.append(("before", None))

    def after_response(self, status: int, headers: Mapping[str, str]) -> None:
        self.log.append(("after", status))
        assert headers.get("x-ratelimit-remaining") == "7"

    def after_failure(self) -> None:
        self.log.append(("failed", None))


async def test_observer_sees_every_request_and_answer(router: respx.MockRouter) -> None:
    headers = {"X-RateLimit-Remaining": "7"}
    router.post("/api/events").mock(
        side_effect=[
            httpx.Response(201, json={"id": "evt_1"}, headers=headers),
            httpx.Response(429, json={"error": {"code": "RATE_LIMITED"}}, headers=headers),
        ]
    )
    observer = RecordingObserver()
    async with KraiterClient(BASE, KEY, transport=mocked(router), observer=observer) as client:
        await client.track_event("a", contact_id="cnt_1")
        with pytest.raises(ApiError):
            await client.track_event("a", contact_id="cnt_1")
    assert observer.log == [("before", None), ("after", 201), ("before", None), ("after", 429)]


async def test_observer_hears_of_requests_that_got_no_answer(router: respx.MockRouter) -> None:
    router.post("/api/events").mock(side_effect=httpx.RemoteProtocolError("cut"))
    observer = RecordingObserver()
    async with KraiterClient(BASE, KEY, transport=mocked(router), observer=observer) as client:
        with pytest.raises(ResponseLostError):
            await client.track_event("a", contact_id="cnt_1")
    assert observer.log == [("before", None), ("failed", None)]


async def test_from_settings_uses_base_url_and_key(router: respx.MockRouter) -> None:
    route = router.get("/api/contacts/cnt_1").respond(200, json={"id": "cnt_1"})
    settings = Settings(base_url=BASE, api_key=KEY)
    async with KraiterClient.from_settings(
        settings, timeout=5.0, transport=mocked(router)
    ) as client:
        await client.get_contact("cnt_1")
    assert only_request(route).headers["authorization"] == f"Bearer {KEY}"


async def test_repr_masks_the_key(kraiter: KraiterClient) -> None:
    assert KEY not in repr(kraiter)
    assert "kr_…" in repr(kraiter)


def test_iso_timestamps_are_utc_milliseconds() -> None:
    client = KraiterClient(BASE, KEY)
    body = client.event_body(
        "a", contact_id="cnt_1", timestamp=datetime(2025, 9, 15, 10, 30, tzinfo=UTC)
    )
    assert json.loads(body)["timestamp"] == "2025-09-15T10:30:00.000Z"


async def test_works_over_an_in_process_asgi_transport() -> None:
    """The local Kraiter is mounted this way: httpx.ASGITransport over a Starlette app."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route as StarletteRoute

    seen: list[tuple[str, str, str, Any]] = []

    async def by_email(request: Request) -> JSONResponse:
        seen.append(
            (request.method, request.path_params["email"], request.headers["authorization"], None)
        )
        return JSONResponse({"contactId": "con_1", "email": request.path_params["email"]})

    async def events(request: Request) -> JSONResponse:
        seen.append(("POST", "", request.headers["content-type"], await request.json()))
        return JSONResponse({"id": "evt_1"}, status_code=201)

    app = Starlette(
        routes=[
            StarletteRoute("/api/contacts/by-email/{email}", by_email),
            StarletteRoute("/api/events", events, methods=["POST"]),
        ]
    )
    transport = httpx.ASGITransport(app=app)
    async with KraiterClient("http://local.kraiter", KEY, transport=transport) as client:
        contact = await client.get_contact_by_email("ann@example.com")
        event = await client.track_event("signup", contact_id="con_1", properties='{"a":1}')
    assert contact == {"contactId": "con_1", "id": "con_1", "email": "ann@example.com"}
    assert event == {"id": "evt_1"}
    assert seen == [
        ("GET", "ann@example.com", f"Bearer {KEY}", None),
        (
            "POST",
            "",
            "application/json",
            {"name": "signup", "contactId": "con_1", "properties": {"a": 1}},
        ),
    ]
