"""How fast the ledger records event keys: mark_inflight + mark_done in batches.

Prints keys/s for the ledger next to a baseline (a bare executemany INSERT of the same
rows into a plain table in the same kind of database) measured in the same run, and
the ratio. Default 1M keys in batches of 10k; ``--keys`` for other sizes.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kraiter_sync.state.ledger import Ledger

TARGET = "http://127.0.0.1:1#bench"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    opts = parser.parse_args()
    keys = [f"{i:032x}" for i in range(opts.keys)]
    with tempfile.TemporaryDirectory() as tmp:
        base = sqlite3.connect(Path(tmp) / "base.db", isolation_level=None)
        base.execute("PRAGMA journal_mode=WAL")
        base.execute("PRAGMA synchronous=NORMAL")
        base.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID")
        start = time.perf_counter()
        for i in range(0, len(keys), opts.batch):
            chunk = keys[i : i + opts.batch]
            base.execute("BEGIN")
            base.executemany("INSERT INTO t VALUES (?, NULL)", [(k,) for k in chunk])
            base.execute("COMMIT")
        baseline = time.perf_counter() - start
        base.close()

        led = Ledger(Path(tmp) / "ledger.db")
        start = time.perf_counter()
        for i in range(0, len(keys), opts.batch):
            chunk = keys[i : i + opts.batch]
            led.mark_inflight(TARGET, chunk, run_id=1)
            led.mark_done(TARGET, [(k, "evt_" + k[:8]) for k in chunk])
        marking = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(0, len(keys), opts.batch):
            led.known_states(TARGET, keys[i : i + opts.batch])
        lookup = time.perf_counter() - start
        led.close()
    n = opts.keys
    print(f"keys: {n:,} in batches of {opts.batch:,}")
    print(f"baseline insert          {baseline:6.2f} s  {n / baseline:>10,.0f} keys/s")
    print(f"mark_inflight+mark_done  {marking:6.2f} s  {n / marking:>10,.0f} keys/s")
    print(f"known_states             {lookup:6.2f} s  {n / lookup:>10,.0f} keys/s")
    print(f"ratio ledger marking / baseline insert: {baseline / marking:.2f}")


if __name__ == "__main__":
    main()
