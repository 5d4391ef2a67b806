"""Reconcile events: per contact and event name, local count vs Kraiter's count.

Kraiter's events of each local contact are read (``GET /api/events?contactId=…``,
system ``email.*`` events left out) and matched one to one with the valid local events
on (name, timestamp to the millisecond, properties in canonical form, so types count:
``1``, ``1.0`` and ``true`` are three different values): a local event with no match is
*missing* from Kraiter, a remote one with no match is *extra*. The report is per
(contact, name): local count, Kraiter count, missing, extra.

``--apply`` sends the missing events and never deletes anything. No event is resent
blindly: each send is one attempt, and whatever failed shows up as missing on the next
run, because the comparison is against Kraiter itself (reconcile is its own check).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from kraiter_sync.client import KraiterClient
from kraiter_sync.errors import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_REJECTED,
    ApiError,
    ConflictError,
    GuardError,
    KraiterSyncError,
)
from kraiter_sync.logs import get_logger
from kraiter_sync.remote import Caller
from kraiter_sync.upload import Engine, EventRow, Outcome
from kraiter_sync.validate.engine import LEGACY_PROPERTIES
from kraiter_sync.validate.keys import canonical_json

__all__ = [
    "EVENT_COUNTS_SCHEMA",
    "EventsReconcileResult",
    "diff_events",
    "reconcile_events",
    "remote_events_frame",
]

log = get_logger("reconcile")

#: The per (contact, name) report.
EVENT_COUNTS_SCHEMA: dict[str, pl.DataType] = {
    "contact": pl.String(),
    "name": pl.String(),
    "local": pl.UInt32(),
    "remote": pl.UInt32(),
    "missing": pl.UInt32(),
    "extra": pl.UInt32(),
}
_MATCH = ["contact", "name", "ts", "props"]


def _ms(ts: str | None) -> str | None:
    if not ts:
        return None
    try:
        when = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return ts
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    utc = when.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def remote_events_frame(
    events_by_contact: Mapping[str, Sequence[Mapping[str, Any]]],
) -> pl.DataFrame:
    """Kraiter's events (contact → list of event objects) → contact, name, ts, props.

    System events (``email.*``) are Kraiter's own and never compared.
    """
    rows: dict[str, list[Any]] = {"contact": [], "name": [], "ts": [], "props": []}
    for contact, events in events_by_contact.items():
        for e in events:
            name = e.get("name", e.get("event"))
            if not isinstance(name, str) or name.startswith("email."):
                continue
            rows["contact"].append(contact)
            rows["name"].append(name)
            rows["ts"].append(_ms(e.get("timestamp")))
            rows["props"].append(canonical_json(e.get("properties")))
    return pl.DataFrame(rows, schema=dict.fromkeys(rows, pl.String()))


def _local_frame(local: pl.DataFrame) -> pl.DataFrame:
    """The canonical events frame → contact, name, ts, props (+ the columns to send);
    ``legacy_props``: the properties an earlier version sent for the row, when they
    differ (CSV values sent as text, before they were typed)."""
    email = pl.col("email") if "email" in local.columns else pl.lit(None, pl.String)
    cid = pl.col("contact_id") if "contact_id" in local.columns else pl.lit(None, pl.String)
    legacy = (
        pl.col(LEGACY_PROPERTIES).map_elements(canonical_json, return_dtype=pl.String)
        if LEGACY_PROPERTIES in local.columns
        else pl.lit(None, pl.String)
    )
    return local.select(
        pl.coalesce(email, pl.concat_str(pl.lit("id:"), cid)).alias("contact"),
        "name",
        pl.col("timestamp_iso").alias("ts"),
        # the validator's text is canonical but for how polars writes some small floats
        # (1e-5 where canonical_json writes 1e-05): compare canonical forms exactly
        pl.col("properties").map_elements(canonical_json, return_dtype=pl.String).alias("props"),
        pl.col("properties").alias("properties_json"),
        (pl.col("event_key") if "event_key" in local.columns else pl.lit(None, pl.String)).alias(
            "event_key"
        ),
        "source_file",
        "source_row",
        legacy.alias("legacy_props"),
    )


def _numbered(frame: pl.DataFrame) -> pl.DataFrame:
    """Number identical events 0, 1, 2… so that duplicates match one to one."""
    return frame.with_columns(pl.int_range(pl.len()).over(_MATCH).alias("n"))


def diff_events(local: pl.DataFrame, remote: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Pure: (per contact/name counts, the local events missing from Kraiter).

    ``local`` is :func:`_local_frame` shaped (contact, name, ts, props, …), ``remote``
    :func:`remote_events_frame` shaped. Counts cover every (contact, name) on either side.
    """
    loc = _numbered(local)
    rem = _numbered(remote.select(_MATCH))
    keys = [*_MATCH, "n"]
    missing = loc.join(rem, on=keys, how="anti", maintain_order="left")
    extra = rem.join(loc.select(keys), on=keys, how="anti")
    if "legacy_props" in missing.columns and missing["legacy_props"].null_count() < len(missing):
        # an event an earlier version sent with its CSV values as text is still this one
        old = _numbered(
            missing.filter(pl.col("legacy_props").is_not_null())
            .drop("n")
            .with_columns(pl.col("legacy_props").alias("props"))
        )
        spare = _numbered(extra.drop("n"))
        found = old.join(spare, on=keys, how="semi").select("source_file", "source_row")
        missing = missing.join(found, on=["source_file", "source_row"], how="anti")
        extra = spare.join(old.select(keys), on=keys, how="anti")

    def count(frame: pl.DataFrame, name: str) -> pl.DataFrame:
        return frame.group_by("contact", "name").agg(pl.len().cast(pl.UInt32).alias(name))

    counts = (
        count(loc, "local")
        .join(count(rem, "remote"), on=["contact", "name"], how="full", coalesce=True)
        .join(count(missing, "missing"), on=["contact", "name"], how="left")
        .join(count(extra, "extra"), on=["contact", "name"], how="left")
        .with_columns(pl.exclude("contact", "name").fill_null(0))
        .select(list(EVENT_COUNTS_SCHEMA))
        .sort("contact", "name")
    )
    return counts, missing.drop("n")


