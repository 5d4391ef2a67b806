"""The ``reconcile`` and ``restore`` verbs: inputs → local frame → snapshot → plan → apply.

The CLI commands are thin over :func:`reconcile`, :func:`apply_saved_plan` and
:func:`restore`; everything they do can be done from Python. The pure diff is
:mod:`kraiter_sync.reconcile`, reading Kraiter :mod:`kraiter_sync.remote`, writing
:mod:`kraiter_sync.reconcile_apply`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from kraiter_sync.client import KraiterClient
from kraiter_sync.config import Settings
from kraiter_sync.errors import EXIT_INCOMPLETE, EXIT_OK, EXIT_REJECTED, GuardError, InputError
from kraiter_sync.ledger import Ledger, check_tenant, ensure_state_dir, state_lock
from kraiter_sync.logs import get_logger
from kraiter_sync.planfile import read_plan, write_plan
from kraiter_sync.reconcile import ContactPlan, diff_contacts
from kraiter_sync.reconcile_apply import (
    DEFAULT_MAX_DELETE_RATIO,
    ApplyResult,
    RestoreResult,
    apply_plan,
    check_mirror_guards,
    read_tombstone,
    remote_by_id,
    restore_tombstone,
    verify_plan_fresh,
)
from kraiter_sync.remote import Caller, RemoteSnapshot, Strategy, snapshot_contacts
from kraiter_sync.report.timeline import Timeline, record_requests

if TYPE_CHECKING:
    from kraiter_sync.reconcile_events import EventsReconcileResult
from kraiter_sync.pipeline import ChunkSource, InputOptions, KindValidation, prepare_inputs
from kraiter_sync.ratelimit import RateController
from kraiter_sync.rejects import RejectsWriter
from kraiter_sync.retry import RetryPolicy, call_with_retry
from kraiter_sync.upload import Engine, EngineOptions, Outcome, RejectSink
from kraiter_sync.validate import ValidationReport

__all__ = [
    "ReconcileOptions",
    "ReconcileResult",
    "Session",
    "apply_saved_plan",
    "changed_contacts",
    "contacts_to_write",
    "load_local",
    "open_session",
    "plan_contacts",
    "reconcile",
    "render_plan",
    "restore",
]

log = get_logger("reconcile")
Kind = Literal["contacts", "events"]


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

    def counts(self) -> dict[str, Any]:
        """For the run record in the ledger."""
        out: dict[str, Any] = {"exit_code": self.exit_code}
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


# ---- local input -------------------------------------------------------------------------


def load_local(
    paths: Sequence[str | Path | ChunkSource],
    options: InputOptions,
    *,
    rejects: Path | None = None,
) -> tuple[Kind, pl.DataFrame, ValidationReport]:
    """Read, map and validate the inputs (``pipeline``, as ``import`` does).

    Returns (kind, canonical frame, report). The kind is ``options.kind``, else what
    detection found; inputs of both kinds at once need ``--kind``. Contacts from several
    inputs are merged by email; events are deduplicated by event key.
    """
    with contextlib.ExitStack() as stack:
        inputs = prepare_inputs(paths, options, stack=stack)
        kinds = {inp.kind for inp in inputs}
        if options.kind is not None:
            kind: Kind = options.kind
        elif len(kinds) == 1:
            kind = next(iter(kinds))
        else:
            msg = "the inputs hold both contacts and events: reconcile one kind at a time (--kind)"
            raise InputError(msg)
        writer = stack.enter_context(RejectsWriter(rejects)) if rejects is not None else None
        run = KindValidation(
            kind, inputs, options, on_rejects=writer.write if writer is not None else None
        )
        frames = [f for f in run.run() if f.height]
        report = run.report
    if not frames:
        return kind, pl.DataFrame(schema=_EMPTY[kind]), report
    return kind, pl.concat(frames, how="diagonal_relaxed"), report


_EMPTY: dict[str, dict[str, pl.DataType]] = {
    "contacts": {
        "email": pl.String(),
        "user_id": pl.String(),
        "properties": pl.String(),
        "source_file": pl.String(),
        "source_row": pl.Int64(),
    },
    "events": {
        "email": pl.String(),
        "contact_id": pl.String(),
        "name": pl.String(),
        "timestamp_iso": pl.String(),
        "properties": pl.String(),
        "event_key": pl.String(),
        "source_file": pl.String(),
        "source_row": pl.Int64(),
    },
}


# ---- one run: lock, ledger record, rate controller, client, engine -------------------------


@dataclass
class Session:
    """Everything a writing run shares: the client (rate-controlled), engine and ledger."""

    client: KraiterClient
    engine: Engine
    ledger: Ledger
    run_id: int
    controller: RateController

    @property
    def call(self) -> Caller:
        """Retries under the engine's policy (429/5xx/transport), counting them."""
        return self.engine.with_retry


