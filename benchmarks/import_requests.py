"""Requests per event: what an import sends, by endpoint, this checkout against an earlier one.

At Kraiter's rate limit a user waits (requests / limit), so every request the API does not
need is wait. Each scenario runs ``import`` of the same input twice, in one run: with the
``--baseline`` git revision (``git archive`` into a temporary directory) and with this
checkout, each in a fresh subprocess, each against its own served local Kraiter
(``emulator.serve_in_thread``, real HTTP, in this process) and a fresh state directory.
Requests are counted by endpoint on the client (a counting transport around the
product's aiohttp transport), and the end state is read back from the emulator's
database: every scenario reports duplicates and missing events.

* ``new``: 20k events over 2k new contacts (Kraiter creates contacts for events; target
  <= 1.002 requests/event), and the same in the ``not-found`` and ``link-later`` modes.
* ``existing``: the 2k contacts already in Kraiter, a fresh ledger (target <= 1.002 +
  ceil(contacts / 100) / events), where Kraiter creates contacts for events and where
  it answers 404 (``existing not-found``: a first run, whose look-up finds the contact;
  ``existing not-found known``: a run that knows it, so the contacts are found in a
  listing first).
* ``one-each``: one event per contact (target <= 1.01).
* ``wall 50/s``, ``wall 200/s``: wall time of the whole command at a rate limit, over
  the API's minimum (the events) / rate (target <= 1.03x; the emulator's bucket starts
  full, one second's worth).
* ``hot drops``: 20k events over 10 contacts, 3% of answers dropped (applied, then the
  connection cut): reads of events (the checks) per dropped answer (target <= 1.1),
  0 duplicates, 0 missing.
* ``faults``: 5% 5xx, 3% drops, 429s from a rate limit without headers (exactly once).
* ``10 rows``: what a 10-row import over 5 new contacts sends, by endpoint.

    python benchmarks/import_requests.py                 # the issue's sizes (~15 min)
    python benchmarks/import_requests.py --quick         # small sizes, a smoke run
    python benchmarks/import_requests.py --only "hot drops" --baseline HEAD~3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kraiter_sync.api.client import KraiterClient  # noqa: E402
from kraiter_sync.emulator import (  # noqa: E402
    EmulatorConfig,
    asgi_transport,
    create_app,
    serve_in_thread,
)

KEY = "kr_requests_benchmark"

# Runs in a subprocess with one side's package first on sys.path; public API only, so
# the same code runs the baseline. Prints one JSON line.
WORKER = r"""
import asyncio, json, re, sys, time
from collections import Counter
sys.path.insert(0, {root!r})
import httpx
from kraiter_sync.api.client import KraiterClient
from kraiter_sync.api.transport import AiohttpTransport
from kraiter_sync.config import resolve_settings
from kraiter_sync.verbs.importer import ImportOptions, import_

routes, lost = Counter(), Counter()

class Counting(httpx.AsyncBaseTransport):
    def __init__(self, inner):
        self.inner = inner
    async def handle_async_request(self, request):
        path = re.sub(r"/by-email/[^/]+", "/by-email/{{email}}", request.url.path)
        path = re.sub(r"/(cnt|con)_[^/]+", "/{{id}}", path)
        route = request.method + " " + path
        routes[route] += 1
        try:
            response = await self.inner.handle_async_request(request)
        except httpx.HTTPError:
            lost[route] += 1
            raise
        if response.status_code == 429:
            routes["429"] += 1
        return response
    async def aclose(self):
        await self.inner.aclose()

def factory(controller):
    transport = Counting(AiohttpTransport(max_connections={concurrency}))
    return KraiterClient({url!r}, {key!r}, transport=transport, observer=controller)

settings = resolve_settings(api_key={key!r}, base_url={url!r}, state_dir={state!r}, env={{}})
if {known!r}:  # what an earlier run learned about unknown emails (the baseline ignores it)
    from kraiter_sync.state.backend import open_store
    with open_store(settings) as store:
        store.set_watermark(settings.target, "events:unknown-email", {known!r})
options = ImportOptions(concurrency={concurrency}, rate=None, max_retries=12)
started = time.monotonic()
result = import_([{src!r}], settings=settings, options=options, client_factory=factory)
seconds = time.monotonic() - started
print(json.dumps({{"seconds": seconds, "result": result.as_dict(), "routes": routes,
                  "lost": lost}}))
