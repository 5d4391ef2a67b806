"""The importer against a served local Kraiter: rate budget use, client ceiling, memory.

Three measurements, each a ratio taken in one run (absolute times on a shared machine
mean little):

1. **Rate budget.** The emulator (a subprocess, real HTTP) limits the tenant to
   ``--limit`` requests/s. ``import`` of ``--events`` events must reach >= 95 % of it
   with < 1 % of requests answered 429, and >= 85 % when the emulator hides its
   ``X-RateLimit-*`` headers (the controller then learns from 429s alone).
2. **Client ceiling.** Unthrottled, the import's events/s against a bare aiohttp loop
   posting the same prepared bodies to the same server at the same concurrency
   (target >= 50 %).
3. **Memory.** Peak RSS of ``import --dry-run`` on 10M rows against 1M rows, each in a
   fresh process (target <= 1.5x). Off by default (``--memory``): it takes minutes.

    python benchmarks/import_throughput.py                 # 1 and 2 at the issue's sizes
    python benchmarks/import_throughput.py --quick         # small sizes, a smoke run
    python benchmarks/import_throughput.py --memory        # also 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import polars as pl

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.datagen import write_events_parquet  # noqa: E402
from kraiter_sync.config import resolve_settings  # noqa: E402
from kraiter_sync.verbs.importer import ImportOptions, import_  # noqa: E402


def start_server(db: Path, *flags: str) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kraiter_sync", "emulator", "--port", "0", "--db", str(db), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"http://\S+", line)
    if not match:
        proc.kill()
        raise SystemExit(f"emulator did not start: {line!r}")
    return proc, match.group(0)


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def write_input(path: Path, events: int, contacts: int) -> pl.DataFrame:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    frame = pl.DataFrame(
        {
            "email": [f"user{i % contacts}@example.com" for i in range(events)],
            "event": [("page_viewed", "signed_up", "invoice_paid")[i % 3] for i in range(events)],
            "timestamp": [start + timedelta(seconds=37 * i) for i in range(events)],
            "plan": [("free", "pro")[i % 2] for i in range(events)],
            "n": list(range(events)),
        }
    )
    frame.write_parquet(path)
    return frame


def run_import(
    url: str, key: str, src: Path, state: Path, *, concurrency: int, rate: float | None = None
) -> tuple[float, dict[str, object]]:
    settings = resolve_settings(api_key=key, base_url=url, state_dir=state, env={})
    started = time.monotonic()
    result = import_(
        [src], settings=settings, options=ImportOptions(concurrency=concurrency, rate=rate)
    )
    return time.monotonic() - started, result.as_dict()


def rate_budget(tmp: Path, *, limit: float, events: int, hide: bool) -> float:
    src = tmp / f"budget-{events}.parquet"
    write_input(src, events, contacts=max(events // 20, 1))
    flags = ["--rate-limit", str(limit)] + (["--hide-rate-headers"] if hide else [])
    proc, url = start_server(tmp / f"budget-{hide}.db", *flags)
    try:
        seconds, result = run_import(
            url, "kr_budget", src, tmp / f"st-budget-{hide}", concurrency=16
        )
    finally:
        stop(proc)
    requests = int(result["requests"])  # type: ignore[call-overload]
    limited = int(result["rate_limited"])  # type: ignore[call-overload]
    achieved = requests / seconds
    share = achieved / limit
    label = "headers hidden" if hide else "with headers "
    target = 0.85 if hide else 0.95
    print(
        f"rate budget ({label}): {requests:,} requests in {seconds:.1f}s = {achieved:.1f}/s "
        f"of {limit:.0f}/s → {share:.1%} (target ≥ {target:.0%}); 429s: {limited} "
        f"({limited / max(requests, 1):.2%}, target < 1%)"
    )
    return share


async def bare_loop(url: str, key: str, bodies: list[bytes], concurrency: int) -> float:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                async with session.post(f"{url}/api/events", data=body) as resp:
                    await resp.read()
                    assert resp.status == 201, resp.status

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(bodies) / (time.monotonic() - started)


async def make_contacts(url: str, key: str, emails: list[str]) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    ids: dict[str, str] = {}
    async with aiohttp.ClientSession(headers=headers) as session:
        for email in emails:
            async with session.post(f"{url}/api/contacts/upsert", json={"email": email}) as r:
                ids[email] = (await r.json())["id"]
    return ids


def client_ceiling(tmp: Path, *, events: int, concurrency: int) -> float:
    src = tmp / f"ceiling-{events}.parquet"
    frame = write_input(src, events, contacts=200)
    proc, url = start_server(tmp / "ceiling.db")
    try:
        ids = asyncio.run(make_contacts(url, "kr_bare", sorted(set(frame["email"]))))
        bodies = [
            json.dumps(
                {
                    "name": row["event"],
                    "contactId": ids[row["email"]],
                    "timestamp": row["timestamp"].strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                    "properties": {"n": row["n"], "plan": row["plan"]},
                },
                separators=(",", ":"),
            ).encode()
            for row in frame.iter_rows(named=True)
        ]
        bare = asyncio.run(bare_loop(url, "kr_bare", bodies, concurrency))
        seconds, result = run_import(
            url, "kr_import", src, tmp / "st-ceiling", concurrency=concurrency
        )
    finally:
        stop(proc)
    ours = int(result["events"]["sent"]) / seconds  # type: ignore[index]
    ratio = ours / bare
    print(
        f"client ceiling: import {ours:,.0f} events/s (whole command, validation included) "
        f"vs bare aiohttp loop {bare:,.0f}/s at concurrency {concurrency} → {ratio:.1%} "
        "(target ≥ 50%)"
    )
    return ratio


def _peak_rss_child(rows: int, tmp: Path) -> int:
    src = tmp / f"mem-{rows}.parquet"
    if not src.exists():
        write_events_parquet(src, rows, seed=1)
    code = (
        "import resource, sys; sys.path.insert(0, {!r});"
        "from kraiter_sync.config import resolve_settings;"
        "from kraiter_sync.verbs.importer import ImportOptions, import_;"
        "s = resolve_settings(state_dir={!r}, env={{}});"
        "import_([{!r}], settings=s, options=ImportOptions(dry_run=True));"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    ).format(str(REPO), str(tmp / f"st-mem-{rows}"), str(src))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def memory(tmp: Path, small: int, big: int) -> float:
    a = _peak_rss_child(small, tmp)
    b = _peak_rss_child(big, tmp)
    ratio = b / a
    print(
        f"memory: import --dry-run peak RSS {b / 1024:,.0f} MiB at {big:,} rows vs "
        f"{a / 1024:,.0f} MiB at {small:,} rows → {ratio:.2f}x (target ≤ 1.5x)"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--limit", type=float, default=100.0)
    parser.add_argument("--events", type=int, default=6000)
    parser.add_argument("--ceiling-events", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--memory", action="store_true", help="also the 1M vs 10M RSS check")
    parser.add_argument("--skip-budget", action="store_true")
    parser.add_argument("--skip-ceiling", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.events, args.ceiling_events = 600, 3000
    with tempfile.TemporaryDirectory(prefix="kraiter-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if not args.skip_budget:
            rate_budget(tmp, limit=args.limit, events=args.events, hide=False)
            rate_budget(tmp, limit=args.limit, events=args.events, hide=True)
        if not args.skip_ceiling:
            client_ceiling(tmp, events=args.ceiling_events, concurrency=args.concurrency)
        if args.memory:
            small, big = (100_000, 1_000_000) if args.quick else (1_000_000, 10_000_000)
            memory(tmp, small, big)


if __name__ == "__main__":
    main()
