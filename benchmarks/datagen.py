"""Generate large, believable events Parquet files for benchmarks (deterministic per seed).

    python benchmarks/datagen.py benchmarks/out/events_5m.parquet --rows 5000000

Rows are built with vectorised polars expressions (hashes of the row number, no
per-row Python) and written one row group at a time, so generating 10M rows uses
the memory of one chunk. About 1 row in 10,000 is deliberately bad (invalid email,
future timestamp, reserved `email.*` name, empty name) so validation does real work.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

NAMES = [
    "signed_up",
    "viewed_pricing",
    "started_trial",
    "upgraded_plan",
    "invoice_paid",
    "feature_used",
    "invited_teammate",
    "cancelled_subscription",
]
PLANS = ["free", "starter", "pro", "business"]
PATHS = ["/", "/pricing", "/reports", "/automations", "/settings/billing"]
START_US = int(datetime(2024, 11, 1, tzinfo=UTC).timestamp() * 1_000_000)
SPAN_US = 2 * 365 * 24 * 3600 * 1_000_000
FUTURE_US = int(datetime(2031, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)


def events_chunk(offset: int, rows: int, seed: int, *, contacts: int = 100_000) -> pl.DataFrame:
    """Rows ``offset .. offset+rows`` of the deterministic event stream for ``seed``."""
    idx = pl.int_range(offset, offset + rows, dtype=pl.UInt64)
    h1 = idx.hash(seed)
    h2 = idx.hash(seed + 1)
    user = (h1 % contacts).cast(pl.Int64)
    bad = (h2 % 10_000).cast(pl.Int64)
    name = pl.lit(pl.Series(NAMES)).get((h1 // 7 % len(NAMES)).cast(pl.Int64))
    ts = pl.lit(START_US, pl.Int64) + (h2 % SPAN_US).cast(pl.Int64)
    return pl.select(
        email=pl.when(bad == 1)
        .then(pl.format("user{}@@example.com", user))
        .otherwise(pl.format("user{}@example.com", user)),
        name=pl.when(bad == 2)
        .then(pl.lit("email.opened"))
        .when(bad == 3)
        .then(pl.lit(""))
        .otherwise(name),
        timestamp=pl.when(bad == 4)
        .then(pl.lit(FUTURE_US, pl.Int64))
        .otherwise(ts)
        .cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC"),
        properties=pl.struct(
            plan=pl.lit(pl.Series(PLANS)).get((h2 // 13 % len(PLANS)).cast(pl.Int64)),
            amount_cents=((h1 // 17) % 50_000).cast(pl.Int64),
            page=pl.struct(
                path=pl.lit(pl.Series(PATHS)).get((h1 // 19 % len(PATHS)).cast(pl.Int64))
            ),
        ),
    )


def write_events_parquet(
    path: str | Path,
    rows: int,
    seed: int = 42,
    *,
    contacts: int = 100_000,
    chunk_rows: int = 500_000,
) -> Path:
    """Write ``rows`` generated events to ``path`` (Parquet, zstd), chunk by chunk."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    writer: pq.ParquetWriter | None = None
    try:
        for offset in range(0, rows, chunk_rows):
            table = events_chunk(
                offset, min(chunk_rows, rows - offset), seed, contacts=contacts
            ).to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(str(target), table.schema, compression="zstd")
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        events_chunk(0, 0, seed).write_parquet(target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    out = write_events_parquet(args.path, args.rows, args.seed)
    print(f"wrote {args.rows:,} events to {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
