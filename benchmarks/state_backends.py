"""The ledger on PostgreSQL vs SQLite: chunk mark-inflight and mark-done throughput, and
how many times the API rate it serves that is.

An import marks each chunk of event keys inflight (one transaction) before sending it,
then marks them done as answers come back, one key per request: the ledger must record
keys far faster than Kraiter accepts requests, or it becomes the bottleneck. This script
runs the same chunks through both stores in one run and prints keys/s for each, their
ratio, and each one's multiple of ``--api-rate`` (the emulator limit of the workers
benchmarks, 200 requests/s); the requirement is >= 20x.

    source .ci/postgres.sh   # or pass --postgres postgresql://...
    python benchmarks/state_backends.py [--keys 200000] [--chunk 500] [--api-rate 200]

The test server of ``.ci/postgres.sh`` runs with fsync off: a production server with
synchronous commits pays one WAL flush per transaction (two per chunk) on top.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from kraiter_sync.state.backend import open_state
from kraiter_sync.state.store import StateStore

TARGET = "https://api.kraiter.com#bench"
REQUIRED = 20


def _mark(store: StateStore, keys: list[str], chunk: int) -> float:
    """Seconds to mark every key inflight then done, chunk by chunk (as an import does)."""
    start = time.perf_counter()
    for i in range(0, len(keys), chunk):
        part = keys[i : i + chunk]
        store.mark_inflight(TARGET, part, run_id=1)
        store.mark_done(TARGET, [(k, "evt_" + k[:12]) for k in part])
    return time.perf_counter() - start


def _lookup(store: StateStore, keys: list[str], chunk: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(keys), chunk):
        store.known_states(TARGET, keys[i : i + chunk])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--chunk", type=int, default=500, help="the import's batch size")
    parser.add_argument("--api-rate", type=float, default=200.0, help="requests/s served")
    parser.add_argument("--postgres", default=os.environ.get("KRAITER_TEST_POSTGRES_URL"))
    opts = parser.parse_args()
    if not opts.postgres:
        parser.error("pass --postgres URL or `source .ci/postgres.sh` first")
    keys = [secrets.token_hex(16) for _ in range(opts.keys)]
    schema = f"bench_{secrets.token_hex(4)}"
    sep = "&" if "?" in opts.postgres else "?"
    results: dict[str, tuple[float, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, url in (
                ("sqlite", None),
                ("postgresql", f"{opts.postgres}{sep}schema={schema}"),
            ):
                store = open_state(Path(tmp) / name, url)
                try:
                    results[name] = (
                        _mark(store, keys, opts.chunk),
                        _lookup(store, keys, opts.chunk),
                    )
                    assert store.count_states(TARGET) == {"done": len(keys)}
                finally:
                    store.close()
    finally:
        with psycopg.connect(opts.postgres.split("?", 1)[0], autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    n = opts.keys
    print(f"keys: {n:,} in chunks of {opts.chunk:,}; API rate served: {opts.api_rate:,.0f}/s")
    for name, (marking, lookup) in results.items():
        rate = n / marking
        print(
            f"{name:<10}  mark_inflight+mark_done {rate:>9,.0f} keys/s "
            f"({rate / opts.api_rate:,.0f}x the API rate)   known_states {n / lookup:>9,.0f} keys/s"
        )
    pg, lite = results["postgresql"][0], results["sqlite"][0]
    print(f"ratio marking PostgreSQL / SQLite: {lite / pg:.2f}")
    worst = n / max(pg, lite) / opts.api_rate
    verdict = "ok" if worst >= REQUIRED else "TOO SLOW"
    print(f"slower backend: {worst:,.0f}x the API rate (required >= {REQUIRED}x): {verdict}")


if __name__ == "__main__":
    main()
