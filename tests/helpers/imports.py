"""Inputs and end-state checks shared by the import tests."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import polars as pl

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.api.ratelimit import RateController
from kraiter_sync.emulator import EmulatorConfig, asgi_transport, create_app

KEY = "kr_import_test_secret_0123456789"
NAMES = ["signed_up", "viewed_pricing", "started_trial", "upgraded_plan", "invoice_paid"]
BAD_ROWS = 3  # rows write_events adds that the validator must reject


def write_events(path: Path, *, rows: int, contacts: int = 40, seed: int = 7) -> list[tuple]:
    """A Parquet file of believable events plus BAD_ROWS invalid ones and one duplicate.

    Returns the expected end state: a list of (email, name, iso timestamp, properties).
    """
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    records: list[dict[str, Any]] = []
    expected: list[tuple] = []
    for i in range(rows):
        email = f"user{rng.randrange(contacts)}@example.com"
        name = rng.choice(NAMES)
        ts = start + timedelta(minutes=17 * i, milliseconds=rng.randrange(1000))
        props = {"n": i, "plan": rng.choice(["free", "pro"])}
        records.append({"email": email, "event": name, "timestamp": ts, "props": props})
        expected.append((email, name, _iso(ts), json.dumps(props, sort_keys=True)))
    records.append(dict(records[0]))  # an exact duplicate: sent once
    records.append(
        {"email": "not-an-email", "event": "x", "timestamp": start, "props": {"n": -1, "plan": "x"}}
    )
    records.append(
        {
            "email": "a@example.com",
            "event": "email.opened",
            "timestamp": start,
            "props": {"n": -1, "plan": "x"},
        }
    )
    records.append(
        {
            "email": "b@example.com",
            "event": "future",
            "timestamp": datetime(2099, 1, 1, tzinfo=UTC),
            "props": {"n": -1, "plan": "x"},
        }
    )
    frame = pl.DataFrame(records, infer_schema_length=None)
    frame.write_parquet(path)
    return expected


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def remote_events(
    base_url: str, api_key: str, *, transport: httpx.AsyncBaseTransport | None = None
) -> Counter[tuple]:
    """Every event Kraiter holds, as (email, name, timestamp, properties) with counts."""

    async def collect() -> Counter[tuple]:
        async with KraiterClient(base_url, api_key, transport=transport) as client:
            emails = {c["id"]: c["email"] async for c in client.list_contacts()}
            out: Counter[tuple] = Counter()
            async for ev in client.list_events():
                stamp = datetime.fromisoformat(ev["timestamp"].replace("Z", "+00:00"))
                out[
                    (
                        emails.get(ev.get("contactId")),
                        ev["name"],
                        _iso(stamp),
                        json.dumps(ev.get("properties") or {}, sort_keys=True),
                    )
                ] += 1
            return out

    return asyncio.run(collect())


def stored_events(db: Path, api_key: str) -> Counter[tuple]:
    """What the emulator over ``db`` holds for ``api_key``'s tenant (see remote_events)."""
    app = create_app(EmulatorConfig(db_path=str(db)))
    try:
        return remote_events("http://local.kraiter", api_key, transport=asgi_transport(app))
    finally:
        app.close()


def route(method: str, path: str) -> str:
    """``POST /api/events``, ``GET /api/contacts/by-email/{email}``: a request's endpoint."""
    path = re.sub(r"/by-email/[^/]+", "/by-email/{email}", path)
    return f"{method} {re.sub(r'/(cnt|con)_[^/]+', '/{id}', path)}"


class CountingTransport(httpx.AsyncBaseTransport):
    """Wraps a transport and counts requests by method and by endpoint (the seam for
    'sent nothing' and 'sent only these'); ``answers`` counts (endpoint, status)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.methods: Counter[str] = Counter()
        self.routes: Counter[str] = Counter()
        self.answers: Counter[tuple[str, int]] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.methods[request.method] += 1
        endpoint = route(request.method, request.url.path)
        self.routes[endpoint] += 1
        response = await self.inner.handle_async_request(request)
        self.answers[(endpoint, response.status_code)] += 1
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def writes(self) -> int:
        return sum(n for m, n in self.methods.items() if m != "GET")


class LocalKraiter:
    """One emulator app over a SQLite file; each import gets a counting client on it."""

    def __init__(self, tmp_path: Path, key: str = KEY, **config: object) -> None:
        self.db = tmp_path / "kraiter.db"
        self.key = key
        self.config = EmulatorConfig(db_path=str(self.db), **config)  # type: ignore[arg-type]
        self.transports: list[CountingTransport] = []

    def factory(self, controller: RateController) -> KraiterClient:
        app = create_app(self.config)
        transport = CountingTransport(asgi_transport(app, close_app=True))
        self.transports.append(transport)
        return KraiterClient(
            "http://local.kraiter", self.key, transport=transport, observer=controller
        )

    def events(self) -> Counter[tuple]:
        return stored_events(self.db, self.key)
