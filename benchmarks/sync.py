"""A nightly contacts sync over N contacts (default 1M) of which 1 % changed.

Claim (issue 7): the run sends only the changed contacts, and apart from the requests
for them costs at most 2x reading and hashing the source, measured in the same run.

1. Write N contacts (Parquet by default, or a DuckDB / SQLite table with ``--source``).
2. *Last night*: leave the state a complete sync would have left: every contact in the
   local Kraiter (inserted straight into its database, each with a real id: sending 1M
   creates would only time the emulator), and in the ledger's change cache with that
   id and the hash the import engine itself computes (through the same read → map →
   validate pipeline), and sync's source-row cache.
3. Change one contact in a hundred, spread over the file.
4. **Baseline**: read the source in chunks and hash every row (polars ``hash_rows``,
   the cheapest change detection there is).
5. **Nightly, without sending**: ``run_sync(..., dry_run=True)``: read, hash, drop
   unchanged rows, validate and plan the rest. The engine still asks Kraiter about the
   changed rows (create or update?); the wall time during which such a request is in
   flight is subtracted: everything but the requests for the changed rows.
6. **Nightly, for real** against the local Kraiter (in-process), counting every request:
   only the changed contacts may be written (one request each), and afterwards Kraiter
   holds exactly the N contacts, the changed ones with their new values. Then the night
   after, nothing changed.

    python benchmarks/sync.py                 # 1M rows, Parquet
    python benchmarks/sync.py --rows 200000 --source duckdb
    python benchmarks/sync.py --source postgresql   # with KRAITER_TEST_POSTGRES_URL set
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import polars as pl

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.config import resolve_settings
from kraiter_sync.config.file import parse_sync_config
from kraiter_sync.emulator import EmulatorConfig, asgi_transport, create_app
from kraiter_sync.emulator.app import key_hash
from kraiter_sync.emulator.store import Store
from kraiter_sync.inputs import InputOptions, KindValidation, prepare_inputs
from kraiter_sync.plan.contacts import contact_hash
from kraiter_sync.state.ledger import Ledger
from kraiter_sync.state.rowcache import RowCache
from kraiter_sync.sync import open_job_source, run_sync
from kraiter_sync.sync.changes import ChangedRows

KEY = "kr_bench_sync"
PLANS = ["free", "pro", "team", "enterprise"]
COUNTRIES = ["FR", "DE", "GB", "US", "ES", "IT", "NL", "SE"]


def contacts(rows: int, changed_every: int | None = None) -> pl.DataFrame:
    i = pl.int_range(0, rows, eager=True)
    frame = pl.DataFrame(
        {
            "email": "user" + i.cast(pl.String) + "@example.com",
            "first_name": "Name" + (i % 9973).cast(pl.String),
            "plan": pl.Series(PLANS).gather(i % 4),
            "country": pl.Series(COUNTRIES).gather(i % 8),
            "seats": (i % 50) + 1,
        }
    )
    if changed_every:
        frame = frame.with_columns(
            pl.when(i % changed_every == 7)
            .then(pl.lit("upgraded"))
            .otherwise(pl.col("plan"))
            .alias("plan")
        )
    return frame


def write_source(frame: pl.DataFrame, kind: str, root: Path) -> str:
    """The source as a job's ``source`` line (plus ``query`` for databases)."""
    if kind == "parquet":
        path = root / "contacts.parquet"
        frame.write_parquet(path, row_group_size=100_000)
        return f'source = "{path}"\n'
    if kind == "duckdb":
        import duckdb

        path = root / "wh.duckdb"
        path.unlink(missing_ok=True)
        conn = duckdb.connect(str(path))
        conn.register("frame", frame.to_arrow())
        conn.execute("CREATE TABLE contacts AS SELECT * FROM frame")
        conn.close()
        return f'source = "duckdb:///{path}"\nquery = "SELECT * FROM contacts"\n'
    if kind == "postgresql":
        import adbc_driver_postgresql.dbapi as adbc

        url = os.environ.get("KRAITER_TEST_POSTGRES_URL", "")
        if not url:
            sys.exit("--source postgresql needs KRAITER_TEST_POSTGRES_URL (source .ci/postgres.sh)")
        with adbc.connect(url, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS bench_sync_contacts")
            cur.adbc_ingest("bench_sync_contacts", frame.to_arrow(), mode="create")
        return f'source = "{url}"\nquery = "SELECT * FROM bench_sync_contacts ORDER BY email"\n'
    path = root / "app.db"
    path.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE contacts (email, first_name, plan, country, seats)")
        conn.executemany("INSERT INTO contacts VALUES (?, ?, ?, ?, ?)", frame.iter_rows())
    return f'source = "sqlite:///{path}"\nquery = "SELECT * FROM contacts"\n'


def seed_state(config: Any, settings: Any, kraiter_db: Path) -> int:
    """Last night's state, as a complete run leaves it: the contacts in the local
    Kraiter (written straight into its database, each with a real id), the engine's
    per-email ids and hashes in the ledger (through the same read → map → validate
    pipeline), and sync's source-row cache."""
    job = config.jobs[0]
    rows_seen = ChangedRows(open_job_source(job), None)
    with contextlib.ExitStack() as stack:
        options = InputOptions(kind="contacts", chunk_size=job.chunk_size)
        inputs = prepare_inputs([rows_seen], options, stack=stack)
        frames = list(KindValidation("contacts", inputs, options).run())
    RowCache(settings.state_dir, job, settings.target).save(rows_seen.rows())
    frame = pl.concat(frames)
    store = Store(kraiter_db)
    tenant = store.tenant(key_hash(KEY))
    now = store.now()
    ids = [store.ids.new("cnt") for _ in range(frame.height)]
    with store.transaction():
        store.conn.executemany(
            "INSERT INTO contacts (tenant, id, email, email_lc, properties, user_id, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (tenant, cid, email, email, props or "{}", user, now, now)
                for cid, email, props, user in zip(
                    ids, frame["email"], frame["properties"], frame["user_id"], strict=True
                )
            ),
        )
    store.close()
    rows = [
        (email, cid, contact_hash(props, user))
        for cid, email, props, user in zip(
            ids, frame["email"], frame["properties"], frame["user_id"], strict=True
        )
    ]
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with Ledger(settings.ledger_path) as ledger:
        ledger.put_contacts(settings.target, rows)
    return len(rows)


