"""The ``restore`` verb: recreate the contacts a ``reconcile --mirror`` run deleted, from
its tombstone file, through the upload engine."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kraiter_sync.config import Settings
from kraiter_sync.errors import outcome_exit_code, status_for_exit
from kraiter_sync.state.store import StateStore
from kraiter_sync.state.tombstones import read_tombstone
from kraiter_sync.upload.context import ClientFactory, RunOptions, locked_state, recorded_run
from kraiter_sync.upload.core import EngineStats, Snapshot
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
    #: The run's record in the ledger (``kraiter-sync runs``).
    run_id: int | None = None

    @property
    def exit_code(self) -> int:
        return outcome_exit_code(failed=self.failed, rejected=len(self.rejects))

    @property
    def status(self) -> str:
        return status_for_exit(self.exit_code)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document (docs/schemas/restore.schema.json)."""
        return {
            "command": "restore",
            "run_id": self.run_id,
            "status": self.status,
            **self.counts(),
            "not_restorable": list(self.not_restorable),
            "files": {},
        }

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
    on_progress: Callable[[Snapshot], None] | None = None,
) -> RestoreResult:
    """:func:`restore` for a caller that holds the state lock."""
    contacts = read_tombstone(tombstone)
    args = {"tombstone": str(tombstone)}
    with recorded_run(
        store, settings, "restore", args, options=options, client_factory=client_factory
    ) as run:
        engines: list[Engine] = []

        def progress(stats: EngineStats) -> None:
            if on_progress is not None and engines:
                controller = engines[0].controller
                on_progress(Snapshot.of(stats, total=len(contacts), controller=controller))

        async def main() -> RestoreResult:
            async with run.engine(on_progress=progress) as engine:
                engines.append(engine)
                return await restore_contacts(engine, contacts)

        result = asyncio.run(main())
        result.run_id = run.run_id
        run.counts = result.counts()
        run.status = result.status
        return result


def restore(
    tombstone: str | Path,
    *,
    settings: Settings,
    options: RunOptions | None = None,
    client_factory: ClientFactory | None = None,
    on_progress: Callable[[Snapshot], None] | None = None,
) -> RestoreResult:
    """``kraiter-sync restore TOMBSTONE``: recreate the contacts a mirror run deleted."""
    with locked_state(settings) as store:
        return restore_locked(
            store,
            tombstone,
            settings=settings,
            options=options,
            client_factory=client_factory,
            on_progress=on_progress,
        )
