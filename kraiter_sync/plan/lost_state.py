"""Lost state is not a duplicate storm: a ledger that knows nothing of a target proves it.

The ledger is a cache of Kraiter's truth (design.md §4). A new ``--state-dir``, a ledger
moved aside, or another machine's state directory all look like a ledger that knows
nothing, and an import would then send everything again. So before the first events
are sent to a target the ledger holds nothing for (no event key, no check recorded):

1. one listing page of the tenant-wide feed (``GET /api/events?limit=1``) tells whether
   Kraiter holds any event at all; an empty tenant needs nothing more;
2. otherwise a sample of the input's events is looked for in Kraiter, one listing of the
   event's contact and name each (``GET /api/events?contactId|email&name``), compared
   exactly as the engine verifies an ambiguous send (:func:`validate.keys.same_event`:
   name, instant to the millisecond, canonical properties) or as ``state rebuild`` keys
   the events it finds (so text values an earlier version sent untyped count too);
3. any sampled event found means the state was lost, or another state sent this input:
   the import stops before anything is sent and says what to do (``--rebuild``,
   ``--adopt``), unless one of them was given;
4. the check is recorded in the ledger (watermark ``state:checked``), so later runs to
   the target do not pay for it again; a ledger that holds events for the target has
   proved itself already.

**The sample.** :data:`SAMPLE_HEAD` events from the start of the input, plus one event
drawn at random from each of :data:`SAMPLE_SPREAD` equal slices of the rest (stratified,
so the whole input is covered, not its first chunk). An interrupted import sends in
input order, so its first events are in Kraiter: the head catches a partly sent input
of any size with certainty. Anywhere else, a sent stretch longer than two slices (5% of
the input) always contains a whole slice and is found with certainty, a 1% stretch with
probability about 40%; events sent at random are missed with probability (1 - p)^40:
1.5% for a 10% share, 13% for 5%, 67% for 1% (catching a scattered 1% 95% of the time
would take about 300 requests on every first import). One listing page per sampled
event (100 events of that contact and name), then up to :data:`MAX_PAGES` pages in all:
49 requests at most in the usual case, 65 with the probe and long listings.

Contacts-only inputs are not checked: contacts are idempotent by email, and a contact
the ledger does not know is diffed against Kraiter before any write (``import``'s
contact plan), so lost state costs reads there, never a duplicate.
"""

from __future__ import annotations

import functools
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.api.pool import run_pool
from kraiter_sync.errors import GuardError
from kraiter_sync.plan.remote_keys import contact_emails, remote_event_keys
from kraiter_sync.plan.snapshot import Caller, once
from kraiter_sync.state.store import StateStore
from kraiter_sync.validate.keys import same_event

__all__ = [
    "CHECKED_STREAM",
    "MAX_PAGES",
    "REBUILD_STREAM",
    "SAMPLE_HEAD",
    "SAMPLE_SPREAD",
    "SampleCheck",
    "check_sample",
    "estimate_rebuild_requests",
    "lost_state_error",
    "needs_check",
    "read_sample",
    "record_checked",
    "sample_positions",
    "tenant_is_empty",
]

#: The watermark stream that records a target's check (JSON: how, when, what it cost).
CHECKED_STREAM = "state:checked"
#: The watermark stream of ``state rebuild``'s position in the feed (JSON: cursor, complete).
REBUILD_STREAM = "state:rebuild"
#: Events taken from the start of the input (an interrupted import sent those first).
SAMPLE_HEAD = 8
#: Slices of the rest, one event drawn at random from each.
SAMPLE_SPREAD = 40
#: Listing pages the sample may use in all (one per sampled event first).
MAX_PAGES = 64