"""


@dataclass
class Scenario:
    name: str
    events: int
    contacts: int
    config: dict[str, Any] = field(default_factory=dict)
    existing: bool = False
    #: The unknown-email behaviour a previous run kept in state (None: a new target).
    known: str | None = None
    #: Requests per event this checkout must not exceed (None: no target).
    target: Callable[[Scenario], float] | None = None
    #: Wall time at a rate limit: report seconds / (events / rate), target <= 1.03x.
    rate: float | None = None
    #: Answers dropped: report check reads per dropped answer, target <= ``reads``.
    drops: bool = False
    reads: float | None = None

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() else "_" for c in self.name)


@dataclass
class Outcome:
    seconds: float
    result: dict[str, Any]
    routes: Counter[str]
    lost: Counter[str]
    duplicates: int
    missing: int

    @property
    def requests(self) -> int:
        return sum(n for route, n in self.routes.items() if route != "429")


def write_input(path: Path, events: int, contacts: int) -> set[tuple[str, str, str, int]]:
    """Events round-robin over the contacts, three names; returns the expected end state."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    names = ("page_viewed", "signed_up", "invoice_paid")
    emails = [f"user{i % contacts}@example.com" for i in range(events)]
    kinds = [names[i % 3] for i in range(events)]
    stamps = [start + timedelta(seconds=37 * i) for i in range(events)]
    rows = {"email": emails, "event": kinds, "timestamp": stamps, "n": list(range(events))}
    pl.DataFrame(rows).write_parquet(path)
    return {(emails[i], kinds[i], _iso(stamps[i]), i) for i in range(events)}


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def _with_client(db: Path, work: Callable[[KraiterClient], Any]) -> Any:
    app = create_app(EmulatorConfig(db_path=str(db)))
    try:
        async with KraiterClient(
            "http://local.kraiter", KEY, transport=asgi_transport(app)
        ) as client:
            return await work(client)
    finally:
        app.close()


def seed_contacts(db: Path, contacts: int) -> None:
    async def work(client: KraiterClient) -> None:
        for i in range(contacts):
            await client.create_contact(f"user{i}@example.com", properties={"seeded": True})

    asyncio.run(_with_client(db, work))


def end_state(db: Path) -> tuple[Counter[tuple[str, str, str, int]], int]:
    """Kraiter's events as (email, name, timestamp, n) with counts; and unlinked ones."""

    async def work(client: KraiterClient) -> tuple[Counter[tuple[str, str, str, int]], int]:
        emails = {c["id"]: c["email"] async for c in client.list_contacts()}
        held: Counter[tuple[str, str, str, int]] = Counter()
        unlinked = 0
        async for ev in client.list_events():
            unlinked += ev.get("contactId") is None
            stamp = datetime.fromisoformat(ev["timestamp"].replace("Z", "+00:00"))
            email = emails.get(ev.get("contactId"), "")
            held[(email, ev["name"], _iso(stamp), ev["properties"]["n"])] += 1
        return held, unlinked

    result: tuple[Counter[tuple[str, str, str, int]], int] = asyncio.run(_with_client(db, work))
    return result


