"""The handlers of every endpoint of the contract (kraiter-api.md §6-8) and the admin routes.

A handler is synchronous: it runs under the app's lock and, for writes, inside one
store transaction that commits before the answer is sent. It returns
``(status, body)`` or raises :class:`ApiProblem`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kraiter_sync.emulator.config import EmulatorConfig
from kraiter_sync.emulator.ids import decode_cursor, encode_cursor
from kraiter_sync.emulator.store import UNSET, Page, Store
from kraiter_sync.emulator.validation import (
    MAX_NAME,
    ApiProblem,
    check_email,
    check_properties,
    check_timestamp,
    check_unknown_fields,
    invalid,
    parse_json_body,
)

__all__ = ["Handler", "Request", "Result", "Router"]

Result = tuple[int, Any]


@dataclass
class Request:
    """What a handler sees of one HTTP request."""

    method: str
    segments: list[str]
    query: dict[str, str]
    body: bytes
    content_type: str | None
    tenant: int = 0
    params: list[str] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        return parse_json_body(self.body, self.content_type)

    def json_or_empty(self) -> dict[str, Any]:
        if not self.body.strip():
            return {}
        return self.json()


Handler = Callable[[Request], Result]


def _limit(query: dict[str, str]) -> int:
    raw = query.get("limit")
    if raw is None or raw == "":
        return 20
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= 100:
        msg = f"limit must be an integer from 1 to 100, got {raw!r}"
        raise invalid(msg, "limit")
    return value


def _cursor(query: dict[str, str]) -> dict[str, str] | None:
    raw = query.get("cursor")
    if not raw:
        return None
    payload = decode_cursor(raw)
    if payload is None:
        msg = "cursor is not one this server issued; pass back nextCursor unchanged"
        raise invalid(msg, "cursor")
    return payload


def _bool_param(query: dict[str, str], name: str) -> bool | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in {"true", "1"}:
        return True
    if raw.lower() in {"false", "0"}:
        return False
    msg = f"{name} must be true or false"
    raise invalid(msg, name)


def _name(value: Any, field_name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        msg = f"{field_name} must be a non-empty string"
        raise invalid(msg, field_name)
    if len(value) > MAX_NAME:
        msg = f"{field_name} is longer than {MAX_NAME} characters"
        raise invalid(msg, field_name)
    return value


def _user_id(data: dict[str, Any]) -> Any:
    if "userId" not in data:
        return UNSET
    value = data["userId"]
    if value is not None and not isinstance(value, str):
        msg = "userId must be a string or null"
        raise invalid(msg, "userId")
    return value


_CONTACT_CREATE = frozenset({"email", "properties", "userId"})
_CONTACT_UPDATE = frozenset({"email", "properties", "userId", "unsubscribed"})
_EVENT_FIELDS = frozenset({"name", "event", "contactId", "email", "properties", "timestamp"})
_SEQUENCE_FIELDS = frozenset({"name", "status", "triggers", "steps"})
_SEQUENCE_STATUSES = ("active", "paused", "draft", "archived")
_STEP_FIELDS = frozenset({"templateId", "templateName", "subject", "delayMinutes"})


class Router:
    """Maps (method, path) to a handler; holds the store and the settings they need."""

    def __init__(self, store: Store, config: EmulatorConfig, rng: random.Random) -> None:
        self.store = store
        self.config = config
        self.rng = rng
        self.list_key = config.list_shape

    # -- dispatch ---------------------------------------------------------------------

    def resolve(self, method: str, segments: list[str]) -> tuple[Handler, list[str], bool]:
        """The handler for an ``/api/...`` path (segments after ``api``) and whether it writes."""
        n = len(segments)
        table: dict[str, tuple[Handler, bool]] | None = None
        params: list[str] = []
        if n == 1:
            top: dict[str, dict[str, tuple[Handler, bool]]] = {
                "contacts": {
                    "GET": (self.list_contacts, False),
                    "POST": (self.create_contact, True),
                },
                "events": {"GET": (self.list_events, False), "POST": (self.track_event, True)},
                "sends": {"GET": (self.list_sends, False)},
                "scheduled": {"GET": (self.list_scheduled, False)},
                "sequences": {"GET": (self.list_sequences, False)},
            }
            table = top.get(segments[0])
        elif segments[0] == "contacts":
            if n == 2 and segments[1] == "upsert":
                table = {"POST": (self.upsert_contact, True)}
            elif n == 3 and segments[1] == "by-email":
                table, params = {"GET": (self.contact_by_email, False)}, [segments[2]]
            elif n == 2:
                table, params = (
                    {
                        "GET": (self.get_contact, False),
                        "PATCH": (self.update_contact, True),
                        "DELETE": (self.delete_contact, True),
                    },
                    [segments[1]],
                )
            elif n == 3:
                sub = {
                    "sends": self.contact_sends,
                    "scheduled": self.contact_scheduled,
                    "sequences": self.contact_sequences,
                    "segments": self.contact_segments,
                    "timeline": self.contact_timeline,
                }.get(segments[2])
                if sub is not None:
                    table, params = {"GET": (sub, False)}, [segments[1]]
        elif segments[0] == "sequences" and n == 2:
            table, params = (
                {"GET": (self.get_sequence, False), "PUT": (self.put_sequence, True)},
                [segments[1]],
            )
        if table is None:
            msg = "no such endpoint: /api/" + "/".join(segments)
            raise ApiProblem(404, msg)
        entry = table.get(method)
        if entry is None:
            msg = f"{method} is not allowed here; allowed: {', '.join(table)}"
            raise ApiProblem(405, msg)
        return entry[0], params, entry[1]

    def resolve_admin(self, method: str, segments: list[str]) -> tuple[Handler, bool]:
        """``/_emulator/...`` routes: outside the Kraiter API, same auth, same tenant."""
        table: dict[tuple[str, str], tuple[Handler, bool]] = {
            ("POST", "tick"): (self.tick, True),
            ("POST", "segments"): (self.add_segment, True),
            ("POST", "suppress"): (self.suppress, True),
        }
        entry = table.get((method, "/".join(segments)))
        if entry is None:
            msg = f"no such admin route: {method} /_emulator/" + "/".join(segments)
            raise ApiProblem(404, msg)
        return entry

    def _list(self, page: Page, cursor_of: Callable[[dict[str, Any]], dict[str, str]]) -> Result:
        items, more = page
        next_cursor = encode_cursor(cursor_of(items[-1])) if more and items else None
        return 200, {self.list_key: items, "nextCursor": next_cursor}

    @staticmethod
    def _by_id(item: dict[str, Any]) -> dict[str, str]:
        return {"id": item["id"]}

    def _after(self, req: Request) -> str | None:
        cursor = _cursor(req.query)
        return cursor["id"] if cursor else None

    def _contact_id(self, req: Request) -> str:
        return str(self.store.require_contact(req.tenant, req.params[0])["id"])

    # -- contacts ---------------------------------------------------------------------

    def create_contact(self, req: Request) -> Result:
        data = req.json()
        check_unknown_fields(data, _CONTACT_CREATE)
        if data.get("email") is None:
            msg = "email is required"
            raise invalid(msg, "email")
        email = check_email(data["email"])
        props = check_properties(data.get("properties"), allow_null=True)
        user_id = _user_id(data)
        contact = self.store.create_contact(
            req.tenant, email, props, None if user_id is UNSET else user_id
        )
        return 201, contact

    def get_contact(self, req: Request) -> Result:
        return 200, self.store.require_contact(req.tenant, req.params[0])

    def contact_by_email(self, req: Request) -> Result:
        contact = self.store.contact_by_email(req.tenant, req.params[0].strip())
        if contact is None:
            msg = "no contact with that email"
            raise ApiProblem(404, msg)
        return 200, contact

    def list_contacts(self, req: Request) -> Result:
        page = self.store.list_contacts(
            req.tenant,
            search=req.query.get("search") or None,
            suppressed=_bool_param(req.query, "suppressed"),
            after=self._after(req),
            limit=_limit(req.query),
        )
        return self._list(page, self._by_id)

    def update_contact(self, req: Request) -> Result:
        data = req.json()
        check_unknown_fields(data, _CONTACT_UPDATE)
        email = check_email(data["email"]) if data.get("email") is not None else None
        props = check_properties(data.get("properties"), allow_null=True)
        unsubscribed = data.get("unsubscribed")
        if unsubscribed is not None and not isinstance(unsubscribed, bool):
            msg = "unsubscribed must be true or false"
            raise invalid(msg, "unsubscribed")
        contact = self.store.update_contact(
            req.tenant,
            req.params[0],
            email=email,
            properties=props,
            user_id=_user_id(data),
            unsubscribed=unsubscribed,
        )
        return 200, contact

    def upsert_contact(self, req: Request) -> Result:
        data = req.json()
        check_unknown_fields(data, _CONTACT_CREATE)
        if data.get("email") is None:
            msg = "email is required"
            raise invalid(msg, "email")
        email = check_email(data["email"])
        props = check_properties(data.get("properties"), allow_null=True)
        contact, created = self.store.upsert_contact(req.tenant, email, props, _user_id(data))
        return (201 if created else 200), contact

    def delete_contact(self, req: Request) -> Result:
        self.store.delete_contact(req.tenant, req.params[0])
        return 204, None

    def contact_sends(self, req: Request) -> Result:
        page = self.store.list_sends(
            req.tenant,
            contact_id=self._contact_id(req),
            after=self._after(req),
            limit=_limit(req.query),
        )
        return self._list(page, self._by_id)

    def contact_scheduled(self, req: Request) -> Result:
        contact_id = self._contact_id(req)
        return self._scheduled(req, contact_id)

    def contact_sequences(self, req: Request) -> Result:
        return 200, {"data": self.store.contact_sequences(req.tenant, self._contact_id(req))}

    def contact_segments(self, req: Request) -> Result:
        return 200, {"data": self.store.contact_segments(req.tenant, self._contact_id(req))}

    def contact_timeline(self, req: Request) -> Result:
        page = self.store.contact_timeline(
            req.tenant, self._contact_id(req), after=self._after(req), limit=_limit(req.query)
        )
        return self._list(page, self._by_id)

    # -- events -----------------------------------------------------------------------

    def track_event(self, req: Request) -> Result:
        data = req.json()
        check_unknown_fields(data, _EVENT_FIELDS)
        name, alias = data.get("name"), data.get("event")
        if name is None and alias is None:
            msg = "name is required (the event's name; `event` is accepted as an alias)"
            raise invalid(msg, "name")
        if name is not None and alias is not None and name != alias:
            msg = "name and event are both given and differ; send one of them"
            raise invalid(msg, "event")
        name = _name(name if name is not None else alias, "name")
        if name.startswith("email."):
            msg = f"{name!r}: names starting with 'email.' are system events and cannot be sent"
            raise invalid(msg, "name")
        contact_id, email = data.get("contactId"), data.get("email")
        if contact_id is None and email is None:
            msg = "contactId or email is required"
            raise invalid(msg, "contactId")
        if contact_id is not None and email is not None:
            if self.config.strict_contact_ref:
                msg = "give exactly one of contactId and email"
                raise invalid(msg, "email")
            email = None  # contactId wins
        if contact_id is not None and (not isinstance(contact_id, str) or not contact_id):
            msg = "contactId must be a non-empty string"
            raise invalid(msg, "contactId")
        if email is not None:
            email = check_email(email)
        props = check_properties(data.get("properties"), allow_null=False)
        raw_ts = data.get("timestamp")
        timestamp = check_timestamp(raw_ts) if raw_ts is not None else None
        event = self.store.track_event(
            req.tenant,
            name=name,
            contact_id=contact_id,
            email=email,
            properties=props,
            timestamp=timestamp,
            unknown_email=self.config.unknown_email,
        )
        return 201, event

    def list_events(self, req: Request) -> Result:
        q = req.query
        name, alias = q.get("name") or None, q.get("event") or None
        if name and alias and name != alias:
            msg = "name and event are both given and differ"
            raise invalid(msg, "event")
        page = self.store.list_events(
            req.tenant,
            contact_id=q.get("contactId") or None,
            email=(q.get("email") or "").strip() or None,
            name=name or alias,
            after=self._after(req),
            limit=_limit(q),
        )
        return self._list(page, self._by_id)

    # -- sends, scheduled, sequences ----------------------------------------------------

    def list_sends(self, req: Request) -> Result:
        q = req.query
        page = self.store.list_sends(
            req.tenant,
            status=q.get("status") or None,
            contact_id=q.get("contactId") or None,
            template_id=q.get("templateId") or None,
            after=self._after(req),
            limit=_limit(q),
        )
        return self._list(page, self._by_id)

    def list_scheduled(self, req: Request) -> Result:
        return self._scheduled(req, None)

    def _scheduled(self, req: Request, contact_id: str | None) -> Result:
        cursor = _cursor(req.query)
        after = None
        if cursor is not None:
            after = (cursor.get("scheduledFor", ""), cursor["id"])
        page = self.store.list_scheduled(
            req.tenant, contact_id=contact_id, after=after, limit=_limit(req.query)
        )
        return self._list(page, lambda s: {"id": s["id"], "scheduledFor": s["scheduledFor"]})

    def list_sequences(self, req: Request) -> Result:
        page = self.store.list_sequences(
            req.tenant, after=self._after(req), limit=_limit(req.query)
        )
        return self._list(page, self._by_id)

    def get_sequence(self, req: Request) -> Result:
        sequence = self.store.get_sequence(req.tenant, req.params[0])
        if sequence is None:
            msg = f"no sequence with id {req.params[0]}"
            raise ApiProblem(404, msg)
        return 200, sequence

    def put_sequence(self, req: Request) -> Result:
        data = req.json()
        check_unknown_fields(data, _SEQUENCE_FIELDS)
        name = _name(data.get("name"), "name")
        status = data.get("status")
        if status not in _SEQUENCE_STATUSES:
            msg = f"status must be one of {', '.join(_SEQUENCE_STATUSES)}"
            raise invalid(msg, "status")
        triggers = data.get("triggers", [])
        if not isinstance(triggers, list) or not all(
            isinstance(t, dict)
            and set(t) == {"event"}
            and isinstance(t["event"], str)
            and t["event"]
            for t in triggers
        ):
            msg = 'triggers must be a list of {"event": "<event name>"}'
            raise invalid(msg, "triggers")
        steps = data.get("steps")
        if steps is not None:
            steps = self._steps(steps)
        sequence, created = self.store.put_sequence(
            req.tenant, req.params[0], name=name, status=status, triggers=triggers, steps=steps
        )
        return (201 if created else 200), sequence

    @staticmethod
    def _steps(steps: Any) -> list[dict[str, Any]]:
        if not isinstance(steps, list):
            msg = "steps must be a list"
            raise invalid(msg, "steps")
        for step in steps:
            ok = (
                isinstance(step, dict)
                and set(step) <= _STEP_FIELDS
                and isinstance(step.get("templateId"), str)
                and isinstance(step.get("delayMinutes", 0), int | float)
                and not isinstance(step.get("delayMinutes", 0), bool)
                and step.get("delayMinutes", 0) >= 0
            )
            if not ok:
                msg = (
                    'each step is {"templateId": str, "templateName"?: str, "subject"?: str, '
                    '"delayMinutes"?: number >= 0}'
                )
                raise invalid(msg, "steps")
        return steps

    # -- admin ------------------------------------------------------------------------

    def tick(self, req: Request) -> Result:
        """Deliver scheduled sends due by ``until`` (body ``{"until": ISO}``, default now)."""
        data = req.json_or_empty()
        check_unknown_fields(data, frozenset({"until"}))
        until = check_timestamp(data["until"], "until") if data.get("until") else None
        return 200, self.store.tick(req.tenant, until=until, rng=self.rng)

    def add_segment(self, req: Request) -> Result:
        """Body ``{"name": str, "contactIds": [id, ...]}``: a segment with these members."""
        data = req.json()
        check_unknown_fields(data, frozenset({"name", "contactIds"}))
        name = _name(data.get("name"), "name")
        ids = data.get("contactIds", [])
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            msg = "contactIds must be a list of contact ids"
            raise invalid(msg, "contactIds")
        return 201, self.store.add_segment(req.tenant, name, ids)

    def suppress(self, req: Request) -> Result:
        """Body ``{"contactId": id, "suppressed": bool}`` (what a bounce would do)."""
        data = req.json()
        check_unknown_fields(data, frozenset({"contactId", "suppressed"}))
        flag = data.get("suppressed", True)
        if not isinstance(flag, bool) or not isinstance(data.get("contactId"), str):
            msg = 'body is {"contactId": id, "suppressed": true|false}'
            raise invalid(msg, "suppressed")
        return 200, self.store.update_contact(req.tenant, data["contactId"], suppressed=flag)
