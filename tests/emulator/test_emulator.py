"""Conformance of the local Kraiter, in-process: one test per rule of kraiter-api.md."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kraiter_sync.emulator import EmulatorApp, EmulatorConfig, create_app
from tests.helpers.emulator import KEY_A, KEY_B, Api, error

ApiFactory = Callable[..., Api]


@pytest.fixture
def make_api() -> Iterator[ApiFactory]:
    """Build apps and per-key clients on one event loop; everything is closed afterwards."""
    loop = asyncio.new_event_loop()
    apps: list[EmulatorApp] = []
    clients: list[Api] = []

    def factory(
        config: EmulatorConfig | None = None, *, key: str | None = KEY_A, app: Any = None, **kw: Any
    ) -> Api:
        if app is None:
            app = create_app(config or EmulatorConfig(), **kw)
            apps.append(app)
        api = Api(app, loop, key)
        clients.append(api)
        return api

    yield factory
    for api in clients:
        loop.run_until_complete(api.client.aclose())
    for app in apps:
        app.close()
    loop.close()


@pytest.fixture
def api(make_api: ApiFactory) -> Api:
    return make_api()


# -- auth and tenants ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer sk_live_x"},
        {"Authorization": "Basic kr_x"},
        {"Authorization": "Bearer kr_"},
    ],
)
def test_missing_or_unknown_key_is_401_unauthorised(api: Api, headers: dict[str, str]) -> None:
    r = api.loop.run_until_complete(
        httpx.AsyncClient(transport=api.client._transport, base_url="http://x").get(
            "/api/contacts", headers=headers
        )
    )
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "UNAUTHORISED"


def test_tenants_never_see_each_other(make_api: ApiFactory) -> None:
    a = make_api(key=KEY_A)
    b = make_api(key=KEY_B, app=a.app)
    contact = a.contact("shared@example.com", plan="pro")
    assert a.event(name="signed_up", contactId=contact["id"]).status_code == 201
    a.put("/api/sequences/s1", json={"name": "S", "status": "active", "triggers": []})

    assert b.all("/api/contacts") == []
    assert b.all("/api/events") == []
    assert b.all("/api/sequences") == []
    assert b.get(f"/api/contacts/{contact['id']}").status_code == 404
    assert b.get("/api/contacts/by-email/shared@example.com").status_code == 404
    assert b.event(name="x", contactId=contact["id"]).status_code == 404
    assert (
        b.patch(f"/api/contacts/{contact['id']}", json={"properties": {"a": 1}}).status_code == 404
    )
    # The same email is free in the other tenant.
    assert b.post("/api/contacts", json={"email": "shared@example.com"}).status_code == 201
    assert [c["properties"] for c in a.all("/api/contacts")] == [{"plan": "pro"}]


def test_only_a_hash_of_the_key_is_stored(make_api: ApiFactory, tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    api = make_api(EmulatorConfig(db_path=db))
    api.contact("a@example.com")
    api.app.close()
    for path in tmp_path.iterdir():
        assert KEY_A.encode() not in path.read_bytes()


# -- contacts -----------------------------------------------------------------------------


def test_create_contact_returns_201_with_the_contract_fields(api: Api) -> None:
    r = api.post(
        "/api/contacts", json={"email": "Ann@Example.com", "properties": {"a": 1}, "userId": "u1"}
    )
    assert r.status_code == 201
    body = r.json()
    assert body["id"].startswith("cnt_")
    assert len(body["id"]) == 30
    assert body["email"] == "Ann@Example.com"
    assert body["properties"] == {"a": 1}
    assert body["userId"] == "u1"
    assert body["suppressed"] is False
    assert body["unsubscribed"] is False
    assert body["createdAt"].endswith("Z")
    assert len(body["createdAt"]) == 24


def test_email_is_unique_case_insensitively_and_keeps_first_case(api: Api) -> None:
    first = api.contact("Bob@Example.com")
    r = api.post("/api/contacts", json={"email": "bob@EXAMPLE.com"})
    assert error(r)[:2] == (409, "CONFLICT")
    found = api.get("/api/contacts/by-email/BOB%40example.COM")
    assert found.status_code == 200
    assert found.json()["id"] == first["id"]
    assert found.json()["email"] == "Bob@Example.com"


def test_get_by_email_is_url_decoded_and_404_when_absent(api: Api) -> None:
    c = api.contact("a+tag/x@example.com")
    assert api.get("/api/contacts/by-email/a%2Btag%2Fx%40example.com").json()["id"] == c["id"]
    r = api.get("/api/contacts/by-email/nobody%40example.com")
    assert error(r)[:2] == (404, "NOT_FOUND")


@pytest.mark.parametrize(
    "email",
    [
        "not-an-email",
        "a@b",
        "@example.com",
        "a b@example.com",
        "x" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
        42,
        "",
    ],
)
def test_invalid_email_is_400_naming_the_field(api: Api, email: Any) -> None:
    r = api.post("/api/contacts", json={"email": email})
    assert error(r) == (400, "VALIDATION_ERROR", "email")


def test_international_email_is_accepted(api: Api) -> None:
    assert api.post("/api/contacts", json={"email": "josé@exämple.de"}).status_code == 201


def test_get_unknown_contact_is_404_and_con_prefix_is_accepted(api: Api) -> None:
    c = api.contact("p@example.com")
    assert error(api.get("/api/contacts/cnt_nope"))[:2] == (404, "NOT_FOUND")
    assert api.get("/api/contacts/con_" + c["id"][4:]).json()["id"] == c["id"]


@pytest.mark.parametrize(
    ("properties", "field"),
    [
        ({"nested": {"a": 1}}, "properties.nested"),
        ({"list": [1, 2]}, "properties.list"),
        ({f"k{i}": i for i in range(101)}, "properties"),
        ({"k" * 129: 1}, "properties." + "k" * 129),
        ({"s": "x" * 10_001}, "properties.s"),
        ("flat please", "properties"),
    ],
)
def test_property_limits_and_flatness(api: Api, properties: Any, field: str) -> None:
    r = api.post("/api/contacts", json={"email": "q@example.com", "properties": properties})
    assert error(r) == (400, "VALIDATION_ERROR", field)
    r = api.event(name="e", email="q@example.com", properties=properties)
    assert error(r) == (400, "VALIDATION_ERROR", field)


def test_property_limits_are_inclusive(api: Api) -> None:
    props: dict[str, Any] = {f"k{i}": i for i in range(98)}
    props["k" * 128] = "x" * 10_000
    props["flag"] = True
    r = api.post("/api/contacts", json={"email": "edge@example.com", "properties": props})
    assert r.status_code == 201
    assert r.json()["properties"] == props


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b'{"email": "a@example.com"', {"Content-Type": "application/json"}),
        (
            b'{"email": "a@example.com", "properties": {"x": NaN}}',
            {"Content-Type": "application/json"},
        ),
        (b'[{"email": "a@example.com"}]', {"Content-Type": "application/json"}),
        (b'{"email": "a@example.com"}', {"Content-Type": "text/plain"}),
        (
            json.dumps(
                {
                    "email": "a@example.com",
                    "properties": {f"k{i}": "x" * 9000 for i in range(30)},
                }
            ).encode(),
            {"Content-Type": "application/json"},
        ),
    ],
    ids=["broken-json", "nan", "not-an-object", "wrong-content-type", "over-256KiB"],
)
def test_bad_bodies_are_400(api: Api, content: bytes, headers: dict[str, str]) -> None:
    r = api.post("/api/contacts", content=content, headers=headers)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "VALIDATION_ERROR"
    assert api.all("/api/contacts") == []


def test_unknown_fields_are_refused(api: Api) -> None:
    r = api.post("/api/contacts", json={"email": "a@example.com", "suppressed": True})
    assert error(r) == (400, "VALIDATION_ERROR", "suppressed")


def test_patch_merges_properties_and_null_removes_a_key(api: Api) -> None:
    c = api.contact("m@example.com", a=1, b="two", c=True)
    r = api.patch(f"/api/contacts/{c['id']}", json={"properties": {"b": None, "d": 4.5, "a": 2}})
    assert r.status_code == 200
    assert r.json()["properties"] == {"a": 2, "c": True, "d": 4.5}
    assert r.json()["email"] == "m@example.com"
    r = api.patch(f"/api/contacts/{c['id']}", json={"unsubscribed": True, "userId": "u9"})
    body = r.json()
    assert (body["unsubscribed"], body["userId"], body["properties"]) == (
        True,
        "u9",
        {"a": 2, "c": True, "d": 4.5},
    )
    assert api.get(f"/api/contacts/{c['id']}").json() == body


def test_patch_errors(api: Api) -> None:
    a = api.contact("a@example.com")
    api.contact("b@example.com")
    assert error(api.patch(f"/api/contacts/{a['id']}", json={"email": "B@example.com"}))[:2] == (
        409,
        "CONFLICT",
    )
    assert error(api.patch("/api/contacts/cnt_missing", json={}))[:2] == (404, "NOT_FOUND")
    assert error(api.patch(f"/api/contacts/{a['id']}", json={"unsubscribed": "yes"}))[0] == 400
    # Changing only the case of one's own email is not a conflict.
    r = api.patch(f"/api/contacts/{a['id']}", json={"email": "A@example.com"})
    assert r.json()["email"] == "A@example.com"


def test_upsert_creates_201_then_merges_200(api: Api) -> None:
    r1 = api.post(
        "/api/contacts/upsert", json={"email": "u@example.com", "properties": {"a": 1, "b": 2}}
    )
    assert r1.status_code == 201
    r2 = api.post(
        "/api/contacts/upsert", json={"email": "U@example.com", "properties": {"b": None, "c": 3}}
    )
    assert r2.status_code == 200
    assert r2.json()["id"] == r1.json()["id"]
    assert r2.json()["properties"] == {"a": 1, "c": 3}
    assert error(api.post("/api/contacts/upsert", json={"properties": {}}))[:2] == (
        400,
        "VALIDATION_ERROR",
    )


def test_delete_is_204_then_404_and_removes_its_events(api: Api) -> None:
    c = api.contact("d@example.com")
    api.event(name="x", contactId=c["id"])
    r = api.delete(f"/api/contacts/{c['id']}")
    assert r.status_code == 204
    assert r.content == b""
    assert api.get(f"/api/contacts/{c['id']}").status_code == 404
    assert api.delete(f"/api/contacts/{c['id']}").status_code == 404
    assert api.all("/api/events") == []


def test_contact_subresources_404_for_unknown_contact(api: Api) -> None:
    for sub in ("sends", "scheduled", "sequences", "segments", "timeline"):
        assert api.get(f"/api/contacts/cnt_missing/{sub}").status_code == 404


# -- paging, search ---------------------------------------------------------------------


def test_paging_follows_cursors_in_id_order(api: Api) -> None:
    ids = [api.contact(f"p{i}@example.com")["id"] for i in range(45)]
    first = api.get("/api/contacts").json()
    assert len(first["data"]) == 20  # default limit
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 20, **({"cursor": cursor} if cursor else {})}
        body = api.get("/api/contacts", params=params).json()
        seen += [c["id"] for c in body["data"]]
        pages += 1
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert seen == ids == sorted(ids)
    assert pages == 3
    decoded = json.loads(__import__("base64").urlsafe_b64decode(first["nextCursor"] + "=="))
    assert decoded == {"id": ids[19]}


@pytest.mark.parametrize("limit", ["0", "101", "abc", "-1"])
def test_limit_outside_1_to_100_is_400(api: Api, limit: str) -> None:
    assert error(api.get("/api/events", params={"limit": limit})) == (
        400,
        "VALIDATION_ERROR",
        "limit",
    )


def test_limit_bounds_are_accepted_and_bad_cursor_is_400(api: Api) -> None:
    assert api.get("/api/contacts", params={"limit": 1}).status_code == 200
    assert api.get("/api/contacts", params={"limit": 100}).status_code == 200
    assert error(api.get("/api/contacts", params={"cursor": "!!garbage"}))[2] == "cursor"


def test_search_matches_part_of_the_email_and_suppressed_filters(api: Api) -> None:
    a = api.contact("alice@acme.io")
    api.contact("bob@other.org")
    c = api.contact("carol@ACME.io")
    assert [x["id"] for x in api.all("/api/contacts", search="acme")] == [a["id"], c["id"]]
    assert api.all("/api/contacts", search="a%") == []  # LIKE wildcards are literal
    r = api.post("/_emulator/suppress", json={"contactId": c["id"], "suppressed": True})
    assert r.json()["suppressed"] is True
    assert [x["id"] for x in api.all("/api/contacts", suppressed="true")] == [c["id"]]
    assert len(api.all("/api/contacts", suppressed="false")) == 2
    assert error(api.get("/api/contacts", params={"suppressed": "maybe"}))[2] == "suppressed"


def test_items_list_shape(make_api: ApiFactory) -> None:
    api = make_api(EmulatorConfig(list_shape="items"))
    api.contact("i@example.com")
    body = api.get("/api/contacts").json()
    assert set(body) == {"items", "nextCursor"}
    assert len(body["items"]) == 1


# -- events -----------------------------------------------------------------------------


def test_track_event_returns_201_event(api: Api) -> None:
    c = api.contact("e@example.com")
    r = api.event(
        name="order_placed",
        contactId=c["id"],
        properties={"total": 9.5, "gift": False},
        timestamp="2024-02-29T23:59:59+01:00",
    )
    assert r.status_code == 201
    body = r.json()
    assert body["id"].startswith("evt_")
    assert (body["name"], body["contactId"], body["properties"]) == (
        "order_placed",
        c["id"],
        {"total": 9.5, "gift": False},
    )
    assert body["timestamp"] == "2024-02-29T22:59:59.000Z"
    assert body["createdAt"].endswith("Z")


def test_timestamp_defaults_to_now(api: Api) -> None:
    body = api.event(name="x", email="n@example.com").json()
    assert body["timestamp"] == body["createdAt"]


def test_event_alias_and_name_rules(api: Api) -> None:
    assert api.event(event="via_alias", email="a@example.com").json()["name"] == "via_alias"
    assert api.event(event="same", name="same", email="a@example.com").status_code == 201
    assert error(api.event(event="a", name="b", email="a@example.com")) == (
        400,
        "VALIDATION_ERROR",
        "event",
    )
    assert error(api.event(email="a@example.com")) == (400, "VALIDATION_ERROR", "name")
    assert error(api.event(name="n" * 256, email="a@example.com"))[2] == "name"
    assert api.event(name="n" * 255, email="a@example.com").status_code == 201
    assert error(api.event(name="", email="a@example.com"))[2] == "name"


@pytest.mark.parametrize("name", ["email.sent", "email.opened", "email.custom"])
def test_system_event_names_cannot_be_sent(api: Api, name: str) -> None:
    assert error(api.event(name=name, email="a@example.com")) == (400, "VALIDATION_ERROR", "name")


def test_event_names_are_case_sensitive(api: Api) -> None:
    api.event(name="Signup", email="a@example.com")
    api.event(name="signup", email="a@example.com")
    assert [e["name"] for e in api.all("/api/events", name="signup")] == ["signup"]
    assert api.event(name="Email.sent", email="a@example.com").status_code == 201


def test_event_needs_a_contact_reference_and_valid_values(api: Api) -> None:
    assert error(api.event(name="x")) == (400, "VALIDATION_ERROR", "contactId")
    assert (
        error(api.event(name="x", email="a@example.com", timestamp="yesterday"))[2] == "timestamp"
    )
    assert error(api.event(name="x", email="a@example.com", timestamp=1700000000))[2] == "timestamp"
    assert (
        error(api.event(name="x", email="a@example.com", properties={"n": None}))[2]
        == "properties.n"
    )
    assert error(api.event(name="x", contactId="cnt_unknown"))[:2] == (404, "NOT_FOUND")
    assert api.all("/api/events") == []


def test_identical_events_are_never_deduplicated(api: Api) -> None:
    body = {"name": "dup", "email": "a@example.com", "timestamp": "2024-01-01T00:00:00.000Z"}
    ids = {api.event(**body).json()["id"] for _ in range(3)}
    assert len(ids) == 3
    assert len(api.all("/api/events", name="dup")) == 3


def test_contact_id_wins_over_email_by_default(api: Api) -> None:
    a = api.contact("a@example.com")
    api.contact("b@example.com")
    r = api.event(name="x", contactId=a["id"], email="b@example.com")
    assert r.json()["contactId"] == a["id"]


def test_strict_contact_ref_rejects_both(make_api: ApiFactory) -> None:
    api = make_api(EmulatorConfig(strict_contact_ref=True))
    a = api.contact("a@example.com")
    assert error(api.event(name="x", contactId=a["id"], email="a@example.com"))[:2] == (
        400,
        "VALIDATION_ERROR",
    )
    assert api.event(name="x", contactId=a["id"]).status_code == 201


def test_unknown_email_create_makes_a_bare_contact(make_api: ApiFactory) -> None:
    api = make_api(EmulatorConfig(unknown_email="create"))
    event = api.event(name="x", email="New@Example.com", properties={"p": 1}).json()
    contact = api.get("/api/contacts/by-email/new%40example.com").json()
    assert event["contactId"] == contact["id"]
    assert contact["properties"] == {}
    assert contact["email"] == "New@Example.com"


def test_unknown_email_not_found_stores_nothing(make_api: ApiFactory) -> None:
    api = make_api(EmulatorConfig(unknown_email="not-found"))
    assert error(api.event(name="x", email="ghost@example.com"))[:2] == (404, "NOT_FOUND")
    assert api.all("/api/events") == []
    assert api.all("/api/contacts") == []


def test_unknown_email_link_later_links_when_the_contact_appears(make_api: ApiFactory) -> None:
    api = make_api(EmulatorConfig(unknown_email="link-later"))
    event = api.event(name="early", email="Later@example.com").json()
    assert event["contactId"] is None
    assert event["email"] == "Later@example.com"
    assert api.all("/api/contacts") == []
    assert [e["id"] for e in api.all("/api/events", email="later@example.com")] == [event["id"]]
    contact = api.contact("later@EXAMPLE.com")
    linked = api.all("/api/events", contactId=contact["id"])
    assert [(e["id"], e["contactId"]) for e in linked] == [(event["id"], contact["id"])]
    assert "email" not in linked[0]
    assert [e["id"] for e in api.all("/api/events", email="LATER@example.com")] == [event["id"]]
    timeline = api.all(f"/api/contacts/{contact['id']}/timeline")
    assert [(t["type"], t["name"]) for t in timeline] == [("event", "early")]


def test_event_list_filters_and_tenant_feed(api: Api) -> None:
    a = api.contact("a@example.com")
    b = api.contact("b@example.com")
    e1 = api.event(name="view", contactId=a["id"]).json()
    e2 = api.event(name="buy", contactId=b["id"]).json()
    e3 = api.event(name="view", email="b@example.com").json()
    assert [e["id"] for e in api.all("/api/events")] == [e1["id"], e2["id"], e3["id"]]
    assert [e["id"] for e in api.all("/api/events", contactId=b["id"])] == [e2["id"], e3["id"]]
    assert [e["id"] for e in api.all("/api/events", email="B@example.com")] == [e2["id"], e3["id"]]
    assert [e["id"] for e in api.all("/api/events", name="view")] == [e1["id"], e3["id"]]
    assert [e["id"] for e in api.all("/api/events", event="view", email="b@example.com")] == [
        e3["id"]
    ]
    assert api.all("/api/events", email="nobody@example.com") == []
    assert error(api.get("/api/events", params={"name": "a", "event": "b"}))[0] == 400


# -- sequences, scheduled sends, sends, timeline, segments -----------------------------------


def _sequence(
    api: Api, seq_id: str, trigger: str, status: str = "active", **extra: Any
) -> httpx.Response:
    return api.put(
        f"/api/sequences/{seq_id}",
        json={"name": seq_id.title(), "status": status, "triggers": [{"event": trigger}], **extra},
    )


def test_put_sequence_is_idempotent_create_or_update(api: Api) -> None:
    r1 = _sequence(api, "welcome", "signed_up")
    assert r1.status_code == 201
    r2 = _sequence(api, "welcome", "registered")
    assert r2.status_code == 200
    listed = api.all("/api/sequences")
    assert [(s["id"], s["triggers"]) for s in listed] == [("welcome", [{"event": "registered"}])]
    assert listed[0]["createdAt"] == r1.json()["createdAt"]
    assert (
        error(api.put("/api/sequences/x", json={"name": "X", "status": "on", "triggers": []}))[2]
        == "status"
    )
    assert (
        error(
            api.put("/api/sequences/x", json={"name": "X", "status": "active", "triggers": ["a"]})
        )[2]
        == "triggers"
    )


def test_trigger_enrols_schedules_and_tick_delivers(api: Api) -> None:
    _sequence(
        api,
        "welcome",
        "signed_up",
        steps=[
            {
                "templateId": "tpl_hello",
                "templateName": "Hello",
                "subject": "Hi",
                "delayMinutes": 0,
            },
            {"templateId": "tpl_tips", "subject": "Tips", "delayMinutes": 60},
        ],
    )
    c = api.contact("w@example.com")
    api.event(name="signed_up", contactId=c["id"], timestamp="2020-01-01T00:00:00Z")
    api.event(name="signed_up", contactId=c["id"])  # already enrolled: no second enrolment
    enrolments = api.get(f"/api/contacts/{c['id']}/sequences").json()["data"]
    assert [(e["sequenceId"], e["status"], e["currentStep"]) for e in enrolments] == [
        ("welcome", "active", 1)
    ]
    scheduled = api.all(f"/api/contacts/{c['id']}/scheduled")
    assert [(s["templateId"], s["source"], s["sourceId"], s["step"]) for s in scheduled] == [
        ("tpl_hello", "sequence", "welcome", 1)
    ]
    assert scheduled[0]["id"].startswith("sch_")

    assert api.post("/_emulator/tick").json()["delivered"] == 1
    sends = api.all("/api/sends", contactId=c["id"])
    assert [(s["templateId"], s["status"], s["email"]) for s in sends] == [
        ("tpl_hello", "delivered", "w@example.com")
    ]
    assert sends[0]["sentAt"]
    assert sends[0]["deliveredAt"]
    system = [
        e for e in api.all("/api/events", contactId=c["id"]) if e["name"].startswith("email.")
    ]
    assert [e["name"] for e in system][:2] == ["email.sent", "email.delivered"]
    assert all(
        e["properties"]["sendId"] == sends[0]["id"] and e["properties"]["sequenceId"] == "welcome"
        for e in system
    )
    # Step 2 is an hour away: not due now, due when the clock says so.
    assert [s["step"] for s in api.all("/api/scheduled")] == [2]
    assert api.post("/_emulator/tick").json()["delivered"] == 0
    assert (
        api.post("/_emulator/tick", json={"until": "2999-01-01T00:00:00Z"}).json()["delivered"] == 1
    )
    enrolment = api.get(f"/api/contacts/{c['id']}/sequences").json()["data"][0]
    assert (enrolment["status"], enrolment["currentStep"]) == ("completed", 2)

    timeline = api.all(f"/api/contacts/{c['id']}/timeline")
    kinds = [(t["type"], t["name"]) for t in timeline]
    assert kinds[:3] == [
        ("event", "signed_up"),
        ("sequence", "sequence.enrolled"),
        ("event", "signed_up"),
    ]
    assert ("email", "email.sent") in kinds
    assert kinds[-1] == ("sequence", "sequence.completed")
    assert timeline[1]["data"] == {"sequenceId": "welcome", "sequenceName": "Welcome", "step": 1}
    assert [t["id"] for t in timeline] == [
        t["id"] for t in api.all(f"/api/contacts/{c['id']}/timeline")
    ]
    assert len({t["id"] for t in timeline}) == len(timeline)


def test_inactive_sequences_do_not_enrol(api: Api) -> None:
    _sequence(api, "paused", "signed_up", status="paused")
    c = api.contact("w@example.com")
    api.event(name="signed_up", contactId=c["id"])
    assert api.get(f"/api/contacts/{c['id']}/sequences").json() == {"data": []}
    assert api.all("/api/scheduled") == []


def test_scheduled_is_earliest_first_across_pages(api: Api) -> None:
    _sequence(api, "late", "go", steps=[{"templateId": "t_late", "delayMinutes": 120}])
    _sequence(api, "soon", "go", steps=[{"templateId": "t_soon", "delayMinutes": 5}])
    for i in range(3):
        api.event(name="go", email=f"s{i}@example.com")
    page1 = api.get("/api/scheduled", params={"limit": 4}).json()
    page2 = api.get("/api/scheduled", params={"limit": 4, "cursor": page1["nextCursor"]}).json()
    assert page2["nextCursor"] is None
    times = [s["scheduledFor"] for s in page1["data"] + page2["data"]]
    assert len(times) == 6
    assert times == sorted(times)
    assert [s["templateId"] for s in page1["data"][:3]] == ["t_soon"] * 3


def test_sends_filters(api: Api) -> None:
    _sequence(api, "a", "go", steps=[{"templateId": "t_a"}])
    _sequence(api, "b", "go", steps=[{"templateId": "t_b"}])
    c1 = api.event(name="go", email="1@example.com").json()["contactId"]
    api.event(name="go", email="2@example.com")
    api.post("/_emulator/tick")
    assert len(api.all("/api/sends")) == 4
    assert {s["templateId"] for s in api.all("/api/sends", templateId="t_b")} == {"t_b"}
    assert len(api.all("/api/sends", templateId="t_b")) == 2
    assert {s["contactId"] for s in api.all("/api/sends", contactId=c1)} == {c1}
    assert len(api.all("/api/sends", status="delivered")) == 4
    assert api.all("/api/sends", status="bounced") == []


def test_segment_memberships(api: Api) -> None:
    a = api.contact("a@example.com")
    b = api.contact("b@example.com")
    r = api.post("/_emulator/segments", json={"name": "VIPs", "contactIds": [a["id"]]})
    assert r.status_code == 201
    seg = r.json()
    memberships = api.get(f"/api/contacts/{a['id']}/segments").json()["data"]
    assert [(m["segmentId"], m["segmentName"]) for m in memberships] == [(seg["id"], "VIPs")]
    assert seg["id"].startswith("seg_")
    assert memberships[0]["joinedAt"].endswith("Z")
    assert api.get(f"/api/contacts/{b['id']}/segments").json() == {"data": []}
    assert (
        api.post("/_emulator/segments", json={"name": "x", "contactIds": ["cnt_nope"]}).status_code
        == 404
    )


def test_admin_routes_need_the_key(make_api: ApiFactory) -> None:
    api = make_api(key=None)
    assert api.post("/_emulator/tick").status_code == 401
    assert api.post("/_emulator/noop").status_code == 200  # the benchmark baseline is open


def test_unknown_routes_and_methods(api: Api) -> None:
    assert error(api.get("/api/nothing"))[:2] == (404, "NOT_FOUND")
    assert error(api.get("/contacts"))[:2] == (404, "NOT_FOUND")
    assert api.request("PUT", "/api/contacts").status_code == 405


# -- rate limiting and faults --------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


def test_token_bucket_429_with_retry_after_and_headers(make_api: ApiFactory) -> None:
    clock = FakeClock()
    api = make_api(
        EmulatorConfig(rate_limit=2, burst=3), monotonic=clock, wall=lambda: 1_700_000_000.0
    )
    statuses = [api.get("/api/contacts") for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert [r.headers["x-ratelimit-remaining"] for r in statuses] == ["2", "1", "0", "0"]
    assert statuses[0].headers["x-ratelimit-limit"] == "3"
    assert int(statuses[2].headers["x-ratelimit-reset"]) == 1_700_000_002  # 3 tokens at 2/s
    limited = statuses[3]
    assert limited.headers["retry-after"] == "1"  # 0.5 s rounded up to whole seconds
    assert error(limited)[:2] == (429, "RATE_LIMITED")
    other = make_api(key=KEY_B, app=api.app)  # each tenant has its own bucket
    assert other.get("/api/contacts").status_code == 200
    clock.t += 0.5
    assert api.get("/api/contacts").status_code == 200
    assert api.get("/api/contacts").status_code == 429


def test_no_rate_headers_when_hidden_but_still_429(make_api: ApiFactory) -> None:
    api = make_api(EmulatorConfig(rate_limit=1, hide_rate_headers=True), monotonic=FakeClock())
    ok, limited = api.get("/api/contacts"), api.get("/api/contacts")
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "1"
    assert not any(h.startswith("x-ratelimit") for h in [*ok.headers, *limited.headers])


def test_injected_5xx_applies_nothing(make_api: ApiFactory) -> None:
    api = make_api(EmulatorConfig(fail_rate=1.0, seed=1))
    r = api.post("/api/contacts", json={"email": "f@example.com"})
    assert r.status_code in (500, 502, 503, 504)
    assert r.json()["error"]["code"] in {
        "INTERNAL_ERROR",
        "BAD_GATEWAY",
        "SERVICE_UNAVAILABLE",
        "GATEWAY_TIMEOUT",
    }
    api.app.faults.fail_rate = 0
    assert api.all("/api/contacts") == []


def test_fault_draws_are_reproducible_with_a_seed(make_api: ApiFactory) -> None:
    def statuses() -> list[int]:
        api = make_api(EmulatorConfig(fail_rate=0.5, seed=42))
        return [api.get("/api/contacts").status_code for _ in range(30)]

    first = statuses()
    assert first == statuses()
    assert 200 in first
    assert any(s >= 500 for s in first)


def test_dropped_response_is_committed_then_cut(make_api: ApiFactory, tmp_path: Path) -> None:
    db = tmp_path / "drop.db"
    dropping = make_api(EmulatorConfig(db_path=db, drop_rate=1.0))
    with pytest.raises(httpx.RemoteProtocolError):
        dropping.event(name="lost_answer", email="d@example.com")
    reader = make_api(EmulatorConfig(db_path=db))
    assert [e["name"] for e in reader.all("/api/events")] == ["lost_answer"]


def test_latency_is_added_before_handling(make_api: ApiFactory) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    api = make_api(EmulatorConfig(latency_ms=250), sleep=fake_sleep)
    api.get("/api/contacts")
    api.post("/_emulator/noop")
    assert slept == [0.25]


def test_config_rejects_nonsense() -> None:
    for kwargs in (
        {"fail_rate": 1.5},
        {"rate_limit": -1},
        {"burst": 0},
        {"unknown_email": "x"},
        {"list_shape": "rows"},
    ):
        with pytest.raises(ValueError):
            EmulatorConfig(**kwargs)  # type: ignore[arg-type]


# -- group commit -------------------------------------------------------------------------


def test_concurrent_writes_commit_together_and_a_failure_rolls_back_only_itself(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    import sqlite3

    db = tmp_path / "group.db"
    api = make_api(EmulatorConfig(db_path=db))
    emails = ["g0@example.com", "g1@example.com", "G0@example.com", "g2@example.com", "bad"]

    async def burst() -> list[httpx.Response]:
        return list(
            await asyncio.gather(
                *(api.client.post("/api/contacts", json={"email": e}) for e in emails)
            )
        )

    statuses = [r.status_code for r in api.loop.run_until_complete(burst())]
    assert statuses == [201, 201, 409, 201, 400]
    # Answered means committed: another connection sees them, and no write lock is left held.
    other = sqlite3.connect(db, timeout=0)
    try:
        rows = other.execute("SELECT email FROM contacts ORDER BY id").fetchall()
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert [r[0] for r in rows] == ["g0@example.com", "g1@example.com", "g2@example.com"]


def test_a_lone_failed_write_leaves_no_transaction_open(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    import sqlite3

    db = tmp_path / "lone.db"
    api = make_api(EmulatorConfig(db_path=db))
    api.contact("x@example.com")
    assert api.post("/api/contacts", json={"email": "X@example.com"}).status_code == 409
    other = sqlite3.connect(db, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()


def test_cursor_is_stable_while_records_are_appended(api: Api) -> None:
    first = [api.contact(f"a{i}@example.com")["id"] for i in range(5)]
    page = api.get("/api/contacts", params={"limit": 3}).json()
    later = [api.contact(f"b{i}@example.com")["id"] for i in range(3)]
    rest = api.get("/api/contacts", params={"limit": 100, "cursor": page["nextCursor"]}).json()
    assert [c["id"] for c in page["data"] + rest["data"]] == first + later


def test_file_database_in_a_new_directory_survives_a_restart(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    db = tmp_path / "new" / "state" / "local-kraiter.db"
    api = make_api(EmulatorConfig(db_path=db))
    c = api.contact("keep@example.com")
    api.app.close()
    again = make_api(EmulatorConfig(db_path=db))
    assert again.get(f"/api/contacts/{c['id']}").json()["email"] == "keep@example.com"
    # Ids keep increasing across restarts, so id order stays creation order.
    assert again.contact("next@example.com")["id"] > c["id"]


def test_timeline_pages_across_events_and_sequence_entries(api: Api) -> None:
    _sequence(api, "s", "go")
    c = api.contact("t@example.com")
    for _ in range(3):
        api.event(name="go", contactId=c["id"])
    api.post("/_emulator/tick")
    whole = api.all(f"/api/contacts/{c['id']}/timeline")
    paged: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = api.get(f"/api/contacts/{c['id']}/timeline", params=params).json()
        paged += body["data"]
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert paged == whole
    assert {t["type"] for t in whole} == {"event", "sequence", "email"}
    assert len(whole) >= 7  # 3 events, enrolled, sent, delivered, completed (+ maybe opened)


def test_no_rate_headers_while_rate_limiting_is_off(api: Api) -> None:
    r = api.get("/api/contacts")
    assert r.status_code == 200
    assert not any(h.startswith("x-ratelimit") for h in r.headers)


def test_trigger_cache_sees_sequences_written_by_another_connection(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    db = tmp_path / "shared.db"
    first = make_api(EmulatorConfig(db_path=db))
    second = make_api(EmulatorConfig(db_path=db))
    c = first.contact("x@example.com")
    first.event(name="go", contactId=c["id"])  # caches "no triggers" for this tenant
    assert _sequence(second, "later", "go").status_code == 201
    first.event(name="go", contactId=c["id"])
    enrolments = first.get(f"/api/contacts/{c['id']}/sequences").json()["data"]
    assert [e["sequenceId"] for e in enrolments] == ["later"]
