"""All text the CLI prints: summaries, plans, tables. The library returns data; this
module turns it into lines."""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kraiter_sync.errors import status_for_exit
from kraiter_sync.urls import redact_url

if TYPE_CHECKING:
    from kraiter_sync.connectors import Connector
    from kraiter_sync.export import CompactResult, ExportResult
    from kraiter_sync.plan.contacts import ContactPlan
    from kraiter_sync.plan.snapshot import RemoteSnapshot
    from kraiter_sync.state.migrate import MigrateResult
    from kraiter_sync.state.runs import RunRecord
    from kraiter_sync.sync import CheckResult
    from kraiter_sync.validate import ValidationReport
    from kraiter_sync.verbs.apply import ApplyResult
    from kraiter_sync.verbs.importer import ImportResult
    from kraiter_sync.verbs.reconcile import EventsReconcileResult
    from kraiter_sync.verbs.restore import RestoreResult

__all__ = [
    "apply_summary",
    "check_lines",
    "connector_text",
    "events_summary",
    "export_document",
    "export_summary",
    "import_summary",
    "migrate_summary",
    "plan_summary",
    "rebuild_line",
    "restore_summary",
    "result_document",
    "resume_command",
    "run_dict",
    "run_lines",
    "run_status",
    "run_summary",
    "runs_table",
    "snapshot_line",
    "state_lines",
    "validation_summary",
]


def validation_summary(report: ValidationReport) -> str:
    """A short human summary of one kind's validation."""
    lines = [
        f"{report.rows_read:,} {report.kind} rows read: {report.valid:,} valid, "
        f"{report.duplicates:,} duplicates, {report.rejected:,} rejected"
    ]
    for rule, count in sorted(report.by_rule.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"  {count:>10,}  {rule}")
    if report.timestamp_formats:
        found = ", ".join(f"{k} ({v:,})" for k, v in sorted(report.timestamp_formats.items()))
        lines.append(f"timestamps: {found}")
    lines.extend(f"warning: {w}" for w in report.all_warnings())
    return "\n".join(lines)


def import_summary(result: ImportResult) -> str:
    """The final summary: every row accounted for, then the run's vital signs."""
    lines = []
    for kind, c in (("contacts", result.contacts), ("events", result.events)):
        if not c.read:
            continue
        parts = [f"{c.read:,} read"]
        for label, value in (
            ("sent", c.sent),
            ("verified already in Kraiter", c.verified),
            ("unchanged", c.unchanged),
            ("already imported", c.already),
            ("duplicates", c.duplicates),
            ("invalid", c.invalid),
            ("rejected by Kraiter", c.rejected),
            ("previously rejected", c.previously_rejected),
            ("failed", c.failed),
            ("sent by other workers", c.elsewhere),
            ("would send" if result.dry_run else "not sent", c.pending),
        ):
            if value:
                parts.append(f"{value:,} {label}")
        lines.append(f"{kind}: " + ", ".join(parts))
    lines.extend(state_lines(result))
    lines.append(
        f"{result.requests:,} requests in {result.duration_s:.1f}s "
        f"({result.requests_per_s:.1f}/s), {result.retries:,} retries, "
        f"{result.rate_limited:,} answered 429"
    )
    if any(c.invalid or c.rejected for c in (result.contacts, result.events)):
        lines.append(f"rejected rows: {result.rejects_path}")
    if result.duplicates_path is not None:
        lines.append(f"duplicate rows (and the rows kept): {result.duplicates_path}")
    return "\n".join(lines)


def state_lines(result: ImportResult) -> list[str]:
    """What proving the ledger cost: the lost-state check, or the rebuild."""
    lines = []
    check = result.state_check
    if check is not None and check["how"] == "empty-tenant":
        lines.append(
            f"state check: Kraiter holds no events yet ({check['requests']:,} request "
            f"for {check['events']:,} events)"
        )
    elif check is not None:
        unsettled = f", {check['unsettled']} not settled" if check["unsettled"] else ""
        lines.append(
            f"state check: {check['found']} of {check['sampled']} sampled events in "
            f"Kraiter already{unsettled} ({check['requests']:,} requests for "
            f"{check['events']:,} events)"
        )
    if result.rebuild is not None:
        lines.append(rebuild_line(result.rebuild))
    return lines


