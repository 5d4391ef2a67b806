"""The ``reconcile`` and ``restore`` verbs: inputs → local frame → snapshot → plan → apply.

The CLI commands are thin over :func:`reconcile`, :func:`apply_saved_plan` and
:func:`restore`; everything they do can be done from Python. The pure diff is
:mod:`kraiter_sync.reconcile`, reading Kraiter :mod:`kraiter_sync.remote`, writing
:mod:`kraiter_sync.reconcile_apply`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import polars as pl

from kraiter_sync.client import KraiterClient
from kraiter_sync.config import Settings
from kraiter_sync.errors import EXIT_OK, EXIT_REJECTED, GuardError, InputError
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
from kraiter_sync.validate import ValidationReport

__all__ = [
    "LocalInput",
    "ReconcileOptions",
    "ReconcileResult",
    "apply_saved_plan",
    "changed_contacts",
    "contacts_to_write",
    "load_local",
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
    concurrency: int = 16


@dataclass
class ReconcileResult:
    """The plan, how Kraiter was read, what was applied, and the input's report."""

    plan: ContactPlan
    snapshot: RemoteSnapshot | None = None
    applied: ApplyResult | None = None
    report: ValidationReport | None = None
    plan_path: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.applied is not None and self.applied.exit_code != EXIT_OK:
            return self.applied.exit_code
        if self.report is not None and self.report.rejected:
            return EXIT_REJECTED
        return EXIT_OK


# ---- local input -------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalInput:
    """How to read the local contacts: the mapping options ``import`` and ``validate`` take."""

    connector: str | None = None
    mapping: Mapping[str, str] = field(default_factory=dict)
    timezone: str | None = None
    rejects: Path | None = None


def load_local(
    paths: Sequence[str | Path], options: LocalInput, *, kind: Kind = "contacts"
) -> tuple[pl.DataFrame, ValidationReport]:
    """Read, map and validate the inputs → (canonical frame of ``kind``, report).

    Contacts from several inputs are merged by email (last row wins per property);
    events are deduplicated by event key across inputs, as ``import`` does.
    """
    from kraiter_sync.connectors import apply, resolve_connector
    from kraiter_sync.rejects import RejectsWriter
    from kraiter_sync.sources import open_source
    from kraiter_sync.validate import (
        ChunkedValidation,
        ReportAccumulator,
        SeenKeys,
        ValidationOptions,
        merge_contacts,
    )

    if not paths:
        msg = "no input given: pass one or more files, directories or globs"
        raise InputError(msg)
    frames: list[pl.DataFrame] = []
    total = ReportAccumulator(kind)
    seen = SeenKeys()
    with contextlib.ExitStack() as stack:
        writer = stack.enter_context(RejectsWriter(options.rejects)) if options.rejects else None
        for path in paths:
            source = stack.enter_context(open_source(path))
            detection = resolve_connector(
                source.schema.names(),
                connector=options.connector,
                kind=kind,
                overrides=options.mapping,
            )
            zone = options.timezone or detection.connector.timezone or "UTC"
            run = ChunkedValidation(
                kind=kind,
                options=ValidationOptions(timezone=zone),
                on_rejects=writer.write if writer is not None else None,
            )
            run.seen = seen

            def mapped(source: Any = source, detection: Any = detection) -> Iterator[pl.DataFrame]:
                for chunk in source.iter_chunks():
                    yield apply(detection.connector, chunk)

            frames.extend(f for f in run.run(mapped()) if f.height)
            total.add(run.report)
    report = total.report
    if not frames:
        return pl.DataFrame(schema=_EMPTY[kind]), report
    local = pl.concat(frames, how="diagonal_relaxed")
    if kind == "contacts" and len(frames) > 1:
        merged = merge_contacts(local)
        report.valid -= local.height - merged.height
        report.duplicates += local.height - merged.height
        local = merged
    return local, report


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


def _client(settings: Settings) -> KraiterClient:
    return KraiterClient.from_settings(settings)


def reconcile(
    paths: Sequence[str | Path],
    *,
    settings: Settings,
    local_input: LocalInput | None = None,
    options: ReconcileOptions | None = None,
    call: Caller = _once,
    on_progress: Callable[[int], None] | None = None,
) -> ReconcileResult:
    """The library form of ``kraiter-sync reconcile PATH...`` (contacts)."""
    opts = options or ReconcileOptions()
    local, report = load_local(paths, local_input or LocalInput())
    if opts.mirror and local.height == 0:
        msg = (
            "refusing to mirror an empty input: it would delete every contact in Kraiter. "
            "Check the input files and the mapping (kraiter-sync validate)"
        )
        raise GuardError(msg)
    if opts.mirror and report.rejected:
        msg = (
            f"refusing to mirror: {report.rejected:,} input row(s) were rejected, and mirror "
            "mode would delete their contacts from Kraiter. Fix them (see --rejects) first"
        )
        raise GuardError(msg)

    async def run() -> ReconcileResult:
        async with _client(settings) as client:
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
            result = ReconcileResult(plan=plan, snapshot=snapshot, report=report)
            check_mirror_guards(plan, max_delete_ratio=opts.max_delete_ratio)
            if opts.plan_out is not None:
                result.plan_path = write_plan(plan, opts.plan_out)
            if opts.apply and not plan.is_empty:
                result.applied = await apply_plan(
                    client,
                    plan,
                    remote=remote_by_id(snapshot.frame) if plan.mirror else None,
                    tombstone=_tombstone_path(settings, opts.tombstone) if plan.mirror else None,
                    call=call,
                    concurrency=opts.concurrency,
                )
            return result

    return asyncio.run(run())


def apply_saved_plan(
    plan_path: str | Path,
    *,
    settings: Settings,
    options: ReconcileOptions | None = None,
    call: Caller = _once,
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

    async def run() -> ReconcileResult:
        async with _client(settings) as client:
            current = await verify_plan_fresh(client, plan, call=call, concurrency=opts.concurrency)
            result = ReconcileResult(plan=plan)
            if not plan.is_empty:
                result.applied = await apply_plan(
                    client,
                    plan,
                    remote=current,
                    tombstone=_tombstone_path(settings, opts.tombstone) if plan.mirror else None,
                    call=call,
                    concurrency=opts.concurrency,
                )
            return result

    return asyncio.run(run())


def restore(
    tombstone: str | Path,
    *,
    settings: Settings,
    concurrency: int = 16,
    call: Caller = _once,
) -> RestoreResult:
    """``kraiter-sync restore TOMBSTONE``: recreate the contacts a mirror run deleted."""
    contacts = read_tombstone(tombstone)

    async def run() -> RestoreResult:
        async with _client(settings) as client:
            return await restore_tombstone(client, contacts, call=call, concurrency=concurrency)

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
