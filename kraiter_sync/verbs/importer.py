"""``import``: files → validated frames → plan against the ledger → upload → report.

Two passes keep memory flat and make the safety checks possible before anything is
sent:

1. **Validate** every input in chunks. Invalid rows go to the rejects file; valid
   events are spooled to Parquet parts in the state directory; the event names and
   contact emails seen are collected.
2. **Send.** First the sequence-trigger guard (nothing has been sent yet). Then
   contacts (created or patched; unchanged ones skipped by hash). Then, for events:
   verification of keys a killed run left ``inflight``, and the spool chunk by chunk,
   minus keys already recorded; contacts the ledger does not know cost nothing where
   Kraiter creates them for events, and are found or created first where it does not
   (``upload.links``). Sends whose answer was lost are checked once, at the end.

Before the first events go to a target the ledger knows nothing of (a new or replaced
state directory), the input is sample-checked against Kraiter (``plan.lost_state``): if
Kraiter holds some of it already, the import stops before sending anything, unless
``rebuild`` (the ledger is rebuilt from Kraiter first: ``verbs.rebuild``) or ``adopt``
(every event is looked for in Kraiter before it is sent) is given.

A ledger written before values read as text were typed (``state.ledger.KEY_VERSION``)
knows some events under their earlier key: ``plan.ledger`` finds them under it, and rows
a killed earlier version left inflight under it are verified with the properties sent
then (:meth:`ImportRun._recover_legacy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kraiter_sync.config import Settings
from kraiter_sync.errors import ConfigError
from kraiter_sync.inputs import ChunkSource, Input, prepare_inputs
from kraiter_sync.logs import get_logger
from kraiter_sync.state.ledger import KEY_VERSION
from kraiter_sync.state.rejects import (
    DuplicatesWriter,
    RejectsWriter,
    duplicates_path,
    reuse_identical,
)
from kraiter_sync.state.store import StateStore
from kraiter_sync.upload.context import ClientFactory, locked_state, recorded_run, worker_state
from kraiter_sync.upload.core import Snapshot
from kraiter_sync.verbs.import_options import ImportOptions, ImportResult, KindCounts
from kraiter_sync.verbs.import_run import ImportRun
from kraiter_sync.verbs.sharing import job_id, sharing_for

__all__ = [
    "ImportOptions",
    "ImportResult",
    "KindCounts",
    "Snapshot",
    "check_worker_options",
    "import_",
    "import_locked",
]

log = get_logger("import")


def _clear_old_spools(state_dir: Path) -> None:
    """Spools of earlier (finished or killed) runs; we hold the state lock, so none is live."""
    root = state_dir / "spool"
    if root.is_dir():
        shutil.rmtree(root, ignore_errors=True)


def import_locked(
    store: StateStore,
    paths: Sequence[str | Path | ChunkSource | Input],
    *,
    settings: Settings,
    options: ImportOptions | None = None,
    client_factory: ClientFactory | None = None,
    on_progress: Callable[[Snapshot], None] | None = None,
    args: dict[str, Any] | None = None,
    command: str = "import",
    on_validated: Callable[[int], None] | None = None,
) -> ImportResult:
    """:func:`import_` for a caller that holds the state lock (``sync`` runs each job
    through it under one lock)."""
    options = options or ImportOptions()
    if options.adopt and options.rebuild:
        msg = (
            "pass --adopt or --rebuild, not both: --rebuild makes the ledger know what "
            "Kraiter holds, so there is nothing left to adopt"
        )
        raise ConfigError(msg)
    started = time.monotonic()
    _clear_old_spools(settings.state_dir)
    if store.oldest_key_version(settings.target) < KEY_VERSION:
        validation = dataclasses.replace(options.input.validation, legacy_keys=True)
        options = dataclasses.replace(
            options, input=dataclasses.replace(options.input, validation=validation)
        )
    record = args or {"paths": [str(getattr(p, "path", p)) for p in paths]}
    with (
        recorded_run(
            store,
            settings,
            command,
            record,
            options=options.run_options,
            client_factory=client_factory,
        ) as run,
        contextlib.ExitStack() as stack,
    ):
        job: ImportRun | None = None
        try:
            rejects_path = options.rejects or (
                settings.state_dir / "rejects" / f"run-{run.run_id}.csv"
            )
            writer = stack.enter_context(RejectsWriter(rejects_path))
            inputs = prepare_inputs(paths, options.input, stack=stack)
            job = ImportRun(settings, options, store, run.run_id, writer, command)
            shared = options.workers > 0 and not options.dry_run
            job.sharing = sharing_for(
                store,
                settings,
                max_share=options.max_share,
                job=job_id(settings.target, [str(p) for p in paths]) if shared else None,
                lease_seconds=options.lease_seconds,
            )
            job.duplicates = stack.enter_context(DuplicatesWriter(duplicates_path(writer.path)))
            job.validate(inputs, on_validated)
            job.duplicates.close()
            if job.duplicates.written is not None:
                job.result.duplicates_path = reuse_identical(
                    job.duplicates.path, "run-*.duplicates.csv"
                )
            job.result.stopped = options.input.reject_ratio_exceeded(
                job.result.contacts.read + job.result.events.read,
                job.result.contacts.invalid + job.result.events.invalid,
            )
            if job.result.stopped is None:
                asyncio.run(job.send(run, on_progress))
            else:
                for counts in (job.result.contacts, job.result.events):
                    counts.pending = counts.read - counts.accounted
                log.warning("stopped before sending anything: %s", job.result.stopped)
            if options.rejects is None:
                writer.close()
                writer.path = reuse_identical(writer.path, f"run-*{writer.path.suffix}")
                job.result.rejects_path = writer.path
            job.result.duration_s = time.monotonic() - started
            run.status = job.result.status
            return job.result
        finally:
            if job is not None and job.sharing is not None:
                job.sharing.detach(store)
            run.counts = job.result.as_dict() if job is not None else {}
            if job is None:
                run.details = None
            else:
                run.details = {
                    "rejects": {
                        "by_rule": job.writer.by_rule,
                        "file": str(job.writer.path.absolute()),
                    }
                }
                shutil.rmtree(job.spool, ignore_errors=True)


def check_worker_options(options: ImportOptions) -> None:
    """What workers cannot do (exit 2 before anything starts)."""
    if options.workers and options.rebuild:
        msg = (
            "--rebuild with --workers would rebuild the ledger in every worker: run "
            "`kraiter-sync state rebuild` first, then the import with --workers"
        )
        raise ConfigError(msg)


def import_(
    paths: Sequence[str | Path | ChunkSource | Input],
    *,
    settings: Settings,
    options: ImportOptions | None = None,
    client_factory: ClientFactory | None = None,
    on_progress: Callable[[Snapshot], None] | None = None,
    args: dict[str, Any] | None = None,
    command: str = "import",
    on_validated: Callable[[int], None] | None = None,
) -> ImportResult:
    """Import files into Kraiter: the library form of ``kraiter-sync import``.

    ``paths`` may also hold open chunk sources (``sources.sql.SqlSource``: see
    ``inputs.ChunkSource``) and :class:`~kraiter_sync.inputs.Input` items (one input
    with its own mapping); ``command`` names the run record. ``on_validated`` gets the
    rows validated so far, ``on_progress`` where the sending stands.

    Safe to kill and re-run: the ledger in ``settings.state_dir`` makes the next run
    skip what is done and verify what was in flight. Returns counts for every row;
    ``result.exit_code`` is what the CLI exits with.
    """
    if options is not None:
        check_worker_options(options)
    with worker_state(settings) if options and options.workers else locked_state(settings) as store:
        return import_locked(
            store,
            paths,
            settings=settings,
            options=options,
            client_factory=client_factory,
            on_progress=on_progress,
            args=args,
            command=command,
            on_validated=on_validated,
        )