def run_side(root: Path, scenario: Scenario, work: Path, side: str) -> Outcome:
    src = work / f"{scenario.slug}-{scenario.events}-{scenario.contacts}.parquet"
    expected = write_input(src, scenario.events, scenario.contacts)
    db = work / f"{side}-{scenario.slug}.db"
    if scenario.existing:
        seed_contacts(db, scenario.contacts)
    config = EmulatorConfig(db_path=str(db), seed=11, **scenario.config)
    with serve_in_thread(config) as url:
        code = WORKER.format(
            root=str(root),
            url=url,
            key=KEY,
            state=str(db.with_suffix(".state")),
            src=str(src),
            concurrency=16,
            known=scenario.known,
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=False
        )
    if out.returncode != 0:
        raise SystemExit(f"{side} {scenario.name} failed:\n{out.stderr[-3000:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    held, unlinked = end_state(db)
    want = Counter(expected)
    duplicates = sum((held - want).values()) + unlinked
    missing = sum((want - held).values())
    return Outcome(
        data["seconds"],
        data["result"],
        Counter(data["routes"]),
        Counter(data["lost"]),
        duplicates,
        missing,
    )


def describe(scenario: Scenario, side: str, o: Outcome) -> str:
    ev = scenario.events
    line = (
        f"  {side:7} {o.requests:>7,} requests = {o.requests / ev:.4f}/event  "
        f"dup {o.duplicates}  missing {o.missing}  exit {o.result['exit_code']}"
    )
    if scenario.rate is not None:
        ideal = ev / scenario.rate
        line += f"  wall {o.seconds:.1f}s / {ideal:.1f}s = {o.seconds / ideal:.3f}x"
    if scenario.drops:
        dropped = o.lost["POST /api/events"]
        reads = o.routes["GET /api/events"]
        line += f"  dropped {dropped}  check reads {reads} = {reads / max(dropped, 1):.2f}/drop"
    if o.routes["429"]:
        line += f"  429s {o.routes['429']}"
    return line


def scenarios(quick: bool, events: int, contacts: int) -> list[Scenario]:
    scale = 10 if quick else 1
    ev, ct = events // scale, contacts // scale

    def new(s: Scenario) -> float:
        return 1.002

    def existing(s: Scenario) -> float:
        return 1.002 + math.ceil(s.contacts / 100) / s.events

    def one_each(s: Scenario) -> float:
        return 1.01

    def wall(rate: float, seconds: int) -> Scenario:
        n = int(rate * seconds)
        return Scenario(f"wall {rate:.0f}/s", n, max(n // 10, 1), {"rate_limit": rate}, rate=rate)

    return [
        Scenario("new", ev, ct, target=new),
        Scenario("new not-found", ev, ct, {"unknown_email": "not-found"}),
        Scenario("new link-later", ev, ct, {"unknown_email": "link-later"}),
        Scenario("existing", ev, ct, existing=True, target=existing),
        Scenario(
            "existing not-found",
            ev,
            ct,
            {"unknown_email": "not-found"},
            existing=True,
            target=existing,
        ),
        Scenario(
            "existing not-found known",
            ev,
            ct,
            {"unknown_email": "not-found"},
            existing=True,
            known="not-found",
            target=existing,
        ),
        Scenario("one-each", ev, ev, target=one_each),
        wall(50, 6 if quick else 60),
        wall(200, 6 if quick else 60),
        Scenario("hot drops", ev, 10, {"drop_rate": 0.03}, drops=True, reads=1.1),
        Scenario(
            "faults",
            ev // 4,
            ct // 4,
            {"fail_rate": 0.05, "drop_rate": 0.03, "rate_limit": 100, "hide_rate_headers": True},
            drops=True,
        ),
        Scenario("10 rows", 10, 5),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--contacts", type=int, default=2_000)
    parser.add_argument("--baseline", default="e894992", help="git revision to compare with")
    parser.add_argument("--only", action="append", help="run only these scenarios")
    args = parser.parse_args()
    print("import requests by scenario: baseline", args.baseline, "vs this checkout")
    with tempfile.TemporaryDirectory(prefix="import-requests-") as tmp:
        work = Path(tmp)
        before = work / "before"
        before.mkdir()
        archive = subprocess.run(
            ["git", "archive", args.baseline], cwd=ROOT, capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive.stdout, check=True)
        failed = []
        for scenario in scenarios(args.quick, args.events, args.contacts):
            if args.only and scenario.name not in args.only:
                continue
            print(
                f"{scenario.name}: {scenario.events:,} events over {scenario.contacts:,} contacts"
            )
            outcomes = {}
            for side, root in (("before", before), ("after", ROOT)):
                outcomes[side] = o = run_side(root, scenario, work, side)
                print(describe(scenario, side, o), flush=True)
            after = outcomes["after"]
            routes = ", ".join(f"{r} {n:,}" for r, n in sorted(after.routes.items()))
            print(f"  after by endpoint: {routes}")
            if scenario.name == "10 rows":
                before_routes = ", ".join(
                    f"{r} {n:,}" for r, n in sorted(outcomes["before"].routes.items())
                )
                print(f"  before by endpoint: {before_routes}")
            if scenario.target is not None:
                limit = scenario.target(scenario)
                ok = after.requests / scenario.events <= limit
                print(f"  target <= {limit:.4f}/event: {'met' if ok else 'NOT MET'}")
                failed += [] if ok else [scenario.name]
            if scenario.rate is not None:
                ratio = after.seconds / (scenario.events / scenario.rate)
                ok = ratio <= 1.03
                print(f"  target wall <= 1.03x: {'met' if ok else 'NOT MET'}")
                failed += [] if ok else [scenario.name]
            if scenario.reads is not None:
                per_drop = after.routes["GET /api/events"] / max(after.lost["POST /api/events"], 1)
                ok = per_drop <= scenario.reads
                print(
                    f"  target <= {scenario.reads} check reads/drop: {'met' if ok else 'NOT MET'}"
                )
                failed += [] if ok else [scenario.name]
            if after.duplicates or after.missing:
                failed.append(f"{scenario.name} (end state)")
        print("all targets met" if not failed else f"NOT MET: {', '.join(failed)}")


if __name__ == "__main__":
    main()
