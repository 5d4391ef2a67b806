"""The ``reconcile`` verb: inputs → local frame → Kraiter now → plan → (apply).

Contacts: a snapshot of Kraiter (``plan.snapshot``), the pure diff (``plan.contacts``),
guards (``plan.guards``), and with ``apply`` the writes through the engine
(``verbs.apply``). Events: per (contact, name) counts against Kraiter
(``plan.events``), and with ``apply`` the missing ones through the engine with the
ledger (``verbs.reconcile_events``). ``apply_saved_plan`` carries out a plan saved with
``--plan-out``.

Without ``apply`` nothing is written and no lock is taken; with it the run holds the
state lock and is recorded in the ledger (``kraiter-sync runs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.config import Settings
from kraiter_sync.errors import (
    EXIT_OK,
    EXIT_REJECTED,
    GuardError,
    status_for_exit,
)
from kraiter_sync.frames import Kind
from kraiter_sync.inputs import ChunkSource, Input, InputOptions, read_inputs
from kraiter_sync.plan.contact_plan import plan_contacts, read_plan, write_plan
from kraiter_sync.plan.contacts import ContactPlan
from kraiter_sync.plan.guards import (
    DEFAULT_MAX_DELETE_RATIO,
    check_mirror_guards,
    refuse_unsafe_mirror,
    verify_plan_fresh,
)
from kraiter_sync.plan.snapshot import Caller, RemoteSnapshot, Strategy
from kraiter_sync.state.rejects import RejectsWriter, rejects_frame
from kraiter_sync.state.store import StateStore
from kraiter_sync.upload.context import (
    ClientFactory,
    Run,
    RunOptions,
    connect,
    locked_state,
    recorded_run,
)
from kraiter_sync.upload.core import EngineStats, Snapshot
from kraiter_sync.upload.engine import Engine, Outcome
from kraiter_sync.upload.rows import outcome_rejects
from kraiter_sync.validate import ValidationReport
from kraiter_sync.verbs.apply import ApplyResult, apply_plan, remote_by_id
from kraiter_sync.verbs.reconcile_events import EventsReconcileResult, reconcile_events

__all__ = [
    "EventsReconcileResult",
    "ReconcileOptions",
    "ReconcileResult",
    "apply_saved_plan",
    "reconcile",
    "reconcile_events",
    "reconcile_locked",
    "show_saved_plan",
]


@dataclass(frozen=True)
class ReconcileOptions:
    """What ``reconcile`` does beyond reading the inputs."""

    mirror: bool = False
    mirror_properties: bool = False
    max_delete_ratio: float = DEFAULT_MAX_DELETE_RATIO
    strategy: Strategy = "auto"
    apply: bool = False
    plan_out: Path | None = None
    #: Where mirror mode writes its tombstone (default: the state directory).
    tombstone: Path | None = None
    #: Where rows refused by the validator or by Kraiter go (default: the state directory).
    rejects: Path | None = None
    concurrency: int = 16
    max_retries: int = 5
    #: Requests per second at most (None: as fast as Kraiter allows).
    rate: float | None = None
    #: Events: send missing ones even when their names trigger live sequences.
    allow_triggers: bool = False

    @property
    def run_options(self) -> RunOptions:
        return RunOptions(
            concurrency=self.concurrency, rate=self.rate, max_retries=self.max_retries
        )


@dataclass
class ReconcileResult:
    """The plan (contacts) or the events report, how Kraiter was read, what was applied."""

    plan: ContactPlan | None
    snapshot: RemoteSnapshot | None = None
    applied: ApplyResult | None = None
    report: ValidationReport | None = None
    plan_path: Path | None = None
    events: EventsReconcileResult | None = None
    #: The ledger's record of an applying run (``kraiter-sync runs``); None for a plan only.
    run_id: int | None = None

    @property
    def exit_code(self) -> int:
        if self.events is not None and self.events.exit_code != EXIT_OK:
            return self.events.exit_code
        if self.applied is not None and self.applied.exit_code != EXIT_OK:
            return self.applied.exit_code
        if self.report is not None and self.report.rejected:
            return EXIT_REJECTED
        return EXIT_OK

    @property
    def status(self) -> str:
        return status_for_exit(self.exit_code)

    def counts(self) -> dict[str, Any]:
        """For the run record in the ledger: the exit code is the command's own."""
        out: dict[str, Any] = {"exit_code": self.exit_code, "status": self.status}
        if self.report is not None:
            out["input"] = {
                "rows_read": self.report.rows_read,
                "valid": self.report.valid,
                "duplicates": self.report.duplicates,
                "rejected": self.report.rejected,
            }
        if self.events is not None:
            out["events"] = self.events.record()
        if self.plan is not None:
            out["plan"] = self.plan.counts()
        if self.applied is not None:
            a = self.applied
            out.update(
                created=a.created,
                updated=a.updated,
                deleted=a.deleted,
                rejected=len(a.rejects),
                failed=a.failed,
            )
        return out

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document (docs/schemas/reconcile.schema.json)."""
        doc: dict[str, Any] = {"command": "reconcile", "run_id": self.run_id}
        doc.update(self.counts())
        doc["kind"] = "events" if self.events is not None else "contacts"
        doc["applied"] = self.applied is not None or (
            self.events is not None and self.events.applied
        )
        if self.snapshot is not None:
            doc["remote"] = {
                "strategy": self.snapshot.strategy,
                "requests": self.snapshot.requests,
                "reason": self.snapshot.reason,
            }
        rejects = self.events.rejects_path if self.events is not None else None
        if self.applied is not None:
            rejects = self.applied.rejects_path
        tombstone = self.applied.tombstone if self.applied is not None else None
        doc["files"] = {
            "plan": str(self.plan_path) if self.plan_path else None,
            "rejects": str(rejects) if rejects else None,
            "tombstone": str(tombstone) if tombstone else None,
        }
        return doc


# ---- the verb ---------------------------------------------------------------------------


def _tombstone_path(settings: Settings, explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return settings.state_dir / "tombstones" / f"tombstone-{stamp}.json"


def _write_rejects(settings: Settings, run_id: int, rejects: Sequence[Mapping[str, Any]]) -> Path:
    """Contacts or events Kraiter refused, as rows of the run's rejects file."""
    path = settings.state_dir / "rejects" / f"reconcile-run-{run_id}.csv"
    with RejectsWriter(path) as writer:
        writer.write(rejects_frame(rejects))
    return path


