"""The Kraiter API client: every operation of the contract, one attempt each.

:class:`KraiterClient` is async and shares one connection pool; :class:`SyncKraiterClient`
is a small blocking facade for library users. Wire details that the contract marks as
[choice] live in :mod:`kraiter_sync.api.dialect`, never here.

Every method makes exactly one HTTP attempt (an iterator makes one per page): only the
caller knows whether resending is safe, so retrying is ``retry.py``'s job. Failures are
always exceptions of :mod:`kraiter_sync.errors`: an error status becomes the
:func:`~kraiter_sync.errors.api_error_class` for it, and a failed exchange is
translated by ``api.failures.translate_transport_error``, the one boundary for httpx
exceptions. Neither the key nor anything echoing it ends up in a message or a log.

The client drives an httpx *transport* directly (httpx's Request/Response models, no
``httpx.AsyncClient``: its per-request URL merging and cookie jar cost more than the
exchange). For real HTTP the default is :class:`AiohttpTransport`, httpx's transport
interface over an aiohttp connection pool, about ten times faster than httpx's own pool
here (``benchmarks/client_transport.py``). Any transport can be injected:
``httpx.ASGITransport`` for the in-process emulator, ``httpx.MockTransport`` — e.g.
``httpx.MockTransport(respx_router.async_handler)`` — for request-shape tests.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import httpx

from kraiter_sync import __version__
from kraiter_sync.api.dialect import Dialect, Route, decode_list
from kraiter_sync.api.failures import api_error, translate_transport_error, unexpected
from kraiter_sync.api.transport import AiohttpTransport
from kraiter_sync.config import check_header_safe_key, mask_key
from kraiter_sync.errors import (
    ApiError,
    ConfigError,
)
from kraiter_sync.logs import get_logger

if TYPE_CHECKING:
    from kraiter_sync.config import Settings

__all__ = [
    "USER_AGENT",
    "AiohttpTransport",
    "KraiterClient",
    "Page",
    "RequestObserver",
]

USER_AGENT = f"kraiter-sync/{__version__}"
log = get_logger("client")

_JSON_HEADERS = {"Content-Type": "application/json"}
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
T = TypeVar("T")


class RequestObserver(Protocol):
    """Sees every request go out and every answer come back (``ratelimit.RateController``)."""

    async def before_request(self) -> None:
        """Awaited before every HTTP request; may wait to keep the pace."""

    def after_response(self, status: int, headers: Mapping[str, str]) -> None:
        """Called after every HTTP response, error statuses included."""

    def after_failure(self) -> None:
        """Called when a request that was let out got no answer (cut, timed out)."""


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list: its items and the cursor of the next page (None at the end)."""

    items: list[dict[str, Any]]
    next_cursor: str | None


# --------------------------------------------------------------------------------------
# The async client