@dataclass
class EventsReconcileResult:
    """Counts per (contact, name), the missing events, and what --apply sent."""

    counts: pl.DataFrame
    missing: pl.DataFrame
    contacts_absent: int = 0
    sent: int = 0
    failed: int = 0
    rejects: list[dict[str, Any]] = field(default_factory=list)
    applied: bool = False
    rejects_path: Path | None = None

    @property
    def exit_code(self) -> int:
        if self.failed:
            return EXIT_INCOMPLETE
        return EXIT_REJECTED if self.rejects else EXIT_OK

    def render(self, *, sample: int = 10) -> str:
        c = self.counts
        total = {k: int(c[k].sum()) for k in ("local", "remote", "missing", "extra")}
        contacts = c["contact"].n_unique() if c.height else 0
        lines = [
            f"events: {total['local']:,} local, {total['remote']:,} in Kraiter for these "
            f"{contacts:,} contacts: {total['missing']:,} missing from Kraiter, "
            f"{total['extra']:,} extra in Kraiter (never deleted)"
        ]
        if self.contacts_absent:
            lines.append(f"{self.contacts_absent:,} contact(s) do not exist in Kraiter yet")
        differ = c.filter((pl.col("missing") > 0) | (pl.col("extra") > 0))
        if differ.height and sample > 0:
            more = f", first {sample}" if differ.height > sample else ""
            lines.append(f"differences ({differ.height:,} contact/name pairs{more}):")
            for row in differ.head(sample).iter_rows(named=True):
                lines.append(
                    f"  {row['contact']}  {row['name']}: {row['local']} local, "
                    f"{row['remote']} in Kraiter → {row['missing']} missing, {row['extra']} extra"
                )
        if self.applied:
            lines.append(
                f"applied: {self.sent:,} sent, {len(self.rejects):,} rejected, "
                f"{self.failed:,} failed (re-run to compare again)"
            )
        if self.rejects_path is not None:
            lines.append(f"rejected events written to {self.rejects_path}")
        return "\n".join(lines)


