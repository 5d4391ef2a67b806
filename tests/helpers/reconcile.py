"""Frames and engines for the reconcile and apply tests."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.api.retry import RetryPolicy
from kraiter_sync.plan.contacts import ContactPlan
from kraiter_sync.state.ledger import Ledger
from kraiter_sync.upload.engine import Engine, EngineOptions
from kraiter_sync.validate.keys import canonical_json
from kraiter_sync.verbs.apply import ApplyResult, apply_plan
from kraiter_sync.verbs.reconcile import EventsReconcileResult, reconcile_events
from kraiter_sync.verbs.restore import RestoreResult, restore_contacts


def local_frame(rows: list[tuple[str, str | None, dict[str, Any]]]) -> pl.DataFrame:
    """A canonical contacts frame from (email, user id, properties) tuples."""
    return pl.DataFrame(
        {
            "email": [r[0] for r in rows],
            "user_id": [r[1] for r in rows],
            "properties": [canonical_json(r[2]) for r in rows],
            "source_file": ["contacts.csv"] * len(rows),
            "source_row": list(range(1, len(rows) + 1)),
        },
        schema={
            "email": pl.String,
            "user_id": pl.String,
            "properties": pl.String,
            "source_file": pl.String,
            "source_row": pl.Int64,
        },
    )


@contextlib.asynccontextmanager
async def engine_over(
    client: KraiterClient, policy: RetryPolicy | None = None
) -> AsyncIterator[Engine]:
    """The upload engine over ``client`` with a ledger of its own (a throwaway one)."""
    options = EngineOptions(retry=policy or RetryPolicy())
    with tempfile.TemporaryDirectory() as tmp, Ledger(Path(tmp) / "ledger.db") as ledger:
        yield Engine(client, ledger, target="test", run_id=None, options=options)


async def apply_with(
    client: KraiterClient, plan: ContactPlan, *, policy: RetryPolicy | None = None, **kw: Any
) -> ApplyResult:
    async with engine_over(client, policy) as engine:
        return await apply_plan(engine, plan, **kw)


async def restore_with(client: KraiterClient, contacts: list[Mapping[str, Any]]) -> RestoreResult:
    async with engine_over(client) as engine:
        return await restore_contacts(engine, [dict(c) for c in contacts])


async def reconcile_applied(client: KraiterClient, local: pl.DataFrame) -> EventsReconcileResult:
    async with engine_over(client) as engine:
        return await reconcile_events(client, local, engine=engine)
