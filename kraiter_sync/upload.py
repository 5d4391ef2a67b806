"""The async upload engine: bounded concurrency, adaptive rate, retries, the ledger.

Exactly-once *effect* over an API with no idempotency keys (design.md §4) rests on
three rules this module keeps:

1. An event key is written ``inflight`` to the ledger, in one transaction per batch,
   **before** any request for it leaves.
2. An ambiguous failure (timeout or cut connection after sending, 5xx) is resolved by
   looking for the event in Kraiter (``GET /api/events?contactId&name``, matching
   timestamp and properties) before anything is re-sent: found → ``done``. Properties
   match when their canonical forms (``validate.keys.canonical_json``) are equal, so
   ``{"v": 1}`` in Kraiter is never taken for the ``{"v": true}`` being sent.
3. Keys a killed run left ``inflight`` are verified the same way before the next run
   sends anything (:meth:`Engine.recover`).

Rate control is the client's observer (:class:`~kraiter_sync.ratelimit.RateController`),
so every request — writes, verification reads, contact look-ups — spends the same budget.
Retries use :mod:`kraiter_sync.retry` (tenacity, full jitter, Retry-After aware).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

import polars as pl

from kraiter_sync.client import KraiterClient
from kraiter_sync.errors import ApiError, ConflictError, KraiterSyncError, NotFoundError
from kraiter_sync.ledger import Ledger
from kraiter_sync.logs import get_logger
from kraiter_sync.retry import RetryPolicy, call_with_retry
from kraiter_sync.validate.keys import canonical_json, canonical_value

__all__ = [
    "ContactRow",
    "Engine",
    "EngineOptions",
    "EngineStats",
    "EventRow",
    "Outcome",
    "event_matches",
    "rows_of_events",
]

log = get_logger("upload")
T = TypeVar("T")


@dataclass(frozen=True)
class EngineOptions:
    """Knobs of the engine; the CLI's --concurrency and --max-retries land here."""

    concurrency: int = 16
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Keys marked inflight per ledger transaction (also the done/rejected flush size).
    batch_size: int = 500


@dataclass
class EngineStats:
    """Counters for the summary and the progress display."""

    events_sent: int = 0
    events_verified: int = 0  # ambiguous outcomes found already applied in Kraiter
    events_rejected: int = 0
    events_failed: int = 0  # out of retries; left for the next run
    contacts_created: int = 0
    contacts_updated: int = 0
    contacts_unchanged: int = 0
    contacts_rejected: int = 0
    contacts_failed: int = 0
    retries: int = 0
    verifications: int = 0


@dataclass(frozen=True)
class EventRow:
    """One event ready to send (a row of the canonical events frame)."""

    key: str
    contact_id: str
    name: str
    timestamp: str
    properties: str
    source_file: str
    source_row: int
    email: str | None = None


@dataclass(frozen=True)
class ContactRow:
    """One contact ready to write (a row of the canonical contacts frame)."""

    email: str
    properties: str
    user_id: str | None
    source_file: str
    source_row: int
    props_hash: str = ""
    #: Kraiter's id when known (the ledger's contact cache, or a reconcile plan): the
    #: write is one PATCH by id instead of create → CONFLICT → look-up → PATCH.
    contact_id: str | None = None


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What happened to one record: ``done`` (remote id) | ``rejected`` | ``failed``."""

    row: T
    status: str
    remote_id: str | None = None
    code: str | None = None
    message: str | None = None


class RejectSink(Protocol):
    def __call__(self, outcomes: Sequence[Outcome[Any]]) -> None: ...


def _same_email(stored: object, email: str) -> bool:
    """Whether Kraiter's stored email (kept in the case first sent) is ``email``."""
    return isinstance(stored, str) and stored.strip().lower() == email.strip().lower()


