"""Kraiter's contacts as a polars frame: a full listing, or per-email lookups.

Listing costs one request per 100 contacts Kraiter holds; looking contacts up costs one
request per local email. Kraiter has no count endpoint, so :func:`snapshot_contacts`
picks the cheaper one without knowing the remote size: it starts listing and, if the
listing has not finished after as many pages as there are local emails, Kraiter holds
more than 100 contacts per local email and lookups are cheaper — it switches. That
never spends more than twice the requests of the better strategy, and the result says
which one was used and why.

A listing sees every remote contact (so remote-only contacts and mirror mode are
possible); lookups only see the local ones (``complete`` is False).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import polars as pl

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.api.pool import run_pool
from kraiter_sync.logs import get_logger
from kraiter_sync.plan.contacts import REMOTE_SCHEMA
from kraiter_sync.validate.keys import canonical_json

__all__ = [
    "PAGE_SIZE",
    "Caller",
    "RemoteSnapshot",
    "Strategy",
    "list_within",
    "normalise_keys",
    "once",
    "remote_frame",
    "snapshot_contacts",
    "snapshot_digest",
]

log = get_logger("remote")
PAGE_SIZE = 100
Strategy = Literal["auto", "listing", "lookups"]
T = TypeVar("T")
ProgressFn = Callable[[int], None]


class Caller(Protocol):
    """Runs one request factory, e.g. with retries (``retry.call_with_retry``)."""

    def __call__(self, fn: Callable[[], Awaitable[T]], /) -> Awaitable[T]: ...


def normalise_keys(emails: pl.Series) -> pl.Series:
    """Kraiter's stored emails → the join key, normalised exactly like local emails.

    Kraiter matches emails case-insensitively and keeps the case first sent; the
    validator's normalisation (trim, lowercase, IDNA domains) makes ``Alice@Example.com``
    the key ``alice@example.com``. An address the validator would refuse still gets a
    key (trimmed, lowercased) so that it shows up as remote-only rather than vanishing.
    """
    from kraiter_sync.validate import normalise_emails  # the validator is heavy to import

    text = emails.cast(pl.String)
    normalised = normalise_emails(text, allow_smtputf8=True, allow_special_use_domains=True)[
        "email"
    ]
    fallback = text.str.strip_chars().str.to_lowercase()
    return pl.select(pl.coalesce(pl.lit(normalised), pl.lit(fallback))).to_series().alias("key")


def snapshot_digest(contact: Mapping[str, Any]) -> str:
    """A stable digest of what a plan decided from: email, userId, properties.

    Stored per affected contact in a saved plan (``remote_hash``); a different digest at
    apply time means someone changed the contact in Kraiter since the plan was made.
    """
    text = json.dumps(
        [
            contact.get("email"),
            contact.get("userId"),
            canonical_json(contact.get("properties")),
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def remote_frame(contacts: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """Contact objects (as the client returns them) → :data:`REMOTE_SCHEMA` frame."""
    cols: dict[str, list[str | None]] = {name: [] for name in REMOTE_SCHEMA}
    for c in contacts:
        cols["id"].append(c.get("id"))
        cols["email"].append(c.get("email"))
        uid = c.get("userId")
        cols["user_id"].append(None if uid is None else str(uid))
        cols["properties"].append(canonical_json(c.get("properties")))
        cols["created_at"].append(c.get("createdAt"))
        cols["updated_at"].append(c.get("updatedAt"))
        cols["hash"].append(snapshot_digest(c))
        cols["raw"].append(json.dumps(dict(c), ensure_ascii=False, separators=(",", ":")))
    frame = pl.DataFrame(
        {k: v for k, v in cols.items() if k != "key"},
        schema={k: v for k, v in REMOTE_SCHEMA.items() if k != "key"},
    )
    return frame.with_columns(normalise_keys(frame["email"]).alias("key")).select(
        list(REMOTE_SCHEMA)
    )


@dataclass
class RemoteSnapshot:
    """Kraiter's contacts as a frame, and how they were read."""

    frame: pl.DataFrame
    strategy: Literal["listing", "lookups"]
    #: True when every remote contact was listed (remote-only contacts are known).
    complete: bool
    requests: int
    reason: str