async def _once(fn: Callable[[], Any]) -> Any:
    return await fn()


async def reconcile_events(
    client: KraiterClient,
    local_events: pl.DataFrame,
    *,
    apply: bool = False,
    concurrency: int = 16,
    call: Caller = _once,
    engine: Engine | None = None,
    allow_triggers: bool = False,
) -> EventsReconcileResult:
    """Compare the canonical local events with Kraiter's; with ``apply`` send the missing.

    Contacts are resolved to ids first (by email), and with ``apply`` a contact that
    does not exist is created before its events, so the result does not depend on how
    Kraiter treats events for unknown emails. With an ``engine`` (the import engine) the
    missing events are sent through it: marked in flight in the ledger first, ambiguous
    outcomes verified, never sent twice.
    """
    local = _local_frame(local_events)
    contacts = local["contact"].unique().to_list()
    ids: dict[str, str | None] = {}
    sem = asyncio.Semaphore(concurrency)

    async def resolve(contact: str) -> None:
        async with sem:
            if contact.startswith("id:"):
                ids[contact] = contact[3:]
                return
            found = await call(functools.partial(client.get_contact_by_email, contact))
            ids[contact] = None if found is None else str(found["id"])

    await asyncio.gather(*(resolve(c) for c in contacts))
    remote_events: dict[str, list[dict[str, Any]]] = {}

    async def read(contact: str, contact_id: str) -> None:
        async def listing() -> list[dict[str, Any]]:
            return [e async for e in client.list_events(contact_id=contact_id, page_size=100)]

        async with sem:
            remote_events[contact] = await call(listing)

    await asyncio.gather(*(read(c, i) for c, i in ids.items() if i is not None))
    counts, missing = diff_events(local, remote_events_frame(remote_events))
    absent = sorted(c for c, i in ids.items() if i is None)
    result = EventsReconcileResult(counts=counts, missing=missing, contacts_absent=len(absent))
    if apply:
        if not allow_triggers and missing.height:
            await guard_triggers(client, set(missing["name"].unique().to_list()), call=call)
        result.applied = True
        if engine is not None:
            await _send_with_engine(engine, result, ids, absent)
        else:
            await _send_missing(client, result, ids, absent, call=call, concurrency=concurrency)
    return result


async def _send_with_engine(
    engine: Engine, result: EventsReconcileResult, ids: dict[str, str | None], absent: list[str]
) -> None:
    """The missing events through the import engine (ledger, rate, retries, verification).

    The ledger may hold a missing event as ``done`` (sent once, then deleted in Kraiter,
    or sent to a contact that was deleted): reconcile has just seen that Kraiter does not
    hold it, so those keys are forgotten before sending.
    """
    if absent:
        # Not engine.ensure_contacts: its ledger cache may still name a contact that was
        # deleted in Kraiter, and reconcile has just seen that these do not exist.
        sem = asyncio.Semaphore(engine.options.concurrency)

        async def upsert(email: str) -> None:
            async with sem:
                try:
                    contact, _ = await engine.with_retry(
                        functools.partial(engine.client.upsert_contact, email)
                    )
                except ApiError as exc:
                    if exc.retriable:
                        result.failed += 1
                    return
                ids[email] = str(contact["id"])

        await asyncio.gather(*(upsert(e) for e in absent))
        engine.ledger.put_contacts(
            engine.target, [(e, i, None) for e in absent if (i := ids.get(e)) is not None]
        )
    rows: list[EventRow] = []
    for r in result.missing.iter_rows(named=True):
        contact_id = ids.get(r["contact"])
        if contact_id is None:
            result.rejects.append(
                {
                    "source_file": r["source_file"],
                    "source_row": r["source_row"],
                    "field": "contact",
                    "rule": "api.NOT_FOUND",
                    "message": f"contact {r['contact']} could not be created",
                    "stage": "rejected",
                    "name": r["name"],
                }
            )
            continue
        rows.append(
            EventRow(
                r["event_key"],
                contact_id,
                r["name"],
                r["ts"],
                r["properties_json"],
                r["source_file"],
                int(r["source_row"]),
                None if r["contact"].startswith("id:") else r["contact"],
            )
        )
    engine.ledger.forget(engine.target, [row.key for row in rows])
    before = dataclasses.replace(engine.stats)
    await engine.send_events(rows)
    stats = engine.stats
    result.sent += (stats.events_sent - before.events_sent) + (
        stats.events_verified - before.events_verified
    )
    result.failed += stats.events_failed - before.events_failed