def rebuild_line(rebuild: Mapping[str, Any]) -> str:
    """One rebuild's account: what Kraiter holds, what it cost against one request per
    100 events and per 100 contacts."""
    state = "" if rebuild["complete"] else " (not finished: run it again to resume)"
    return (
        f"ledger rebuilt from Kraiter{state}: {rebuild['events_read']:,} events held, "
        f"{rebuild['keys_marked']:,} keys recorded, {rebuild['contacts_read']:,} contacts; "
        f"{rebuild['requests']:,} requests (one per 100 events and contacts: "
        f"{rebuild['expected_requests']:,})"
    )


def resume_command() -> str:
    """This command line again, minus any --api-key value (never echo a key), and with
    any password taken out of URLs (``--state postgresql://me@host/db``): a line that
    works when pasted (the password from PGPASSWORD or ~/.pgpass), where a masked one
    would be sent as the password."""
    kept: list[str] = []
    skip = False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if arg == "--api-key":
            skip = True
            continue
        if arg.startswith("--api-key="):
            continue
        option, equals, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        kept.append(f"{option}{equals}{redact_url(value)}" if "://" in value else arg)
    return shlex.join(["kraiter-sync", *kept])


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def run_status(run: RunRecord) -> str:
    """The run's status, true to its exit code (records written before the status
    followed the exit code say ``ok`` for a run that exited 3)."""
    code = run.exit_code
    if run.status in ("ok", "incomplete") and code is not None:
        return status_for_exit(code)
    return run.status


def _kind_counts(name: str, counts: dict[str, Any]) -> str | None:
    if not counts.get("read"):
        return None
    labels = (
        ("sent", "sent"),
        ("verified", "verified"),
        ("unchanged", "unchanged"),
        ("already", "already imported"),
        ("duplicates", "duplicates"),
        ("invalid", "invalid"),
        ("rejected", "rejected by Kraiter"),
        ("failed", "failed"),
        ("pending", "not sent"),
    )
    parts = [f"{counts[key]:,} {label}" for key, label in labels if counts.get(key)]
    return f"{name} {counts['read']:,} read" + (": " + ", ".join(parts) if parts else "")


def run_summary(run: RunRecord) -> str:
    """One human line about what a run did (the SUMMARY column of ``runs``)."""
    c = run.counts
    if run.status == "killed":
        return "its process ended without finishing: re-run its command to resume"
    if run.status == "running":
        return "running"
    parts: list[str] = []
    for kind in ("contacts", "events"):
        value = c.get(kind)
        if isinstance(value, dict) and "read" in value:
            shown = _kind_counts(kind, value)
            if shown:
                parts.append(shown)
    if c.get("stopped"):
        parts.append(f"stopped: {c['stopped']}")
    plan = c.get("plan")
    if isinstance(plan, dict):
        parts.append("plan " + ", ".join(f"{v:,} {k}" for k, v in plan.items() if v))
    events = c.get("events")
    if isinstance(events, dict) and "missing" in events:
        parts.append(f"events {events['missing']:,} missing, {events.get('sent', 0):,} sent")
    applied = [k for k in ("created", "updated", "deleted", "restored", "existing") if k in c]
    if applied:
        parts.append(", ".join(f"{c[k]:,} {k}" for k in applied))
    for key in ("rejected", "failed"):
        if c.get(key) and not isinstance(c.get(key), dict) and "events" not in c:
            parts.append(f"{c[key]:,} {key}")
    if c.get("error"):
        parts.append(f"error: {str(c['error']).splitlines()[0][:160]}")
    return "; ".join(parts) or "nothing to do"


