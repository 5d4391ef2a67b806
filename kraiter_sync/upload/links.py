"""Contacts for events: which contact each event goes to, for the fewest requests.

Kraiter treats an event sent by ``email`` for an address it does not know in one of three
ways (API contract §7): ``create`` (it creates the contact, email only), ``not-found``
(404) or ``link-later`` (it stores the event and links it when the contact appears).
Whichever it is, an import ends with every contact its events refer to existing and
every event linked to its contact.

* **Learned once per target** and kept in the state store (watermark
  ``events:unknown-email``). While it is unknown, the email of the first event the ledger
  has no contact id for is looked up (``GET /api/contacts/by-email``); when Kraiter holds
  no such contact, that event is sent alone, by email, and its answer tells: a contact id
  (``create``), none (``link-later``) or 404 (``not-found``). Nothing absent from the
  input is created.
* **create** (and while unknown): an event whose contact id is not known is sent by
  email; Kraiter makes the contact, and the id in its answer fills the ledger's contact
  cache. No contact request at all.
* **not-found, link-later**: before the first event is sent, the input's emails the
  ledger has no id for are found in one listing when Kraiter's contacts fit in as many
  pages (else upserted one by one), and only the missing ones are created
  (:meth:`~kraiter_sync.upload.contacts.ContactWriter.ensure`, ``list_first``); events
  then go by contact id, and an email met later is upserted once before its events.
* **An answer that contradicts it re-learns it**: a 404 for an event sent by email means
  "create the contact, then send again" (never a reject); an event stored without a
  contact means "create the contact", which links it, and its key stays inflight until
  the contact exists, so a kill in between is finished by the next run.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from kraiter_sync.errors import KraiterSyncError
from kraiter_sync.logs import get_logger
from kraiter_sync.upload.contacts import ContactWriter
from kraiter_sync.upload.core import EngineCore
from kraiter_sync.upload.rows import EventRow

__all__ = ["BEHAVIOURS", "STREAM", "Behaviour", "ContactLinks"]

log = get_logger("upload")

Behaviour = Literal["create", "not-found", "link-later"]
BEHAVIOURS: tuple[Behaviour, ...] = ("create", "not-found", "link-later")
#: The state store's watermark that keeps a target's behaviour.
STREAM = "events:unknown-email"
_SAYS = {
    "create": "creates the contact",
    "not-found": "answers 404",
    "link-later": "stores the event and links it when the contact appears",
}


def _behaviour(value: str | None) -> Behaviour | None:
    for behaviour in BEHAVIOURS:
        if value == behaviour:
            return behaviour
    return None


class ContactLinks:
    """Contact ids for one engine's events, and the target's unknown-email behaviour."""

    def __init__(self, core: EngineCore, contacts: ContactWriter) -> None:
        self.core = core
        self._contacts = contacts
        self.behaviour = _behaviour(core.store.get_watermark(core.target, STREAM))
        #: email → contact id, as known in this run (cache, listings, answers).
        self.ids: dict[str, str] = {}
        #: Whether the first unknown email has been looked up (once per engine).
        self.probed = False
        self._expected: list[str] = []
        self._ensured = False
        self._absent: set[str] = set()
        self._making: dict[str, asyncio.Future[str]] = {}
        self._made: dict[str, str] = {}
        self._failed: dict[str, KraiterSyncError] = {}
        self._refreshed: set[str] = set()
        self._cache: list[tuple[str, str, str | None]] = []

    # -- what is known ---------------------------------------------------------------------

    def known(self, emails: Sequence[str]) -> dict[str, str]:
        """The ledger's contact ids for ``emails``; the others are resolved as their
        events are sent (and, where Kraiter does not create contacts, all at once
        before the first one)."""
        cached = self.core.store.get_contacts(self.core.target, emails)
        ids = {email: cid for email, (cid, _hash) in cached.items()}
        self.ids.update(ids)
        self._expected = [email for email in emails if email not in ids]
        return ids

    @property
    def contacts_first(self) -> bool:
        """Whether events need their contact to exist before they are sent."""
        return self.behaviour in ("not-found", "link-later")

    def contact_of(self, row: EventRow) -> str | None:
        """The contact id to send ``row`` with (None: by email)."""
        email = row.email
        if email is None:
            return row.contact_id
        if email in self._refreshed:
            return self.ids.get(email)
        return row.contact_id or self.ids.get(email)

    def remember(self, email: str, contact_id: str) -> None:
        """A contact id learned for free (an answer, a look-up): cached for later runs."""
        if self.ids.get(email) == contact_id:
            return
        self.ids[email] = contact_id
        self._cache.append((email, contact_id, None))
        if len(self._cache) >= self.core.options.batch_size:
            self.flush()

    def flush(self) -> None:
        if self._cache:
            self.core.store.put_contacts(self.core.target, self._cache)
            self._cache = []

    def learn(self, behaviour: Behaviour, why: str) -> None:
        """Keep what Kraiter was just seen to do with events for unknown emails."""
        if self.behaviour == behaviour:
            return
        if self.behaviour is None:
            log.info("Kraiter %s for an event of an unknown email (%s)", _SAYS[behaviour], why)
        else:
            log.warning(
                "Kraiter now %s for an event of an unknown email (%s), where it %s before: "
                "learned again",
                _SAYS[behaviour],
                why,
                _SAYS[self.behaviour],
            )
        self.behaviour = behaviour
        self.core.store.set_watermark(self.core.target, STREAM, behaviour)

    # -- learning it -----------------------------------------------------------------------

    def probe_row(self, rows: Sequence[EventRow]) -> EventRow | None:
        """While the behaviour is unknown: the first row sent by email (its email is then
        looked up, once per engine)."""
        if self.behaviour is not None or self.probed:
            return None
        return next((r for r in rows if r.email is not None and self.contact_of(r) is None), None)

    async def absent(self, email: str) -> bool:
        """Whether Kraiter holds no contact with ``email`` (one look-up; a found id is kept)."""
        self.probed = True
        try:
            contact = await self.core.with_retry(
                functools.partial(self.core.client.get_contact_by_email, email)
            )
        except KraiterSyncError as exc:
            log.debug("could not look up %s (to learn about unknown emails): %s", email, exc)
            return False
        if contact is not None:
            self.remember(email, str(contact["id"]))
            return False
        self._absent.add(email)
        return True

    async def answered(self, email: str, event: Mapping[str, Any]) -> None:
        """An event sent by email was stored: learn from the answer, and make the contact
        when the event waits for one (raises the upsert's error when it cannot be made)."""
        linked = event.get("contactId")
        if linked:
            self.remember(email, str(linked))
            if email in self._absent:
                self._absent.discard(email)
                self.learn("create", f"an event for {email}, which had no contact, got one")
            return
        if "contactId" in event:
            await self.waits(email)
        else:  # an answer without the field says nothing: make sure of the contact
            await self.make(email)

    async def waits(self, email: str) -> None:
        """An event of ``email`` is stored without a contact (link-later): create the
        contact, which links it (raises the upsert's error when it cannot be made)."""
        self.learn("link-later", f"an event for {email} is stored without a contact")
        await self.make(email)

    async def not_found(self, email: str) -> str:
        """An event sent by email got 404: Kraiter does not create contacts for events.
        Create it (the caller then sends the event again, by id)."""
        self.learn("not-found", f"an event for {email} was answered 404")
        return await self.make(email)

    # -- making contacts exist ---------------------------------------------------------------

    async def ready(self) -> None:
        """Before the first event where Kraiter does not create contacts: the expected
        emails the ledger has no id for, found in a listing or upserted (once)."""
        if self._ensured or not self.contacts_first:
            return
        self._ensured = True
        todo = [email for email in self._expected if email not in self.ids]
        if not todo:
            return
        ensured = await self._contacts.ensure(todo, use_cache=False, list_first=True)
        self.ids.update(ensured.ids)
        self._failed.update(ensured.failed)

    async def make(self, email: str) -> str:
        """The contact id of ``email``, created if need be: one upsert per email and run,
        shared by every event that waits for it."""
        if email in self._failed:
            raise self._failed[email]
        making = self._making.get(email)
        if making is None:
            making = asyncio.ensure_future(self._upsert(email))
            self._making[email] = making
        return await asyncio.shield(making)

    async def _upsert(self, email: str) -> str:
        contact, _created = await self.core.with_retry(
            functools.partial(self.core.client.upsert_contact, email)
        )
        contact_id = str(contact["id"])
        self._made[email] = contact_id
        self.remember(email, contact_id)
        return contact_id

    async def refresh(self, email: str, gone: str) -> str | None:
        """The contact id ``gone`` answered 404 (deleted in Kraiter): make the contact again.
        None when ``gone`` is the one this run made (nothing more to try)."""
        if self._made.get(email) == gone:
            return None
        if email not in self._refreshed:
            self._refreshed.add(email)
            self._making.pop(email, None)
            self.ids.pop(email, None)
            log.info("contact %s was missing in Kraiter; recreating it", email)
        return await self.make(email)
