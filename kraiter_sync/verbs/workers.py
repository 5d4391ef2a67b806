"""``import --workers N``: N processes on this machine share one import.

Each worker is a process of its own running :func:`~kraiter_sync.verbs.importer.import_`
as one worker (``ImportOptions.workers=1``): it holds the target's lock shared, reads and
validates the inputs, and sends the shards it claims (``state.work``) until every shard
is done. The same command started on other machines against the same PostgreSQL state
joins the same work. Each worker keeps its own state directory under
``STATE_DIR/workers/N`` (its spool and rejects file) and its own run record.

This process only starts the workers, relays their progress and adds up their results:
rows read, duplicates and invalid rows are each worker's (all read the same inputs), what
was sent, verified or skipped is the sum. A worker that dies (``kill -9``, out of memory)
leaves its shard leased until the lease expires; another worker then takes it over and
verifies what the dead one left inflight. Its death makes the run incomplete (exit 4):
running the command again checks that everything is there.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import queue
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from kraiter_sync.config import Settings
from kraiter_sync.errors import (
    EXIT_BUSY,
    EXIT_INCOMPLETE,
    EXIT_USAGE,
    ConfigError,
    IncompleteError,
    KraiterSyncError,
    LockHeldError,
    UsageError,
)
from kraiter_sync.inputs import Input
from kraiter_sync.logs import get_logger
from kraiter_sync.state.backend import WORKERS_NEED_HTTP, WORKERS_NEED_POSTGRES
from kraiter_sync.upload.core import Snapshot
from kraiter_sync.verbs.importer import (
    ImportOptions,
    ImportResult,
    KindCounts,
    check_worker_options,
    import_,
)
from kraiter_sync.verbs.sharing import job_id

__all__ = ["import_with_workers"]

log = get_logger("import")

#: A worker's error, raised again here by its exit code.
_BY_EXIT: dict[int, type[KraiterSyncError]] = {
    EXIT_USAGE: UsageError,
    EXIT_BUSY: LockHeldError,
    EXIT_INCOMPLETE: IncompleteError,
}

#: KindCounts fields that every worker counts for the whole input (not added up).
_WHOLE_INPUT = ("read", "duplicates", "invalid")


def _worker(
    index: int,
    paths: list[str | Path | Input],
    settings: Settings,
    options: ImportOptions,
    args: dict[str, Any] | None,
    progress: multiprocessing.Queue[tuple[int, Snapshot]],
    done: Connection,
) -> None:
    """One worker process: one import, as one worker; its result or its error sent back."""

    def relay(snapshot: Snapshot) -> None:
        progress.put((index, snapshot))

    try:
        result = import_(paths, settings=settings, options=options, args=args, on_progress=relay)
        done.send(("ok", result))
    except KraiterSyncError as exc:
        done.send(("error", (type(exc).__name__, str(exc), exc.exit_code)))
    except KeyboardInterrupt:
        done.send(("error", ("Interrupted", "interrupted", 4)))
    finally:
        done.close()


def _begin_round(
    settings: Settings, state_url: str, paths: list[str], lease_seconds: float
) -> None:
    """Begin the round of shards the workers started here join (a new one when the last
    round finished), so that a worker starting late never begins another."""
    from kraiter_sync.state.backend import open_postgres
    from kraiter_sync.state.work import ShardLeases, holder_name

    with open_postgres(state_url, settings.state_dir) as store:
        job = job_id(settings.target, paths)
        leases = ShardLeases(
            store.db, settings.target, job, holder=holder_name(), ttl=lease_seconds
        )
        leases.begin()


def _merge(results: list[ImportResult]) -> ImportResult:
    first = results[0]
    merged = ImportResult(
        run_id=first.run_id,
        rejects_path=first.rejects_path,
        # every worker validates the whole input: what it decided of it holds for all
        dry_run=all(r.dry_run for r in results),
        stopped=next((r.stopped for r in results if r.stopped is not None), None),
        duplicates_path=first.duplicates_path,
        detections=first.detections,
        state_check=next((r.state_check for r in results if r.state_check), None),
    )
    for kind in ("events", "contacts"):
        total = KindCounts()
        for name in (f.name for f in dataclasses.fields(KindCounts)):
            if name in _WHOLE_INPUT:
                value = getattr(getattr(first, kind), name)
            elif name in ("elsewhere", "pending"):
                continue
            else:
                value = sum(getattr(getattr(r, kind), name) for r in results)
            setattr(total, name, value)
        total.pending = total.read - total.accounted
        setattr(merged, kind, total)
    merged.duration_s = max(r.duration_s for r in results)
    merged.requests = sum(r.requests for r in results)
    merged.rate_limited = sum(r.rate_limited for r in results)
    merged.retries = sum(r.retries for r in results)
    merged.interrupted = any(r.interrupted for r in results)
    merged.warnings = list(dict.fromkeys(w for r in results for w in r.warnings))
    return merged


def import_with_workers(
    paths: Sequence[str | Path | Input],
    *,
    settings: Settings,
    options: ImportOptions,
    on_progress: Callable[[Snapshot], None] | None = None,
    args: dict[str, Any] | None = None,
) -> ImportResult:
    """Run ``options.workers`` worker processes on one import (see the module docstring).

    Needs a PostgreSQL state store (``settings.state_url``). Returns the workers' results
    added up; ``exit_code`` is 4 when a worker died or stopped early.
    """
    if settings.state_url is None:
        raise ConfigError(WORKERS_NEED_POSTGRES)
    if settings.local:
        raise ConfigError(WORKERS_NEED_HTTP)
    check_worker_options(options)
    if options.rejects is not None:
        msg = (
            "with --workers each worker writes its own rejects file in its state directory "
            "(STATE_DIR/workers/N/rejects): drop --rejects"
        )
        raise ConfigError(msg)
    _begin_round(settings, settings.state_url, [str(p) for p in paths], options.lease_seconds)
    context = multiprocessing.get_context("spawn")
    progress: multiprocessing.Queue[tuple[int, Snapshot]] = context.Queue()
    started: list[tuple[Any, Connection]] = []
    one = dataclasses.replace(options, workers=1, join_round=True)
    for index in range(options.workers):
        mine = dataclasses.replace(settings, state_dir=settings.state_dir / "workers" / str(index))
        receive, send = context.Pipe(duplex=False)
        process = context.Process(
            target=_worker,
            args=(index, list(paths), mine, one, args, progress, send),
            name=f"kraiter-sync-worker-{index}",
        )
        process.start()
        send.close()
        started.append((process, receive))
    log.info("started %d workers: pids %s", len(started), [p.pid for p, _ in started])
    latest: dict[int, Snapshot] = {}

    def relay() -> None:
        while True:
            try:
                index, snapshot = progress.get_nowait()
            except queue.Empty:
                return
            latest[index] = snapshot
            if on_progress is not None:
                on_progress(_sum(latest.values()))

    results: list[ImportResult] = []
    failures: list[str] = []
    errors: list[tuple[str, str, int]] = []
    for index, (process, receive) in enumerate(started):
        while process.is_alive():
            process.join(0.2)
            relay()
        outcome = receive.recv() if receive.poll() else None
        if outcome is None:
            failures.append(f"worker {index} (pid {process.pid}) died (exit {process.exitcode})")
        elif outcome[0] == "ok":
            results.append(outcome[1])
        else:
            errors.append(outcome[1])
            failures.append(f"worker {index} (pid {process.pid}) stopped: {outcome[1][1]}")
    relay()
    progress.close()
    if not results:
        if errors:
            _name, message, code = errors[0]
            raise _BY_EXIT.get(code, KraiterSyncError)(message)
        msg = "; ".join(failures) + ": re-run the same command to resume"
        raise IncompleteError(msg)
    merged = _merge(results)
    if failures:
        merged.interrupted = True
        merged.warnings.extend(failures)
    return merged


def _sum(snapshots: Any) -> Snapshot:
    items = list(snapshots)
    shares = [s.share for s in items if s.share is not None]
    budgets = [s.rate_budget for s in items if s.rate_budget is not None]
    return Snapshot(
        done=sum(s.done for s in items),
        total=max(s.total for s in items),
        retries=sum(s.retries for s in items),
        rate_limited=sum(s.rate_limited for s in items),
        rate_budget=sum(budgets) if budgets else None,
        share=sum(shares) if shares else None,
    )