@dataclass(frozen=True)
class _Progress:
    """Where a reconcile stands: rows validated, contacts read from Kraiter, contacts
    whose events were compared."""

    reading: Callable[[int], None] | None = None
    comparing: Callable[[int, int], None] | None = None
    validating: Callable[[int], None] | None = None


@dataclass
class _Local:
    kind: Kind
    frame: pl.DataFrame
    report: ValidationReport
    paths: list[str] = field(default_factory=list)


def _read(
    paths: Sequence[str | Path | ChunkSource | Input],
    inputs: InputOptions | None,
    opts: ReconcileOptions,
    on_validated: Callable[[int], None] | None = None,
) -> _Local:
    inputs = inputs or InputOptions()
    # events sent by an earlier version with CSV values as text are matched by those too
    validation = dataclasses.replace(inputs.validation, legacy_keys=True)
    inputs = dataclasses.replace(inputs, validation=validation)
    with contextlib.ExitStack() as stack:
        writer = stack.enter_context(RejectsWriter(opts.rejects)) if opts.rejects else None
        kind, frame, report = read_inputs(
            paths, inputs, on_rejects=writer.write if writer else None, on_progress=on_validated
        )
    if kind == "contacts" and opts.mirror:
        refuse_unsafe_mirror(frame, report)
    return _Local(kind, frame, report, [str(getattr(p, "path", p)) for p in paths])


