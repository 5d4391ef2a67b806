"""Event writes: every event goes through the ledger, exactly once (design.md §4).

1. An event key is written ``inflight`` to the ledger, in one transaction per batch,
   **before** any request for it leaves.
2. An ambiguous failure (the answer lost, a timeout after sending, a 5xx) is never
   sent again before it is checked. Such sends wait, inflight, and are checked together
   late in the run (:meth:`EventWriter.settle`; sooner when
   ``EngineOptions.unchecked_limit`` of them wait): one listing per (contact, name)
   group (``GET /api/events?contactId|email&name``) serves every waiting key of the
   group, matching timestamp and properties: found → ``done``, not found → sent again
   (while retries last; then it stays inflight for the next run). Properties match when
   their canonical forms (``validate.keys.canonical_json``) are equal, so ``{"v": 1}``
   in Kraiter is never taken for the ``{"v": true}`` being sent.
3. Keys a killed run left ``inflight`` are checked the same way before the next run
   sends anything (:meth:`EventWriter.recover`).

Which contact an event goes to, and how many contact requests that costs, is
``upload.links``: events of an email whose id is not known go by email where Kraiter
creates contacts for them.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kraiter_sync.errors import ApiError, KraiterSyncError, NotFoundError
from kraiter_sync.logs import get_logger
from kraiter_sync.upload.contacts import ContactWriter
from kraiter_sync.upload.core import EngineCore
from kraiter_sync.upload.links import ContactLinks
from kraiter_sync.upload.rows import EventRow, Outcome, event_matches
from kraiter_sync.validate.keys import event_instant

__all__ = ["EventWriter"]

log = get_logger("upload")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

#: What a check lists: ("contactId" | "email", its value, event name).
Group = tuple[str, str, str]


class _Ambiguous(Exception):
    """A send whose outcome is unknown; it waits for a check instead of a retry (not a
    ``KraiterSyncError``, so ``call_with_retry`` does not send it again)."""

    def __init__(self, cause: KraiterSyncError, contact_id: str | None) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.contact_id = contact_id


@dataclass(frozen=True)
class _Unchecked:
    """A send waiting for its check: the row, how it was addressed, what went wrong."""

    row: EventRow
    contact_id: str | None
    cause: KraiterSyncError


def _millisecond(timestamp: str) -> int | None:
    """The epoch millisecond an event's timestamp falls in (None: not a timestamp)."""
    instant = event_instant(timestamp)
    if instant is None:
        return None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return (instant - _EPOCH) // _MS


def _group(row: EventRow, contact_id: str | None) -> Group:
    if contact_id is not None:
        return ("contactId", contact_id, row.name)
    return ("email", row.email or "", row.name)


