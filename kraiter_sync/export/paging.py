"""Resumable paging over Kraiter's lists, with every page fetch in one place.

Cursors are opaque (kraiter-api.md §3), and the last page of a list has no next cursor,
so "the cursor after the last row" does not exist. A :class:`Position` therefore holds
the cursor *with which the page was requested* plus the id of the last row consumed
from it. Resuming refetches that page and drops the rows up to and including that id.
This never decodes or forges a cursor; it relies only on the contract's [choice] that
lists are ordered oldest first, which also gives the fallback when the remembered row
has gone (deleted): rows whose sort key is not past the remembered one are dropped.

:class:`Fetcher` is the one place where a page (or a contact) is fetched, so the retry
policy (``retry.call_with_retry``) and the rate controller (the client's observer) apply
to every request of an export alike.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from kraiter_sync.api.client import KraiterClient, Page
from kraiter_sync.api.retry import RetryPolicy, call_with_retry
from kraiter_sync.errors import ApiError, NotFoundError

__all__ = [
    "ContactDirectory",
    "Fetcher",
    "PageRows",
    "Position",
    "SortKey",
    "contact_list",
    "id_key",
    "iter_contacts",
    "lookup_contact",
    "pages",
    "scheduled_key",
]

Item = dict[str, Any]
T = TypeVar("T")
SortKey = Callable[[Item], tuple[str, ...]]
Sleep = Callable[[float], Awaitable[None]]


def _body(value: Any) -> str:
    """An id without its prefix: ``evt_01H…`` and ``tle_01H…`` sort by creation alike."""
    text = str(value or "")
    return text.split("_", 1)[-1]


def id_key(item: Item) -> tuple[str, ...]:
    """Sort key of lists ordered by id (everything but scheduled sends)."""
    return (_body(item.get("id")),)


def scheduled_key(item: Item) -> tuple[str, ...]:
    """Scheduled sends are ordered by ``scheduledFor``, then id [doc]."""
    return (str(item.get("scheduledFor") or ""), _body(item.get("id")))


@dataclass(frozen=True, slots=True)
class Position:
    """A resumable place in one list: the page's request cursor and the last row taken."""

    cursor: str | None = None
    last_id: str | None = None
    last_key: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"cursor": self.cursor, "last_id": self.last_id, "last_key": list(self.last_key)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Position:
        if not data:
            return cls()
        return cls(data.get("cursor"), data.get("last_id"), tuple(data.get("last_key") or ()))


@dataclass(frozen=True, slots=True)
class PageRows:
    """The new rows of one page, where it was requested, and the position after it."""

    items: list[Item]
    cursor: str | None
    after: Position
    key: SortKey

    def position_after(self, index: int) -> Position:
        """The position just after ``items[index]`` (a resume point inside the page)."""
        if index == len(self.items) - 1:
            return self.after
        item = self.items[index]
        return Position(self.cursor, item.get("id"), self.key(item))


def _after(items: list[Item], pos: Position, key: SortKey) -> list[Item]:
    """The rows of a refetched page that come after ``pos``."""
    if pos.last_id is None:
        return items
    for i, item in enumerate(items):
        if item.get("id") == pos.last_id:
            return items[i + 1 :]
    return [item for item in items if key(item) > pos.last_key]


class Fetcher:
    """Fetches pages and objects with the toolkit's retry policy (``retry.py``).

    GETs are always safe to resend. ``attempts`` is the number of *retries* after the
    first try (0 means none); waits honour ``Retry-After`` and otherwise back off
    exponentially with full jitter. Counts every attempt and every retry.
    """

    def __init__(
        self,
        client: KraiterClient,
        *,
        attempts: int = 5,
        sleep: Sleep = asyncio.sleep,
        on_retry: Callable[[BaseException, int], None] | None = None,
    ) -> None:
        self.client = client
        self.policy = RetryPolicy(max_retries=attempts, sleep=sleep)
        self.on_retry = on_retry
        self.requests = 0
        self.retries = 0

    async def call(self, make: Callable[[], Awaitable[T]]) -> T:
        async def attempt() -> T:
            self.requests += 1
            return await make()

        return await call_with_retry(attempt, self.policy, before_retry=self._retrying)

    def _retrying(self, exc: BaseException, attempt: int) -> None:
        self.retries += 1
        if self.on_retry is not None:
            self.on_retry(exc, attempt)

    async def page(
        self,
        route: str,
        cursor: str | None,
        *,
        limit: int,
        path_params: Mapping[str, str] | None = None,
        query: Mapping[str, str | bool | int | None] | None = None,
    ) -> Page:
        q = dict(query or {})
        return await self.call(
            lambda: self.client.get_page(
                route, cursor=cursor, limit=limit, path_params=path_params, **q
            )
        )


