"""``reconcile --kind events``: per (contact, name) counts of the input's events against
Kraiter's (``plan.events``) and, with an engine, the missing ones sent through it with the
ledger (:func:`reconcile_events`). The verb around it is ``verbs.reconcile``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.errors import outcome_exit_code
from kraiter_sync.plan.events import EventsPlan, plan_events
from kraiter_sync.plan.guards import check_triggers
from kraiter_sync.plan.snapshot import Caller, once
from kraiter_sync.state.rejects import reject_row
from kraiter_sync.upload.engine import Engine, EventRow

__all__ = ["EventsReconcileResult", "reconcile_events"]


@dataclass
class EventsReconcileResult:
    """Counts per (contact, name), the missing events, and what --apply sent."""

    counts: pl.DataFrame
    missing: pl.DataFrame
    contacts_absent: int = 0
    sent: int = 0
    failed: int = 0
    rejects: list[dict[str, Any]] = field(default_factory=list)
    applied: bool = False
    rejects_path: Path | None = None

    @property
    def exit_code(self) -> int:
        return outcome_exit_code(failed=self.failed, rejected=len(self.rejects))

    def record(self) -> dict[str, Any]:
        """The counts for the run record and ``--json``."""
        c = self.counts
        totals = {
            k: int(c[k].sum()) if c.height else 0 for k in ("local", "remote", "missing", "extra")
        }
        return {
            **totals,
            "contacts": c["contact"].n_unique() if c.height else 0,
            "contacts_absent": self.contacts_absent,
            "applied": self.applied,
            "sent": self.sent,
            "rejected": len(self.rejects),
            "failed": self.failed,
            "exit_code": self.exit_code,
        }


async def reconcile_events(
    client: KraiterClient,
    local_events: pl.DataFrame,
    *,
    concurrency: int = 16,
    call: Caller = once,
    engine: Engine | None = None,
    allow_triggers: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> EventsReconcileResult:
    """Compare the canonical local events with Kraiter's; with an ``engine``, send the
    missing ones through it (marked in flight in the ledger first, ambiguous outcomes
    verified, never sent twice).

    A contact that does not exist is created first (one upsert), so the result does not
    depend on how Kraiter treats events for unknown emails.
    """
    plan = await plan_events(
        client, local_events, concurrency=concurrency, call=call, on_progress=on_progress
    )
    result = EventsReconcileResult(
        counts=plan.counts, missing=plan.missing, contacts_absent=len(plan.absent)
    )
    if engine is not None:
        if not allow_triggers and plan.missing.height:
            await check_triggers(
                client,
                set(plan.missing["name"].unique().to_list()),
                call=call,
                what="these missing events trigger live sequences, and sending them",
            )
        result.applied = True
        await _send_missing(engine, result, plan)
    return result


async def _send_missing(engine: Engine, result: EventsReconcileResult, plan: EventsPlan) -> None:
    ids = dict(plan.ids)
    if plan.absent:
        # Not from the ledger's cache: reconcile has just seen that these do not exist.
        ensured = await engine.ensure_contacts(plan.absent, use_cache=False)
        ids.update(ensured.ids)
        result.failed += sum(1 for exc in ensured.failed.values() if exc.retriable)
    rows: list[EventRow] = []
    for r in plan.missing.iter_rows(named=True):
        contact_id = ids.get(r["contact"])
        if contact_id is None:
            result.rejects.append(
                reject_row(
                    source_file=r["source_file"],
                    source_row=r["source_row"],
                    field="contact",
                    rule="api.NOT_FOUND",
                    message=f"contact {r['contact']} could not be created",
                    name=r["name"],
                )
            )
            continue
        rows.append(
            EventRow(
                r["event_key"],
                contact_id,
                r["name"],
                r["ts"],
                r["properties_json"],
                r["source_file"],
                int(r["source_row"]),
                None if r["contact"].startswith("id:") else r["contact"],
            )
        )
    before = dataclasses.replace(engine.stats)
    await engine.resend_events(rows)
    stats = engine.stats
    result.sent += (stats.events_sent - before.events_sent) + (
        stats.events_verified - before.events_verified
    )
    result.failed += stats.events_failed - before.events_failed
