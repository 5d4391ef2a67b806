"""How fast the served local Kraiter takes events, against a no-op route on the same server.

Starts ``kraiter-sync emulator`` (uvicorn, real HTTP, a SQLite file in WAL mode) in a
subprocess, then drives it with aiohttp at a fixed concurrency: N ``POST /api/events``
(each persisted and committed before the answer) and N ``POST /_emulator/noop`` with
the same bodies (the server's bare HTTP cost), alternating rounds in the same run.
Prints both rates and their ratio; the target is >= 40 %.

    python benchmarks/emulator_throughput.py            # 4,000 requests per round
    python benchmarks/emulator_throughput.py -n 20000 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
KEY = "kr_benchmark"


def start_server(db: Path) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kraiter_sync", "emulator", "--port", "0", "--db", str(db)],
        stdout=subprocess.PIPE,
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


def bodies(n: int, offset: int) -> list[bytes]:
    return [
        json.dumps(
            {
                "name": "order_placed",
                "email": f"user{(offset + i) % 500}@example.com",
                "timestamp": "2024-03-01T12:00:00.000Z",
                "properties": {"orderId": f"o-{offset + i}", "total": 12.5, "gift": False},
            }
        ).encode()
        for i in range(n)
    ]


async def drive(url: str, path: str, payloads: list[bytes], concurrency: int) -> float:
    """Requests per second for posting every payload, ``concurrency`` in flight."""
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    queue = iter(payloads)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            for body in queue:
                async with session.post(url + path, data=body) as resp:
                    await resp.read()
                    if resp.status not in (200, 201):
                        raise SystemExit(f"{path}: HTTP {resp.status}")

        # Warm the connection pool so both routes start from open connections.
        async with session.post(url + "/_emulator/noop", data=b"{}") as resp:
            await resp.read()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(payloads) / (time.perf_counter() - started)


async def run(url: str, n: int, concurrency: int, rounds: int) -> None:
    events_rates, noop_rates = [], []
    for r in range(rounds):
        payloads = bodies(n, r * n)
        noop_rates.append(await drive(url, "/_emulator/noop", payloads, concurrency))
        events_rates.append(await drive(url, "/api/events", payloads, concurrency))
    noop, events = max(noop_rates), max(events_rates)
    parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
    print(f"requests per round: {n}, concurrency: {concurrency}, rounds: {rounds} (best of)")
    print(f"server HTTP parser: {parser}")
    print(f"no-op route      : {noop:9.0f} requests/s")
    print(f"POST /api/events : {events:9.0f} requests/s (persisted to SQLite, WAL)")
    print(f"ratio            : {events / noop:9.1%}  (target >= 40 %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=4000, help="requests per route per round")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp) / "bench.db")
        try:
            asyncio.run(run(url, args.n, args.concurrency, args.rounds))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