async def pages(
    fetcher: Fetcher,
    route: str,
    start: Position,
    *,
    key: SortKey = id_key,
    limit: int = 100,
    path_params: Mapping[str, str] | None = None,
    query: Mapping[str, str | bool | int | None] | None = None,
) -> AsyncIterator[PageRows]:
    """New rows page by page from ``start``, each with the position after it.

    The next page is requested as soon as its cursor is known, before this page is
    handed over: converting one page overlaps with Kraiter producing the next (one
    request in flight at a time, so the rate controller sees the same sequence).
    """

    def fetch(cursor: str | None) -> asyncio.Task[Page]:
        return asyncio.ensure_future(
            fetcher.page(route, cursor, limit=limit, path_params=path_params, query=query)
        )

    pos = start
    cursor = start.cursor
    first = True
    ahead: asyncio.Task[Page] | None = fetch(cursor)
    try:
        while ahead is not None:
            page = await ahead
            ahead = None
            if page.next_cursor is not None:
                if page.next_cursor == cursor:
                    msg = "Kraiter returned the cursor it was given (paging would loop)"
                    raise ApiError(msg, method="GET", path=route, code="CURSOR_LOOP")
                ahead = fetch(page.next_cursor)
                # Let the request leave before this page is processed: Kraiter then
                # works on the next page while we convert this one.
                await asyncio.sleep(0)
            items = _after(page.items, pos, key) if first else page.items
            first = False
            if page.next_cursor is not None:
                pos = Position(page.next_cursor)
            elif items:
                pos = Position(cursor, items[-1].get("id"), key(items[-1]))
            yield PageRows(items, cursor, pos, key)
            cursor = page.next_cursor
    finally:
        if ahead is not None:
            ahead.cancel()
            with contextlib.suppress(BaseException):
                await ahead


class ContactDirectory:
    """contact id → (email, user id), for rows (events) that carry only the contact id.

    Contacts are listed once, lazily and in id order, only as far as needed: contacts
    created during a run are found at the end of the list; a contact the list no
    longer shows is looked up by id (None when it was deleted).
    """

    def __init__(self, fetcher: Fetcher, *, limit: int = 100) -> None:
        self.fetcher = fetcher
        self.limit = limit
        self.emails: dict[str, str | None] = {}
        self.user_ids: dict[str, str | None] = {}
        self._pos = Position()
        self._exhausted = False

    def add(self, contact: Item) -> None:
        cid = contact.get("id")
        if isinstance(cid, str):
            self.emails[cid] = contact.get("email")
            self.user_ids[cid] = contact.get("userId")

    async def resolve(self, ids: set[Any]) -> None:
        missing = {i for i in ids if isinstance(i, str) and i not in self.emails}
        while missing and not self._exhausted:
            page = await self.fetcher.page("contacts.list", self._pos.cursor, limit=self.limit)
            for contact in page.items:
                self.add(contact)
            if page.next_cursor is None:
                self._exhausted = True
            else:
                self._pos = Position(page.next_cursor)
            missing = {i for i in missing if i not in self.emails}
        for cid in sorted(missing):
            try:
                contact = await self._get(cid)
            except NotFoundError:
                self.emails[cid] = None
            else:
                self.add(contact)
                self.emails.setdefault(cid, None)

    async def _get(self, contact_id: str) -> Item:
        client = self.fetcher.client
        return await self.fetcher.call(lambda: client.get_contact(contact_id))


async def lookup_contact(
    fetcher: Fetcher, client: KraiterClient, ref: str
) -> dict[str, Any] | None:
    """A contact by id or email (``--contacts``); None when Kraiter has no such one."""
    try:
        if client.dialect.is_contact_id(ref):
            return await fetcher.call(lambda: client.get_contact(ref))
        return await fetcher.call(lambda: client.get_contact_by_email(ref))
    except NotFoundError:
        return None


async def contact_list(client: KraiterClient, stream: str, contact_id: str) -> list[dict[str, Any]]:
    """One contact's sequences (``enrolments``) or segments (``memberships``)."""
    if stream == "enrolments":
        return await client.contact_sequences(contact_id)
    return await client.contact_segments(contact_id)


async def iter_contacts(
    fetcher: Fetcher,
    listed: Sequence[str] | None,
    driver: Any,
    *,
    page_size: int,
) -> AsyncIterator[tuple[Item, Any, Any]]:
    """(contact, driver position before it, after it) for the per-contact streams: the
    ``--contacts`` list (as ``{"ref": id or email}``, for the reader to look up), else
    every contact. ``driver`` is where a resumed run stopped."""
    if listed is not None:
        for index in range(int(driver or 0), len(listed)):
            yield {"ref": listed[index]}, index, index + 1
        return
    before = Position.from_json(driver)
    async for page in pages(fetcher, "contacts.list", before, limit=page_size):
        for i, contact in enumerate(page.items):
            after = page.position_after(i)
            yield contact, before.to_json(), after.to_json()
            before = after
        before = page.after
