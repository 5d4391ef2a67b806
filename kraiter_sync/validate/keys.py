"""``event_key``: a stable identity for an event, and the cross-chunk seen-key tracker.

The key is XXH3-128 (32 lowercase hex digits, xxHash's canonical big-endian digest) of
``identity \x1f name \x1f timestamp_iso \x1f properties_json`` where identity is
``c:<contact_id>`` or ``e:<normalised email>``. XXH3's output is frozen by its
specification (xxHash ≥ 0.8.0), so the key is stable across library versions and
processes, unlike ``pl.Expr.hash``; any tool can recompute it, e.g. Python's ``xxhash``:
``xxh3_128_hexdigest(text.encode())``. It is computed vectorised by ``polars-hash``; SHA-256
was measured 6x slower here and the key needs no cryptographic strength (it identifies
the user's own rows; 128 bits make an accidental collision negligible). The separator
cannot occur in any part: control characters are rejected in names and emails and
escaped in JSON.

``properties_json`` is the *canonical form* of properties (:func:`canonical_json`): one
flat JSON object, keys sorted, compact, no nulls, values typed as JSON types them, so
``1``, ``1.0``, ``true`` and ``"1"`` are four different texts. The validator's output is
a fixed point of :func:`canonical_json`, and every decision that something is already in
Kraiter (verification after an ambiguous failure, recovery of inflight keys, reconcile's
event and contact diffs) compares canonical forms, never Python values (where
``1 == 1.0 == True``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import polars as pl
import polars_hash as plh

from kraiter_sync.validate._series import full

__all__ = [
    "SEPARATOR",
    "SeenKeys",
    "canonical_json",
    "canonical_value",
    "event_instant",
    "event_keys",
    "key_parts",
    "same_event",
]

SEPARATOR = "\x1f"
_TWO64 = 2**64


def canonical_value(value: Any) -> str:
    """One property value in canonical form: its compact JSON text (``1``, ``1.0``,
    ``true`` and ``"1"`` differ)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def canonical_json(properties: Mapping[str, Any] | str | None) -> str:
    """Properties (a mapping, or JSON text) in canonical form: the one equality of
    properties everywhere. Keys sorted, nulls dropped, compact, non-ASCII kept; the
    validator's ``properties`` column is already in this form (a fixed point)."""
    obj = json.loads(properties) if isinstance(properties, str) else properties
    if not obj:
        return "{}"
    return canonical_value({k: v for k, v in obj.items() if v is not None})


def event_instant(value: str) -> datetime | None:
    """An event's ISO 8601 timestamp as an instant (None when it is not one)."""
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None


def same_event(
    name: str, timestamp: str, properties: Mapping[str, Any] | str | None, remote: Mapping[str, Any]
) -> bool:
    """Whether a remote event (as Kraiter lists it) is the event of this name, ISO
    timestamp and properties: same name, instant (to the ms) and canonical properties
    (types count). The one test of "Kraiter holds it already" (the engine's verification,
    the lost-state sample)."""
    if remote.get("name", remote.get("event")) != name:
        return False
    mine, theirs = event_instant(timestamp), event_instant(str(remote.get("timestamp", "")))
    if mine is None or theirs is None:
        return False
    if abs((mine - theirs).total_seconds()) >= 0.001:
        return False
    return canonical_json(properties) == canonical_json(remote.get("properties"))