def run_dict(run: RunRecord, *, details: bool = False) -> dict[str, Any]:
    """A run record as JSON-ready data (times as ISO 8601 UTC), with its exit code, its
    true status and a one-line summary; ``details`` (the request timeline, rejects by
    rule) only when asked for."""
    import dataclasses

    out = dataclasses.asdict(run)
    out["started_at"] = _iso(run.started_at)
    out["finished_at"] = _iso(run.finished_at)
    out["status"] = run_status(run)
    out["exit_code"] = run.exit_code
    out["summary"] = run_summary(run)
    if not details:
        del out["details"]
    return out


def run_lines(run: RunRecord) -> str:
    """``runs show N``: the run's command, target, times, status and counts."""
    code = "-" if run.exit_code is None else str(run.exit_code)
    lines = [
        f"run {run.id}: {run.command} ({run_status(run)}, exit {code})",
        f"target: {run.target}",
        f"started {_iso(run.started_at)}, finished {_iso(run.finished_at) or '-'}",
        f"summary: {run_summary(run)}",
    ]
    for name, value in run.counts.items():
        if name in ("events", "contacts") and isinstance(value, dict):
            shown = ", ".join(f"{k} {v}" for k, v in value.items() if v)
            lines.append(f"{name}: {shown or 'none'}")
        elif isinstance(value, float):
            lines.append(f"{name}: {value:,.2f}")
        elif not isinstance(value, dict | list):
            lines.append(f"{name}: {value}")
    return "\n".join(lines)


def runs_table(runs: list[RunRecord]) -> str:
    """``kraiter-sync runs``: one line per run, newest first: its true status and exit
    code, and what it did in words."""
    width = max([7, *(len(run.command) for run in runs)])
    lines = [f"{'ID':>5}  {'COMMAND':<{width}} {'STATUS':<13} EXIT {'STARTED':<20}  SUMMARY"]
    for run in runs:
        code = "-" if run.exit_code is None else str(run.exit_code)
        lines.append(
            f"{run.id:>5}  {run.command:<{width}} {run_status(run):<13} {code:>4} "
            f"{_iso(run.started_at):<20}  {run_summary(run)}"
        )
    return "\n".join(lines)


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


def plan_summary(plan: ContactPlan, *, sample: int = 10) -> str:
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


def events_summary(result: EventsReconcileResult, *, sample: int = 10) -> str:
    """Events reconcile: totals, the pairs that differ, and what --apply sent."""
    c = result.counts
    total = {k: int(c[k].sum()) for k in ("local", "remote", "missing", "extra")}
    contacts = c["contact"].n_unique() if c.height else 0
    lines = [
        f"events: {total['local']:,} local, {total['remote']:,} in Kraiter for these "
        f"{contacts:,} contacts: {total['missing']:,} missing from Kraiter, "
        f"{total['extra']:,} extra in Kraiter (never deleted)"
    ]
    if result.contacts_absent:
        lines.append(f"{result.contacts_absent:,} contact(s) do not exist in Kraiter yet")
    differ = c.filter((c["missing"] > 0) | (c["extra"] > 0))
    if differ.height and sample > 0:
        more = f", first {sample}" if differ.height > sample else ""
        lines.append(f"differences ({differ.height:,} contact/name pairs{more}):")
        for row in differ.head(sample).iter_rows(named=True):
            lines.append(
                f"  {row['contact']}  {row['name']}: {row['local']} local, "
                f"{row['remote']} in Kraiter → {row['missing']} missing, {row['extra']} extra"
            )
    if result.applied:
        lines.append(
            f"applied: {result.sent:,} sent, {len(result.rejects):,} rejected, "
            f"{result.failed:,} failed (re-run to compare again)"
        )
    if result.rejects_path is not None:
        lines.append(f"rejected events written to {result.rejects_path}")
    return "\n".join(lines)


def snapshot_line(snapshot: RemoteSnapshot) -> str:
    """How Kraiter was read (listing or lookups) and why."""
    return (
        f"read Kraiter by {snapshot.strategy} ({snapshot.requests:,} requests): {snapshot.reason}"
    )


