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

from kraiter_sync.validate._series import full

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

    Each key is held as two ``UInt64`` halves in sorted runs merged like a binary counter
    (log-structured), so a chunk is checked with binary searches of its *sorted* keys
    (cache friendly), never a scan or a rebuilt hash table of everything seen. Memory
    grows with the number of distinct events, which dedup across a whole input needs.
    """

    def __init__(self) -> None:
        self._runs: list[pl.DataFrame] = []
        self.count = 0

    @staticmethod
    def halves(keys: pl.Series) -> pl.DataFrame:
        """Hex event keys → sorted frame of ``hi``/``lo`` UInt64 halves plus original ``pos``."""
        frame = pl.DataFrame(
            {
                "hi": keys.str.slice(0, 16).str.to_integer(base=16, dtype=pl.UInt64),
                "lo": keys.str.slice(16, 16).str.to_integer(base=16, dtype=pl.UInt64),
                "pos": pl.int_range(0, len(keys), dtype=pl.UInt32, eager=True),
            }
        )
        return frame.sort("hi", "lo")

    def contains(self, keys: pl.Series | pl.DataFrame) -> pl.Series:
        """Boolean mask: which of ``keys`` (hex event keys, or their :meth:`halves`) were
        added before, in the original order."""
        q = keys if isinstance(keys, pl.DataFrame) else self.halves(keys)
        found = full(q.height, False, pl.Boolean)
        if not self._runs or not q.height:
            return found
        hit = full(q.height, False, pl.Boolean)
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
        return found.scatter(q["pos"], hit)

    def add(self, keys: pl.Series | pl.DataFrame) -> None:
        """Remember ``keys`` (distinct, not yet contained; hex keys or sorted :meth:`halves`)."""
        if len(keys) == 0:
            return
        q = keys if isinstance(keys, pl.DataFrame) else self.halves(keys)
        run = q.drop("pos")
        self.count += run.height
        while self._runs and self._runs[-1].height <= run.height:
            run = self._runs.pop().merge_sorted(run, key="hi")
        self._runs.append(run)
