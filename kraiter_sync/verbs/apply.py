"""Applying a reconcile plan: guards, freshness check, tombstones, writes, restore.

The order of a mirror run is what makes it undoable::

    guards (non-empty input, deletion ratio) → freshness of a saved plan →
    tombstone written and fsynced → creates and updates → deletes

Creates go ``POST /api/contacts`` (on CONFLICT — someone created it since — the
contact is looked up and patched), updates ``PATCH`` only the changed keys, deletes
``DELETE``. Each request goes through ``call`` (retries) with a bounded number in flight.
Per-contact refusals (4xx) are data (``ApplyResult.rejects``); requests still failing
after retries make the run incomplete (exit 4) and re-running reconciles again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.errors import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_REJECTED,
    ApiError,
    ConflictError,
    GuardError,
    InputError,
    KraiterSyncError,
)
from kraiter_sync.files import atomic_write
from kraiter_sync.logs import get_logger
from kraiter_sync.plan.contacts import ContactPlan, contact_hash
from kraiter_sync.plan.snapshot import (
    PAGE_SIZE,
    Caller,
    normalise_keys,
    remote_frame,
    snapshot_contacts,
)
from kraiter_sync.state.ledger import Ledger
from kraiter_sync.upload.engine import ContactRow, Engine

__all__ = [
    "DEFAULT_MAX_DELETE_RATIO",
    "TOMBSTONE_FORMAT",
    "ApplyResult",
    "RestoreResult",
    "apply_plan",
    "check_mirror_guards",
    "read_tombstone",
    "restore_tombstone",
    "verify_plan_fresh",
    "write_tombstone",
]

log = get_logger("reconcile")
DEFAULT_MAX_DELETE_RATIO = 0.05
TOMBSTONE_FORMAT = "kraiter-sync.tombstone"


async def _once(fn: Callable[[], Awaitable[Any]]) -> Any:
    return await fn()


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# ---- guards --------------------------------------------------------------------------


def check_mirror_guards(plan: ContactPlan, *, max_delete_ratio: float) -> None:
    """Refuse a mirror plan that looks like a mistake (GuardError, exit 2).

    An empty local input would delete everything: always refused. Deleting more than
    ``max_delete_ratio`` of Kraiter's contacts is refused unless the ratio is raised.
    """
    if not plan.mirror:
        return
    counts = plan.counts()
    deletes = counts["delete"]
    local = counts["create"] + counts["update"] + counts["unchanged"]
    if local == 0:
        msg = (
            "refusing to mirror an empty input: it would delete every contact in Kraiter "
            f"({deletes:,}). Check the input files and the mapping (kraiter-sync validate)"
        )
        raise GuardError(msg)
    remote = plan.remote_count or 0
    if deletes and deletes > max_delete_ratio * remote:
        share = deletes / remote if remote else 1.0
        msg = (
            f"refusing to delete {deletes:,} of {remote:,} contacts in Kraiter ({share:.1%}), "
            f"more than --max-delete-ratio {max_delete_ratio:g} ({max_delete_ratio:.1%}). "
            "Review the plan (--plan-out) and raise --max-delete-ratio if it is right"
        )
        raise GuardError(msg)


# ---- freshness of a saved plan ---------------------------------------------------------


async def verify_plan_fresh(
    client: KraiterClient,
    plan: ContactPlan,
    *,
    call: Caller = _once,
    concurrency: int = 16,
) -> dict[str, dict[str, Any]]:
    """Check that Kraiter still holds what the plan was computed from.

    Every contact the plan would update or delete must have the same content digest
    and ``updatedAt`` as then, and no contact may have appeared for an email the plan
    would create. Returns the current contacts by id (the tombstone needs them);
    raises GuardError naming the changed contacts otherwise.
    """
    affected = plan.rows.filter(pl.col("action").is_in(["update", "delete"]))
    creates = plan.of("create")["email"].to_list()
    ids = affected["id"].to_list()
    current: dict[str, dict[str, Any]] = {}
    remote_count = plan.remote_count or 0
    pages = -(-remote_count // PAGE_SIZE)
    if ids or creates:
        if plan.remote_complete and pages and pages < len(ids) + len(creates):
            snap = await snapshot_contacts(client, strategy="listing", call=call)
            frame = snap.frame
            current = {r["id"]: json.loads(r["raw"]) for r in frame.iter_rows(named=True)}
            keys = set(frame["key"].to_list())
            appeared = [e for e in creates if e in keys]
        else:
            sem = asyncio.Semaphore(concurrency)

            async def by_id(contact_id: str) -> None:
                async with sem:
                    try:
                        current[contact_id] = await call(
                            functools.partial(client.get_contact, contact_id)
                        )
                    except ApiError as exc:
                        if exc.http_status != 404:
                            raise

            async def by_email(email: str) -> str | None:
                async with sem:
                    found = await call(functools.partial(client.get_contact_by_email, email))
                return email if found is not None else None

            await asyncio.gather(*(by_id(i) for i in ids))
            appeared = [e for e in await asyncio.gather(*(by_email(e) for e in creates)) if e]
    else:
        appeared = []
    stale: list[str] = []
    for row in affected.iter_rows(named=True):
        now = current.get(row["id"])
        if now is None:
            stale.append(f"{row['email']} (deleted)")
        elif contact_hash(now) != row["remote_hash"] or (
            row["remote_updated_at"] is not None
            and now.get("updatedAt") != row["remote_updated_at"]
        ):
            stale.append(f"{row['email']} (changed)")
    stale.extend(f"{e} (created)" for e in appeared)
    if stale:
        shown = ", ".join(stale[:5]) + (f" and {len(stale) - 5:,} more" if len(stale) > 5 else "")
        msg = (
            f"refusing to apply the saved plan: {len(stale):,} contact(s) changed in Kraiter "
            f"since it was computed ({plan.created_at}): {shown}. Run reconcile again for a "
            "fresh plan"
        )
        raise GuardError(msg)
    return current


# ---- tombstones ------------------------------------------------------------------------


def write_tombstone(path: str | Path, contacts: Iterable[Mapping[str, Any]]) -> Path:
    """Every contact about to be deleted, with all its fields, fsynced before any delete."""
    doc = {
        "format": TOMBSTONE_FORMAT,
        "version": 1,
        "created_at": _now_iso(),
        "contacts": [dict(c) for c in contacts],
    }
    return atomic_write(path, json.dumps(doc, ensure_ascii=False, indent=1) + "\n")


def read_tombstone(path: str | Path) -> list[dict[str, Any]]:
    """The contacts a tombstone file holds; InputError when it is not one."""
    source = Path(path)
    try:
        doc = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f"tombstone file {source} does not exist"
        raise InputError(msg) from None
    except OSError as exc:
        msg = f"cannot read tombstone file {source}: {exc.strerror}"
        raise InputError(msg) from None
    except ValueError as exc:
        msg = f"{source} is not a kraiter-sync tombstone (not JSON: {exc})"
        raise InputError(msg) from None
    if not isinstance(doc, dict) or doc.get("format") != TOMBSTONE_FORMAT:
        msg = f"{source} is not a kraiter-sync tombstone (reconcile --mirror writes them)"
        raise InputError(msg)
    contacts = doc.get("contacts")
    if not isinstance(contacts, list) or not all(
        isinstance(c, dict) and isinstance(c.get("email"), str) for c in contacts
    ):
        msg = f"{source} is damaged: every contact needs an email"
        raise InputError(msg)
    return contacts


# ---- the writes ------------------------------------------------------------------------


@dataclass
class ApplyResult:
    """What applying a plan did. ``rejects``: one dict per refused contact."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    failed: int = 0
    rejects: list[dict[str, Any]] = field(default_factory=list)
    tombstone: Path | None = None
    rejects_path: Path | None = None

    @property
    def exit_code(self) -> int:
        if self.failed:
            return EXIT_INCOMPLETE
        return EXIT_REJECTED if self.rejects else EXIT_OK

    def summary(self) -> str:
        text = (
            f"applied: {self.created:,} created, {self.updated:,} updated, "
            f"{self.deleted:,} deleted, {len(self.rejects):,} rejected, {self.failed:,} failed"
        )
        if self.rejects_path is not None:
            text += f"\nrejected contacts written to {self.rejects_path}"
        if self.tombstone is not None:
            text += f"\ntombstone: {self.tombstone} (undo: kraiter-sync restore {self.tombstone})"
        return text


