"""State stores for the tests: SQLite in a state directory, or PostgreSQL in a fresh schema
of the throwaway server (``.ci/postgres.sh``), dropped afterwards.

``backend`` fixtures are parametrised over both, so every behavioural test of the store
runs against each; in CI the PostgreSQL half fails instead of skipping without a server.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from kraiter_sync.state.backend import open_state
from kraiter_sync.state.store import StateStore
from tests.helpers.sql import postgres_url_or_skip

__all__ = [
    "BACKENDS",
    "Opener",
    "fresh_schema",
    "pg_run",
    "pg_state",
    "schema_url",
    "split_schema",
    "state_url",
]

BACKENDS = ["sqlite", "postgresql"]


class Opener:
    """Opens stores of one backend over one test's state: a new store each call, over the
    same state (``state_dir``: another machine's directory; with SQLite, other state)."""

    def __init__(self, state_dir: Path, url: str | None) -> None:
        self.state_dir = state_dir
        #: The PostgreSQL state URL (None: SQLite in the state directory).
        self.url = url
        self.opened: list[StateStore] = []

    def __call__(self, state_dir: Path | None = None) -> StateStore:
        store = open_state(state_dir or self.state_dir, self.url)
        self.opened.append(store)
        return store

    def child_env(self) -> dict[str, str]:
        """The environment of a child process opening the same state:
        ``open_state(DIR, os.environ.get("KRAITER_TEST_STATE_URL"))``."""
        env = {k: v for k, v in os.environ.items() if k != "KRAITER_TEST_STATE_URL"}
        if self.url:
            env["KRAITER_TEST_STATE_URL"] = self.url
        return env

    def close(self) -> None:
        for store in self.opened:
            store.close()


def schema_url(base: str, schema: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}schema={schema}"


def split_schema(url: str) -> str:
    """The quoted schema a state URL names (``?schema=``), for SQL text."""
    return '"{}"'.format(parse_qs(urlsplit(url).query)["schema"][0])


def pg_run(url: str, *statements: str, params: Any = None) -> list[Any]:
    """Run statements on the test server (``?schema=`` is not libpq's: dropped); the rows
    of the last one."""
    plain = url.split("?", 1)[0]
    rows: list[Any] = []
    with psycopg.connect(plain, autocommit=True) as conn:
        for statement in statements:
            cur = conn.execute(statement, params)
            rows = cur.fetchall() if cur.description else []
    return rows


@contextlib.contextmanager
def fresh_schema() -> Iterator[str]:
    """A state URL naming a schema of its own on the test server, dropped afterwards."""
    base = postgres_url_or_skip()
    schema = f"t_{secrets.token_hex(6)}"
    try:
        yield schema_url(base, schema)
    finally:
        pg_run(base, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def state_url(request: pytest.FixtureRequest) -> str:
    """A fresh schema's URL for the test that asks (dropped when it ends)."""
    stack = contextlib.ExitStack()
    request.addfinalizer(stack.close)
    return stack.enter_context(fresh_schema())


@pytest.fixture
def pg_state(request: pytest.FixtureRequest) -> str:
    """The URL of a fresh PostgreSQL state schema."""
    return state_url(request)


@pytest.fixture(params=BACKENDS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens stores of one backend over one state; every store opened is closed after."""
    url = state_url(request) if request.param == "postgresql" else None
    stores = Opener(tmp_path / "state", url)
    yield stores
    stores.close()
