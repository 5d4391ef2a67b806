"""Running jobs: each one through the verbs' lock-free inner functions, under one lock."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kraiter_sync.config import Settings
from kraiter_sync.config.file import JobConfig, SyncConfig
from kraiter_sync.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    KraiterSyncError,
    status_for_exit,
)
from kraiter_sync.logs import get_logger
from kraiter_sync.sources.objectstore.changes import SeenObjects
from kraiter_sync.sources.sql import CursorValue
from kraiter_sync.state.rowcache import RowCache
from kraiter_sync.state.store import StateStore
from kraiter_sync.sync.changes import ChangedRows, rejected_rows
from kraiter_sync.sync.cursor import (
    CursorWindow,
    comparable,
    decode_cursor,
    encode_cursor,
    window_start,
)
from kraiter_sync.sync.jobs import (
    LEVELS,
    cursor_stream,
    files_of,
    full_stream,
    input_options,
    objects_stream,
    open_job_source,
    worst_exit_code,
)
from kraiter_sync.upload.context import ClientFactory, locked_state
from kraiter_sync.upload.core import Snapshot
from kraiter_sync.verbs.importer import ImportOptions, import_locked
from kraiter_sync.verbs.reconcile import ReconcileOptions, reconcile_locked

__all__ = ["JobResult", "SyncResult", "run_job", "run_sync"]

log = get_logger("sync")


@dataclass
class JobResult:
    """What one job did; ``exit_code`` follows design.md §8."""

    job: str
    status: str
    exit_code: int
    kind: str | None = None
    message: str = ""
    run_id: int | None = None
    full: bool = False
    window_from: str | None = None
    watermark_before: str | None = None
    watermark_after: str | None = None
    rows_read: int | None = None
    #: Source rows skipped before validation because they equal last run's (row cache).
    unchanged_rows: int = 0
    duration_s: float = 0.0
    counts: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "status": self.status,
            "exit_code": self.exit_code,
            "kind": self.kind,
            "message": self.message,
            "run_id": self.run_id,
            "full": self.full,
            "window_from": self.window_from,
            "watermark_before": self.watermark_before,
            "watermark_after": self.watermark_after,
            "rows_read": self.rows_read,
            "unchanged_rows": self.unchanged_rows,
            "duration_s": round(self.duration_s, 3),
            "counts": self.counts,
        }


@dataclass
class SyncResult:
    """A whole ``sync`` run: one result per job, in the order they ran."""

    jobs: list[JobResult]
    dry_run: bool = False
    duration_s: float = 0.0

    @property
    def exit_code(self) -> int:
        return worst_exit_code([j.exit_code for j in self.jobs])

    def as_dict(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "dry_run": self.dry_run,
            "duration_s": round(self.duration_s, 3),
            "jobs": [j.as_dict() for j in self.jobs],
        }

    def to_json(self) -> dict[str, Any]:
        """``sync --json`` (docs/schemas/sync.schema.json): each job has its run id."""
        return {
            "command": "sync",
            "status": status_for_exit(self.exit_code, dry_run=self.dry_run),
            "run_id": None,
            **self.as_dict(),
        }


def _status(code: int, dry_run: bool) -> str:
    return status_for_exit(code, dry_run=dry_run)


def _describe(value: CursorValue | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def _is_due(last_full: str | None, every: dt.timedelta | None, now: dt.datetime) -> bool:
    if every is None:
        return False
    if last_full is None:
        return True
    return now - dt.datetime.fromisoformat(last_full) >= every


def run_job(
    store: StateStore,
    job: JobConfig,
    *,
    settings: Settings,
    dry_run: bool = False,
    full: bool = False,
    now: dt.datetime | None = None,
    client_factory: ClientFactory | None = None,
    concurrency: int | None = None,
    on_progress: Callable[[Snapshot], None] | None = None,
) -> JobResult:
    """Run one job (the caller holds the state lock and passes its ``store``); raises on
    a failure of the job."""
    started = time.monotonic()
    now = now or dt.datetime.now(dt.UTC)
    if job.mode == "mirror":
        return _mirror_job(
            store,
            job,
            settings=settings,
            dry_run=dry_run,
            started=started,
            client_factory=client_factory,
        )
    target = settings.target
    raw_mark = last_full = None
    if job.cursor or (job.full_every and not full):  # else the ledger has nothing for us yet
        raw_mark = store.get_watermark(target, cursor_stream(job.name)) if job.cursor else None
        last_full = store.get_watermark(target, full_stream(job.name))
    full_pass = full or _is_due(last_full, job.full_every, now)
    watermark = decode_cursor(raw_mark) if raw_mark is not None else None
    since = None
    if job.cursor and watermark is not None and not full_pass:
        since = window_start(watermark, job.lag, job.name, parse_text=not job.is_sql)
    seen = objects = None
    if job.reads_objects:
        seen = SeenObjects.decode(store.get_watermark(target, objects_stream(job.name)))
        if full_pass:
            seen = SeenObjects()
    source = open_job_source(job, since=since, seen=seen)
    if seen is not None:
        remaining = files_of(source)
        objects = seen.listed(remaining)
        if not remaining:
            source.close()
            return JobResult(
                job=job.name,
                status=_status(EXIT_OK, dry_run),
                exit_code=EXIT_OK,
                kind=job.kind,
                full=full_pass,
                rows_read=0,
                duration_s=time.monotonic() - started,
                message="no new or changed objects since the last run",
            )
    row_cache: RowCache | None = None
    changed: ChangedRows | None = None
    if job.cursor is None:
        row_cache = RowCache(store, job, target)
        changed = ChangedRows(source, None if full_pass else row_cache.load())
        source = changed
    options = ImportOptions(
        input=input_options(job),
        dry_run=dry_run,
        concurrency=concurrency or job.concurrency,
        rate=job.rate,
        max_retries=job.max_retries,
        allow_triggers=job.allow_triggers,
        ignore_contact_cache=full_pass and job.kind != "events",
    )
    args = {
        "job": job.name,
        "source": job.source_label,
        "kind": job.kind,
        "full": full_pass,
        "since": _describe(since),
        "dry_run": dry_run,
    }
    result = import_locked(
        store,
        [source],
        settings=settings,
        options=options,
        client_factory=client_factory,
        args=args,
        command=f"sync:{job.name}",
        on_progress=on_progress,
    )
    code = result.exit_code
    after = watermark
    complete = code in (EXIT_OK, EXIT_REJECTED) and not dry_run
    if isinstance(source, CursorWindow) and source.max_value is not None and complete:
        top = source.max_value
        if after is None or not comparable(top, after) or top > after:  # type: ignore[operator]
            after = top
        store.set_watermark(target, cursor_stream(job.name), encode_cursor(after))
    if row_cache is not None and changed is not None and complete and not changed.same_as_before:
        rejected = rejected_rows(result.rejects_path) if code == EXIT_REJECTED else None
        row_cache.save(changed.rows(excluding=rejected))
    if full_pass and complete:
        store.set_watermark(target, full_stream(job.name), now.isoformat())
    if seen is not None and objects and complete:
        seen.add(objects)
        store.set_watermark(target, objects_stream(job.name), seen.encode())
    kind = "events" if result.events.read else ("contacts" if result.contacts.read else job.kind)
    return JobResult(
        job=job.name,
        status=_status(code, dry_run),
        exit_code=code,
        kind=kind,
        run_id=result.run_id,
        full=full_pass,
        window_from=_describe(since),
        watermark_before=_describe(watermark),
        watermark_after=_describe(after),
        rows_read=source.rows_read if isinstance(source, CursorWindow | ChangedRows) else None,
        unchanged_rows=changed.skipped if changed is not None else 0,
        duration_s=time.monotonic() - started,
        counts=result.as_dict(),
        message=_summary(result, changed.skipped if changed is not None else 0)
        + (
            f"; rejected rows in {result.rejects_path}"
            if code == EXIT_REJECTED and result.rejects_path
            else ""
        ),
    )


def _mirror_job(
    store: StateStore,
    job: JobConfig,
    *,
    settings: Settings,
    dry_run: bool,
    started: float,
    client_factory: ClientFactory | None,
) -> JobResult:
    """``mode = "mirror"``: make Kraiter's contacts equal the source, deletions included.

    Every night is a full reconcile (all of the source against all of Kraiter) with its
    guards: an empty source, rejected rows, or deleting more than ``max_delete_ratio``
    of Kraiter's contacts stop the job (exit 2) before anything is written; deleted
    contacts go to a tombstone file (``kraiter-sync restore`` undoes them).
    """
    source = open_job_source(job)
    result = reconcile_locked(
        store,
        [source],
        settings=settings,
        inputs=input_options(job, kind="contacts"),
        options=ReconcileOptions(
            mirror=True,
            max_delete_ratio=job.max_delete_ratio,
            apply=not dry_run,
            concurrency=job.concurrency,
            max_retries=job.max_retries,
            rate=job.rate,
        ),
        command=f"sync:{job.name}",
        args={"job": job.name, "source": job.source_label, "mode": "mirror", "dry_run": dry_run},
        client_factory=client_factory,
    )
    code = result.exit_code
    plan = result.plan.counts() if result.plan is not None else {}
    parts = [f"{plan.get(k, 0)} to {k}" for k in ("create", "update", "delete")]
    message = "mirror plan: " + ", ".join(parts) + f", {plan.get('unchanged', 0)} unchanged"
    applied = result.applied
    if applied is not None:
        message += (
            f"; applied: {applied.created} created, {applied.updated} updated, "
            f"{applied.deleted} deleted"
        )
        if applied.tombstone is not None:
            message += f" (tombstone {applied.tombstone})"
    return JobResult(
        job=job.name,
        status=_status(code, dry_run),
        exit_code=code,
        kind="contacts",
        message=message,
        run_id=result.run_id,
        duration_s=time.monotonic() - started,
        counts=result.counts(),
    )


def _summary(result: Any, unchanged_rows: int = 0) -> str:
    parts = [f"{unchanged_rows} source rows unchanged since the last run"] if unchanged_rows else []
    for kind in ("contacts", "events"):
        counts = getattr(result, kind)
        if not counts.read:
            continue
        bits = [f"{counts.read} read", f"{counts.sent} sent"]
        for name in ("unchanged", "already", "duplicates", "invalid", "rejected", "failed"):
            value = getattr(counts, name, 0)
            if value:
                bits.append(f"{value} {name}")
        if counts.pending:
            bits.append(f"{counts.pending} pending")
        parts.append(f"{kind}: " + ", ".join(bits))
    return "; ".join(parts) or "no rows"


def run_sync(
    config: SyncConfig,
    jobs: Sequence[str] = (),
    *,
    settings: Settings | None = None,
    dry_run: bool = False,
    full: bool = False,
    now: dt.datetime | None = None,
    client_factory: ClientFactory | None = None,
    concurrency: int | None = None,
    on_progress: Callable[[Snapshot], None] | None = None,
) -> SyncResult:
    """Run the selected jobs in order under one lock on the state directory.

    A job that fails is recorded and the next one runs; the result's ``exit_code`` is
    the most severe of all jobs (``settings``: from the file and the environment unless
    given). A second run on the same state directory raises
    :class:`~kraiter_sync.errors.LockHeldError` (exit 5, nothing started) at once.
    """
    settings = settings or config.settings()
    selected = config.select(jobs)
    started = time.monotonic()
    results: list[JobResult] = []
    with locked_state(settings) as store:
        for job in selected:
            job_started = time.monotonic()
            log.info("job %s: starting (%s)", job.name, job.source_label, extra={"job": job.name})
            try:
                outcome = run_job(
                    store,
                    job,
                    settings=settings,
                    dry_run=dry_run,
                    full=full,
                    now=now,
                    client_factory=client_factory,
                    concurrency=concurrency,
                    on_progress=on_progress,
                )
            except KraiterSyncError as exc:
                outcome = JobResult(
                    job.name,
                    "error" if exc.exit_code == EXIT_USAGE else "failed",
                    exc.exit_code,
                    kind=job.kind,
                    message=str(exc),
                    duration_s=time.monotonic() - job_started,
                )
            except Exception as exc:  # a bug must not cost the other jobs their night
                log.debug("job %s crashed", job.name, exc_info=True)
                outcome = JobResult(
                    job.name,
                    "failed",
                    EXIT_FAILED,
                    kind=job.kind,
                    message=f"unexpected {type(exc).__name__}: {exc} (re-run with -vv for details)",
                    duration_s=time.monotonic() - job_started,
                )
            log.log(
                LEVELS.get(outcome.exit_code, logging.ERROR),
                "job %s: %s (exit %d): %s",
                job.name,
                outcome.status,
                outcome.exit_code,
                outcome.message,
                extra={"job": job.name, "status": outcome.status, "exit_code": outcome.exit_code},
            )
            results.append(outcome)
    summary = SyncResult(results, dry_run=dry_run, duration_s=time.monotonic() - started)
    tally = Counter(j.status for j in results)
    log.log(
        LEVELS.get(summary.exit_code, logging.ERROR),
        "sync finished in %.1f s: %s (exit %d)",
        summary.duration_s,
        ", ".join(f"{n} {status}" for status, n in tally.items()) or "no jobs",
        summary.exit_code,
        extra={"exit_code": summary.exit_code},
    )
    return summary