def needs_check(store: StateStore, target: str, *, record: bool = True) -> str | None:
    """Why the ledger must prove it knows ``target``, or None when it has:

    * ``"unfinished rebuild"``: a rebuild began and did not finish (the ledger holds only
      part of what Kraiter holds);
    * ``"unfinished adopt"``: an ``--adopt`` import did not finish;
    * ``"empty"``: no check recorded and no event key held for the target.

    A ledger that holds events for the target is the one that sent them: with
    ``record``, that is recorded, so the count is not taken again.
    """
    rebuild = store.get_watermark(target, REBUILD_STREAM)
    if rebuild is not None and not json.loads(rebuild).get("complete"):
        return "unfinished rebuild"
    checked = store.get_watermark(target, CHECKED_STREAM)
    if checked is not None:
        return None if json.loads(checked).get("complete", True) else "unfinished adopt"
    if not store.count_states(target):
        return "empty"
    if record:
        record_checked(store, target, "held-events")
    return None


def record_checked(
    store: StateStore, target: str, how: str, *, complete: bool = True, **facts: Any
) -> None:
    """Remember that ``target`` was checked (``how``: sample, empty-tenant, adopt, rebuild,
    held-events) so later runs do not pay for it again; ``complete=False`` while an
    ``--adopt`` import has not verified everything yet."""
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    value = {"how": how, "at": when, "complete": complete, **facts}
    store.set_watermark(target, CHECKED_STREAM, json.dumps(value))


def sample_positions(
    total: int,
    *,
    rng: random.Random,
    head: int = SAMPLE_HEAD,
    spread: int = SAMPLE_SPREAD,
) -> list[int]:
    """Row positions (in input order) of the sample: the first ``head`` rows, then one
    drawn at random from each of ``spread`` equal slices of the rest; every row when the
    input is no larger than the sample."""
    if total <= head + spread:
        return list(range(total))
    rest = total - head
    picks = list(range(head))
    for i in range(spread):
        start = head + rest * i // spread
        stop = head + rest * (i + 1) // spread
        picks.append(rng.randrange(start, stop))
    return picks


def read_sample(
    parts: Sequence[Path], heights: Sequence[int], positions: Sequence[int]
) -> pl.DataFrame:
    """The spooled rows at ``positions`` (in input order across the spool's parts)."""
    frames = []
    offset = 0
    wanted = sorted(positions)
    for path, height in zip(parts, heights, strict=True):
        inside = [p - offset for p in wanted if offset <= p < offset + height]
        if inside:
            frames.append(pl.read_parquet(path).gather(inside))
        offset += height
    return pl.concat(frames) if frames else pl.DataFrame()


async def tenant_is_empty(client: KraiterClient, *, call: Caller = once) -> bool:
    """Whether Kraiter holds no event at all for this key's tenant (one request)."""
    page = await call(functools.partial(client.get_page, "events.list", limit=1))
    return not page.items


@dataclass
class SampleCheck:
    """What the sample found: ``found`` of ``sampled`` events are in Kraiter already
    (``untyped`` of them only as text values sent before CSV values were typed, which
    ``state rebuild`` recognises and an exact check does not); ``unsettled`` were not
    looked for to the end of their listing (page budget)."""

    sampled: int = 0
    found: int = 0
    untyped: int = 0
    unsettled: int = 0
    pages: int = 0


async def check_sample(
    client: KraiterClient,
    sample: pl.DataFrame,
    *,
    call: Caller = once,
    concurrency: int = 16,
    max_pages: int = MAX_PAGES,
) -> SampleCheck:
    """Look for each sampled event (canonical rows: ``event_key``, ``email`` or
    ``contact_id``, ``name``, ``timestamp_iso``, ``properties``) in Kraiter."""
    result = SampleCheck(sampled=sample.height)
    spare = max(max_pages - sample.height, 0)
    name_filter = client.dialect.event_name_filter

    async def look(row: dict[str, Any]) -> None:
        nonlocal spare
        by = {"contactId": row["contact_id"]} if row.get("contact_id") else {"email": row["email"]}
        cursor: str | None = None
        while True:
            page = await call(
                functools.partial(
                    client.get_page,
                    "events.list",
                    cursor=cursor,
                    limit=100,
                    **by,
                    **{name_filter: row["name"]},
                )
            )
            result.pages += 1
            match = _holds(row, page.items)
            if match is not None:
                result.found += 1
                result.untyped += match == "untyped"
                return
            cursor = page.next_cursor
            if cursor is None:
                return
            if spare <= 0:
                result.unsettled += 1
                return
            spare -= 1

    await run_pool(list(sample.iter_rows(named=True)), look, concurrency=concurrency)
    return result