async def guard_triggers(client: KraiterClient, names: set[str], *, call: Caller) -> None:
    """Refuse to send events whose names trigger live sequences (as ``import`` does).

    Back-dated events would enrol contacts and send real emails. GuardError (exit 2)
    names each event and sequence; ``--allow-triggers`` skips the check.
    """

    async def listing() -> list[dict[str, Any]]:
        return [seq async for seq in client.list_sequences()]

    hits: dict[str, list[str]] = {}
    for seq in await call(listing):
        if str(seq.get("status", "")).lower() != "active":
            continue
        for trigger in seq.get("triggers") or []:
            event = trigger.get("event") if isinstance(trigger, dict) else trigger
            if event in names:
                hits.setdefault(str(event), []).append(f"{seq.get('name') or seq.get('id')}")
    if hits:
        found = "; ".join(f"{name} → {', '.join(seqs)}" for name, seqs in sorted(hits.items()))
        msg = (
            f"nothing was sent: these missing events trigger live sequences, and sending "
            f"them would enrol contacts and send real emails: {found}. Pause those "
            "sequences, or pass --allow-triggers if that is what you want"
        )
        raise GuardError(msg)


def event_rejects(outcomes: Sequence[Outcome[Any]]) -> list[dict[str, Any]]:
    """Events Kraiter refused (engine outcomes) as rejects-file rows."""
    out = []
    for o in outcomes:
        row = o.row
        out.append(
            {
                "source_file": row.source_file,
                "source_row": row.source_row,
                "field": "api",
                "rule": f"api.{o.code}",
                "message": o.message,
                "stage": "rejected",
                "email": row.email,
                "contact_id": row.contact_id,
                "name": row.name,
                "timestamp": row.timestamp,
                "properties": row.properties,
            }
        )
    return out


async def _send_missing(
    client: KraiterClient,
    result: EventsReconcileResult,
    ids: dict[str, str | None],
    absent: list[str],
    *,
    call: Caller,
    concurrency: int,
) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def create(email: str) -> None:
        async with sem:
            made: dict[str, Any] | None
            try:
                made = await call(functools.partial(client.create_contact, email))
            except ConflictError:
                made = await call(functools.partial(client.get_contact_by_email, email))
            ids[email] = str(made["id"]) if made else None

    await asyncio.gather(*(create(e) for e in absent))

    async def send(row: Mapping[str, Any]) -> None:
        contact_id = ids.get(row["contact"])
        if contact_id is None:
            result.rejects.append(
                {
                    "source_file": row["source_file"],
                    "source_row": row["source_row"],
                    "rule": "api.NOT_FOUND",
                    "message": f"contact {row['contact']} could not be created",
                }
            )
            return
        async with sem:
            try:
                # One attempt only: a lost answer may have applied, and the next run
                # compares against Kraiter again instead of guessing.
                await client.track_event(
                    row["name"],
                    contact_id=contact_id,
                    properties=row["properties_json"],
                    timestamp=row["ts"],
                )
                result.sent += 1
            except ApiError as exc:
                if exc.retriable:
                    result.failed += 1
                else:
                    result.rejects.append(
                        {
                            "source_file": row["source_file"],
                            "source_row": row["source_row"],
                            "rule": f"api.{exc.code}",
                            "message": exc.api_message,
                        }
                    )
            except KraiterSyncError as exc:
                if not exc.retriable:
                    raise
                result.failed += 1

    await asyncio.gather(*(send(r) for r in result.missing.iter_rows(named=True)))