class EventWriter:
    """The event operations of one engine (see the module docstring)."""

    def __init__(self, core: EngineCore, contacts: ContactWriter) -> None:
        self.core = core
        self.links = ContactLinks(core, contacts)
        self._claimed: set[str] = set()
        self._done: list[tuple[str, str]] = []
        self._rejected: list[Outcome[EventRow]] = []
        self._forget: list[str] = []
        self._unchecked: list[_Unchecked] = []
        #: key → sends whose outcome was unknown (each one is checked before another).
        self._unknown_sends: dict[str, int] = {}

    # -- checks ----------------------------------------------------------------------------

    async def _find(
        self, group: Group, rows: Sequence[EventRow]
    ) -> list[tuple[EventRow, dict[str, Any]]]:
        """One listing of ``group``, streamed: each remote event is compared with the
        waiting rows of its millisecond only, so a long listing costs little and memory
        follows the rows, not the group."""
        by, ref, name = group
        if by == "contactId":
            pages = self.core.client.list_events(contact_id=ref, name=name)
        else:
            pages = self.core.client.list_events(email=ref, name=name)
        waiting: dict[int, list[EventRow]] = {}
        for row in rows:
            ms = _millisecond(row.timestamp)
            if ms is not None:
                waiting.setdefault(ms, []).append(row)
        found: list[tuple[EventRow, dict[str, Any]]] = []
        async for event in pages:
            ms = _millisecond(str(event.get("timestamp", "")))
            if ms is None or str(event.get("id")) in self._claimed:
                continue
            # rows are whole milliseconds; a remote instant within 1 ms of one is in
            # its millisecond or the one before
            for candidates in (waiting.get(ms), waiting.get(ms + 1)):
                match = next((r for r in candidates or () if event_matches(r, event)), None)
                if match is not None and candidates is not None:
                    candidates.remove(match)
                    found.append((match, event))
                    break
        return found

    async def _check(self, pairs: Sequence[tuple[EventRow, str | None]]) -> list[EventRow]:
        """Look the rows up in Kraiter, one listing per (contact, name) group: found →
        ``done``; returns the rows Kraiter does not hold. Rows whose group could not be
        listed stay inflight (failed for this run)."""
        core = self.core
        groups: dict[Group, list[EventRow]] = {}
        for row, contact_id in pairs:
            # once its id is known, the contact's events are listed by id, sent either way
            known = contact_id or (self.links.ids.get(row.email) if row.email else None)
            groups.setdefault(_group(row, known), []).append(row)
        missing: list[EventRow] = []

        async def check(item: tuple[Group, list[EventRow]]) -> None:
            group, rows = item
            core.stats.verifications += 1
            try:
                matches = await core.with_retry(functools.partial(self._find, group, rows))
            except KraiterSyncError as exc:
                core.stats.events_failed += len(rows)
                log.warning(
                    "could not check %d event(s) %s of %s: %s; they stay in flight for the "
                    "next run",
                    len(rows),
                    group[2],
                    group[1],
                    exc,
                )
                return
            matched = {row.key for row, _event in matches}
            missing.extend(row for row in rows if row.key not in matched)
            found: list[tuple[str, str]] = []
            for row, event in matches:
                self._claimed.add(str(event["id"]))
                if event.get("contactId") is None and not await self._link(row):
                    core.stats.events_failed += 1
                else:
                    found.append((row.key, str(event["id"])))
            if found:
                core.store.mark_done(core.target, found)
                core.stats.events_verified += len(found)

        await core.feed(list(groups.items()), check)
        self.links.flush()
        return missing

    async def _link(self, row: EventRow) -> bool:
        """A stored event waits for its contact (link-later): make the contact, which links
        it. False when it cannot be made now (the key stays inflight)."""
        if row.email is None:
            return True
        try:
            await self.links.waits(row.email)
        except KraiterSyncError as exc:
            log.warning(
                "event %s:%s is stored in Kraiter, but its contact %s could not be created: "
                "%s; the next run creates it",
                row.source_file,
                row.source_row,
                row.email,
                exc,
            )
            return False
        return True

    async def recover(self, rows: Sequence[EventRow]) -> list[EventRow]:
        """Check keys a killed run left inflight; returns those that must still be sent."""
        return await self._check([(row, self.links.contact_of(row)) for row in rows])

    async def settle(self) -> None:
        """Check every send whose outcome is unknown, once per (contact, name) group, and
        send again what Kraiter does not hold, until none is left (or retries run out)."""
        core = self.core
        while self._unchecked and not core.stopping:
            waiting, self._unchecked = self._unchecked, []
            causes = {w.row.key: w.cause for w in waiting}
            missing = await self._check([(w.row, w.contact_id) for w in waiting])
            again: list[EventRow] = []
            for row in missing:
                if self._unknown_sends[row.key] > core.options.retry.max_retries:
                    self._give_up(row, causes[row.key], ambiguous=True)
                else:
                    core.note_retry(causes[row.key])
                    again.append(row)
            self.flush()
            await self._send_some(iter(again), fresh=False)
        if self._unchecked:  # stopping: checked by the next run
            core.stats.events_failed += len(self._unchecked)
            log.warning(
                "%d event(s) whose answer was lost stay in flight: the next run checks them",
                len(self._unchecked),
            )
            self._unchecked = []
        self.flush()

    # -- sending ---------------------------------------------------------------------------

    async def send(self, rows: Iterable[EventRow], *, settle: bool = True) -> None:
        """Send rows (already planned: not done, not duplicated), batch by batch; with
        ``settle`` the sends whose outcome is unknown are checked before returning
        (else by a later :meth:`settle`)."""
        pending = iter(rows)
        while await self._send_some(pending):
            await self.settle()  # too many wait for a check: check them before going on
        if settle:
            await self.settle()
        self.flush()

    async def _send_some(self, rows: Iterator[EventRow], *, fresh: bool = True) -> bool:
        """Send rows until they run out or a stop (False), or until too many sends wait
        for a check (True: call again for the rest). ``fresh``: not yet inflight."""
        core = self.core
        batch: list[EventRow] = []
        async with core.pool(self._send_one) as put:
            for row in rows:
                batch.append(row)
                if len(batch) >= core.options.batch_size:
                    if not await self._release(batch, put, fresh=fresh):
                        return False
                    batch = []
                    if len(self._unchecked) >= core.options.unchecked_limit:
                        return True
            if batch:
                await self._release(batch, put, fresh=fresh)
        return False

    async def _release(
        self, batch: list[EventRow], put: Callable[[EventRow], Awaitable[None]], *, fresh: bool
    ) -> bool:
        """Mark a batch inflight (one transaction) and only then hand it to the workers."""
        core = self.core
        if core.stopping:
            self._not_sent(batch, fresh=fresh)
            return False
        if fresh:
            core.store.mark_inflight(core.target, [row.key for row in batch], core.run_id)
        batch = await self._prepare(batch)
        for i, row in enumerate(batch):
            if core.should_stop():
                self._not_sent(batch[i:], fresh=fresh)
                return False
            await put(row)
        return True

    def _not_sent(self, rows: Sequence[EventRow], *, fresh: bool) -> None:
        if fresh:  # never sent: the ledger must not claim they might have been
            self._forget.extend(row.key for row in rows)
        elif rows:  # sent once, checked absent: checked again by the next run
            self.core.stats.events_failed += len(rows)

    async def _prepare(self, batch: list[EventRow]) -> list[EventRow]:
        """Before the first sends: learn how Kraiter treats unknown emails (one look-up,
        then that event alone), and where it does not create contacts, find or create
        the expected ones first (``upload.links``)."""
        links = self.links
        probe = links.probe_row(batch)
        if probe is not None and probe.email is not None and await links.absent(probe.email):
            await self._send_one(probe)
            batch = [row for row in batch if row is not probe]
        await links.ready()
        return batch

    async def _deliver(self, row: EventRow) -> tuple[dict[str, Any], str | None]:
        """Send one event (retrying what is safe to retry); returns Kraiter's answer and
        the contact id it was sent with (None: by email)."""
        links = self.links
        contact_id = links.contact_of(row)
        if contact_id is None and row.email is not None and links.contacts_first:
            contact_id = await links.make(row.email)
        while True:
            try:
                event = await self.core.with_retry(functools.partial(self._track, row, contact_id))
            except NotFoundError:
                if row.email is None:
                    raise
                if contact_id is None:  # by email: Kraiter does not create contacts
                    contact_id = await links.not_found(row.email)
                    continue
                fresh = await links.refresh(row.email, contact_id)
                if fresh is None:
                    raise
                contact_id = fresh
                continue
            return event, contact_id

    async def _track(self, row: EventRow, contact_id: str | None) -> dict[str, Any]:
        try:
            return await self.core.client.track_event(
                row.name,
                contact_id=contact_id,
                email=row.email if contact_id is None else None,
                properties=row.properties,
                timestamp=row.timestamp,
            )
        except KraiterSyncError as exc:
            if exc.ambiguous:
                raise _Ambiguous(exc, contact_id) from exc
            raise

    async def _send_one(self, row: EventRow) -> None:
        core = self.core
        try:
            event, contact_id = await self._deliver(row)
        except _Ambiguous as unknown:
            self._unknown_sends[row.key] = self._unknown_sends.get(row.key, 0) + 1
            self._unchecked.append(_Unchecked(row, unknown.contact_id, unknown.cause))
            return
        except ApiError as exc:
            if exc.retriable:
                self._give_up(row, exc, ambiguous=row.key in self._unknown_sends)
            else:
                self._rejected.append(
                    Outcome(row, "rejected", code=exc.code, message=exc.api_message)
                )
                core.stats.events_rejected += 1
        except KraiterSyncError as exc:
            self._give_up(row, exc, ambiguous=row.key in self._unknown_sends)
        else:
            if contact_id is None and not await self._link_sent(row, event):
                return
            core.stats.events_sent += 1
            remote_id = str(event["id"])
            self._claimed.add(remote_id)
            self._done.append((row.key, remote_id))
        if len(self._done) + len(self._rejected) + len(self._forget) >= core.options.batch_size:
            self.flush()

    async def _link_sent(self, row: EventRow, event: dict[str, Any]) -> bool:
        """After an event sent by email: learn from the answer, and make its contact when
        it waits for one. False (the key stays inflight) when that failed."""
        if row.email is None:
            return True
        try:
            await self.links.answered(row.email, event)
        except KraiterSyncError as exc:
            self._give_up(row, exc, ambiguous=True)
            return False
        return True

    def _give_up(self, row: EventRow, exc: KraiterSyncError, *, ambiguous: bool) -> None:
        """Out of retries: a key that may be in Kraiter stays inflight (checked next run)."""
        self.core.stats.events_failed += 1
        log.warning(
            "giving up on row %s:%s after retries: %s", row.source_file, row.source_row, exc
        )
        if not ambiguous:
            self._forget.append(row.key)

    def flush(self) -> None:
        """Record finished keys in one transaction; hand rejects to the sink."""
        core = self.core
        if self._done:
            core.store.mark_done(core.target, self._done)
            self._done = []
        if self._rejected:
            core.store.mark_rejected(
                core.target,
                [(o.row.key, o.code or "", o.message or "") for o in self._rejected],
            )
            core.rejected(self._rejected)
            self._rejected = []
        if self._forget:
            core.store.forget(core.target, self._forget)
            self._forget = []
        self.links.flush()
        core.progress()
