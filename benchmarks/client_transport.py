"""Requests/s of KraiterClient.track_event over httpx's own transport vs AiohttpTransport.

A trivial aiohttp server (answering ``POST /api/events`` with a fixed 201 JSON body)
runs in a separate process on a free 127.0.0.1 port, so the numbers measure the
client side. All variants run in the same process, same server, same run; raw aiohttp
is the ceiling. Prints req/s per variant and the ratios against httpx's default.

    python benchmarks/client_transport.py [--requests 3000] [--concurrency 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import httpx

from kraiter_sync.api.client import AiohttpTransport, KraiterClient

KEY = "kr_bench_key"
BODY = b'{"id":"evt_01","name":"page_view","contactId":"cnt_01"}'


def serve(port: int) -> None:
    from aiohttp import web

    async def events(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=201, body=BODY, content_type="application/json")

    app = web.Application()
    app.router.add_post("/api/events", events)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run_client(client: KraiterClient, n: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await client.track_event(
                "page_view", email=f"u{i}@example.com", properties='{"path":"/x"}'
            )

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - start)


async def run_raw(base: str, n: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

        async def one(i: int) -> None:
            async with sem:
                body = b'{"name":"page_view","email":"u%d@example.com"}' % i
                async with session.post(f"{base}/api/events", data=body, headers=headers) as r:
                    await r.read()
                    assert r.status == 201

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - start)


async def measure(base: str, n: int, concurrency: int, rounds: int) -> dict[str, float]:
    """Best of ``rounds`` interleaved runs per variant (the machine is shared and noisy)."""
    results: dict[str, float] = {}
    variants = {
        "httpx default transport": lambda: httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=64)
        ),
        "AiohttpTransport (default)": lambda: AiohttpTransport(max_connections=64),
    }
    try:  # for comparison only: it maps a cut connection to ConnectTimeout (unsafe)
        import httpx_aiohttp

        variants["httpx-aiohttp package"] = lambda: httpx_aiohttp.AiohttpTransport(
            limits=httpx.Limits(max_connections=64)
        )
    except ImportError:
        pass
    for _ in range(rounds):
        for label, make in variants.items():
            async with KraiterClient(base, KEY, transport=make()) as client:
                await run_client(client, 200, concurrency)  # warm up the pool
                rate = await run_client(client, n, concurrency)
            results[label] = max(rate, results.get(label, 0.0))
        rate = await run_raw(base, n, concurrency)
        results["raw aiohttp (ceiling)"] = max(rate, results.get("raw aiohttp (ceiling)", 0.0))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
            except OSError:
                time.sleep(0.05)
        results = asyncio.run(measure(base, args.requests, args.concurrency, args.rounds))
    finally:
        server.terminate()
        server.wait(timeout=10)
    baseline = results["httpx default transport"]
    ceiling = results["raw aiohttp (ceiling)"]
    print(
        f"{args.requests} x POST /api/events via KraiterClient.track_event, "
        f"concurrency {args.concurrency}, best of {args.rounds}"
    )
    for label, rate in results.items():
        print(
            f"  {label:28s} {rate:8.0f} req/s   x{rate / baseline:5.2f} vs httpx default"
            f"   {rate / ceiling:4.0%} of raw aiohttp"
        )


if __name__ == "__main__":
    main()