async def _list_pages(
    client: KraiterClient,
    *,
    max_pages: int | None,
    on_progress: ProgressFn | None,
    call: Caller,
) -> tuple[list[dict[str, Any]], int, bool]:
    """Page through the contacts; stop after ``max_pages``. Returns (items, pages, done)."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    seen: set[str] = set()
    while max_pages is None or pages < max_pages:
        page = await call(
            functools.partial(client.get_page, "contacts.list", cursor=cursor, limit=PAGE_SIZE)
        )
        pages += 1
        items.extend(page.items)
        if on_progress is not None:
            on_progress(len(items))
        if page.next_cursor is None:
            return items, pages, True
        if page.next_cursor in seen:
            msg = "Kraiter returned a cursor it had already returned (paging would loop)"
            raise RuntimeError(msg)
        seen.add(page.next_cursor)
        cursor = page.next_cursor
    return items, pages, False


async def _lookups(
    client: KraiterClient,
    emails: Sequence[str],
    *,
    concurrency: int,
    on_progress: ProgressFn | None,
    call: Caller,
) -> list[dict[str, Any]]:
    """``GET /api/contacts/by-email`` for each email, ``concurrency`` at a time."""
    found: list[dict[str, Any]] = []
    done = 0

    async def lookup(email: str) -> None:
        nonlocal done
        contact = await call(functools.partial(client.get_contact_by_email, email))
        if contact is not None:
            found.append(contact)
        done += 1
        if on_progress is not None and (done % 100 == 0 or done == len(emails)):
            on_progress(done)

    await run_pool(emails, lookup, concurrency=concurrency)
    return found


async def once(fn: Callable[[], Awaitable[T]]) -> T:
    """The default caller: one attempt, no retries."""
    return await fn()


async def list_within(
    client: KraiterClient, *, max_pages: int, call: Caller = once
) -> RemoteSnapshot | None:
    """Every remote contact, if Kraiter holds no more than ``max_pages`` pages of them;
    None (after reading that many pages) if it holds more.

    For callers whose fallback is not a look-up per email: the importer's contacts for
    events upsert each email instead, which finds and creates in one request.
    """
    items, pages, finished = await _list_pages(
        client, max_pages=max(1, max_pages), on_progress=None, call=call
    )
    if not finished:
        return None
    reason = f"{len(items):,} contacts fit in {pages:,} pages"
    return RemoteSnapshot(remote_frame(items), "listing", True, pages, reason)


async def snapshot_contacts(
    client: KraiterClient,
    emails: Sequence[str] | None = None,
    *,
    strategy: Strategy = "auto",
    concurrency: int = 16,
    on_progress: ProgressFn | None = None,
    call: Caller = once,
) -> RemoteSnapshot:
    """Read Kraiter's contacts into a frame, by listing or by looking ``emails`` up.

    ``emails`` are the (normalised) local emails; without them only listing makes
    sense. ``call`` wraps every request (pass a retrying caller, e.g.
    ``functools.partial(retry.call_with_retry, policy)``).
    """
    if strategy == "lookups" and emails is None:
        msg = "lookups need the local emails"
        raise ValueError(msg)
    if strategy == "lookups":
        assert emails is not None  # noqa: S101 (narrowing; checked above)
        found = await _lookups(
            client, emails, concurrency=concurrency, on_progress=on_progress, call=call
        )
        return RemoteSnapshot(
            remote_frame(found), "lookups", False, len(emails), "asked for by --remote lookups"
        )
    budget = None if strategy == "listing" or emails is None else max(1, len(emails))
    items, pages, finished = await _list_pages(
        client, max_pages=budget, on_progress=on_progress, call=call
    )
    if finished:
        reason = (
            "asked for by --remote listing"
            if strategy == "listing"
            else f"{len(items):,} contacts fit in {pages:,} pages"
            + ("" if emails is None else f", no more than {len(emails):,} lookups")
        )
        return RemoteSnapshot(remote_frame(items), "listing", True, pages, reason)
    assert emails is not None  # noqa: S101 (a budget exists only with emails)
    log.info(
        "Kraiter holds more than %d contacts: looking up the %d local emails instead",
        pages * PAGE_SIZE,
        len(emails),
    )
    found = await _lookups(
        client, emails, concurrency=concurrency, on_progress=on_progress, call=call
    )
    reason = (
        f"Kraiter holds more than {pages * PAGE_SIZE:,} contacts, so {len(emails):,} lookups "
        f"cost less than listing them all (the first {pages:,} pages were read to find out)"
    )
    return RemoteSnapshot(remote_frame(found), "lookups", False, pages + len(emails), reason)
