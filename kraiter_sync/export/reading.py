"""Reading a stream: the tenant feeds page by page, per-contact streams several at once.

Both readers yield :class:`Step` s, in a deterministic order: the rows of one page (or
one contact's list) and the positions *after* them. The runner buffers the rows and
saves the positions with each checkpoint, so a resumed run starts exactly after the
last step it saved.

Per-contact streams (timelines, enrolments, memberships) fetch up to ``concurrency``
contacts at once, all through the one :class:`~kraiter_sync.export.paging.Fetcher` (the
client's rate controller paces every request alike), and still yield contact after
contact in the driver's order: a contact's pages wait in a small queue until the
contacts before it are done. Positions are those of a one-at-a-time loop: the driver
position *before* the contact being yielded, its own list position, and the driver
position *after* it once it is complete, so resume and incremental cursors stay exact
and the output order does not depend on which answer came first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.errors import NotFoundError
from kraiter_sync.export.paging import (
    Fetcher,
    Position,
    contact_list,
    iter_contacts,
    lookup_contact,
    pages,
)
from kraiter_sync.export.streams import StreamSpec

__all__ = ["UNCHANGED", "Step", "contact_steps", "feed_steps"]

Item = dict[str, Any]
#: Pages of one contact fetched ahead of the contact being yielded.
PAGES_AHEAD = 4


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


#: ``Step.driver`` when the step does not move the driver.
UNCHANGED: Any = _Unchanged()


@dataclass
class Step:
    """Rows, and where reading stands after them."""

    items: list[Item]
    #: The feed's position, or the position in ``contact``'s own list.
    position: Position | None = None
    contact: str | None = None
    #: The driver's position (over the contacts) after this step, or UNCHANGED.
    driver: Any = UNCHANGED
    #: A ``--contacts`` entry Kraiter has no contact for.
    missing: str | None = None


async def feed_steps(
    fetcher: Fetcher, spec: StreamSpec, start: Position, *, page_size: int
) -> AsyncIterator[Step]:
    """A tenant-wide list (events, contacts, sends, scheduled) from ``start``."""
    async for page in pages(fetcher, spec.route, start, key=spec.key, limit=page_size):
        yield Step(page.items, position=page.after)


def _annotate(items: list[Item], contact: Item) -> list[Item]:
    for item in items:
        item["contactId"] = contact["id"]
        item["email"] = contact.get("email")
        item["userId"] = contact.get("userId")
    return items


class _Done:
    pass


_DONE = _Done()


@dataclass
class _Failed:
    error: BaseException


async def _pump(source: AsyncIterator[Step], queue: asyncio.Queue[Any]) -> None:
    """One contact's steps into its queue, then _DONE (or the failure)."""
    try:
        async for step in source:
            await queue.put(step)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # handed to the consumer, raised in order
        await queue.put(_Failed(exc))
        return
    await queue.put(_DONE)


async def ordered(
    contacts: AsyncIterator[tuple[Item, Any, Any]],
    fetch: Callable[[Item], AsyncIterator[Step]],
    *,
    concurrency: int,
) -> AsyncIterator[Step]:
    """``fetch(contact)`` for up to ``concurrency`` contacts at once, yielded in order.

    Each step of a contact carries the driver position before it, except the last one,
    which moves the driver past the contact (with the rows that complete it: a list
    fetched in one request is never read twice). A failure is raised when its contact's
    turn comes (the contacts before it, and its own earlier pages, are yielded first).
    """
    window: deque[tuple[Any, Any, asyncio.Queue[Any], asyncio.Task[None]]] = deque()
    more = True

    async def fill() -> None:
        nonlocal more
        while more and len(window) < concurrency:
            try:
                contact, before, after = await anext(contacts)
            except StopAsyncIteration:
                more = False
                return
            queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=PAGES_AHEAD)
            task = asyncio.ensure_future(_pump(fetch(contact), queue))
            window.append((before, after, queue, task))

    try:
        await fill()
        while window:
            before, after, queue, _task = window[0]
            held: Step | None = None  # a contact's last step moves the driver past it
            while True:
                got = await queue.get()
                if got is _DONE:
                    break
                if held is not None:
                    held.driver = before
                    yield held
                if isinstance(got, _Failed):
                    raise got.error
                held = got
            window.popleft()
            last = held if held is not None else Step([])
            last.driver = after
            yield last
            await fill()
    finally:
        for _before, _after, _queue, task in window:
            task.cancel()
        for _before, _after, _queue, task in window:
            with contextlib.suppress(BaseException):
                await task


async def contact_steps(
    fetcher: Fetcher,
    client: KraiterClient,
    spec: StreamSpec,
    *,
    listed: tuple[str, ...] | None,
    driver: Any,
    positions: Mapping[str, Position],
    page_size: int,
    concurrency: int,
    not_found: list[str],
) -> AsyncIterator[Step]:
    """A per-contact stream: every contact (or the ``listed`` ones), ``concurrency`` at a
    time, from the ``driver`` position; timelines from each contact's own position."""

    async def found(contact: Item) -> Item | None:
        if "ref" not in contact:
            return contact
        return await lookup_contact(fetcher, client, contact["ref"])

    async def timeline(listed_contact: Item) -> AsyncIterator[Step]:
        contact = await found(listed_contact)
        if contact is None:
            yield Step([], missing=listed_contact["ref"])
            return
        cid = contact["id"]
        try:
            async for page in pages(
                fetcher,
                spec.route,
                positions.get(cid, Position()),
                key=spec.key,
                limit=page_size,
                path_params={"id": cid},
            ):
                yield Step(_annotate(page.items, contact), position=page.after, contact=cid)
        except NotFoundError:  # deleted since it was listed
            return

    async def one_list(listed_contact: Item) -> AsyncIterator[Step]:
        contact = await found(listed_contact)
        if contact is None:
            yield Step([], missing=listed_contact["ref"])
            return
        try:
            rows = await fetcher.call(
                functools.partial(contact_list, client, spec.name, contact["id"])
            )
        except NotFoundError:  # deleted since it was listed
            rows = []
        yield Step(_annotate(rows, contact), contact=contact["id"])

    contacts = iter_contacts(fetcher, listed, driver, page_size=page_size)
    fetch = timeline if spec.source == "contact_pages" else one_list
    async for step in ordered(contacts, fetch, concurrency=concurrency):
        if step.missing is not None:
            not_found.append(step.missing)
        yield step
