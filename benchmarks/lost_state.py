"""What lost state costs in requests: the sample check, and ``state rebuild``.

Against a served local Kraiter (a subprocess, real HTTP), for each size N:

1. import N events (N/20 contacts) with one state directory: Kraiter now holds them;
2. import the same input with a new state directory: the lost-state check refuses it
   (exit 2, nothing written); its requests are counted at the transport: the probe of
   the tenant's feed plus one listing per sampled event, whatever N;
3. ``state rebuild`` into that new state directory: its requests against
   ``ceil(events held / 100)`` (the issue's yardstick) and against
   ``ceil(events / 100) + ceil(contacts / 100)`` (the rebuild also lists the contacts,
   which Kraiter needs to map the contact ids it answers with to the emails an input
   gives); retries would show as the difference;
4. import again: nothing sent (0 writes), and the emulator holds every event once.

    python benchmarks/lost_state.py                      # 2,000 and 20,000 events
    python benchmarks/lost_state.py --events 1000 100000
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.import_throughput import start_server, stop, write_input  # noqa: E402
from kraiter_sync.api.client import KraiterClient  # noqa: E402
from kraiter_sync.api.ratelimit import RateController  # noqa: E402
from kraiter_sync.config import Settings, resolve_settings  # noqa: E402
from kraiter_sync.errors import GuardError  # noqa: E402
from kraiter_sync.verbs.importer import ImportOptions, import_  # noqa: E402
from kraiter_sync.verbs.rebuild import rebuild_state  # noqa: E402

KEY = "kr_lost_state_bench"


class Counted(httpx.AsyncBaseTransport):
    """Real HTTP, counting requests by method and path (``GET /api/events``)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.methods: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.methods[f"{request.method} {request.url.path}"] += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Clients:
    """A client factory whose every client counts its requests."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.transports: list[Counted] = []

    def __call__(self, controller: RateController) -> KraiterClient:
        transport = Counted()
        self.transports.append(transport)
        return KraiterClient(self.url, KEY, transport=transport, observer=controller)

    def since(self, mark: int) -> Counter[str]:
        total: Counter[str] = Counter()
        for transport in self.transports[mark:]:
            total.update(transport.methods)
        return total


def one_size(tmp: Path, events: int) -> None:
    contacts = max(events // 20, 1)
    src = tmp / f"events-{events}.parquet"
    write_input(src, events, contacts)
    proc, url = start_server(tmp / f"kraiter-{events}.db")
    try:
        clients = Clients(url)

        def settings(name: str) -> Settings:
            return resolve_settings(
                api_key=KEY, base_url=url, state_dir=tmp / f"{name}-{events}", env={}
            )

        options = ImportOptions(concurrency=16)
        started = time.monotonic()
        first = import_([src], settings=settings("first"), options=options, client_factory=clients)
        import_s = time.monotonic() - started
        assert first.events.sent == events, first.as_dict()

        mark = len(clients.transports)
        try:
            import_([src], settings=settings("lost"), options=options, client_factory=clients)
        except GuardError:
            pass
        else:
            raise SystemExit("the import with a new state directory was not refused")
        check = clients.since(mark)
        assert all(what.startswith("GET ") for what in check), check

        mark = len(clients.transports)
        started = time.monotonic()
        rebuild = rebuild_state(settings("lost"), client_factory=clients)
        rebuild_s = time.monotonic() - started
        assert rebuild.complete
        held = rebuild.events_read + rebuild.system_events
        counted = sum(clients.since(mark).values())

        mark = len(clients.transports)
        again = import_([src], settings=settings("lost"), options=options, client_factory=clients)
        writes = sum(n for m, n in clients.since(mark).items() if not m.startswith("GET "))
        assert (again.events.sent, again.events.already, writes) == (0, events, 0)
    finally:
        stop(proc)

    by_events = math.ceil(held / 100)
    by_both = by_events + math.ceil(rebuild.contacts_read / 100)
    print(
        f"{events:>9,} events held, {rebuild.contacts_read:,} contacts:\n"
        f"  refused import (0 writes): {sum(check.values())} requests, of which the "
        f"lost-state check {check['GET /api/events']} (probe + sample listings) = "
        f"{check['GET /api/events'] / events:.4f} per event held; the rest: "
        f"{dict(check - Counter({'GET /api/events': check['GET /api/events']}))}\n"
        f"  state rebuild: {counted:,} requests (engine counted {rebuild.requests:,}) vs "
        f"ceil(events/100) = {by_events:,} → {counted / by_events:.2f}x; vs "
        f"ceil(events/100) + ceil(contacts/100) = {by_both:,} → {counted / by_both:.2f}x; "
        f"{rebuild.keys_marked:,} keys recorded in {rebuild_s:.1f}s "
        f"(the import that sent them: {import_s:.1f}s, {first.requests:,} requests)\n"
        f"  import after the rebuild: {again.events.already:,} already imported, 0 sent, "
        f"0 writes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[2_000, 20_000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for events in args.events:
            one_size(Path(tmp), events)


if __name__ == "__main__":
    main()
