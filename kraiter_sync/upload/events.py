"""Event writes: every event goes through the ledger, exactly once (design.md §4).

1. An event key is written ``inflight`` to the ledger, in one transaction per batch,
   **before** any request for it leaves.
2. An ambiguous failure (timeout or cut connection after sending, 5xx) is resolved by
   looking for the event in Kraiter (``GET /api/events?contactId&name``, matching
   timestamp and properties) before anything is re-sent: found → ``done``. Properties
   match when their canonical forms (``validate.keys.canonical_json``) are equal, so
   ``{"v": 1}`` in Kraiter is never taken for the ``{"v": true}`` being sent.
3. Keys a killed run left ``inflight`` are verified the same way before the next run
   sends anything (:meth:`EventWriter.recover`).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from kraiter_sync.errors import ApiError, KraiterSyncError, NotFoundError
from kraiter_sync.logs import get_logger
from kraiter_sync.upload.core import EngineCore
from kraiter_sync.upload.rows import EventRow, Outcome, event_matches

__all__ = ["EventWriter"]

log = get_logger("upload")


class EventWriter:
    """The event operations of one engine (see the module docstring)."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core
        self._claimed: set[str] = set()
        self._done: list[tuple[str, str]] = []
        self._rejected: list[Outcome[EventRow]] = []
        self._forget: list[str] = []
        #: Contacts recreated in this run: email → new id (see :meth:`_refresh_contact`).
        self.refreshed: dict[str, str] = {}

    async def _listing(self, contact_id: str, name: str) -> list[dict[str, Any]]:
        return [ev async for ev in self.core.client.list_events(contact_id=contact_id, name=name)]

    async def find_remote(self, row: EventRow, contact_id: str | None = None) -> str | None:
        """The id of the remote event that is ``row``, if Kraiter holds it (unclaimed)."""
        self.core.stats.verifications += 1
        contact = contact_id or row.contact_id
        async for remote in self.core.client.list_events(contact_id=contact, name=row.name):
            rid = str(remote.get("id"))
            if rid not in self._claimed and event_matches(row, remote):
                self._claimed.add(rid)
                return rid
        return None

    async def recover(self, rows: Sequence[EventRow]) -> list[EventRow]:
        """Verify keys a killed run left inflight; returns those that must still be sent.

        Rows are grouped by (contact, name) so each group costs one listing.
        """
        core = self.core
        groups: dict[tuple[str, str], list[EventRow]] = {}
        for row in rows:
            groups.setdefault((row.contact_id, row.name), []).append(row)
        to_send: list[EventRow] = []

        async def check(group: list[EventRow]) -> None:
            head = group[0]
            core.stats.verifications += 1
            remote = await core.with_retry(
                functools.partial(self._listing, head.contact_id, head.name)
            )
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
                core.store.mark_done(core.target, found)
                core.stats.events_verified += len(found)

        await core.feed(list(groups.values()), check)
        return to_send

    async def send(self, rows: Iterable[EventRow]) -> None:
        """Send rows (already planned: not done, not duplicated), batch by batch."""
        batch: list[EventRow] = []
        async with self.core.pool(self._send_one) as put:
            for row in rows:
                batch.append(row)
                if len(batch) >= self.core.options.batch_size:
                    if not await self._release(batch, put):
                        break
                    batch = []
            else:
                if batch:
                    await self._release(batch, put)
        self.flush()

    async def _release(
        self, batch: list[EventRow], put: Callable[[EventRow], Awaitable[None]]
    ) -> bool:
        """Mark a batch inflight (one transaction) and only then hand it to the workers."""
        core = self.core
        if core.stopping:
            return False
        core.store.mark_inflight(core.target, [row.key for row in batch], core.run_id)
        for i, row in enumerate(batch):
            if core.should_stop():
                # Never sent: the ledger must not claim they might have been.
                self._forget.extend(r.key for r in batch[i:])
                return False
            await put(row)
        return True

    async def _refresh_contact(self, email: str) -> str:
        """The contact behind a cached id is gone (deleted in Kraiter): make it again."""
        if email not in self.refreshed:
            contact, _created = await self.core.client.upsert_contact(email)
            self.refreshed[email] = str(contact["id"])
            self.core.store.put_contacts(self.core.target, [(email, self.refreshed[email], None)])
            log.info("contact %s was missing in Kraiter; recreated it", email)
        return self.refreshed[email]

    async def _send_one(self, row: EventRow) -> None:
        core = self.core
        ambiguous = False
        contact_id = self.refreshed.get(row.email or "", row.contact_id)

        async def attempt() -> str:
            nonlocal ambiguous, contact_id
            if ambiguous:
                found = await self.find_remote(row, contact_id)
                if found is not None:
                    core.stats.events_verified += 1
                    return found
            try:
                event = await core.client.track_event(
                    row.name,
                    contact_id=contact_id,
                    properties=row.properties,
                    timestamp=row.timestamp,
                )
            except NotFoundError:
                if row.email is None or contact_id == self.refreshed.get(row.email):
                    raise
                # Our cache named a contact Kraiter no longer has: recreate, send again.
                contact_id = await self._refresh_contact(row.email)
                return await attempt()
            except KraiterSyncError as exc:
                ambiguous = ambiguous or exc.ambiguous
                raise
            core.stats.events_sent += 1
            return str(event["id"])

        try:
            remote_id = await core.with_retry(attempt)
        except ApiError as exc:
            if exc.retriable:
                self._give_up(row, exc, ambiguous)
            else:
                self._rejected.append(
                    Outcome(row, "rejected", code=exc.code, message=exc.api_message)
                )
                core.stats.events_rejected += 1
        except KraiterSyncError as exc:
            self._give_up(row, exc, ambiguous)
        else:
            self._claimed.add(remote_id)
            self._done.append((row.key, remote_id))
        if len(self._done) + len(self._rejected) + len(self._forget) >= core.options.batch_size:
            self.flush()

    def _give_up(self, row: EventRow, exc: KraiterSyncError, ambiguous: bool) -> None:
        """Out of retries: an ambiguous key stays inflight (verified next run)."""
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
        core.progress()
