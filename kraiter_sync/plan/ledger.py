"""What the ledger says is left to send: the diff of an input against the state store.

* :func:`contacts_to_send` — contacts whose hash differs from what the ledger last
  wrote for their email (unchanged ones cost nothing on re-runs).
* :func:`split_events` — a chunk of events split by what the ledger knows of each key:
  to send, left ``inflight`` by a killed run (verify first), done, rejected before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from kraiter_sync.plan.contacts import contact_hashes
from kraiter_sync.state.store import StateStore

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
    todo = joined.filter(pl.col("_cached").ne_missing(pl.col("_hash")))
    return todo, frame.height - todo.height


@dataclass
class EventSplit:
    """One chunk of events by ledger state (``contact_id`` filled from ``ids``)."""

    todo: pl.DataFrame
    inflight: pl.DataFrame
    done: int
    rejected: int


def split_events(
    store: StateStore,
    target: str,
    frame: pl.DataFrame,
    ids: Mapping[str, str],
    *,
    resend_rejected: bool = False,
) -> EventSplit:
    """Split a chunk of canonical events by what the ledger knows of each key; with
    ``resend_rejected`` keys Kraiter refused before are sent again (``retry``)."""
    states = store.known_states(target, frame["event_key"].to_list())
    state = frame["event_key"].replace_strict(states, default=None, return_dtype=pl.String)
    if resend_rejected:
        state = state.replace("rejected", None)
    if ids:
        resolved = frame["email"].replace_strict(dict(ids), default=None, return_dtype=pl.String)
        frame = frame.with_columns(pl.coalesce(pl.col("contact_id"), resolved).alias("contact_id"))
    return EventSplit(
        todo=frame.filter(state.is_null()),
        inflight=frame.filter(state == "inflight"),
        done=int((state == "done").sum()),
        rejected=int((state == "rejected").sum()),
    )