def _reject(row: Mapping[str, Any], exc: ApiError) -> dict[str, Any]:
    return {
        "source_file": row.get("source_file"),
        "source_row": row.get("source_row"),
        "field": "contact",
        "rule": f"api.{exc.code}",
        "message": exc.api_message,
        "stage": "rejected",
        "email": row.get("email"),
        "action": row.get("action"),
    }


async def _pool(
    items: Iterable[Mapping[str, Any]],
    work: Callable[[Mapping[str, Any]], Awaitable[None]],
    concurrency: int,
) -> None:
    queue: asyncio.Queue[Mapping[str, Any]] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)

    async def worker() -> None:
        while True:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await work(item)

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, queue.qsize())))))


def _obj(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    value = json.loads(text)
    return value if isinstance(value, dict) and value else None


async def apply_plan(
    client: KraiterClient,
    plan: ContactPlan,
    *,
    remote: Mapping[str, Mapping[str, Any]] | None = None,
    tombstone: str | Path | None = None,
    call: Caller = _once,
    engine: Engine | None = None,
    concurrency: int = 16,
    on_progress: Callable[[ApplyResult], None] | None = None,
) -> ApplyResult:
    """Send the plan's creates, updates and (mirror) deletes.

    ``remote`` maps contact id → the full contact object as last read (from the
    snapshot or :func:`verify_plan_fresh`); deletions need it for the tombstone, which
    is written to ``tombstone`` before the first delete. With an ``engine`` (the import
    engine), creates go through :meth:`Engine.write_contacts` — create, and on CONFLICT
    patch only what differs — which also keeps the ledger's contact cache current.
    """
    result = ApplyResult()
    deletes = plan.of("delete").to_dicts() if plan.mirror else []
    if deletes:
        if tombstone is None or remote is None:
            msg = "deleting contacts needs a tombstone path and their current state"
            raise ValueError(msg)
        missing = [r["email"] for r in deletes if r["id"] not in remote]
        if missing:
            msg = f"no current state for {len(missing)} contact(s) to delete; reconcile again"
            raise GuardError(msg)
        result.tombstone = write_tombstone(tombstone, (remote[r["id"]] for r in deletes))
        log.info("tombstone with %d contacts written to %s", len(deletes), result.tombstone)

    def progress() -> None:
        if on_progress is not None:
            on_progress(result)

    async def guarded(row: Mapping[str, Any], op: Callable[[], Awaitable[None]]) -> None:
        try:
            await op()
        except ApiError as exc:
            if exc.retriable:
                result.failed += 1
                log.warning("%s %s failed after retries: %s", row["action"], row["email"], exc)
            else:
                result.rejects.append(_reject(row, exc))
        except KraiterSyncError as exc:
            if not exc.retriable:
                raise
            result.failed += 1
            log.warning("%s %s failed after retries: %s", row["action"], row["email"], exc)
        progress()

    async def create(row: Mapping[str, Any]) -> None:
        props = _obj(row["properties"])

        async def op() -> None:
            try:
                await call(
                    functools.partial(
                        client.create_contact,
                        row["email"],
                        properties=props,
                        user_id=row["user_id"],
                    )
                )
            except ConflictError:
                # Created since the plan was made: merge into it (PATCH merges keys).
                found = await call(functools.partial(client.get_contact_by_email, row["email"]))
                if found is None:
                    raise
                await call(
                    functools.partial(
                        client.update_contact, found["id"], properties=props, user_id=row["user_id"]
                    )
                )
                result.updated += 1
                return
            result.created += 1

        await guarded(row, op)

    async def update(row: Mapping[str, Any]) -> None:
        async def op() -> None:
            await call(
                functools.partial(
                    client.update_contact,
                    row["id"],
                    properties=_obj(row["properties"]),
                    user_id=row["user_id"],
                )
            )
            result.updated += 1

        await guarded(row, op)

    async def delete(row: Mapping[str, Any]) -> None:
        async def op() -> None:
            try:
                await call(functools.partial(client.delete_contact, row["id"]))
            except ApiError as exc:
                if exc.http_status != 404:  # already gone: the goal is reached
                    raise
            result.deleted += 1

        await guarded(row, op)

    if engine is not None:
        await _create_with_engine(engine, plan.of("create"), result)
    else:
        await _pool(plan.of("create").to_dicts(), create, concurrency)
    await _pool(plan.of("update").to_dicts(), update, concurrency)
    if deletes:
        await _pool(deletes, delete, concurrency)
        if engine is not None:
            forget_cached_contacts(engine.ledger, engine.target, [r["email"] for r in deletes])
    return result


def forget_cached_contacts(ledger: Ledger, target: str, emails: Sequence[str]) -> None:
    """Drop deleted contacts from the ledger's contact cache.

    Otherwise a later ``import`` would take a re-imported contact as unchanged (same
    properties hash) and never recreate it, and would send events to the deleted id.
    """
    keys = normalise_keys(pl.Series(emails, dtype=pl.String)).to_list()
    ledger.forget_contacts(target, keys)


async def _create_with_engine(engine: Engine, creates: pl.DataFrame, result: ApplyResult) -> None:
    from kraiter_sync.verbs.importer import contact_hash as import_hash

    before = dataclasses.replace(engine.stats)
    rows = [
        ContactRow(
            r["email"],
            r["properties"] or "{}",
            r["user_id"],
            r["source_file"] or "",
            int(r["source_row"] or 0),
            import_hash(r["properties"], r["user_id"]),
        )
        for r in creates.iter_rows(named=True)
    ]
    rejected = await engine.write_contacts(rows)
    stats = engine.stats
    result.created += stats.contacts_created - before.contacts_created
    result.updated += stats.contacts_updated - before.contacts_updated
    result.failed += stats.contacts_failed - before.contacts_failed
    for outcome in rejected:
        row = outcome.row
        result.rejects.append(
            {
                "source_file": row.source_file,
                "source_row": row.source_row,
                "field": "contact",
                "rule": f"api.{outcome.code}",
                "message": outcome.message,
                "stage": "rejected",
                "email": row.email,
                "properties": row.properties,
                "action": "create",
            }
        )


# ---- restore ---------------------------------------------------------------------------


@dataclass
class RestoreResult:
    """What ``restore`` did with each contact of a tombstone."""

    restored: int = 0
    existing: int = 0
    failed: int = 0
    rejects: list[dict[str, Any]] = field(default_factory=list)
    not_restorable: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.failed:
            return EXIT_INCOMPLETE
        return EXIT_REJECTED if self.rejects else EXIT_OK

    def summary(self) -> str:
        text = (
            f"restored {self.restored:,} contact(s); {self.existing:,} already existed "
            f"(left as they are); {len(self.rejects):,} rejected; {self.failed:,} failed"
        )
        if self.not_restorable:
            text += (
                f"\nwarning: {len(self.not_restorable):,} contact(s) were suppressed in Kraiter; "
                "suppression cannot be set through the API, re-suppress them in Kraiter"
            )
        return text


async def restore_tombstone(
    client: KraiterClient,
    contacts: Iterable[Mapping[str, Any]],
    *,
    call: Caller = _once,
    concurrency: int = 16,
) -> RestoreResult:
    """Recreate deleted contacts with their properties, userId and unsubscribe state.

    A contact that exists again is left alone (counted in ``existing``): restoring never
    overwrites newer data. Re-running a restore is therefore safe.
    """
    result = RestoreResult()

    async def one(contact: Mapping[str, Any]) -> None:
        email = contact["email"]
        try:
            try:
                created = await call(
                    functools.partial(
                        client.create_contact,
                        email,
                        properties=contact.get("properties") or None,
                        user_id=contact.get("userId"),
                    )
                )
            except ConflictError:
                result.existing += 1
                return
            if contact.get("unsubscribed"):
                # Never resurrect an unsubscribed person as subscribed.
                await call(
                    functools.partial(client.update_contact, created["id"], unsubscribed=True)
                )
            if contact.get("suppressed"):
                result.not_restorable.append(email)
            result.restored += 1
        except ApiError as exc:
            if exc.retriable:
                result.failed += 1
            else:
                result.rejects.append(_reject({"email": email, "action": "restore"}, exc))
        except KraiterSyncError as exc:
            if not exc.retriable:
                raise
            result.failed += 1

    await _pool(list(contacts), one, concurrency)
    return result


def remote_by_id(frame: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """id → full contact object, from a snapshot frame's ``raw`` column."""
    return {r["id"]: json.loads(r["raw"]) for r in frame.select("id", "raw").iter_rows(named=True)}


__all__ += ["remote_by_id", "remote_frame"]
