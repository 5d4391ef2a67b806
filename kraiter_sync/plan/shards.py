"""Which shard of an import a row belongs to: a stable hash of its contact's email.

Every event of one contact, and so every event key, falls in one shard, the same on
every machine and in every version (SHA-256, not ``pl.Expr.hash``): the workers of one
import (``state.work``) each send the shards they hold and never the same contact.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl
import polars_hash as plh

__all__ = ["in_shard", "rows_elsewhere", "shard_counts"]

_KEY = "__shard_key"
_SHARD = "__shard"


def _with_shard(frame: pl.DataFrame, shards: int) -> pl.DataFrame:
    # an event names its contact by email or, without one, by Kraiter's id
    who = [c for c in ("email", "contact_id") if c in frame.columns]
    keyed = frame.with_columns(pl.coalesce([*who, pl.lit("")]).alias(_KEY))
    digest = plh.col(_KEY).chash.sha2_256().str.slice(0, 8).str.to_integer(base=16)
    return keyed.with_columns((digest % shards).cast(pl.Int64).alias(_SHARD)).drop(_KEY)


def in_shard(frame: pl.DataFrame, shard: int, shards: int) -> pl.DataFrame:
    """The rows of ``frame`` (``email``, or ``contact_id`` where it has no email) that
    belong to ``shard``."""
    return _with_shard(frame, shards).filter(pl.col(_SHARD) == shard).drop(_SHARD)


def shard_counts(frame: pl.DataFrame, shards: int) -> dict[int, int]:
    """Rows per shard."""
    counts = _with_shard(frame, shards).group_by(_SHARD).len()
    return {int(s): int(n) for s, n in counts.select(_SHARD, "len").iter_rows()}


def rows_elsewhere(frames: Iterable[pl.DataFrame], mine: set[int], shards: int) -> int:
    """Rows of ``frames`` in shards other than ``mine`` (other workers sent them)."""
    total = 0
    for frame in frames:
        who = frame.select([c for c in ("email", "contact_id") if c in frame.columns])
        total += sum(n for s, n in shard_counts(who, shards).items() if s not in mine)
    return total
