"""Guards: what must be true before anything is written.

* :func:`check_triggers` — back-dated events whose names trigger live sequences would
  enrol contacts and send real emails: refused unless ``--allow-triggers``.
* :func:`refuse_unsafe_mirror`, :func:`check_mirror_guards` — mirror mode deletes: an
  empty input, rejected rows, or more deletions than ``--max-delete-ratio`` are refused.
* :func:`verify_plan_fresh` — a saved plan is applied only if Kraiter still holds what it
  was computed from.

Every refusal is a :class:`~kraiter_sync.errors.GuardError` (exit 2) naming the next step.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection
from typing import Any

import polars as pl

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.api.pool import run_pool
from kraiter_sync.errors import ApiError, GuardError
from kraiter_sync.plan.contacts import ContactPlan
from kraiter_sync.plan.snapshot import PAGE_SIZE, Caller, once, snapshot_contacts, snapshot_digest
from kraiter_sync.validate import ValidationReport

__all__ = [
    "DEFAULT_MAX_DELETE_RATIO",
    "check_mirror_guards",
    "check_triggers",
    "refuse_unsafe_mirror",
    "verify_plan_fresh",
]

DEFAULT_MAX_DELETE_RATIO = 0.05


async def check_triggers(
    client: KraiterClient, names: Collection[str], *, call: Caller, what: str
) -> None:
    """Refuse to send events whose names trigger live sequences.

    ``what`` says what would be sent (``"these event names trigger live sequences and
    importing history"``); the message names each event and sequence.
    """
    if not names:
        return

    async def listing() -> list[dict[str, Any]]:
        return [seq async for seq in client.list_sequences()]

    hits: dict[str, list[str]] = {}
    for seq in await call(listing):
        if str(seq.get("status", "")).lower() != "active":
            continue
        for trigger in seq.get("triggers") or []:
            event = trigger.get("event") if isinstance(trigger, dict) else trigger
            if event in names:
                label = f"{seq.get('name') or seq.get('id')} ({seq.get('id')})"
                hits.setdefault(str(event), []).append(label)
    if hits:
        found = "; ".join(f"{name} → {', '.join(seqs)}" for name, seqs in sorted(hits.items()))
        msg = (
            f"nothing was sent: {what} would enrol contacts and send real emails: {found}. "
            "Pause those sequences, or pass --allow-triggers if that is what you want"
        )
        raise GuardError(msg)


def refuse_unsafe_mirror(local: pl.DataFrame, report: ValidationReport) -> None:
    """Mirror mode deletes what the input lacks: an empty input, or one with rejected
    rows (whose contacts would be deleted), is refused before Kraiter is read."""
    if local.height == 0:
        msg = (
            "refusing to mirror an empty input: it would delete every contact in Kraiter. "
            "Check the input files and the mapping (kraiter-sync validate)"
        )
        raise GuardError(msg)
    if report.rejected:
        msg = (
            f"refusing to mirror: {report.rejected:,} input row(s) were rejected, and mirror "
            "mode would delete their contacts from Kraiter. Fix them (see --rejects) first"
        )
        raise GuardError(msg)


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


async def verify_plan_fresh(
    client: KraiterClient,
    plan: ContactPlan,
    *,
    call: Caller = once,
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

            async def by_id(contact_id: str) -> None:
                try:
                    current[contact_id] = await call(
                        functools.partial(client.get_contact, contact_id)
                    )
                except ApiError as exc:
                    if exc.http_status != 404:
                        raise

            found: set[str] = set()

            async def by_email(email: str) -> None:
                if await call(functools.partial(client.get_contact_by_email, email)) is not None:
                    found.add(email)

            await run_pool(ids, by_id, concurrency=concurrency)
            await run_pool(creates, by_email, concurrency=concurrency)
            appeared = [e for e in creates if e in found]
    else:
        appeared = []
    stale: list[str] = []
    for row in affected.iter_rows(named=True):
        now = current.get(row["id"])
        if now is None:
            stale.append(f"{row['email']} (deleted)")
        elif snapshot_digest(now) != row["remote_hash"] or (
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
