"""The upload engine: the one path by which anything is written to Kraiter.

Every write — an event, a contact create, update or delete, a restore — is an operation
of :class:`Engine`, so each one gets the same bounded concurrency, the same adaptive rate
(the client's observer, :class:`~kraiter_sync.api.ratelimit.RateController`, so writes,
verification reads and look-ups spend one budget), the same retries
(:mod:`kraiter_sync.api.retry`: tenacity, full jitter, Retry-After aware) and the ledger.

Modules: ``core`` (what the operations share), ``events`` (exactly-once event writes:
inflight before sending, grouped checks of ambiguous outcomes and of a killed run's
leftovers), ``links`` (which contact each event goes to: Kraiter's way with unknown
emails, learned per target), ``contacts`` (ensure, upsert, update, delete, restore),
``rows`` (what goes in and comes out), ``context`` (the run context that builds an
engine for every verb).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kraiter_sync.upload.contacts import ContactWriter, Ensured, Written
from kraiter_sync.upload.core import EngineCore, EngineOptions, EngineStats
from kraiter_sync.upload.events import EventWriter
from kraiter_sync.upload.rows import ContactRow, EventRow, Outcome, event_matches, rows_of_events

__all__ = [
    "ContactRow",
    "Engine",
    "EngineOptions",
    "EngineStats",
    "Ensured",
    "EventRow",
    "Outcome",
    "Written",
    "event_matches",
    "rows_of_events",
]


class Engine(EngineCore):
    """Sends contacts and events through one client, one rate budget, one ledger."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._contacts = ContactWriter(self)
        self._events = EventWriter(self, self._contacts)

    # -- events --------------------------------------------------------------------------

    def contacts_for_events(self, emails: Sequence[str]) -> dict[str, str]:
        """The contact ids the ledger knows for the emails of the events about to be sent;
        the others are resolved as they are sent, for the fewest requests Kraiter's way
        with unknown emails allows (``upload.links``)."""
        return self._events.links.known(emails)

    async def send_events(self, rows: Iterable[EventRow], *, settle: bool = True) -> None:
        """Send planned rows (not done, not duplicated): inflight first, batch by batch.
        Sends whose outcome is unknown are checked, grouped, before it returns; with
        ``settle=False`` they wait for :meth:`settle_events` (one check serves more)."""
        await self._events.send(rows, settle=settle)

    async def settle_events(self) -> None:
        """Check the sends whose outcome is unknown, once per (contact, name) group, and
        send again what Kraiter does not hold."""
        await self._events.settle()

    async def recover(self, rows: Sequence[EventRow]) -> list[EventRow]:
        """Verify keys a killed run left inflight; returns those that must still be sent."""
        return await self._events.recover(rows)

    async def resend_events(self, rows: Sequence[EventRow]) -> None:
        """Send events Kraiter was just seen not to hold (reconcile): the ledger may hold
        them as ``done`` (sent once, then deleted in Kraiter), so their keys are
        forgotten first and they go through :meth:`send_events` like any other."""
        self.store.forget(self.target, [row.key for row in rows])
        await self._events.send(rows)

    # -- contacts ------------------------------------------------------------------------

    async def ensure_contacts(self, emails: Iterable[str], *, use_cache: bool = True) -> Ensured:
        """Make sure each email is a contact (one upsert per unknown one)."""
        return await self._contacts.ensure(emails, use_cache=use_cache)

    async def write_contacts(self, rows: Iterable[ContactRow]) -> Written:
        """Create or update contacts (create; on CONFLICT patch what differs)."""
        return await self._contacts.upsert(rows)

    async def update_contacts(self, rows: Sequence[ContactRow]) -> Written:
        """PATCH contacts by id with a plan's patches."""
        return await self._contacts.update(rows)

    async def delete_contacts(self, rows: Sequence[ContactRow]) -> Written:
        """DELETE contacts by id and drop them from the ledger's contact cache."""
        return await self._contacts.delete(rows)

    async def restore_contacts(self, contacts: Sequence[Mapping[str, Any]]) -> Written:
        """Recreate contacts from a tombstone (those that exist again are left alone)."""
        return await self._contacts.restore(contacts)