async def _plan(
    client: KraiterClient,
    call: Caller,
    local: _Local,
    settings: Settings,
    opts: ReconcileOptions,
    on_progress: Callable[[int], None] | None,
) -> ReconcileResult:
    plan, snapshot = await plan_contacts(
        client,
        local.frame,
        mirror=opts.mirror,
        mirror_properties=opts.mirror_properties,
        strategy=opts.strategy,
        concurrency=opts.concurrency,
        call=call,
        on_progress=on_progress,
    )
    plan.target = settings.target
    check_mirror_guards(plan, max_delete_ratio=opts.max_delete_ratio)
    result = ReconcileResult(plan=plan, snapshot=snapshot, report=local.report)
    if opts.plan_out is not None:
        result.plan_path = write_plan(plan, opts.plan_out)
    return result


async def _preview(
    local: _Local,
    settings: Settings,
    opts: ReconcileOptions,
    client_factory: ClientFactory | None,
    progress: _Progress,
) -> ReconcileResult:
    async with connect(settings, opts.run_options, client_factory=client_factory) as conn:
        if local.kind == "events":
            events = await reconcile_events(
                conn.client,
                local.frame,
                concurrency=opts.concurrency,
                call=conn.call,
                on_progress=progress.comparing,
            )
            return ReconcileResult(plan=None, events=events, report=local.report)
        return await _plan(conn.client, conn.call, local, settings, opts, progress.reading)


async def _apply(
    run: Run,
    local: _Local,
    opts: ReconcileOptions,
    progress: _Progress,
) -> ReconcileResult:
    settings = run.settings
    refused: list[dict[str, Any]] = []

    def sink(outcomes: Sequence[Outcome[Any]]) -> None:
        refused.extend(outcome_rejects(outcomes).to_dicts())

    async with run.engine(on_rejected=sink) as engine:
        if local.kind == "events":
            events = await reconcile_events(
                engine.client,
                local.frame,
                concurrency=opts.concurrency,
                call=engine.with_retry,
                engine=engine,
                allow_triggers=opts.allow_triggers,
                on_progress=progress.comparing,
            )
            events.rejects.extend(refused)
            if events.rejects:
                events.rejects_path = _write_rejects(settings, run.run_id, events.rejects)
            result = ReconcileResult(plan=None, events=events, report=local.report)
            result.run_id = run.run_id
            run.counts = result.counts()
            return result
        result = await _plan(
            engine.client, engine.with_retry, local, settings, opts, progress.reading
        )
        result.run_id = run.run_id
        plan = result.plan
        assert plan is not None  # noqa: S101 (contacts)
        if not plan.is_empty:
            snapshot = result.snapshot
            result.applied = await apply_plan(
                engine,
                plan,
                remote=remote_by_id(snapshot.frame) if plan.mirror and snapshot else None,
                tombstone=_tombstone_path(settings, opts.tombstone) if plan.mirror else None,
            )
            if result.applied.rejects:
                result.applied.rejects_path = _write_rejects(
                    settings, run.run_id, result.applied.rejects
                )
        run.counts = result.counts()
        return result


def _record_args(
    local: _Local, opts: ReconcileOptions, args: Mapping[str, Any] | None
) -> dict[str, Any]:
    if local.kind == "events":
        return (
            dict(args)
            if args is not None
            else {"paths": local.paths, "kind": "events", "apply": True}
        )
    record: dict[str, Any] = dict(args) if args is not None else {"paths": local.paths}
    record.update(mirror=opts.mirror, apply=opts.apply)
    return record


def reconcile_locked(
    store: StateStore | None,
    paths: Sequence[str | Path | ChunkSource | Input],
    *,
    settings: Settings,
    inputs: InputOptions | None = None,
    options: ReconcileOptions | None = None,
    on_progress: Callable[[int], None] | None = None,
    command: str = "reconcile",
    args: Mapping[str, Any] | None = None,
    client_factory: ClientFactory | None = None,
    on_compared: Callable[[int, int], None] | None = None,
    on_validated: Callable[[int], None] | None = None,
) -> ReconcileResult:
    """:func:`reconcile` for a caller that holds the state lock (``store``; None when
    the caller knows nothing will be applied)."""
    opts = options or ReconcileOptions()
    progress = _Progress(on_progress, on_compared, on_validated)
    local = _read(paths, inputs, opts, on_validated)
    if not opts.apply or store is None:
        return asyncio.run(_preview(local, settings, opts, client_factory, progress))
    with recorded_run(
        store,
        settings,
        command,
        _record_args(local, opts, args),
        options=opts.run_options,
        client_factory=client_factory,
    ) as run:
        result = asyncio.run(_apply(run, local, opts, progress))
        run.status = result.status
        run.counts = result.counts()
        return result