@contextlib.asynccontextmanager
async def open_session(
    settings: Settings,
    command: str,
    args: Mapping[str, Any],
    options: ReconcileOptions,
    *,
    counts: dict[str, Any] | None = None,
    on_rejected: RejectSink | None = None,
) -> AsyncIterator[Session]:
    """Hold the state lock, record the run in the ledger, and yield a :class:`Session`.

    The run is recorded as ``ok``, ``incomplete`` or ``failed`` with ``counts`` (filled
    in by the caller) when the block ends.
    """
    ensure_state_dir(settings.state_dir)
    with state_lock(settings.state_dir), Ledger(settings.ledger_path) as ledger:
        check_tenant(ledger, settings)
        run_id = ledger.start_run(command, settings.target, args)
        status = "failed"
        timeline = Timeline()
        try:
            controller = RateController(ceiling=options.rate)
            client = KraiterClient.from_settings(
                settings, observer=controller, max_connections=max(options.concurrency, 1)
            )
            record_requests(client, timeline)
            async with client:
                engine = Engine(
                    client,
                    ledger,
                    target=settings.target,
                    run_id=run_id,
                    options=EngineOptions(
                        concurrency=options.concurrency,
                        retry=RetryPolicy(max_retries=options.max_retries),
                    ),
                    on_rejected=on_rejected,
                    on_retry=timeline.retry,
                )
                yield Session(client, engine, ledger, run_id, controller)
            status = "incomplete" if (counts or {}).get("exit_code") == EXIT_INCOMPLETE else "ok"
        finally:
            ledger.finish_run(
                run_id, status, counts or {}, details={"timeline": timeline.as_dict()}
            )


# ---- the verbs ---------------------------------------------------------------------------


async def _once(fn: Callable[[], Any]) -> Any:
    return await fn()


