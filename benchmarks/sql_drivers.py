"""Which PostgreSQL driver should sql.py read warehouses through? Measure, don't guess.

Loads N rows (default 1M) of contact-shaped data into a scratch table, then reads it back
in chunks of polars DataFrames through each candidate, the way ``sql.py`` must (bounded
memory: a stream of chunks, never the whole result at once):

- ADBC (adbc-driver-postgresql): libpq COPY BINARY → Arrow record batches
- connectorx: Rust binary protocol → ``arrow_stream`` record batches
- psycopg 3: a server-side (named) cursor, ``fetchmany`` → ``pl.DataFrame`` rows

Prints seconds, rows/s and peak RSS growth per driver, each against the fastest. Each
driver is measured in its own subprocess so their memory peaks do not mix.

    # with a server already running:
    KRAITER_TEST_POSTGRES_URL=postgresql://… python benchmarks/sql_drivers.py [--rows 1000000]
    # or let the script start a throwaway one (needs .ci/postgres.sh's prerequisites):
    python benchmarks/sql_drivers.py --start-server
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

CHUNK = 100_000
TABLE = "bench_contacts"
QUERY = f"SELECT email, first_name, plan, score, active, updated_at FROM {TABLE}"
DRIVERS = ("adbc", "connectorx", "psycopg")


def load(url: str, rows: int) -> None:
    """(Re)create the table with ``rows`` rows, generated server-side (fast, no transfer)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        have = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE tablename = %s", (TABLE,)
        ).fetchone()
        if have and have[0]:
            count = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
            if count and count[0] == rows:
                return
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(
            f"""
            CREATE TABLE {TABLE} AS
            SELECT 'user' || g || '@example.com' AS email,
                   'Name' || (g % 997) AS first_name,
                   (ARRAY['free','pro','team'])[1 + g % 3] AS plan,
                   (g % 1000) / 10.0 AS score,
                   g % 2 = 0 AS active,
                   timestamptz '2026-01-01' + g * interval '1 second' AS updated_at
            FROM generate_series(1, {rows}) AS g
            """
        )
        conn.execute(f"ANALYZE {TABLE}")


def read_adbc(url: str) -> int:
    import adbc_driver_postgresql.dbapi as adbc

    total = 0
    with adbc.connect(url) as conn, conn.cursor() as cur:
        cur.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(16 << 20)})
        cur.execute(QUERY)
        reader = cur.fetch_record_batch()
        for batch in reader:
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            total += frame.height
    return total


def read_connectorx(url: str) -> int:
    import connectorx as cx

    total = 0
    reader = cx.read_sql(url, QUERY, return_type="arrow_stream", batch_size=CHUNK)
    for batch in reader:
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        total += frame.height
    return total


def read_psycopg(url: str) -> int:
    import psycopg

    total = 0
    with psycopg.connect(url) as conn, conn.cursor(name="bench") as cur:
        cur.itersize = CHUNK
        cur.execute(QUERY)
        names: list[str] | None = None
        while rows := cur.fetchmany(CHUNK):
            if names is None:
                names = [d.name for d in cur.description or []]
            frame = pl.DataFrame(rows, schema=names, orient="row")
            total += frame.height
    return total


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(driver: str, url: str) -> None:
    # import the driver and polars before measuring, so RSS growth is the data's
    {"adbc": lambda: __import__("adbc_driver_postgresql.dbapi"),
     "connectorx": lambda: __import__("connectorx"),
     "psycopg": lambda: __import__("psycopg")}[driver]()  # fmt: skip
    before = _rss_mib()
    start = time.perf_counter()
    rows = {"adbc": read_adbc, "connectorx": read_connectorx, "psycopg": read_psycopg}[driver](url)
    seconds = time.perf_counter() - start
    print(json.dumps({"rows": rows, "seconds": seconds, "rss_mib": _rss_mib() - before}))


def measure(driver: str, url: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", driver],
        env={**os.environ, "KRAITER_TEST_POSTGRES_URL": url},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def start_server() -> tuple[str, subprocess.Popen[str]]:
    script = Path(__file__).resolve().parent.parent / ".ci" / "postgres.sh"
    proc = subprocess.Popen(
        ["bash", "-c", f'source "{script}"; echo "$KRAITER_TEST_POSTGRES_URL"; read -r _'],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc.stdout.readline().strip(), proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2, help="best of N per driver")
    parser.add_argument("--start-server", action="store_true")
    parser.add_argument("--child", choices=DRIVERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    url = os.environ.get("KRAITER_TEST_POSTGRES_URL", "")
    if args.child:
        child(args.child, url)
        return
    server = None
    if args.start_server:
        url, server = start_server()
    if not url:
        sys.exit("set KRAITER_TEST_POSTGRES_URL or pass --start-server")
    try:
        load(url, args.rows)
        results = {}
        for driver in DRIVERS:
            runs = [measure(driver, url) for _ in range(args.repeat)]
            best = min(runs, key=lambda r: r["seconds"])
            assert best["rows"] == args.rows, (driver, best)
            results[driver] = best
        fastest = min(r["seconds"] for r in results.values())
        print(f"{args.rows:,} rows, chunks of {CHUNK:,}, best of {args.repeat}")
        print(
            f"{'driver':<11} {'seconds':>8} {'rows/s':>11} {'x fastest':>10} {'peak RSS +MiB':>14}"
        )
        for driver, r in results.items():
            print(
                f"{driver:<11} {r['seconds']:8.2f} {r['rows'] / r['seconds']:11,.0f} "
                f"{r['seconds'] / fastest:10.2f} {r['rss_mib']:14.0f}"
            )
    finally:
        if server is not None and server.stdin is not None:
            server.stdin.close()
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