def reconcile(
    paths: Sequence[str | Path | ChunkSource | Input],
    *,
    settings: Settings,
    inputs: InputOptions | None = None,
    options: ReconcileOptions | None = None,
    on_progress: Callable[[int], None] | None = None,
    command: str = "reconcile",
    args: Mapping[str, Any] | None = None,
    client_factory: ClientFactory | None = None,
    on_compared: Callable[[int, int], None] | None = None,
    on_validated: Callable[[int], None] | None = None,
) -> ReconcileResult:
    """The library form of ``kraiter-sync reconcile PATH...`` (contacts or events).

    Progress: ``on_validated`` (rows read and validated), ``on_progress`` (contacts read
    from Kraiter), ``on_compared`` (contacts whose events were compared, of all).

    Without ``options.apply`` nothing is written and no lock is taken. With it, the run
    holds the state lock, is recorded in the ledger under ``command`` with ``args``, and
    every write goes through the upload engine.
    """
    opts = options or ReconcileOptions()
    state = locked_state(settings) if opts.apply else contextlib.nullcontext(None)
    with state as store:
        return reconcile_locked(
            store,
            paths,
            settings=settings,
            inputs=inputs,
            options=opts,
            on_progress=on_progress,
            command=command,
            args=args,
            client_factory=client_factory,
            on_compared=on_compared,
            on_validated=on_validated,
        )


def show_saved_plan(plan_path: str | Path) -> ReconcileResult:
    """``kraiter-sync reconcile --plan PLAN``: a plan saved by ``--plan-out``, read back;
    nothing is read from Kraiter and nothing is written."""
    result = ReconcileResult(plan=read_plan(plan_path))
    result.plan_path = Path(plan_path)
    return result


def apply_saved_plan(
    plan_path: str | Path,
    *,
    settings: Settings,
    options: ReconcileOptions | None = None,
    client_factory: ClientFactory | None = None,
    on_progress: Callable[[Snapshot], None] | None = None,
) -> ReconcileResult:
    """``kraiter-sync reconcile --plan PLAN --apply``: refuse when Kraiter changed since."""
    opts = options or ReconcileOptions()
    plan = read_plan(plan_path)
    if plan.target is not None and plan.target != settings.target:
        msg = (
            f"refusing to apply {plan_path}: it was computed against another Kraiter account "
            "or base URL than the one configured now. Run reconcile against this one"
        )
        raise GuardError(msg)
    check_mirror_guards(plan, max_delete_ratio=opts.max_delete_ratio)
    args = {"plan": str(plan_path), "apply": True}

    async def main(run: Run) -> ReconcileResult:
        engines: list[Engine] = []

        def progress(stats: EngineStats) -> None:
            if on_progress is not None and engines:
                total = plan.rows.height - plan.counts().get("unchanged", 0)
                controller = engines[0].controller
                on_progress(Snapshot.of(stats, total=total, controller=controller))

        async with run.engine(on_progress=progress) as engine:
            engines.append(engine)
            current = await verify_plan_fresh(
                engine.client, plan, call=engine.with_retry, concurrency=opts.concurrency
            )
            result = ReconcileResult(plan=plan, run_id=run.run_id)
            if not plan.is_empty:
                result.applied = await apply_plan(
                    engine,
                    plan,
                    remote=current,
                    tombstone=_tombstone_path(settings, opts.tombstone) if plan.mirror else None,
                )
                if result.applied.rejects:
                    result.applied.rejects_path = _write_rejects(
                        settings, run.run_id, result.applied.rejects
                    )
            run.counts = result.counts()
            return result

    with (
        locked_state(settings) as store,
        recorded_run(
            store,
            settings,
            "reconcile",
            args,
            options=opts.run_options,
            client_factory=client_factory,
        ) as run,
    ):
        result = asyncio.run(main(run))
        run.status = result.status
        run.counts = result.counts()
        return result