def apply_summary(result: ApplyResult) -> str:
    """What applying a plan did."""
    text = (
        f"applied: {result.created:,} created, {result.updated:,} updated, "
        f"{result.deleted:,} deleted, {len(result.rejects):,} rejected, {result.failed:,} failed"
    )
    if result.rejects_path is not None:
        text += f"\nrejected contacts written to {result.rejects_path}"
    if result.tombstone is not None:
        text += f"\ntombstone: {result.tombstone} (undo: kraiter-sync restore {result.tombstone})"
    return text


def restore_summary(result: RestoreResult) -> str:
    """What ``restore`` did."""
    text = (
        f"restored {result.restored:,} contact(s); {result.existing:,} already existed "
        f"(left as they are); {len(result.rejects):,} rejected; {result.failed:,} failed"
    )
    if result.not_restorable:
        text += (
            f"\nwarning: {len(result.not_restorable):,} contact(s) were suppressed in Kraiter; "
            "suppression cannot be set through the API, re-suppress them in Kraiter"
        )
    return text


def check_lines(result: CheckResult, *, verbose: bool) -> list[tuple[str, bool]]:
    """``sync --check``: (line, ok) per job and the target; details with ``verbose``."""
    out: list[tuple[str, bool]] = []
    for item in [*result.jobs, result.target]:
        mark = "ok  " if item.ok else "FAIL"
        out.append((f"{mark} {item.name}: {item.message}", item.ok))
        if item.ok and verbose:
            out.extend((f"       {line}", True) for line in item.details)
    return out


def export_summary(result: ExportResult) -> str:
    """What one export run did: rows and files of this run, what the output holds now,
    where the manifest is, and why a run exported in full when it was not asked to."""
    rate = result.rows / result.seconds if result.seconds > 0 else 0.0
    if result.table:
        where = f" to {result.table}"
    else:
        folder = result.directory or result.url
        where = f" to {folder}" if folder else ""
    kind = result.mode + (", resumed" if result.resumed else "")
    if result.table:
        written = f"{result.rows_total:,} rows in the table"
    else:
        written = (
            f"{result.files:,} file(s); the folder holds {result.files_total:,} file(s), "
            f"{result.rows_total:,} rows"
        )
    text = (
        f"exported {result.rows:,} {result.stream} rows ({kind}){where} as {result.format}: "
        f"{written}; {result.requests:,} request(s), "
        f"{result.retries} retr{'y' if result.retries == 1 else 'ies'}, "
        f"{result.seconds:.1f}s ({rate:,.0f} rows/s)"
    )
    if result.replaced:
        noun = "row(s)" if result.table else "file(s)"
        text += f"; {result.replaced:,} earlier {noun} replaced"
    if result.contacts_not_found:
        text += f"; {len(result.contacts_not_found)} listed contact(s) not found"
    if result.manifest is not None and not result.table:
        text += f"\nmanifest: {result.manifest}"
    if result.reason:
        text += f"\nnote: {result.reason}"
    return text


def compact_summary(result: CompactResult) -> str:
    """What ``export compact`` did to one stream folder."""
    text = (
        f"compacted {result.folder}: {result.files_before:,} -> {result.files_after:,} "
        f"file(s), {result.partitions:,} partition(s) rewritten ({result.rows:,} rows), "
        f"{result.seconds:.1f}s"
    )
    for reason in result.skipped:
        text += f"\nleft as it is: {reason}"
    return text


def result_document(
    command: str, *, status: str = "ok", run_id: int | None = None, **fields: Any
) -> dict[str, Any]:
    """A ``--json`` document of a command that has no result object of its own
    (docs/schemas/result.schema.json: command, status, exit_code, run_id, then
    ``fields``); it finished, so its exit code is 0."""
    return {"command": command, "status": status, "exit_code": 0, "run_id": run_id, **fields}