def kraiter_contacts(kraiter_db: Path) -> tuple[int, int]:
    """(contacts in the local Kraiter, of which on the changed plan)."""
    with contextlib.closing(sqlite3.connect(kraiter_db)) as conn:
        total, upgraded = conn.execute(
            "SELECT count(*), sum(json_extract(properties, '$.plan') = 'upgraded') FROM contacts"
        ).fetchone()
    return int(total), int(upgraded or 0)


def baseline(config: Any) -> tuple[float, int]:
    """Read the source in chunks and hash every row: the floor for change detection."""
    start = time.perf_counter()
    rows = 0
    with contextlib.closing(open_job_source(config.jobs[0])) as source:
        for chunk in source.iter_chunks():
            chunk.drop("source_file", "source_row").hash_rows()
            rows += chunk.height
    return time.perf_counter() - start, rows


def baseline_sha256(config: Any) -> float:
    """Reading and hashing each row as a per-row cache in Python would (reference only)."""
    start = time.perf_counter()
    with contextlib.closing(open_job_source(config.jobs[0])) as source:
        for chunk in source.iter_chunks():
            for row in chunk.drop("source_file", "source_row").iter_rows():
                hashlib.sha256(repr(row).encode()).digest()
    return time.perf_counter() - start


class Counting(httpx.AsyncBaseTransport):
    """Counts requests by method, and the wall time during which any was in flight
    (what "not counting requests" subtracts)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.methods: Counter[str] = Counter()
        self.in_flight = 0
        self.busy_since = 0.0
        self.busy_s = 0.0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.methods[request.method] += 1
        if not self.in_flight:
            self.busy_since = time.perf_counter()
        self.in_flight += 1
        try:
            return await self.inner.handle_async_request(request)
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self.busy_s += time.perf_counter() - self.busy_since

    async def aclose(self) -> None:
        await self.inner.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--source", choices=["parquet", "duckdb", "sqlite", "postgresql"], default="parquet"
    )
    parser.add_argument("--repeat", type=int, default=2, help="best of N for the timings")
    args = parser.parse_args()
    changed_every = 100

    with tempfile.TemporaryDirectory(prefix="kraiter-bench-sync-") as tmp:
        root = Path(tmp)
        settings = resolve_settings(
            api_key=KEY, base_url="http://127.0.0.1:9", state_dir=root / "state", env={}
        )
        source_line = write_source(contacts(args.rows), args.source, root)
        job = f'[jobs.contacts]\n{source_line}kind = "contacts"\n'
        config = parse_sync_config(job, root / "kraiter-sync.toml")
        db = root / "kraiter.db"
        t0 = time.perf_counter()
        seeded = seed_state(config, settings, db)
        print(
            f"seeded the local Kraiter and the change caches with {seeded:,} contacts "
            f"in {time.perf_counter() - t0:.1f} s"
        )

        changed_frame = contacts(args.rows, changed_every)
        changed = int((changed_frame["plan"] == "upgraded").sum())
        write_source(changed_frame, args.source, root)

        transports: list[Counting] = []

        def factory(controller: Any) -> KraiterClient:
            app = create_app(EmulatorConfig(db_path=str(db)))
            transport = Counting(asgi_transport(app, close_app=True))
            transports.append(transport)
            return KraiterClient(
                "http://local.kraiter", KEY, transport=transport, observer=controller
            )

        bases, dry = [], []
        for _ in range(args.repeat):  # interleaved: a busy machine slows both alike
            bases.append(baseline(config)[0])
            start = time.perf_counter()
            result = run_sync(config, settings=settings, dry_run=True, client_factory=factory)
            # the engine still reads Kraiter for the changed rows (create or update?)
            dry.append(time.perf_counter() - start - transports[-1].busy_s)
            assert result.exit_code == 0, result.as_dict()
            job_result = result.jobs[0]
            assert job_result.unchanged_rows == args.rows - changed, job_result.as_dict()
        dry_s = min(dry)
        base_s = min(bases)
        sha_s = baseline_sha256(config)

        reads_before = sum(t.methods["GET"] for t in transports)
        start = time.perf_counter()
        real = run_sync(config, settings=settings, client_factory=factory)
        real_s = time.perf_counter() - start
        assert real.exit_code == 0, real.as_dict()
        counts = real.jobs[0].counts["contacts"]
        unchanged = real.jobs[0].unchanged_rows + counts["unchanged"]
        writes = sum(n for t in transports for m, n in t.methods.items() if m != "GET")
        reads = sum(t.methods["GET"] for t in transports) - reads_before

        quiet = []
        for _ in range(args.repeat):  # the night after: nothing changed at all
            start = time.perf_counter()
            again = run_sync(config, settings=settings, client_factory=factory)
            quiet.append(time.perf_counter() - start)
            assert again.jobs[0].unchanged_rows == args.rows, again.as_dict()
        quiet_writes = sum(n for t in transports for m, n in t.methods.items() if m != "GET")
        quiet_s = min(quiet)
        in_kraiter, upgraded = kraiter_contacts(db)

    print(f"{args.rows:,} contacts from {args.source}, {changed:,} changed (1 in {changed_every})")
    print(f"baseline  read + hash every row           {base_s:7.2f} s   (best of {args.repeat})")
    print(
        f"nightly   everything but the requests     {dry_s:7.2f} s   "
        f"{dry_s / base_s:5.2f}x baseline (best of {args.repeat}; medians "
        f"{statistics.median(dry):.2f} s / {statistics.median(bases):.2f} s = "
        f"{statistics.median(dry) / statistics.median(bases):.2f}x)"
    )
    print(
        f"nightly   for real (local Kraiter)        {real_s:7.2f} s   "
        f"sent {counts['sent']:,}, unchanged {unchanged:,}, write requests {writes:,}, "
        f"reads {reads:,}"
    )
    print(
        f"nightly   nothing changed                 {quiet_s:7.2f} s   "
        f"{quiet_s / base_s:5.2f}x baseline, write requests {quiet_writes - writes}"
    )
    print(
        f"(reference: read + sha256 of every row in Python: {sha_s:.2f} s; "
        f"the nightly run is {dry_s / sha_s:.2f}x that)"
    )
    print(f"local Kraiter afterwards: {in_kraiter:,} contacts, {upgraded:,} on the changed plan")
    ok = counts["sent"] == changed == writes and unchanged == args.rows - changed
    ok = ok and quiet_writes == writes and (in_kraiter, upgraded) == (args.rows, changed)
    print(f"only the changed contacts were sent: {'yes' if ok else 'NO'}")
    print(f"within 2x of read + hash: {'yes' if dry_s <= 2 * base_s else 'NO'}")


if __name__ == "__main__":
    main()
