"""Contact writes, each one engine operation (retries, rate control, the ledger's cache).

* :meth:`ContactWriter.ensure` — make sure emails exist (one upsert each) before their
  events are sent; the ledger's contact cache answers for the ones it knows.
* :meth:`ContactWriter.upsert` — the one "create, and on CONFLICT look the contact up and
  patch only what differs" (Kraiter has no idempotency keys; email is unique, so this is
  idempotent). A row with a known id is one PATCH by id first.
* :meth:`ContactWriter.update` / :meth:`ContactWriter.delete` — a reconcile plan's patches
  and (mirror) deletions, by id.
* :meth:`ContactWriter.restore` — recreate deleted contacts from a tombstone, never
  overwriting one that exists again.

Per-contact refusals (4xx) are outcomes (rejects), never exceptions; requests still
failing after retries are counted as failed (the run is incomplete, exit 4).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from kraiter_sync.errors import ApiError, ConflictError, KraiterSyncError, NotFoundError
from kraiter_sync.logs import get_logger
from kraiter_sync.plan.snapshot import list_within, normalise_keys
from kraiter_sync.upload.core import EngineCore
from kraiter_sync.upload.rows import ContactRow, Outcome
from kraiter_sync.validate.keys import canonical_value

__all__ = ["ContactWriter", "Ensured", "Written"]

log = get_logger("upload")


@dataclass
class Written:
    """What one contact operation did."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    #: restore: contacts that exist again (left as they are)
    existing: int = 0
    failed: int = 0
    rejected: list[Outcome[ContactRow]] = field(default_factory=list)
    #: restore: emails of contacts that were suppressed (the API cannot set that)
    not_restorable: list[str] = field(default_factory=list)


@dataclass
class Ensured:
    """email → contact id for the emails that exist now; the failures by email."""

    ids: dict[str, str]
    failed: dict[str, KraiterSyncError] = field(default_factory=dict)


def _same_email(stored: object, email: str) -> bool:
    """Whether Kraiter's stored email (kept in the case first sent) is ``email``."""
    return isinstance(stored, str) and stored.strip().lower() == email.strip().lower()