def export_document(result: ExportResult) -> dict[str, Any]:
    """``export --json``: the export's result with the common fields
    (docs/schemas/export.schema.json)."""
    import dataclasses

    fields: dict[str, Any] = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in dataclasses.asdict(result).items()
        if k not in ("files", "manifest_files")  # the file list can be long: paths()
    }
    files: Any = result.files  # (a list of paths, or a count)
    count = files if isinstance(files, int) else len(files)
    directory = str(result.directory) if result.directory else result.url
    fields["files"] = {"directory": directory, "count": count}
    return {**result_document("export"), **fields}


def connector_text(connector: Connector) -> str:
    """A readable, TOML-like rendering of the mapping (for ``connectors --show``)."""
    lines = [f"name = {connector.name!r}", f"kind = {connector.kind!r}"]
    if connector.description:
        lines.append(f"description = {connector.description!r}")
    if connector.path is not None:
        lines.append(f"# from {connector.path}")
    lines.append("[fields]")
    for name in connector.field_names:
        refs = connector.fields.get(name, ())
        shown = " | ".join(refs) if refs else "(not mapped)"
        lines.append(f"{name} = {shown}")
    if connector.kind == "events":
        lines.append("[timestamp]")
        lines.append(f"unit = {connector.timestamp_unit!r}")
        if connector.timestamp_format:
            lines.append(f"format = {connector.timestamp_format!r}")
        lines.append(f"timezone = {connector.timezone or '(from --timezone, default UTC)'!r}")
    lines.append("[properties]")
    cols = "all remaining columns" if connector.properties == "rest" else list(connector.properties)
    lines.append(f"columns = {cols!r}")
    for label, values in (
        ("exclude", connector.exclude),
        ("spread", connector.spread),
        ("json", connector.json_columns),
    ):
        if values:
            lines.append(f"{label} = {list(values)!r}")
    for kv in connector.key_values:
        lines.append(f"key_value = {kv.column}[{kv.key} -> {kv.value}]")
    if connector.types:
        shown = ", ".join(f"{k!r} = {v!r}" for k, v in connector.types.items())
        lines.append(f"types = {{{shown}}}")
    if connector.renames:
        lines.append("[renames]")
        lines.extend(f"{old!r} = {new!r}" for old, new in connector.renames.items())
    if connector.validation:
        lines.append("[validation]")
        lines.extend(f"{k} = {str(v).lower()}" for k, v in connector.validation.items())
    if connector.expected_rejects is not None and connector.sample:
        lines.append(
            f"# sample: sample_data/{connector.sample} ({connector.expected_rows} rows, "
            f"{connector.expected_rejects} expected rejects)"
        )
    return "\n".join(lines)


def migrate_summary(result: MigrateResult) -> str:
    """What ``state migrate`` copied, verified, and what to do next."""
    events = ", ".join(f"{state} {n:,}" for state, n in sorted(result.events.items()))
    labels = {
        "events": "events",
        "contacts": "cached contacts",
        "runs": "runs",
        "watermarks": "watermarks",
        "tenants": "tenant bindings",
        "key_versions": "key versions",
        "blobs": "export states and row caches",
    }
    lines = [
        f"copied the state of {result.source} into {result.destination} (schema "
        f"{result.schema}), verified by counts:",
        f"  {len(result.targets):>12,}  targets",
    ]
    for table, label in labels.items():
        n = result.counts.get(table, 0)
        detail = f" ({events})" if table == "events" and events else ""
        lines.append(f"  {n:>12,}  {label}{detail}")
    if result.replaced:
        lines.append("what the destination held for these targets was replaced")
    if result.run_offset:
        lines.append(
            f"runs were numbered after the destination's own: run N is now run "
            f"N + {result.run_offset}"
        )
    lines.append(
        f"next: point every machine at it: KRAITER_SYNC_STATE='{result.destination}' (the "
        'password in PGPASSWORD or ~/.pgpass), --state, or state = "..." under [target] '
        f"in kraiter-sync.toml. {result.source} is left as it was: move it aside once a run "
        "against the new state has finished."
    )
    return "\n".join(lines)
