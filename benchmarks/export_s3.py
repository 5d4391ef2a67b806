"""Export to S3 vs to local disk, in one run: the cost of ``--out s3://…``.

``events`` is exported from the served local Kraiter (a subprocess) into a local
directory and into moto's S3 server on 127.0.0.1 (real S3 HTTP; in this process, so it
shares our interpreter), in alternating rounds; the best round of each is compared, and
the rows are checked equal. Both build the same files locally; the S3 run then uploads
them (obstore) instead of renaming them.

    python benchmarks/export_s3.py                 # 200,000 events, 2 rounds
    python benchmarks/export_s3.py -n 1000000 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from export import KEY, seed, start_server, stop  # noqa: E402
from local_s3 import local_s3  # noqa: E402

from kraiter_sync.api.client import KraiterClient  # noqa: E402
from kraiter_sync.export import ExportOptions, ExportResult, export_async  # noqa: E402


async def _export(url: str, out: str | Path, state: Path) -> tuple[ExportResult, float]:
    shutil.rmtree(state, ignore_errors=True)
    async with KraiterClient(url, KEY) as client:
        started = time.perf_counter()
        result = await export_async(
            client, "events", out, state_dir=state, target="bench", options=ExportOptions()
        )
        return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", "--events", type=int, default=200_000)
    parser.add_argument("--contacts", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kraiter-export-s3-") as tmp:
        work = Path(tmp)
        db = work / "kraiter.db"
        started = time.perf_counter()
        seed(db, args.events, args.contacts)
        print(f"seeded {args.events:,} events in {time.perf_counter() - started:.0f}s")
        proc, url = start_server(db)
        with local_s3("bench") as s3:
            os.environ.update(s3.env | {"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
            best = {"local": float("inf"), "s3": float("inf")}
            rows = {}
            try:
                for r in range(args.rounds):
                    for where in ("local", "s3"):
                        out: str | Path = (
                            work / "out" if where == "local" else f"s3://bench/round{r}"
                        )
                        shutil.rmtree(work / "out", ignore_errors=True)
                        result, secs = asyncio.run(_export(url, out, work / f"state-{where}"))
                        best[where] = min(best[where], secs)
                        rows[where] = result.rows
                        print(
                            f"  round {r + 1} {where}: {result.rows:,} rows, {result.files} "
                            f"files, {secs:.1f}s ({result.rows / secs:,.0f} rows/s)"
                        )
            finally:
                stop(proc)
    assert rows["local"] == rows["s3"] == args.events, rows
    print(
        f"export of {args.events:,} events: local disk {best['local']:.1f}s, S3 (moto) "
        f"{best['s3']:.1f}s -> S3/local {best['s3'] / best['local']:.2f}x (best of "
        f"{args.rounds} round(s) each)"
    )


if __name__ == "__main__":
    main()
