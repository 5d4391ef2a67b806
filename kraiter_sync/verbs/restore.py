"""The ``restore`` verb: recreate the contacts a ``reconcile --mirror`` run deleted, from
its tombstone file, through the upload engine."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kraiter_sync.config import Settings
from kraiter_sync.errors import EXIT_INCOMPLETE, outcome_exit_code
from kraiter_sync.state.store import StateStore
from kraiter_sync.state.tombstones import read_tombstone
from kraiter_sync.upload.context import ClientFactory, RunOptions, locked_state, recorded_run
from kraiter_sync.upload.engine import Engine
from kraiter_sync.upload.rows import outcome_rejects

__all__ = ["RestoreResult", "restore", "restore_contacts"]


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
        return outcome_exit_code(failed=self.failed, rejected=len(self.rejects))

    def counts(self) -> dict[str, Any]:
        """For the run record."""
        return {
            "restored": self.restored,
            "existing": self.existing,
            "rejected": len(self.rejects),
            "failed": self.failed,
            "exit_code": self.exit_code,
        }


async def restore_contacts(engine: Engine, contacts: list[dict[str, Any]]) -> RestoreResult:
    """Recreate ``contacts`` (a tombstone's) with their properties, userId and unsubscribe
    state; one that exists again is left alone, so re-running a restore is safe."""
    written = await engine.restore_contacts(contacts)
    return RestoreResult(
        restored=written.created,
        existing=written.existing,
        failed=written.failed,
        rejects=outcome_rejects(written.rejected, field="contact").to_dicts(),
        not_restorable=written.not_restorable,
    )


def restore_locked(
    store: StateStore,
    tombstone: str | Path,
    *,
    settings: Settings,
    options: RunOptions | None = None,
    client_factory: ClientFactory | None = None,
) -> RestoreResult:
    """:func:`restore` for a caller that holds the state lock."""
    contacts = read_tombstone(tombstone)
    args = {"tombstone": str(tombstone)}
    with recorded_run(
        store, settings, "restore", args, options=options, client_factory=client_factory
    ) as run:

        async def main() -> RestoreResult:
            async with run.engine() as engine:
                return await restore_contacts(engine, contacts)

        result = asyncio.run(main())
        run.counts = result.counts()
        run.status = "incomplete" if result.exit_code == EXIT_INCOMPLETE else "ok"
        return result


def restore(
    tombstone: str | Path,
    *,
    settings: Settings,
    options: RunOptions | None = None,
    client_factory: ClientFactory | None = None,
) -> RestoreResult:
    """``kraiter-sync restore TOMBSTONE``: recreate the contacts a mirror run deleted."""
    with locked_state(settings) as store:
        return restore_locked(
            store, tombstone, settings=settings, options=options, client_factory=client_factory
        )