def _holds(row: dict[str, Any], remote: Sequence[dict[str, Any]]) -> str | None:
    """Whether a listing of the row's contact and name holds it: ``"exact"`` as the
    engine verifies an ambiguous send (``same_event``), ``"untyped"`` under a key
    ``state rebuild`` gives the event (its text values typed), None when not at all."""
    if any(same_event(row["name"], row["timestamp_iso"], row["properties"], ev) for ev in remote):
        return "exact"
    if row.get("contact_id"):
        keys = remote_event_keys(remote)
    else:  # the listing is of this email's contact: its id stands for this email
        ids = {str(ev["contactId"]) for ev in remote if ev.get("contactId")}
        emails = contact_emails([{"id": i, "email": row["email"]} for i in ids])
        keys = remote_event_keys(remote, emails)
    return "untyped" if any(key == row["event_key"] for key, _id in keys.pairs) else None


def lost_state_error(
    check: SampleCheck,
    *,
    why: str,
    state_dir: Path | str,
    base_url: str,
    events: int,
    groups: int,
    command: str = "import",
) -> GuardError:
    """The refusal: what was found, what it means (``why``: :func:`needs_check`'s
    answer), and the ways on (``--rebuild`` and ``--adopt`` are ``import``'s: a ``sync``
    job, ``command`` ``sync:<job>``, and a ``retry`` are led to ``state rebuild``).
    ``state_dir`` is where the ledger lives: the state directory, or a PostgreSQL
    store's URL without its password."""
    share = (
        f"all {check.sampled}"
        if check.found == check.sampled
        else f"{check.found} of {check.sampled}"
    )
    if why == "unfinished rebuild":
        state = (
            f"a rebuild of the ledger in {state_dir} began and did not finish, so it holds "
            "only part of what Kraiter holds"
        )
    elif why == "unfinished adopt":
        state = (
            f"an import with --adopt into the ledger in {state_dir} did not finish "
            "checking its events against Kraiter"
        )
    else:
        state = (
            f"the ledger in {state_dir} holds nothing for this target: the state "
            f"{'directory' if isinstance(state_dir, Path) else 'store'} is new or was "
            "replaced, or another state sent this input"
        )
    adopt = (
        f"; or re-run with --adopt to check every event against Kraiter before sending it "
        f"(one request per contact and event name: {groups:,} for these {events:,} events)"
    )
    if check.untyped:
        adopt = (
            f" (not --adopt: {check.untyped} of the events found hold text values an "
            "earlier version sent before CSV values were typed, which only a rebuild "
            "recognises)"
        )
    cost = "one request per 100 events Kraiter holds, plus one per 100 contacts"
    found = (
        f"lost state? {share} events sampled from this input are in Kraiter ({base_url}) "
        f"already, exactly (same contact, name, timestamp and properties), but {state}. "
        "Nothing was sent. "
    )
    if command.startswith("sync:"):
        job = command.removeprefix("sync:")
        msg = (
            f"{found}Rebuild the ledger from Kraiter with `kraiter-sync state rebuild` "
            f"(the same --config or --state-dir; {cost}), then run the sync of job "
            f"{job} again"
        )
    elif command == "retry":
        msg = (
            f"{found}Rebuild the ledger from Kraiter with `kraiter-sync state rebuild` "
            f"(the same --state-dir; {cost}), then run the retry again"
        )
    else:
        msg = (
            f"{found}Rebuild the ledger from Kraiter and import again: re-run with "
            f"--rebuild, or run `kraiter-sync state rebuild` first ({cost}){adopt}"
        )
    return GuardError(msg)


def estimate_rebuild_requests(events: int, contacts: int) -> int:
    """What a full ``state rebuild`` costs: one page per 100 events and per 100 contacts."""
    return math.ceil(events / 100) + math.ceil(contacts / 100)
