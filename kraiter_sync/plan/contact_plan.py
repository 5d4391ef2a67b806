"""Contacts planned against Kraiter as it is now: a snapshot, then the pure diff.

``import`` and ``reconcile`` share it: a new state directory or another machine
re-importing the same contacts costs reads (a listing or per-email lookups, whichever is
cheaper), not writes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.errors import GuardError
from kraiter_sync.plan.contacts import ContactPlan, diff_contacts
from kraiter_sync.plan.snapshot import Caller, RemoteSnapshot, Strategy, once, snapshot_contacts
from kraiter_sync.state.plans import read_plan_file, write_plan_file

__all__ = ["changed_contacts", "contacts_to_write", "plan_contacts", "read_plan", "write_plan"]


async def plan_contacts(
    client: KraiterClient,
    local: pl.DataFrame,
    *,
    mirror: bool = False,
    mirror_properties: bool = False,
    strategy: Strategy = "auto",
    concurrency: int = 16,
    call: Caller = once,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[ContactPlan, RemoteSnapshot]:
    """Read Kraiter (listing or lookups) and diff it against ``local``.

    Mirror mode needs every remote contact, so it always lists.
    """
    if mirror and strategy == "lookups":
        msg = "--mirror needs the full list of Kraiter's contacts; drop --remote lookups"
        raise GuardError(msg)
    snapshot = await snapshot_contacts(
        client,
        local["email"].to_list(),
        strategy="listing" if mirror else strategy,
        concurrency=concurrency,
        call=call,
        on_progress=on_progress,
    )
    if mirror and strategy != "listing":
        snapshot.reason = "--mirror needs every contact in Kraiter, so all were listed"
    plan = diff_contacts(
        local,
        snapshot.frame,
        mirror=mirror,
        mirror_properties=mirror_properties,
        remote_complete=snapshot.complete,
        strategy=snapshot.strategy,
    )
    return plan, snapshot


def changed_contacts(plan: ContactPlan, local: pl.DataFrame) -> pl.DataFrame:
    """The rows of ``local`` that need a write (create or update) under ``plan``: the
    importer diffs first and sends only these, so unchanged contacts cost no write."""
    keys = plan.rows.filter(pl.col("action").is_in(["create", "update"])).select("email")
    return local.join(keys, on="email", how="semi", maintain_order="left")


async def contacts_to_write(
    client: KraiterClient,
    local: pl.DataFrame,
    *,
    strategy: Strategy = "auto",
    concurrency: int = 16,
    call: Caller = once,
) -> tuple[pl.DataFrame, ContactPlan, RemoteSnapshot]:
    """For ``import --kind contacts``: diff against Kraiter, keep only what must be sent.

    Returns (the rows of ``local`` to create or update, the plan, the snapshot). The
    plan's ``unchanged`` count is what the importer reports as unchanged: those
    contacts cost read requests only (listing or lookups, whichever is cheaper), no
    writes — even when the ledger has never seen them (new machine, new state dir).
    """
    plan, snapshot = await plan_contacts(
        client, local, strategy=strategy, concurrency=concurrency, call=call
    )
    return changed_contacts(plan, local), plan, snapshot


def write_plan(plan: ContactPlan, path: str | Path) -> Path:
    """Save the whole plan to ``path`` (.json or .parquet, atomically)."""
    return write_plan_file(plan.rows, plan.meta(), path)


def read_plan(path: str | Path) -> ContactPlan:
    """A plan saved by :func:`write_plan` (InputError when the file is not one)."""
    return ContactPlan.from_saved(*read_plan_file(path))
