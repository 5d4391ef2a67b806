"""The offline default: no key and no base URL → the local Kraiter in the state directory."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from kraiter_sync.config import resolve_settings
from kraiter_sync.upload.context import client_for


def test_local_kraiter_persists_in_the_state_directory(tmp_path: Path) -> None:
    settings = resolve_settings(state_dir=tmp_path / "state", env={})
    assert settings.local

    async def first() -> str:
        async with client_for(settings) as client:
            contact = await client.create_contact("ada@example.com", properties={"plan": "pro"})
            await client.track_event("signed_up", contact_id=contact["id"])
            return str(contact["id"])

    async def second() -> tuple[dict[str, object] | None, list[dict[str, object]]]:
        async with client_for(settings) as client:
            found = await client.get_contact_by_email("ada@example.com")
            events = [e async for e in client.list_events(email="ada@example.com")]
            return found, events

    contact_id = asyncio.run(first())
    # closing the client closed the emulator: the SQLite file is complete on disk
    with sqlite3.connect(settings.local_db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    found, events = asyncio.run(second())
    assert found is not None
    assert found["id"] == contact_id
    assert found["properties"] == {"plan": "pro"}
    assert [e["name"] for e in events] == ["signed_up"]