async def plan_contacts(
    client: KraiterClient,
    local: pl.DataFrame,
    *,
    mirror: bool = False,
    mirror_properties: bool = False,
    strategy: Strategy = "auto",
    concurrency: int = 16,
    call: Caller = _once,
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
    """The rows of ``local`` that need a write (create or update) under ``plan``.

    The importer's hook (issue 5, item 6): diff first, then send only these, so an
    import of unchanged contacts sends no write requests.
    """
    keys = plan.rows.filter(pl.col("action").is_in(["create", "update"])).select("email")
    return local.join(keys, on="email", how="semi", maintain_order="left")


async def contacts_to_write(
    client: KraiterClient,
    local: pl.DataFrame,
    *,
    strategy: Strategy = "auto",
    concurrency: int = 16,
    call: Caller = _once,
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


def _tombstone_path(settings: Settings, explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return settings.state_dir / "tombstones" / f"tombstone-{stamp}.json"


@contextlib.asynccontextmanager
async def _reader(
    settings: Settings, options: ReconcileOptions
) -> AsyncIterator[tuple[KraiterClient, Caller]]:
    """A rate-controlled client and a retrying caller, for runs that only read."""
    controller = RateController(ceiling=options.rate)
    policy = RetryPolicy(max_retries=options.max_retries)

    async def call(fn: Callable[[], Any]) -> Any:
        return await call_with_retry(fn, policy)

    client = KraiterClient.from_settings(
        settings, observer=controller, max_connections=max(options.concurrency, 1)
    )
    async with client:
        yield client, call


def _refuse_unsafe_mirror(local: pl.DataFrame, report: ValidationReport) -> None:
    if local.height == 0:
        msg = (
            "refusing to mirror an empty input: it would delete every contact in Kraiter. "
            "Check the input files and the mapping (kraiter-sync validate)"
        )
        raise GuardError(msg)
    if report.rejected:
        msg = (
            f"refusing to mirror: {report.rejected:,} input row(s) were rejected, and mirror "
            "mode would delete their contacts from Kraiter. Fix them (see --rejects) first"
        )
        raise GuardError(msg)


def _write_rejects(path: Path, rejects: Sequence[Mapping[str, Any]]) -> Path:
    """Contacts or events Kraiter refused, as rows of the rejects file."""
    from kraiter_sync.validate import REJECT_SCHEMA

    frame = pl.DataFrame(
        [{k: r.get(k) for k in REJECT_SCHEMA} for r in rejects],
        schema=REJECT_SCHEMA,
    )
    with RejectsWriter(path) as writer:
        writer.write(frame)
    return path


def reconcile(
    paths: Sequence[str | Path | ChunkSource],
    *,
    settings: Settings,
    inputs: InputOptions | None = None,
    options: ReconcileOptions | None = None,
    on_progress: Callable[[int], None] | None = None,
    command: str = "reconcile",
    args: Mapping[str, Any] | None = None,
) -> ReconcileResult:
    """The library form of ``kraiter-sync reconcile PATH...`` (contacts or events).

    Without ``options.apply`` nothing is written and no lock is taken. With it, the run
    holds the state lock, is recorded in the ledger (``kraiter-sync runs``) under
    ``command`` with ``args`` (``sync`` names its mirror jobs ``sync:<job>``), and writes
    go through the import engine's client, rate controller and retry policy; creates go
    through ``Engine.write_contacts`` (which keeps the ledger's contact cache current).
    """
    opts = options or ReconcileOptions()
    inputs = inputs or InputOptions()
    # events sent by an earlier version with CSV values as text are matched by those too
    validation = dataclasses.replace(inputs.validation, legacy_keys=True)
    inputs = dataclasses.replace(inputs, validation=validation)
    kind, local, report = load_local(paths, inputs, rejects=opts.rejects)
    if kind == "events":
        return ReconcileResult(
            plan=None, events=_events(settings, local, opts, paths), report=report
        )
    if opts.mirror:
        _refuse_unsafe_mirror(local, report)
    record: dict[str, Any] = dict(args) if args is not None else {"paths": [str(p) for p in paths]}
    record.update(mirror=opts.mirror, apply=opts.apply)

    async def plan_with(client: KraiterClient, call: Caller) -> ReconcileResult:
        plan, snapshot = await plan_contacts(
            client,
            local,
            mirror=opts.mirror,
            mirror_properties=opts.mirror_properties,
            strategy=opts.strategy,
            concurrency=opts.concurrency,
            call=call,
            on_progress=on_progress,
        )
        plan.target = settings.target
        check_mirror_guards(plan, max_delete_ratio=opts.max_delete_ratio)
        result = ReconcileResult(plan=plan, snapshot=snapshot, report=report)
        if opts.plan_out is not None:
            result.plan_path = write_plan(plan, opts.plan_out)
        return result

    async def run() -> ReconcileResult:
        if not opts.apply:
            async with _reader(settings, opts) as (client, call):
                return await plan_with(client, call)
        counts: dict[str, Any] = {}
        async with open_session(settings, command, record, opts, counts=counts) as session:
            result = await plan_with(session.client, session.call)
            result.run_id = session.run_id
            plan = result.plan
            assert plan is not None  # noqa: S101 (contacts)
            if not plan.is_empty:
                result.applied = await apply_plan(
                    session.client,
                    plan,
                    remote=remote_by_id(result.snapshot.frame)
                    if plan.mirror and result.snapshot is not None
                    else None,
                    tombstone=_tombstone_path(settings, opts.tombstone) if plan.mirror else None,
                    call=session.call,
                    engine=session.engine,
                    concurrency=opts.concurrency,
                )
                _finish_apply(settings, session, result.applied)
            counts.update(result.counts())
            return result

    return asyncio.run(run())


def _finish_apply(settings: Settings, session: Session, applied: ApplyResult) -> None:
    if applied.rejects:
        path = settings.state_dir / "rejects" / f"reconcile-run-{session.run_id}.csv"
        applied.rejects_path = _write_rejects(path, applied.rejects)


def _events(
    settings: Settings, local: pl.DataFrame, opts: ReconcileOptions, paths: Sequence[Any]
) -> EventsReconcileResult:
    from kraiter_sync.reconcile_events import event_rejects, reconcile_events

    async def run() -> EventsReconcileResult:
        if not opts.apply:
            async with _reader(settings, opts) as (client, call):
                return await reconcile_events(
                    client, local, concurrency=opts.concurrency, call=call
                )
        counts: dict[str, Any] = {}
        args = {"paths": [str(p) for p in paths], "kind": "events", "apply": True}
        refused: list[dict[str, Any]] = []

        def sink(outcomes: Sequence[Outcome[Any]]) -> None:
            refused.extend(event_rejects(outcomes))

        async with open_session(
            settings, "reconcile", args, opts, counts=counts, on_rejected=sink
        ) as session:
            result = await reconcile_events(
                session.client,
                local,
                apply=True,
                concurrency=opts.concurrency,
                call=session.call,
                engine=session.engine,
                allow_triggers=opts.allow_triggers,
            )
            result.rejects.extend(refused)
            if result.rejects:
                path = settings.state_dir / "rejects" / f"reconcile-run-{session.run_id}.csv"
                result.rejects_path = _write_rejects(path, result.rejects)
            counts.update(
                {"sent": result.sent, "failed": result.failed, "exit_code": result.exit_code}
            )
            return result

    return asyncio.run(run())


def apply_saved_plan(
    plan_path: str | Path,
    *,
    settings: Settings,
    options: ReconcileOptions | None = None,
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

    async def run() -> ReconcileResult:
        counts: dict[str, Any] = {}
        async with open_session(settings, "reconcile", args, opts, counts=counts) as session:
            current = await verify_plan_fresh(
                session.client, plan, call=session.call, concurrency=opts.concurrency
            )
            result = ReconcileResult(plan=plan)
            if not plan.is_empty:
                result.applied = await apply_plan(
                    session.client,
                    plan,
                    remote=current,
                    tombstone=_tombstone_path(settings, opts.tombstone) if plan.mirror else None,
                    call=session.call,
                    engine=session.engine,
                    concurrency=opts.concurrency,
                )
                _finish_apply(settings, session, result.applied)
            counts.update(result.counts())
            return result

    return asyncio.run(run())


def restore(
    tombstone: str | Path,
    *,
    settings: Settings,
    options: ReconcileOptions | None = None,
) -> RestoreResult:
    """``kraiter-sync restore TOMBSTONE``: recreate the contacts a mirror run deleted."""
    opts = options or ReconcileOptions()
    contacts = read_tombstone(tombstone)

    async def run() -> RestoreResult:
        counts: dict[str, Any] = {}
        args = {"tombstone": str(tombstone)}
        async with open_session(settings, "restore", args, opts, counts=counts) as session:
            result = await restore_tombstone(
                session.client, contacts, call=session.call, concurrency=opts.concurrency
            )
            counts.update(
                {
                    "restored": result.restored,
                    "existing": result.existing,
                    "rejected": len(result.rejects),
                    "failed": result.failed,
                    "exit_code": result.exit_code,
                }
            )
            return result

    return asyncio.run(run())


# ---- rendering -----------------------------------------------------------------------------


def _describe_change(changes: str | None) -> str:
    if not changes:
        return ""
    doc = json.loads(changes)
    parts = [
        f"{key}: {json.dumps(old, ensure_ascii=False)} → {json.dumps(new, ensure_ascii=False)}"
        for key, (old, new) in doc.get("properties", {}).items()
    ]
    if "userId" in doc:
        old, new = doc["userId"]
        parts.append(
            f"userId: {json.dumps(old, ensure_ascii=False)} → {json.dumps(new, ensure_ascii=False)}"
        )
    return "; ".join(parts)


def render_plan(plan: ContactPlan, *, sample: int = 10) -> str:
    """A summary line per action and a readable sample of the changes."""
    c = plan.counts()
    removal = "delete" if plan.mirror else "remote_only"
    lines = [
        f"plan: {c['create']:,} to create, {c['update']:,} to update, "
        f"{c['unchanged']:,} unchanged, "
        + (
            f"{c['delete']:,} to delete (mirror)"
            if plan.mirror
            else (
                f"{c['remote_only']:,} only in Kraiter (left alone; --mirror deletes them)"
                if plan.remote_complete
                else "remote-only contacts not known (Kraiter was read by lookups)"
            )
        )
    ]
    if plan.remote_duplicates:
        lines.append(
            f"warning: {plan.remote_duplicates:,} Kraiter contact(s) share a normalised email "
            "with another and were left out"
        )
    marks = {"create": "+", "update": "~", removal: "-"}
    for action, mark in marks.items():
        rows = plan.of(action)  # type: ignore[arg-type]
        if rows.height == 0 or sample <= 0:
            continue
        lines.append(
            f"{action} ({rows.height:,}{', first ' + str(sample) if rows.height > sample else ''}):"
        )
        for row in rows.head(sample).iter_rows(named=True):
            if action == "create":
                detail = row["properties"] or "{}"
                if row["user_id"]:
                    detail += f" userId={json.dumps(row['user_id'])}"
            elif action == "update":
                detail = _describe_change(row["changes"])
            else:
                detail = f"id {row['id']}"
            lines.append(f"  {mark} {row['email']}  {detail}")
    return "\n".join(lines)
