"""Applying a contacts plan through the engine: tombstone first, then writes.

The order of a mirror run is what makes it undoable::

    guards (plan.guards) → freshness of a saved plan → tombstone written and fsynced →
    creates and updates → deletes

Creates are the engine's upsert (create; on CONFLICT — someone created it since — look
the contact up and patch what differs), updates PATCH only the changed keys, deletes
DELETE; every write has the engine's retries, rate control and ledger bookkeeping.
Per-contact refusals (4xx) are data (``ApplyResult.rejects``); requests still failing
after retries make the run incomplete (exit 4), and re-running reconciles again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from kraiter_sync.errors import (
    GuardError,
    outcome_exit_code,
)
from kraiter_sync.logs import get_logger
from kraiter_sync.plan.contacts import ContactPlan, contact_hash
from kraiter_sync.state.tombstones import write_tombstone
from kraiter_sync.upload.engine import ContactRow, Engine, Written
from kraiter_sync.upload.rows import outcome_rejects

__all__ = ["ApplyResult", "apply_plan", "remote_by_id"]

log = get_logger("reconcile")


@dataclass
class ApplyResult:
    """What applying a plan did. ``rejects``: one rejects-file row per refused contact."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    failed: int = 0
    rejects: list[dict[str, Any]] = field(default_factory=list)
    tombstone: Path | None = None
    rejects_path: Path | None = None

    @property
    def exit_code(self) -> int:
        return outcome_exit_code(failed=self.failed, rejected=len(self.rejects))

    def add(self, written: Written) -> None:
        self.created += written.created
        self.updated += written.updated
        self.deleted += written.deleted
        self.failed += written.failed
        if written.rejected:
            self.rejects.extend(outcome_rejects(written.rejected, field="contact").to_dicts())


def remote_by_id(frame: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """id → full contact object, from a snapshot frame's ``raw`` column."""
    return {r["id"]: json.loads(r["raw"]) for r in frame.select("id", "raw").iter_rows(named=True)}


def _rows(frame: pl.DataFrame, *, hashed: bool = False) -> list[ContactRow]:
    return [
        ContactRow(
            r["email"],
            (r["properties"] or "{}") if hashed else r["properties"],
            r["user_id"],
            r["source_file"] or "",
            int(r["source_row"] or 0),
            contact_hash(r["properties"], r["user_id"]) if hashed else None,
            None if hashed else r["id"],
        )
        for r in frame.iter_rows(named=True)
    ]


async def apply_plan(
    engine: Engine,
    plan: ContactPlan,
    *,
    remote: Mapping[str, Mapping[str, Any]] | None = None,
    tombstone: str | Path | None = None,
) -> ApplyResult:
    """Send the plan's creates, updates and (mirror) deletes through ``engine``.

    ``remote`` maps contact id → the full contact object as last read (from the
    snapshot or ``plan.guards.verify_plan_fresh``); deletions need it for the tombstone,
    which is written to ``tombstone`` before the first delete. Creates keep the ledger's
    contact cache current; deletes drop their emails from it.
    """
    result = ApplyResult()
    deletes = plan.of("delete") if plan.mirror else plan.of("delete").clear()
    if deletes.height:
        if tombstone is None or remote is None:
            msg = "deleting contacts needs a tombstone path and their current state"
            raise ValueError(msg)
        ids = deletes["id"].to_list()
        missing = [e for e, i in zip(deletes["email"], ids, strict=True) if i not in remote]
        if missing:
            msg = f"no current state for {len(missing)} contact(s) to delete; reconcile again"
            raise GuardError(msg)
        result.tombstone = write_tombstone(tombstone, (remote[i] for i in ids))
        log.info("tombstone with %d contacts written to %s", len(ids), result.tombstone)
    result.add(await engine.write_contacts(_rows(plan.of("create"), hashed=True)))
    result.add(await engine.update_contacts(_rows(plan.of("update"))))
    if deletes.height:
        result.add(await engine.delete_contacts(_rows(deletes)))
    return result
