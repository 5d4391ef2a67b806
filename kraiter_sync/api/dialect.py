"""Every [choice] of the Kraiter API contract, in one place.

``../shared/docs/kraiter-api.md`` marks what Kraiter's docs leave open or state two
ways. Each such point that concerns the wire lives here, so that when the real
behaviour is learned one edit changes the client (and the emulator, which reads the
same route table). This module has no dependencies on purpose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import quote

__all__ = [
    "API_PREFIX",
    "ROUTES",
    "Dialect",
    "Route",
    "decode_list",
    "encode_segment",
]

#: Every endpoint lives under this prefix [doc]; the base URL never includes it.
API_PREFIX = "/api"


@dataclass(frozen=True, slots=True)
class Route:
    """One operation: HTTP method and a path template (``{name}`` placeholders)."""

    method: str
    template: str
    #: Whether the answer is a cursor-paged list (``cursor`` / ``limit`` accepted).
    paged: bool = False

    def path(self, params: Mapping[str, str] | None = None) -> str:
        """The concrete path, each parameter URL-encoded as one path segment."""
        if not params:
            return self.template
        return self.template.format_map({k: encode_segment(v) for k, v in params.items()})


def encode_segment(value: str) -> str:
    """URL-encode a value for one path segment: ``/``, ``@``, ``+``, ``%`` … all escaped."""
    return quote(value, safe="")


_P = API_PREFIX
#: Operation name → route. Paths marked [choice] in the contract are guesses we own.
ROUTES: Mapping[str, Route] = MappingProxyType(
    {
        "contacts.create": Route("POST", f"{_P}/contacts"),
        "contacts.get": Route("GET", f"{_P}/contacts/{{id}}"),
        "contacts.by_email": Route("GET", f"{_P}/contacts/by-email/{{email}}"),  # [choice]
        "contacts.list": Route("GET", f"{_P}/contacts", paged=True),
        "contacts.update": Route("PATCH", f"{_P}/contacts/{{id}}"),  # verb [choice]
        "contacts.upsert": Route("POST", f"{_P}/contacts/upsert"),  # [choice]
        "contacts.delete": Route("DELETE", f"{_P}/contacts/{{id}}"),
        "contacts.sends": Route("GET", f"{_P}/contacts/{{id}}/sends", paged=True),
        "contacts.scheduled": Route("GET", f"{_P}/contacts/{{id}}/scheduled", paged=True),
        "contacts.sequences": Route("GET", f"{_P}/contacts/{{id}}/sequences"),
        "contacts.segments": Route("GET", f"{_P}/contacts/{{id}}/segments"),
        "contacts.timeline": Route("GET", f"{_P}/contacts/{{id}}/timeline", paged=True),
        "events.track": Route("POST", f"{_P}/events"),
        "events.list": Route("GET", f"{_P}/events", paged=True),
        "sends.list": Route("GET", f"{_P}/sends", paged=True),
        "scheduled.list": Route("GET", f"{_P}/scheduled", paged=True),
        "sequences.put": Route("PUT", f"{_P}/sequences/{{id}}"),
        "sequences.list": Route("GET", f"{_P}/sequences", paged=True),
    }
)


@dataclass(frozen=True, slots=True)
class Dialect:
    """How to speak to one Kraiter: field names and envelope variants.

    The defaults are the contract's choices; every alternative the docs describe is
    a setting, so the client can follow the real API once it is known.
    """

    #: The route table (override one entry with ``{**ROUTES, name: Route(...)}``).
    routes: Mapping[str, Route] = field(default_factory=lambda: ROUTES, hash=False)
    #: Body field carrying an event's name: ``name`` [doc, API] or ``event`` [doc, guides].
    event_name_field: Literal["name", "event"] = "name"
    #: Query parameter filtering events by name on ``GET /api/events``.
    event_name_filter: str = "name"
    #: List envelope: the first of these keys that holds a list is the page's items.
    items_keys: tuple[str, ...] = ("data", "items")
    #: The first of these keys holding a non-empty string is the next cursor.
    cursor_keys: tuple[str, ...] = ("nextCursor", "cursor")
    #: ``hasMore: false`` ends paging even when a cursor is present.
    has_more_key: str = "hasMore"
    #: Object id field, and the fallbacks read on contacts when it is missing.
    id_key: str = "id"
    contact_id_fallbacks: tuple[str, ...] = ("contactId",)
    #: Contact ids: ``cnt_`` [doc]; SDK examples write ``con_``. Both accepted.
    contact_id_prefixes: tuple[str, ...] = ("cnt_", "con_")
    #: Paging query parameters and the contract's maximum page size.
    cursor_param: str = "cursor"
    limit_param: str = "limit"
    max_page_size: int = 100
    #: ``POST /api/contacts/upsert`` answers this status when it created the contact.
    upsert_created_status: int = 201

    def route(self, operation: str) -> Route:
        return self.routes[operation]

    def is_contact_id(self, value: str) -> bool:
        """Whether ``value`` looks like a contact id (ids stay opaque otherwise)."""
        return value.startswith(self.contact_id_prefixes)

    def normalise_contact(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Make sure a contact carries ``id`` (copied from ``contactId`` when absent)."""
        if obj.get(self.id_key) is None:
            for key in self.contact_id_fallbacks:
                value = obj.get(key)
                if value is not None:
                    obj[self.id_key] = value
                    break
        return obj


def decode_list(body: Any, dialect: Dialect) -> tuple[list[dict[str, Any]], str | None] | None:
    """Items and next cursor of a list envelope, or None when ``body`` is not one.

    Accepts ``{data|items: [...], nextCursor|cursor: str|null, hasMore?: bool}``; paging
    stops (cursor None) when the cursor is null, empty or absent, or ``hasMore`` is false.
    """
    if not isinstance(body, dict):
        return None
    items: Any = None
    for key in dialect.items_keys:
        if isinstance(body.get(key), list):
            items = body[key]
            break
    if items is None:
        return None
    cursor: str | None = None
    for key in dialect.cursor_keys:
        value = body.get(key)
        if isinstance(value, str) and value:
            cursor = value
            break
    if body.get(dialect.has_more_key) is False:
        cursor = None
    return items, cursor
