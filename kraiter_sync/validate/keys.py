"""``event_key``: a stable identity for an event, and the cross-chunk seen-key tracker.

The key is the first 128 bits (32 hex digits) of SHA-256 over
``identity \\x1f name \\x1f timestamp_iso \\x1f properties_json`` where identity is
``c:<contact_id>`` or ``e:<normalised email>``. SHA-256 is computed by ``polars-hash``
(vectorised, defined by FIPS 180-4, so stable across library versions and processes,
unlike ``pl.Expr.hash``). The separator cannot occur in any part: control characters are
rejected in names and emails and escaped in JSON.
"""

from __future__ import annotations

import polars as pl
import polars_hash as plh

__all__ = ["SEPARATOR", "SeenKeys", "event_keys"]

SEPARATOR = "\x1f"


def event_keys(frame: pl.DataFrame) -> pl.Series:
    """``event_key`` (32 lowercase hex digits) for a frame with ``identity``, ``name``,
    ``timestamp_iso`` and ``properties`` columns."""
    text = frame.select(
        pl.concat_str(
            ["identity", "name", "timestamp_iso", "properties"], separator=SEPARATOR
        ).alias("_k")
    )
    digest = text.select(plh.col("_k").chash.sha2_256().str.slice(0, 32).alias("event_key"))
    return digest.to_series()


class SeenKeys:
    """Event keys already seen in this input, across chunks, in 16 bytes per key.

    Kept as sorted ``UInt128`` runs merged like a binary counter (log-structured), so a
    chunk is checked with binary searches, never a scan of everything seen. Memory grows
    with the number of *distinct* events, which dedup across a whole input needs anyway.
    """

    def __init__(self) -> None:
        self._runs: list[pl.Series] = []
        self.count = 0

    @staticmethod
    def _as_ints(keys: pl.Series) -> pl.Series:
        return keys.str.to_integer(base=16, dtype=pl.UInt128)

    def contains(self, keys: pl.Series) -> pl.Series:
        """Boolean mask: which of ``keys`` (hex event keys) were added before."""
        ints = self._as_ints(keys)
        found = pl.Series([False] * len(keys), dtype=pl.Boolean)
        for run in self._runs:
            idx = run.search_sorted(ints, side="left").cast(pl.Int64)
            idx = idx.clip(0, len(run) - 1)
            found = found | (run.gather(idx) == ints).fill_null(False)
        return found

    def add(self, keys: pl.Series) -> None:
        """Remember ``keys`` (distinct, not yet contained)."""
        if len(keys) == 0:
            return
        run = self._as_ints(keys).sort()
        self.count += len(run)
        while self._runs and len(self._runs[-1]) <= len(run):
            run = pl.concat([self._runs.pop(), run]).sort()
        self._runs.append(run)