def _key_exprs(text: str) -> list[pl.Expr]:
    """``hi``/``lo`` UInt64 halves and the ``event_key`` hex of XXH3-128 of ``text``.

    The hex comes from the big-endian binary digest through ``bin.encode("hex")`` (one
    vectorised pass; formatting the integer in 16-bit limbs through a lookup table cost
    4x more). The halves come from the UInt128 digest; hashing twice in one ``select``
    costs less than slicing the binary, and both hashes run in parallel.
    """
    h = plh.col(text).nchash
    digest = h.xxh3_128()
    return [
        (digest // pl.lit(_TWO64, pl.UInt128)).cast(pl.UInt64).alias("hi"),
        digest.cast(pl.UInt64, wrap_numerical=True).alias("lo"),
        h.xxh3_128(return_binary=True, byte_order="big")
        .bin.encode("hex")
        .cast(pl.String)
        .alias("event_key"),
    ]


def hash_text(text: pl.Series) -> pl.DataFrame:
    """XXH3-128 of each string → ``hi``/``lo`` UInt64 halves and ``event_key`` hex."""
    return text.alias("t").to_frame().lazy().select(_key_exprs("t")).collect()


def key_parts(frame: pl.DataFrame) -> pl.DataFrame:
    """``event_key``, ``hi``, ``lo`` for a canonical frame (``email``, ``contact_id``,
    ``name``, ``timestamp_iso``, ``properties``)."""
    # identity prefix from two literals and the id from a coalesce: one string pass fewer
    # than concatenating "c:"/"e:" onto each column first (same text, same nulls)
    prefix = pl.when(pl.col("contact_id").is_not_null()).then(pl.lit("c:")).otherwise(pl.lit("e:"))
    sep = pl.lit(SEPARATOR)
    return (
        frame.lazy()
        .select(
            pl.concat_str(
                [
                    prefix,
                    pl.coalesce(pl.col("contact_id"), pl.col("email")),
                    sep,
                    pl.col("name"),
                    sep,
                    pl.col("timestamp_iso"),
                    sep,
                    pl.col("properties"),
                ]
            ).alias("_k")
        )
        .select(_key_exprs("_k"))
        .collect()
    )


def event_keys(frame: pl.DataFrame) -> pl.Series:
    """Just the ``event_key`` column of :func:`key_parts`."""
    return key_parts(frame)["event_key"]


class SeenKeys:
    """Event keys already seen in this input, across chunks.

    Each key is held as two ``UInt64`` halves in sorted runs merged like a binary counter
    (log-structured, 16 bytes a key), so a chunk is checked with binary searches of its
    *sorted* keys. Memory grows with the number of distinct events, which dedup across a
    whole input needs.
    """

    def __init__(self) -> None:
        self._runs: list[pl.DataFrame] = []
        self._count = 0

    @property
    def count(self) -> int:
        """How many distinct keys are remembered."""
        return self._count

    def mark(self, hi: pl.Series, lo: pl.Series) -> pl.Series:
        """Per row (in order): True when its key was not seen before, in earlier calls or
        earlier rows of this one; those keys are remembered. The halves of :func:`key_parts`."""
        halves = self.sorted_halves(hi, lo)
        # sorted by key (stable), so repeats are adjacent and the first is the earliest row
        send = halves.select(
            ~(
                (pl.col("hi") == pl.col("hi").shift(1)) & (pl.col("lo") == pl.col("lo").shift(1))
            ).fill_null(False)
        ).to_series()
        send = send & ~self.contains_sorted(halves)
        self.add(halves.filter(send))
        return full(len(hi), False, pl.Boolean).scatter(halves["pos"], send)

    @staticmethod
    def halves(keys: pl.Series) -> pl.DataFrame:
        """Hex event keys → sorted frame of ``hi``/``lo`` UInt64 halves plus original ``pos``."""
        return SeenKeys.sorted_halves(
            keys.str.slice(0, 16).str.to_integer(base=16, dtype=pl.UInt64),
            keys.str.slice(16, 16).str.to_integer(base=16, dtype=pl.UInt64),
        )

    @staticmethod
    def sorted_halves(hi: pl.Series, lo: pl.Series) -> pl.DataFrame:
        """The tracker's query form: halves sorted by key, with each row's original ``pos``."""
        frame = pl.DataFrame(
            {"hi": hi, "lo": lo, "pos": pl.int_range(0, len(hi), dtype=pl.UInt32, eager=True)}
        )
        # one-key sort is much faster; a second key only matters when two different keys
        # share their top 64 bits, which is checked for and then handled exactly
        by_hi = frame.sort("hi", maintain_order=True)
        mixed = by_hi.select(
            ((pl.col("hi") == pl.col("hi").shift(1)) & (pl.col("lo") != pl.col("lo").shift(1)))
            .fill_null(False)
            .any()
        ).item()
        return frame.sort("hi", "lo", maintain_order=True) if mixed else by_hi

    def contains(self, keys: pl.Series | pl.DataFrame) -> pl.Series:
        """Boolean mask: which of ``keys`` (hex event keys, or their :meth:`sorted_halves`)
        were added before, in the original order."""
        q = keys if isinstance(keys, pl.DataFrame) else self.halves(keys)
        return full(q.height, False, pl.Boolean).scatter(q["pos"], self.contains_sorted(q))

    def contains_sorted(self, q: pl.DataFrame) -> pl.Series:
        """Like :meth:`contains`, aligned with the rows of the sorted query frame ``q``."""
        hit = full(q.height, False, pl.Boolean)
        if not self._runs or not q.height:
            return hit
        for run in self._runs:
            r_hi, r_lo = run["hi"], run["lo"]
            idx = r_hi.search_sorted(q["hi"], side="left").cast(pl.Int64).clip(0, len(run) - 1)
            same_hi = (r_hi.gather(idx) == q["hi"]).fill_null(False)
            exact = same_hi & (r_lo.gather(idx) == q["lo"]).fill_null(False)
            hit = hit | exact
            tie = same_hi & ~exact  # another key with the same top 64 bits: check the run
            if tie.any():
                his, los = r_hi.to_list(), r_lo.to_list()
                extra = []
                for i, h, lo in zip(
                    tie.arg_true().to_list(),
                    q["hi"].filter(tie).to_list(),
                    q["lo"].filter(tie).to_list(),
                    strict=True,
                ):
                    j = int(idx[i])
                    while j < len(his) and his[j] == h and los[j] != lo:
                        j += 1
                    if j < len(his) and his[j] == h:
                        extra.append(i)
                if extra:
                    hit = hit.scatter(extra, True)
        return hit

    def add(self, keys: pl.Series | pl.DataFrame) -> None:
        """Remember ``keys`` (distinct, not yet contained; hex keys or sorted :meth:`halves`)."""
        if len(keys) == 0:
            return
        q = keys if isinstance(keys, pl.DataFrame) else self.halves(keys)
        run = q.drop("pos")
        self._count += run.height
        while self._runs and self._runs[-1].height <= run.height:
            run = self._runs.pop().merge_sorted(run, key="hi")
        self._runs.append(run)