def _iso(ts: datetime | str) -> str:
    """ISO 8601 UTC with milliseconds and ``Z``; strings are sent as given."""
    if isinstance(ts, str):
        return ts
    if ts.tzinfo is None:
        msg = "timestamp must be timezone-aware (naive datetimes are ambiguous)"
        raise ValueError(msg)
    utc = ts.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _query_value(value: str | bool | int) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class KraiterClient:
    """Async client for Kraiter's REST API over one shared httpx connection pool.

    Use it as ``async with KraiterClient(url, key) as kraiter: ...`` (or call
    :meth:`aclose`). Methods return plain dicts; contacts always carry ``id``.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        dialect: Dialect | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float | httpx.Timeout = 30.0,
        max_connections: int = 64,
        observer: RequestObserver | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.dialect = dialect or Dialect()
        self.observer = observer
        check_header_safe_key(api_key)
        self._key = api_key
        if transport is None:
            transport = AiohttpTransport(max_connections=max_connections)
        # The transport is driven directly with httpx's Request/Response models:
        # httpx.AsyncClient's per-request URL merging, cookie jar and hooks cost
        # more than the whole aiohttp exchange (benchmarks/client_transport.py).
        self._transport = transport
        self._timeout = httpx.Timeout(timeout).as_dict()
        base_headers = {
            "Authorization": f"Bearer {api_key}",
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
        }
        self._headers = httpx.Headers(base_headers)
        self._json_headers = httpx.Headers({**base_headers, **_JSON_HEADERS})
        #: Parsed URLs of the parameterless routes (a fixed, small set).
        self._urls: dict[str, httpx.URL] = {}

    @classmethod
    def from_settings(cls, settings: Settings, **kw: Any) -> KraiterClient:
        """A client for resolved settings (their base URL has been checked already).

        The local Kraiter (``settings.local``) is started by the run context only: use
        ``kraiter_sync.client_for(settings)``, which works for both.
        """
        if settings.local and "transport" not in kw:
            msg = (
                "these settings name the local Kraiter, which the run context starts: "
                "use kraiter_sync.client_for(settings) instead of KraiterClient.from_settings"
            )
            raise ConfigError(msg)
        return cls(settings.base_url, settings.api_key, **kw)

    def __repr__(self) -> str:
        return f"KraiterClient(base_url={self.base_url!r}, api_key='{mask_key(self._key)}')"

    async def __aenter__(self) -> KraiterClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    # ---- the one request path ---------------------------------------------------------

    async def _request(
        self,
        operation: str,
        path_params: Mapping[str, str] | None = None,
        *,
        query: Mapping[str, str | bool | int | None] | None = None,
        body: bytes | None = None,
    ) -> tuple[httpx.Response, str]:
        """One attempt; returns a 2xx response (and the path) or raises from errors.py."""
        route: Route = self.dialect.route(operation)
        method = route.method
        path = route.path(path_params)
        params = {k: _query_value(v) for k, v in query.items() if v is not None} if query else None
        if path_params or params:
            url = httpx.URL(self.base_url + path, params=params)
        else:
            url = self._urls.get(path) or self._urls.setdefault(
                path, httpx.URL(self.base_url + path)
            )
        request = httpx.Request(
            method,
            url,
            headers=self._json_headers if body is not None else self._headers,
            content=body,
            extensions={"timeout": self._timeout},
        )
        observer = self.observer
        if observer is not None:
            await observer.before_request()
        try:
            response = await self._transport.handle_async_request(request)
            response.request = request
            try:
                await response.aread()
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            if observer is not None:
                observer.after_failure()
            raise translate_transport_error(exc, method=method, path=path) from exc
        if observer is not None:
            observer.after_response(response.status_code, response.headers)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s -> %d", method, path, response.status_code)
        if not 200 <= response.status_code < 300:
            raise api_error(response, method, path, self._key)
        return response, path

    def _json(self, response: httpx.Response, path: str) -> Any:
        try:
            return json.loads(response.content)
        except ValueError:
            raise unexpected(response, response.request.method, path, "not JSON") from None

    async def _object(
        self,
        operation: str,
        path_params: Mapping[str, str] | None = None,
        *,
        body: bytes | None = None,
        contact: bool = False,
    ) -> tuple[dict[str, Any], int]:
        response, path = await self._request(operation, path_params, body=body)
        obj = self._json(response, path)
        if not isinstance(obj, dict):
            raise unexpected(response, response.request.method, path, "not a JSON object")
        if contact:
            obj = self.dialect.normalise_contact(obj)
        return obj, response.status_code

    async def get_page(
        self,
        path_key: str,
        *,
        cursor: str | None = None,
        limit: int = 100,
        path_params: Mapping[str, str] | None = None,
        **query: str | bool | int | None,
    ) -> Page:
        """One page of a list operation (``path_key`` names a route, e.g. ``events.list``).

        Resumable paging: store ``next_cursor`` and pass it back later.
        """
        d = self.dialect
        if not 1 <= limit <= d.max_page_size:
            msg = f"limit must be between 1 and {d.max_page_size}, got {limit}"
            raise ValueError(msg)
        params: dict[str, str | bool | int | None] = {**query, d.limit_param: limit}
        if cursor is not None:
            params[d.cursor_param] = cursor
        response, path = await self._request(path_key, path_params, query=params)
        decoded = decode_list(self._json(response, path), d)
        if decoded is None:
            raise unexpected(response, "GET", path, "not a list envelope")
        items, next_cursor = decoded
        if path_key == "contacts.list":
            items = [d.normalise_contact(item) for item in items]
        return Page(items, next_cursor)

    async def _pages(
        self,
        path_key: str,
        *,
        page_size: int = 100,
        path_params: Mapping[str, str] | None = None,
        **query: str | bool | int | None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item of a list, following cursors to the end."""
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            page = await self.get_page(
                path_key, cursor=cursor, limit=page_size, path_params=path_params, **query
            )
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            if page.next_cursor in seen:
                msg = "Kraiter returned a cursor it had already returned (paging would loop)"
                raise ApiError(msg, method="GET", path=path_key, code="CURSOR_LOOP")
            seen.add(page.next_cursor)
            cursor = page.next_cursor

    async def _list(self, operation: str, contact_id: str) -> list[dict[str, Any]]:
        response, path = await self._request(operation, {"id": contact_id})
        decoded = decode_list(self._json(response, path), self.dialect)
        if decoded is None:
            raise unexpected(response, "GET", path, "not a list envelope")
        return decoded[0]

    # ---- contacts ----------------------------------------------------------------------

    @staticmethod
    def _contact_body(
        email: str | None = None,
        properties: Mapping[str, Any] | None = None,
        user_id: str | None = None,
        unsubscribed: bool | None = None,
    ) -> bytes:
        body: dict[str, Any] = {}
        if email is not None:
            body["email"] = email
        if properties is not None:
            body["properties"] = dict(properties)
        if user_id is not None:
            body["userId"] = user_id
        if unsubscribed is not None:
            body["unsubscribed"] = unsubscribed
        return _dumps(body).encode()

    async def create_contact(
        self, email: str, *, properties: Mapping[str, Any] | None = None, user_id: str | None = None
    ) -> dict[str, Any]:
        """``POST /api/contacts``; ConflictError when the email is taken."""
        body = self._contact_body(email, properties, user_id)
        return (await self._object("contacts.create", body=body, contact=True))[0]

    async def get_contact(self, contact_id: str) -> dict[str, Any]:
        return (await self._object("contacts.get", {"id": contact_id}, contact=True))[0]

    async def get_contact_by_email(self, email: str) -> dict[str, Any] | None:
        """The contact with this email, or None when Kraiter has none (404)."""
        try:
            obj, _ = await self._object("contacts.by_email", {"email": email}, contact=True)
        except ApiError as exc:
            if exc.http_status == 404:
                return None
            raise
        return obj

    def list_contacts(
        self, *, search: str | None = None, suppressed: bool | None = None, page_size: int = 100
    ) -> AsyncIterator[dict[str, Any]]:
        return self._pages(
            "contacts.list", page_size=page_size, search=search, suppressed=suppressed
        )

    async def update_contact(
        self,
        contact_id: str,
        *,
        email: str | None = None,
        properties: Mapping[str, Any] | None = None,
        user_id: str | None = None,
        unsubscribed: bool | None = None,
    ) -> dict[str, Any]:
        """``PATCH``: only given fields change; a property set to None is removed."""
        body = self._contact_body(email, properties, user_id, unsubscribed)
        return (await self._object("contacts.update", {"id": contact_id}, body=body, contact=True))[
            0
        ]

    async def upsert_contact(
        self, email: str, *, properties: Mapping[str, Any] | None = None, user_id: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Create or merge by email; returns ``(contact, created)``."""
        body = self._contact_body(email, properties, user_id)
        obj, status = await self._object("contacts.upsert", body=body, contact=True)
        return obj, status == self.dialect.upsert_created_status

    async def delete_contact(self, contact_id: str) -> None:
        await self._request("contacts.delete", {"id": contact_id})

    def contact_sends(
        self, contact_id: str, *, page_size: int = 100
    ) -> AsyncIterator[dict[str, Any]]:
        return self._pages("contacts.sends", page_size=page_size, path_params={"id": contact_id})

    def contact_scheduled(
        self, contact_id: str, *, page_size: int = 100
    ) -> AsyncIterator[dict[str, Any]]:
        return self._pages(
            "contacts.scheduled", page_size=page_size, path_params={"id": contact_id}
        )

    def contact_timeline(
        self, contact_id: str, *, page_size: int = 100
    ) -> AsyncIterator[dict[str, Any]]:
        return self._pages("contacts.timeline", page_size=page_size, path_params={"id": contact_id})

    async def contact_sequences(self, contact_id: str) -> list[dict[str, Any]]:
        return await self._list("contacts.sequences", contact_id)

    async def contact_segments(self, contact_id: str) -> list[dict[str, Any]]:
        return await self._list("contacts.segments", contact_id)

    # ---- events ------------------------------------------------------------------------

    def event_body(
        self,
        name: str,
        *,
        contact_id: str | None = None,
        email: str | None = None,
        properties: Mapping[str, Any] | str | None = None,
        timestamp: datetime | str | None = None,
    ) -> bytes:
        """The JSON body of ``POST /api/events``; a str ``properties`` is embedded as is.

        The importer pre-serialises millions of property objects, so a string is
        spliced in without parsing it again (only its braces are checked).
        """
        if (contact_id is None) == (email is None):
            msg = "track_event needs exactly one of contact_id or email"
            raise ValueError(msg)
        head: dict[str, Any] = {self.dialect.event_name_field: name}
        if contact_id is not None:
            head["contactId"] = contact_id
        else:
            head["email"] = email
        if timestamp is not None:
            head["timestamp"] = _iso(timestamp)
        if properties is None:
            return _dumps(head).encode()
        if isinstance(properties, str):
            raw = properties.strip()
            if not (raw.startswith("{") and raw.endswith("}")):
                msg = "properties given as a string must hold a JSON object"
                raise ValueError(msg)
        else:
            raw = _dumps(dict(properties))
        return f'{_dumps(head)[:-1]},"properties":{raw}}}'.encode()

    async def track_event(
        self,
        name: str,
        *,
        contact_id: str | None = None,
        email: str | None = None,
        properties: Mapping[str, Any] | str | None = None,
        timestamp: datetime | str | None = None,
    ) -> dict[str, Any]:
        """``POST /api/events``: one event for one contact (by id or by email).

        Kraiter has no idempotency key: a :class:`ResponseLostError` here means the
        event may exist already (see the ledger in design.md).
        """
        body = self.event_body(
            name, contact_id=contact_id, email=email, properties=properties, timestamp=timestamp
        )
        return (await self._object("events.track", body=body))[0]

    def list_events(
        self,
        *,
        contact_id: str | None = None,
        email: str | None = None,
        name: str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[dict[str, Any]]:
        """Events of one contact, or the tenant-wide feed when no contact is given."""
        query: dict[str, str | bool | int | None] = {
            "contactId": contact_id,
            "email": email,
            self.dialect.event_name_filter: name,
        }
        return self._pages("events.list", page_size=page_size, path_params=None, **query)

    # ---- sends, scheduled sends, sequences -------------------------------------------

    def list_sends(
        self,
        *,
        status: str | None = None,
        contact_id: str | None = None,
        template_id: str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[dict[str, Any]]:
        return self._pages(
            "sends.list",
            page_size=page_size,
            status=status,
            contactId=contact_id,
            templateId=template_id,
        )

    def list_scheduled(self, *, page_size: int = 100) -> AsyncIterator[dict[str, Any]]:
        return self._pages("scheduled.list", page_size=page_size)

    async def put_sequence(
        self, sequence_id: str, *, name: str, status: str, triggers: list[str]
    ) -> dict[str, Any]:
        """``PUT /api/sequences/{id}``: idempotent create-or-update."""
        body = _dumps(
            {"name": name, "status": status, "triggers": [{"event": t} for t in triggers]}
        ).encode()
        return (await self._object("sequences.put", {"id": sequence_id}, body=body))[0]

    def list_sequences(self, *, page_size: int = 100) -> AsyncIterator[dict[str, Any]]:
        return self._pages("sequences.list", page_size=page_size)
