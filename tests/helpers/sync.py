"""A counting local Kraiter and settings for the sync tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kraiter_sync.api.blocking import SyncKraiterClient
from kraiter_sync.config import Settings, resolve_settings
from kraiter_sync.emulator import EmulatorConfig, create_app, serve_in_thread

KEY = "kr_sync_test_secret_42"


WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class CountingApp:
    """The emulator, with every API request it receives recorded (method, path)."""

    def __init__(self, db: Path) -> None:
        self.app = create_app(EmulatorConfig(db_path=str(db)))
        self.requests: list[tuple[str, str]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api"):
            self.requests.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)

    def close(self) -> None:
        self.app.close()

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] in WRITES]

    def reset(self) -> None:
        self.requests.clear()


@pytest.fixture
def kraiter(tmp_path: Path) -> Iterator[tuple[CountingApp, str]]:
    app = CountingApp(tmp_path / "kraiter.db")
    try:
        with serve_in_thread(app=app) as url:  # type: ignore[arg-type]
            yield app, url
    finally:
        app.close()


def settings_for(url: str, tmp_path: Path) -> Settings:
    return resolve_settings(api_key=KEY, base_url=url, state_dir=tmp_path / "state", env={})


def remote(url: str) -> tuple[dict[str, dict[str, Any]], list[tuple[str, str, str]]]:
    """What Kraiter holds: contacts by email, and events as (email, name, timestamp)."""
    with SyncKraiterClient(url, KEY) as client:
        contacts = {c["email"]: c for c in client.list_contacts()}
        events = []
        for email, contact in contacts.items():
            for event in client.list_events(contact_id=contact["id"]):
                events.append((email, event["name"], event["timestamp"]))
    return contacts, sorted(events)
