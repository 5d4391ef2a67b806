"""What the ledger says is left to send: the diff of an input against the state store.

* :func:`contacts_to_send` — contacts whose hash differs from what the ledger last
  wrote for their email (unchanged ones cost nothing on re-runs).
* :func:`split_events` — a chunk of events split by what the ledger knows of each key:
  to send, left ``inflight`` by a killed run (verify first), done, rejected before.

A ledger written before values read as text were typed (``KEY_VERSION``) knows some
events under their earlier key: the validator then also gives each row whose key changed
its earlier key (``legacy_key``), and a row done or refused under it is not sent again
(the new key is recorded beside it). Contacts alike: the change cache matches the earlier
properties hash too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from kraiter_sync.plan.contacts import contact_hashes
from kraiter_sync.state.store import StateStore
from kraiter_sync.validate.engine import LEGACY_KEY, LEGACY_PROPERTIES

__all__ = ["EventSplit", "contacts_to_send", "split_events"]


def contacts_to_send(
    store: StateStore, target: str, frame: pl.DataFrame, *, ignore_cache: bool = False
) -> tuple[pl.DataFrame, int]:
    """Rows whose hash differs from what the ledger last wrote, and the unchanged count.

    The rows keep ``_hash`` (what they would write), and ``_id`` / ``_cached``: the
    contact id and hash the ledger holds for the email (null when it holds none, or with
    ``ignore_cache``: a full pass re-checks every contact).
    """
    frame = frame.with_columns(contact_hashes(frame).alias("_hash"))
    legacy = LEGACY_PROPERTIES in frame.columns and frame[LEGACY_PROPERTIES].null_count() < (
        frame.height
    )
    if legacy:  # what an earlier version cached for the row, before typing
        earlier = frame.select(
            "user_id", pl.coalesce(LEGACY_PROPERTIES, "properties").alias("properties")
        )
        frame = frame.with_columns(contact_hashes(earlier).alias("_legacy_hash"))
    if ignore_cache:
        return frame.with_columns(
            pl.lit(None, pl.String).alias("_id"), pl.lit(None, pl.String).alias("_cached")
        ), 0
    found = store.contact_rows(target, frame["email"])
    emails, ids, digests = zip(*found, strict=True) if found else ((), (), ())
    cached = pl.DataFrame(
        {"email": emails, "_id": ids, "_cached": digests},
        schema={"email": pl.String, "_id": pl.String, "_cached": pl.String},
    )
    joined = frame.join(cached, on="email", how="left", maintain_order="left")
    if joined.height != frame.height:  # validation merges by email: not expected
        cached = cached.unique("email", keep="first")
        joined = frame.join(cached, on="email", how="left", maintain_order="left")
    changed = pl.col("_cached").ne_missing(pl.col("_hash"))
    if legacy:
        changed = changed & pl.col("_cached").ne_missing(pl.col("_legacy_hash"))
    todo = joined.filter(changed)
    return todo, frame.height - todo.height


@dataclass
class EventSplit:
    """One chunk of events by ledger state (``contact_id`` filled from ``ids``);
    ``legacy_inflight``: rows left inflight under their earlier key (verify them with the
    properties sent then)."""

    todo: pl.DataFrame
    inflight: pl.DataFrame
    legacy_inflight: pl.DataFrame
    done: int
    rejected: int


def split_events(
    store: StateStore,
    target: str,
    frame: pl.DataFrame,
    ids: Mapping[str, str],
    *,
    resend_rejected: bool = False,
    adopt: bool = True,
) -> EventSplit:
    """Split a chunk of canonical events by what the ledger knows of each key; with
    ``resend_rejected`` keys Kraiter refused before are sent again (``retry``). A row the
    ledger knows only under its earlier key (``legacy_key``) takes that key's state; with
    ``adopt`` its new key is recorded beside a settled one (not in a dry run)."""
    states = store.known_states(target, frame["event_key"].to_list())
    state = frame["event_key"].replace_strict(states, default=None, return_dtype=pl.String)
    state = _legacy_states(store, target, frame, state, adopt=adopt)
    if resend_rejected:
        state = state.replace("rejected", None)
    if ids:
        resolved = frame["email"].replace_strict(dict(ids), default=None, return_dtype=pl.String)
        frame = frame.with_columns(pl.coalesce(pl.col("contact_id"), resolved).alias("contact_id"))
    return EventSplit(
        todo=frame.filter(state.is_null()),
        inflight=frame.filter(state == "inflight"),
        legacy_inflight=frame.filter(state == "legacy-inflight"),
        done=int((state == "done").sum()),
        rejected=int((state == "rejected").sum()),
    )


def _legacy_states(
    store: StateStore, target: str, frame: pl.DataFrame, state: pl.Series, *, adopt: bool
) -> pl.Series:
    """For rows the ledger does not know by key, the state of their earlier key
    (``legacy_key``): done or rejected under it counts as done or rejected (and the new
    key is recorded so); inflight under it becomes ``legacy-inflight``."""
    if LEGACY_KEY not in frame.columns:
        return state
    old = frame[LEGACY_KEY]
    ask = state.is_null() & old.is_not_null()
    if not ask.any():
        return state
    found = store.known_states(target, old.filter(ask).to_list())
    if not found:
        return state
    earlier = pl.select(
        pl.when(pl.lit(ask)).then(
            pl.lit(old).replace_strict(found, default=None, return_dtype=pl.String)
        )
    ).to_series()
    settled = earlier.is_in(["done", "rejected"]).fill_null(False)
    if settled.any() and adopt:
        pairs = zip(
            old.filter(settled).to_list(),
            frame["event_key"].filter(settled).to_list(),
            strict=True,
        )
        store.adopt_keys(target, pairs)
    relabel = pl.when(pl.lit(earlier) == "inflight").then(pl.lit("legacy-inflight"))
    return pl.select(pl.coalesce(pl.lit(state), relabel.otherwise(pl.lit(earlier)))).to_series()
