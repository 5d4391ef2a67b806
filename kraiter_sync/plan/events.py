"""Reconcile events: per contact and event name, local count vs Kraiter's count.

Kraiter's events of each local contact are read (``GET /api/events?contactId=…``,
system ``email.*`` events left out) and matched one to one with the valid local events
on (name, timestamp to the millisecond, properties in canonical form, so types count:
``1``, ``1.0`` and ``true`` are three different values): a local event with no match is
*missing* from Kraiter, a remote one with no match is *extra*. The report is per
(contact, name): local count, Kraiter count, missing, extra.

``reconcile --kind events --apply`` sends the missing ones through the upload engine
(ledger, retries, verification) and never deletes anything.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.api.pool import run_pool
from kraiter_sync.plan.snapshot import Caller, once
from kraiter_sync.validate.engine import LEGACY_PROPERTIES
from kraiter_sync.validate.keys import canonical_json

__all__ = [
    "EVENT_COUNTS_SCHEMA",
    "EventsPlan",
    "diff_events",
    "iso_ms",
    "plan_events",
    "remote_events_frame",
]

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


def iso_ms(ts: str | None) -> str | None:
    """A timestamp as the validator writes ``timestamp_iso``: UTC, milliseconds, ``Z``."""
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
            rows["ts"].append(iso_ms(e.get("timestamp")))
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
class EventsPlan:
    """Per (contact, name) counts, the local events missing from Kraiter, and each local
    contact's id in Kraiter (None: it does not exist there yet)."""

    counts: pl.DataFrame
    missing: pl.DataFrame
    ids: dict[str, str | None]

    @property
    def absent(self) -> list[str]:
        """The local contacts (emails) Kraiter does not hold."""
        return sorted(c for c, i in self.ids.items() if i is None)


async def plan_events(
    client: KraiterClient,
    local_events: pl.DataFrame,
    *,
    concurrency: int = 16,
    call: Caller = once,
    on_progress: Callable[[int, int], None] | None = None,
) -> EventsPlan:
    """Read Kraiter's events of every local contact and diff them with the canonical
    local events (contacts are resolved to ids by email first). ``on_progress`` gets
    (contacts done, contacts in all) as each contact's events are read."""
    local = _local_frame(local_events)
    ids: dict[str, str | None] = {}
    contacts = local["contact"].unique().to_list()
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, len(contacts))

    async def resolve(contact: str) -> None:
        if contact.startswith("id:"):
            ids[contact] = contact[3:]
            return
        found = await call(functools.partial(client.get_contact_by_email, contact))
        ids[contact] = None if found is None else str(found["id"])
        if found is None:
            step()  # nothing to read for it

    await run_pool(contacts, resolve, concurrency=concurrency)
    remote_events: dict[str, list[dict[str, Any]]] = {}

    async def read(pair: tuple[str, str]) -> None:
        contact, contact_id = pair

        async def listing() -> list[dict[str, Any]]:
            return [e async for e in client.list_events(contact_id=contact_id, page_size=100)]

        remote_events[contact] = await call(listing)
        step()

    known = [(c, i) for c, i in ids.items() if i is not None]
    await run_pool(known, read, concurrency=concurrency)
    counts, missing = diff_events(local, remote_events_frame(remote_events))
    return EventsPlan(counts, missing, ids)