def _instant(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None


def event_matches(row: EventRow, remote: dict[str, Any]) -> bool:
    """Whether a remote event is this row: same name, instant (to the ms) and properties
    (the same canonical form: types count, ``1`` is neither ``1.0`` nor ``true``)."""
    if remote.get("name", remote.get("event")) != row.name:
        return False
    mine, theirs = _instant(row.timestamp), _instant(str(remote.get("timestamp", "")))
    if mine is None or theirs is None:
        return False
    if abs((mine - theirs).total_seconds()) >= 0.001:
        return False
    return canonical_json(row.properties) == canonical_json(remote.get("properties"))


def rows_of_events(frame: pl.DataFrame) -> Iterator[EventRow]:
    """Iterate a canonical events frame (with ``contact_id`` resolved) as EventRows."""
    emails = (
        frame["email"] if "email" in frame.columns else pl.repeat(None, frame.height, eager=True)
    )
    for key, cid, name, ts, props, sfile, srow, email in zip(
        frame["event_key"],
        frame["contact_id"],
        frame["name"],
        frame["timestamp_iso"],
        frame["properties"],
        frame["source_file"],
        frame["source_row"],
        emails,
        strict=True,
    ):
        yield EventRow(key, cid, name, ts, props, sfile, int(srow), email)


class Engine:
    """Sends contacts and events through one client, one rate budget, one ledger."""

    def __init__(
        self,
        client: KraiterClient,
        ledger: Ledger,
        *,
        target: str,
        run_id: int,
        options: EngineOptions | None = None,
        on_rejected: RejectSink | None = None,
        on_progress: Callable[[EngineStats], None] | None = None,
        on_retry: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.target = target
        self.run_id = run_id
        self.options = options or EngineOptions()
        self.stats = EngineStats()
        self._on_rejected = on_rejected
        self._on_progress = on_progress
        self._on_retry = on_retry
        self._stop = asyncio.Event()
        self._claimed: set[str] = set()
        self._done: list[tuple[str, str]] = []
        self._rejected: list[Outcome[EventRow]] = []
        self._forget: list[str] = []
        self._refreshed: dict[str, str] = {}

    # -- stopping ------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop issuing new requests; in-flight ones finish and are recorded."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- the worker pool -----------------------------------------------------------------

    @asynccontextmanager
    async def _pool(
        self, handle: Callable[[T], Awaitable[None]]
    ) -> AsyncIterator[Callable[[T], Awaitable[None]]]:
        """A bounded pool of workers; yields ``put`` to feed it. Drains on exit."""
        queue: asyncio.Queue[T | None] = asyncio.Queue(maxsize=self.options.concurrency * 2)
        errors: list[BaseException] = []

        async def worker() -> None:
            while (item := await queue.get()) is not None:
                try:
                    await handle(item)
                except Exception as exc:  # a bug, not a row problem: stop everything
                    errors.append(exc)
                    self.request_stop()

        workers = [asyncio.create_task(worker()) for _ in range(self.options.concurrency)]
        try:
            yield queue.put
        finally:
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
        if errors:
            raise errors[0]

    async def with_retry(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run one call under the engine's retry policy, counting retries (and telling
        ``on_retry`` of each: the run's request timeline)."""

        def count(exc: BaseException, _attempt: int) -> None:
            self.stats.retries += 1
            if self._on_retry is not None:
                self._on_retry(exc)

        return await call_with_retry(attempt, self.options.retry, before_retry=count)

    # -- events --------------------------------------------------------------------------

    async def find_remote(self, row: EventRow, contact_id: str | None = None) -> str | None:
        """The id of the remote event that is ``row``, if Kraiter holds it (unclaimed)."""
        self.stats.verifications += 1
        contact = contact_id or row.contact_id
        async for remote in self.client.list_events(contact_id=contact, name=row.name):
            rid = str(remote.get("id"))
            if rid not in self._claimed and event_matches(row, remote):
                self._claimed.add(rid)
                return rid
        return None

    async def recover(self, rows: Sequence[EventRow]) -> list[EventRow]:
        """Verify keys a killed run left inflight; returns those that must still be sent.

        Rows are grouped by (contact, name) so each group costs one listing.
        """
        groups: dict[tuple[str, str], list[EventRow]] = {}
        for row in rows:
            groups.setdefault((row.contact_id, row.name), []).append(row)
        to_send: list[EventRow] = []

        async def check(group: list[EventRow]) -> None:
            head = group[0]

            async def listing() -> list[dict[str, Any]]:
                return [
                    ev
                    async for ev in self.client.list_events(
                        contact_id=head.contact_id, name=head.name
                    )
                ]

            self.stats.verifications += 1
            remote = await self.with_retry(listing)
            found: list[tuple[str, str]] = []
            for row in group:
                match = next(
                    (
                        str(ev["id"])
                        for ev in remote
                        if str(ev.get("id")) not in self._claimed and event_matches(row, ev)
                    ),
                    None,
                )
                if match is None:
                    to_send.append(row)
                else:
                    self._claimed.add(match)
                    found.append((row.key, match))
            if found:
                self.ledger.mark_done(self.target, found)
                self.stats.events_verified += len(found)

        async with self._pool(check) as put:
            for group in groups.values():
                if self.stopping:
                    break
                await put(group)
        return to_send

    async def send_events(self, rows: Iterable[EventRow]) -> None:
        """Send rows (already planned: not done, not duplicated), batch by batch."""
        batch: list[EventRow] = []
        async with self._pool(self._send_event) as put:
            for row in rows:
                batch.append(row)
                if len(batch) >= self.options.batch_size:
                    if not await self._release(batch, put):
                        break
                    batch = []
            else:
                if batch:
                    await self._release(batch, put)
        self._flush()

    async def _release(
        self, batch: list[EventRow], put: Callable[[EventRow], Awaitable[None]]
    ) -> bool:
        """Mark a batch inflight (one transaction) and only then hand it to the workers."""
        if self.stopping:
            return False
        self.ledger.mark_inflight(self.target, [row.key for row in batch], self.run_id)
        for i, row in enumerate(batch):
            if self._stop.is_set():
                # Never sent: the ledger must not claim they might have been.
                self._forget.extend(r.key for r in batch[i:])
                return False
            await put(row)
        return True

    async def _refresh_contact(self, email: str) -> str:
        """The contact behind a cached id is gone (deleted in Kraiter): make it again."""
        if email not in self._refreshed:
            contact, _created = await self.client.upsert_contact(email)
            self._refreshed[email] = str(contact["id"])
            self.ledger.put_contacts(self.target, [(email, self._refreshed[email], None)])
            log.info("contact %s was missing in Kraiter; recreated it", email)
        return self._refreshed[email]

    async def _send_event(self, row: EventRow) -> None:
        ambiguous = False
        contact_id = self._refreshed.get(row.email or "", row.contact_id)

        async def attempt() -> str:
            nonlocal ambiguous, contact_id
            if ambiguous:
                found = await self.find_remote(row, contact_id)
                if found is not None:
                    self.stats.events_verified += 1
                    return found
            try:
                event = await self.client.track_event(
                    row.name,
                    contact_id=contact_id,
                    properties=row.properties,
                    timestamp=row.timestamp,
                )
            except NotFoundError:
                if row.email is None or contact_id == self._refreshed.get(row.email):
                    raise
                # Our cache named a contact Kraiter no longer has: recreate, send again.
                contact_id = await self._refresh_contact(row.email)
                return await attempt()
            except KraiterSyncError as exc:
                ambiguous = ambiguous or exc.ambiguous
                raise
            self.stats.events_sent += 1
            return str(event["id"])

        try:
            remote_id = await self.with_retry(attempt)
        except ApiError as exc:
            if exc.retriable:
                self._give_up(row, exc, ambiguous)
            else:
                self._rejected.append(
                    Outcome(row, "rejected", code=exc.code, message=exc.api_message)
                )
                self.stats.events_rejected += 1
        except KraiterSyncError as exc:
            self._give_up(row, exc, ambiguous)
        else:
            self._claimed.add(remote_id)
            self._done.append((row.key, remote_id))
        if len(self._done) + len(self._rejected) + len(self._forget) >= self.options.batch_size:
            self._flush()

    def _give_up(self, row: EventRow, exc: KraiterSyncError, ambiguous: bool) -> None:
        """Out of retries: an ambiguous key stays inflight (verified next run)."""
        self.stats.events_failed += 1
        log.warning(
            "giving up on row %s:%s after retries: %s", row.source_file, row.source_row, exc
        )
        if not ambiguous:
            self._forget.append(row.key)

    def _flush(self) -> None:
        """Record finished keys in one transaction; hand rejects to the sink."""
        if self._done:
            self.ledger.mark_done(self.target, self._done)
            self._done = []
        if self._rejected:
            self.ledger.mark_rejected(
                self.target,
                [(o.row.key, o.code or "", o.message or "") for o in self._rejected],
            )
            if self._on_rejected is not None:
                self._on_rejected(self._rejected)
            self._rejected = []
        if self._forget:
            self.ledger.forget(self.target, self._forget)
            self._forget = []
        if self._on_progress is not None:
            self._on_progress(self.stats)

    # -- contacts ------------------------------------------------------------------------

    async def ensure_contacts(self, emails: Iterable[str]) -> dict[str, str]:
        """Make sure each email is a contact; returns email → contact id.

        Known emails come from the ledger's contact cache; each unknown one costs one
        upsert (idempotent, so safe to retry).
        """
        wanted = list(dict.fromkeys(emails))
        ids = {e: cid for e, (cid, _h) in self.ledger.get_contacts(self.target, wanted).items()}
        missing = [email for email in wanted if email not in ids]
        found: list[tuple[str, str]] = []

        async def upsert(email: str) -> None:
            async def attempt() -> dict[str, Any]:
                contact, _created = await self.client.upsert_contact(email)
                return contact

            try:
                contact = await self.with_retry(attempt)
            except KraiterSyncError as exc:
                log.warning("could not make sure contact %s exists: %s", email, exc)
                self.stats.contacts_failed += 1
                return
            ids[email] = str(contact["id"])
            found.append((email, ids[email]))
            if len(found) >= self.options.batch_size:
                self.ledger.put_contacts(self.target, [(e, i, None) for e, i in found])
                found.clear()

        async with self._pool(upsert) as put:
            for email in missing:
                if self.stopping:
                    break
                await put(email)
        if found:
            self.ledger.put_contacts(self.target, [(e, i, None) for e, i in found])
        return ids

    async def write_contacts(self, rows: Iterable[ContactRow]) -> list[Outcome[ContactRow]]:
        """Create or update contacts; unchanged ones (by cached hash) cost no request.

        A row with a known ``contact_id`` is one PATCH by id. When that id is gone
        (404: deleted in Kraiter) or now holds another email, the id is dropped from
        the ledger's cache and the row is written like one without: create first; on
        CONFLICT look the contact up and patch only what differs.
        Returns the rejected outcomes (4xx from Kraiter).
        """
        rejected: list[Outcome[ContactRow]] = []
        cache: list[tuple[str, str, str | None]] = []

        async def write(row: ContactRow) -> None:
            props = json.loads(row.properties or "{}")
            known = row.contact_id

            async def attempt() -> tuple[str, str]:
                nonlocal known
                if known is not None:
                    try:
                        patched = await self.client.update_contact(
                            known, properties=props or None, user_id=row.user_id
                        )
                    except NotFoundError:
                        patched = None
                    if patched is not None and _same_email(patched.get("email"), row.email):
                        return known, "updated"
                    if patched is not None:
                        log.warning(
                            "contact %s now has the email %s in Kraiter, not %s: its cached "
                            "id is dropped and %s is written by email",
                            known,
                            patched.get("email"),
                            row.email,
                            row.email,
                        )
                    self.ledger.forget_contacts(self.target, [row.email])
                    known = None
                try:
                    contact = await self.client.create_contact(
                        row.email, properties=props or None, user_id=row.user_id
                    )
                except ConflictError:
                    existing = await self.client.get_contact_by_email(row.email)
                    if existing is None:  # deleted between the two calls: try again
                        raise
                    theirs = existing.get("properties") or {}
                    changed = {
                        k: v
                        for k, v in props.items()
                        if k not in theirs or canonical_value(theirs[k]) != canonical_value(v)
                    }
                    user_changed = row.user_id is not None and existing.get("userId") != row.user_id
                    if not changed and not user_changed:
                        return str(existing["id"]), "unchanged"
                    await self.client.update_contact(
                        str(existing["id"]),
                        properties=changed or None,
                        user_id=row.user_id if user_changed else None,
                    )
                    return str(existing["id"]), "updated"
                return str(contact["id"]), "created"

            try:
                contact_id, what = await self.with_retry(attempt)
            except ApiError as exc:
                if exc.retriable or isinstance(exc, ConflictError):
                    self.stats.contacts_failed += 1
                    log.warning("could not write contact %s: %s", row.email, exc)
                    return
                rejected.append(Outcome(row, "rejected", code=exc.code, message=exc.api_message))
                self.stats.contacts_rejected += 1
                return
            except KraiterSyncError as exc:
                self.stats.contacts_failed += 1
                log.warning("could not write contact %s: %s", row.email, exc)
                return
            setattr(self.stats, f"contacts_{what}", getattr(self.stats, f"contacts_{what}") + 1)
            cache.append((row.email, contact_id, row.props_hash))
            if len(cache) >= self.options.batch_size:
                self.ledger.put_contacts(self.target, cache)
                cache.clear()
                if self._on_progress is not None:
                    self._on_progress(self.stats)

        async with self._pool(write) as put:
            for row in rows:
                if self.stopping:
                    break
                await put(row)
        if cache:
            self.ledger.put_contacts(self.target, cache)
        return rejected
