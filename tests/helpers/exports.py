"""Seeding an emulator with everything the export streams read, and reading exports back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import polars as pl

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.emulator import EmulatorApp, EmulatorConfig, asgi_transport, create_app
from kraiter_sync.export.streams import SCHEMAS

KEY = "kr_export_tests"
BASE = "http://local.kraiter"
EMAILS = [f"user{i}@example.com" for i in range(5)]
#: Values a spreadsheet would run as a formula (CSV injection).
FORMULAS = ['=HYPERLINK("http://x")', "+1+2", "-3", "@SUM(A1)"]


def new_app() -> EmulatorApp:
    return create_app(EmulatorConfig())


def seeded_db(db: Path, *, events: int) -> Path:
    """An emulator SQLite file filled by :func:`seed` (for a served emulator to open)."""
    import asyncio

    app = create_app(EmulatorConfig(db_path=db))

    async def fill() -> None:
        async with client_for(app) as client:
            await seed(client, events=events)

    asyncio.run(fill())
    app.close()
    return db


def client_for(
    app: EmulatorApp, *, wrap: Callable[[httpx.AsyncBaseTransport], Any] | None = None
) -> KraiterClient:
    transport = asgi_transport(app)
    return KraiterClient(BASE, KEY, transport=wrap(transport) if wrap else transport)


def _http(client: KraiterClient) -> httpx.AsyncClient:
    """Raw HTTP over the client's own transport and key (for routes it has no method for).

    Never closed: closing it would close the transport, which the client owns.
    """
    return httpx.AsyncClient(
        transport=client._transport,
        base_url=BASE,
        headers={"Authorization": f"Bearer {client._key}"},
    )


async def admin(client: KraiterClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST an /_emulator admin route with the same key (outside the Kraiter API)."""
    r = await _http(client).post(f"/_emulator/{path}", json=body)
    assert r.status_code in (200, 201), r.text
    out: dict[str, Any] = r.json()
    return out


async def add_events(client: KraiterClient, n: int, *, start: int = 0) -> None:
    """``n`` custom events over three days and five contacts, some with formula names."""
    for i in range(start, start + n):
        name = FORMULAS[i % len(FORMULAS)] if i % 17 == 5 else f"page_view_{i % 3}"
        await client.track_event(
            name,
            email=EMAILS[i % len(EMAILS)],
            properties={"i": i, "path": f"/p/{i}", "ratio": i / 4, "flag": i % 2 == 0},
            timestamp=f"2025-03-{1 + i % 3:02d}T{i % 24:02d}:15:00.250Z",
        )


async def seed(client: KraiterClient, *, events: int = 120) -> dict[str, str]:
    """Contacts, a 2-step sequence (one send delivered, one scheduled), a segment, events.

    Returns email → contact id.
    """
    ids: dict[str, str] = {}
    for i, email in enumerate(EMAILS):
        contact = await client.create_contact(
            email,
            properties={"plan": "pro" if i % 2 else "free", "seats": i, "note": FORMULAS[i % 4]},
        )
        ids[email] = contact["id"]
    body = {
        "name": "Welcome",
        "status": "active",
        "triggers": [{"event": "signed_up"}],
        "steps": [
            {"templateId": "tpl_hello", "templateName": "Hello", "subject": "Hi"},
            {
                "templateId": "tpl_tips",
                "templateName": "Tips",
                "subject": "Tips",
                "delayMinutes": 600,
            },
        ],
    }
    r = await _http(client).put("/api/sequences/seq_welcome", json=body)
    assert r.status_code in (200, 201), r.text
    for email in EMAILS[:3]:
        await client.track_event("signed_up", email=email, properties={"via": "web"})
    await admin(client, "tick", {})
    await admin(client, "segments", {"name": "VIP", "contactIds": [ids[EMAILS[0]], ids[EMAILS[2]]]})
    await admin(client, "segments", {"name": "Trial", "contactIds": [ids[EMAILS[1]]]})
    await add_events(client, events)
    return ids


async def truth(client: KraiterClient, stream: str) -> list[str]:
    """Row identities of a stream straight from the API (the expected output)."""
    if stream == "contacts":
        return [c["id"] async for c in client.list_contacts()]
    if stream == "events":
        return [e["id"] async for e in client.list_events()]
    if stream == "sends":
        return [s["id"] async for s in client.list_sends()]
    if stream == "scheduled":
        return [s["id"] async for s in client.list_scheduled()]
    contacts = [c["id"] async for c in client.list_contacts()]
    out: list[str] = []
    for cid in contacts:
        if stream == "timelines":
            out += [t["id"] async for t in client.contact_timeline(cid)]
        elif stream == "enrolments":
            out += [f"{cid}/{e['sequenceId']}" for e in await client.contact_sequences(cid)]
        else:
            out += [f"{cid}/{m['segmentId']}" for m in await client.contact_segments(cid)]
    return out


def row_ids(stream: str, frame: pl.DataFrame) -> list[str]:
    if stream == "enrolments":
        return [f"{c}/{s}" for c, s in zip(frame["contact_id"], frame["sequence_id"], strict=True)]
    if stream == "memberships":
        return [f"{c}/{s}" for c, s in zip(frame["contact_id"], frame["segment_id"], strict=True)]
    return list(frame["id"])


def read_output_file(path: Path, fmt: str) -> pl.DataFrame:
    if fmt == "parquet":
        return pl.read_parquet(path)
    if fmt == "csv":
        return pl.read_csv(path, infer_schema=False)
    return pl.read_ndjson(path)


def read_output(directory: Path, fmt: str) -> pl.DataFrame:
    """Every visible file of an exported stream, the way an analyst would read it."""
    files = sorted(p for p in directory.rglob(f"*.{fmt}") if not p.name.startswith("."))
    frames = [read_output_file(f, fmt) for f in files]
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames, how="diagonal_relaxed")


def schema_of(stream: str) -> dict[str, pl.DataType]:
    return dict(SCHEMAS[stream])