def _obj(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    value = json.loads(text)
    return value if isinstance(value, dict) and value else None


class ContactWriter:
    """The contact operations of one engine (see the module docstring)."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core

    async def _guarded(
        self, row: ContactRow, what: str, op: Callable[[], Awaitable[None]], out: Written
    ) -> None:
        """Run one write; a 4xx becomes a reject, retries running out a failure."""
        try:
            await op()
        except ApiError as exc:
            if exc.retriable:
                out.failed += 1
                self.core.stats.contacts_failed += 1
                log.warning("%s %s failed after retries: %s", what, row.email, exc)
            else:
                out.rejected.append(
                    Outcome(row, "rejected", code=exc.code, message=exc.api_message)
                )
                self.core.stats.contacts_rejected += 1
        except KraiterSyncError as exc:
            if not exc.retriable:
                raise
            out.failed += 1
            self.core.stats.contacts_failed += 1
            log.warning("%s %s failed after retries: %s", what, row.email, exc)

    async def ensure(
        self, emails: Iterable[str], *, use_cache: bool = True, list_first: bool = False
    ) -> Ensured:
        """Make sure each email is a contact; returns their ids.

        Known emails come from the ledger's contact cache (unless ``use_cache`` is off:
        reconcile has just seen that they do not exist); each other one costs one upsert
        (idempotent, so safe to retry). With ``list_first`` Kraiter's contacts are listed
        first when they fit in as many pages as there are emails to make sure of
        (``plan.snapshot.list_within``): the ones it holds cost no write, and only the
        missing ones are created. When they do not fit, every email is upserted (one
        request each, which is never more than a look-up each and a create for the
        missing).
        """
        core = self.core
        wanted = list(dict.fromkeys(emails))
        ids: dict[str, str] = {}
        if use_cache:
            cached = core.store.get_contacts(core.target, wanted)
            ids = {e: cid for e, (cid, _h) in cached.items()}
        result = Ensured(ids)
        found: list[tuple[str, str]] = []
        if list_first and any(email not in ids for email in wanted):
            todo = [email for email in wanted if email not in ids]
            listed = await list_within(core.client, max_pages=len(todo), call=core.with_retry)
            if listed is not None:
                remote = dict(zip(listed.frame["key"], listed.frame["id"], strict=True))
                found = [(e, str(remote[e])) for e in todo if remote.get(e) is not None]
                ids.update(found)

        async def upsert(email: str) -> None:
            async def attempt() -> dict[str, Any]:
                contact, _created = await core.client.upsert_contact(email)
                return contact

            try:
                contact = await core.with_retry(attempt)
            except KraiterSyncError as exc:
                log.warning("could not make sure contact %s exists: %s", email, exc)
                core.stats.contacts_failed += 1
                result.failed[email] = exc
                return
            ids[email] = str(contact["id"])
            found.append((email, ids[email]))
            if len(found) >= core.options.batch_size:
                core.store.put_contacts(core.target, [(e, i, None) for e, i in found])
                found.clear()

        await core.feed([email for email in wanted if email not in ids], upsert)
        if found:
            core.store.put_contacts(core.target, [(e, i, None) for e, i in found])
        return result

    async def upsert(self, rows: Iterable[ContactRow]) -> Written:
        """Create or update contacts, keeping the ledger's cache of what was written.

        A row with a known ``contact_id`` is one PATCH by id. When that id is gone (404:
        deleted in Kraiter) or now holds another email, the id is dropped from the cache
        and the row is written like one without: create first; on CONFLICT look the
        contact up and patch only what differs.
        """
        core = self.core
        out = Written()
        cache: list[tuple[str, str, str | None]] = []

        async def write(row: ContactRow) -> None:
            props = json.loads(row.properties or "{}")
            known = row.contact_id

            async def attempt() -> tuple[str, str]:
                nonlocal known
                if known is not None:
                    try:
                        patched = await core.client.update_contact(
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
                    core.store.forget_contacts(core.target, [row.email])
                    known = None
                try:
                    contact = await core.client.create_contact(
                        row.email, properties=props or None, user_id=row.user_id
                    )
                except ConflictError:
                    existing = await core.client.get_contact_by_email(row.email)
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
                    await core.client.update_contact(
                        str(existing["id"]),
                        properties=changed or None,
                        user_id=row.user_id if user_changed else None,
                    )
                    return str(existing["id"]), "updated"
                return str(contact["id"]), "created"

            try:
                contact_id, what = await core.with_retry(attempt)
            except ApiError as exc:
                if exc.retriable or isinstance(exc, ConflictError):
                    out.failed += 1
                    core.stats.contacts_failed += 1
                    log.warning("could not write contact %s: %s", row.email, exc)
                    return
                out.rejected.append(
                    Outcome(row, "rejected", code=exc.code, message=exc.api_message)
                )
                core.stats.contacts_rejected += 1
                return
            except KraiterSyncError as exc:
                out.failed += 1
                core.stats.contacts_failed += 1
                log.warning("could not write contact %s: %s", row.email, exc)
                return
            setattr(out, what, getattr(out, what) + 1)
            setattr(core.stats, f"contacts_{what}", getattr(core.stats, f"contacts_{what}") + 1)
            cache.append((row.email, contact_id, row.props_hash))
            if len(cache) >= core.options.batch_size:
                core.store.put_contacts(core.target, cache)
                cache.clear()
                core.progress()

        await core.feed(list(rows) if not isinstance(rows, Sequence) else rows, write)
        if cache:
            core.store.put_contacts(core.target, cache)
        return out

    async def update(self, rows: Sequence[ContactRow]) -> Written:
        """PATCH each contact by id with the row's patch (a null value removes a key)."""
        core = self.core
        out = Written()

        async def update(row: ContactRow) -> None:
            async def op() -> None:
                assert row.contact_id is not None  # noqa: S101 (an update row has an id)
                await core.with_retry(
                    lambda: core.client.update_contact(
                        row.contact_id or "", properties=_obj(row.properties), user_id=row.user_id
                    )
                )
                out.updated += 1
                core.stats.contacts_updated += 1

            await self._guarded(row, "update", op, out)
            core.progress()

        await core.feed(rows, update)
        return out

    async def delete(self, rows: Sequence[ContactRow]) -> Written:
        """DELETE each contact by id (one already gone counts as deleted), then drop the
        emails from the ledger's contact cache: a later import must recreate them."""
        core = self.core
        out = Written()

        async def delete(row: ContactRow) -> None:
            async def op() -> None:
                try:
                    await core.with_retry(lambda: core.client.delete_contact(row.contact_id or ""))
                except ApiError as exc:
                    if exc.http_status != 404:  # already gone: the goal is reached
                        raise
                out.deleted += 1
                core.stats.contacts_deleted += 1

            await self._guarded(row, "delete", op, out)
            core.progress()

        await core.feed(rows, delete)
        if rows:
            emails = pl.Series([row.email for row in rows], dtype=pl.String)
            core.store.forget_contacts(core.target, normalise_keys(emails).to_list())
        return out

    async def restore(self, contacts: Sequence[Mapping[str, Any]]) -> Written:
        """Recreate deleted contacts with their properties, userId and unsubscribe state.

        A contact that exists again is left alone (``existing``): restoring never
        overwrites newer data, so re-running a restore is safe.
        """
        core = self.core
        out = Written()

        async def one(contact: Mapping[str, Any]) -> None:
            email = contact["email"]
            row = ContactRow(email, None, contact.get("userId"), None, None)

            async def op() -> None:
                try:
                    created = await core.with_retry(
                        lambda: core.client.create_contact(
                            email,
                            properties=contact.get("properties") or None,
                            user_id=contact.get("userId"),
                        )
                    )
                except ConflictError:
                    out.existing += 1
                    return
                if contact.get("unsubscribed"):
                    # Never resurrect an unsubscribed person as subscribed.
                    await core.with_retry(
                        lambda: core.client.update_contact(created["id"], unsubscribed=True)
                    )
                if contact.get("suppressed"):
                    out.not_restorable.append(email)
                out.created += 1
                core.stats.contacts_created += 1

            await self._guarded(row, "restore", op, out)

        await core.feed(contacts, one)
        return out
