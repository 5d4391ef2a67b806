"""Which state store a run uses: the one place that picks a backend.

* no state URL — :class:`~kraiter_sync.state.local.LocalStore`: SQLite and files in the
  state directory (the default, as it always was);
* ``postgresql://…`` (``--state``, ``KRAITER_SYNC_STATE``, ``[target].state``) —
  :class:`~kraiter_sync.state.postgres.PostgresStore`, shared by every machine pointed
  at it. It needs the extra ``kraiter-sync[postgres]``; without it the command stops
  before anything is sent, naming the pip command.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from kraiter_sync.config import check_state_url
from kraiter_sync.errors import ConfigError
from kraiter_sync.state.local import LocalStore, StateFiles
from kraiter_sync.state.lock import ensure_state_dir, state_lock
from kraiter_sync.state.store import SharedFiles, StateStore

if TYPE_CHECKING:
    from kraiter_sync.config import Settings
    from kraiter_sync.state.postgres import PostgresStore

__all__ = [
    "POSTGRES_EXTRA",
    "WORKERS_NEED_HTTP",
    "WORKERS_NEED_POSTGRES",
    "locked_store",
    "open_shared_files",
    "open_state",
    "open_store",
    "require_postgres",
    "worker_store",
]

POSTGRES_EXTRA = 'pip install "kraiter-sync[postgres]"'
WORKERS_NEED_HTTP = (
    "--workers needs a Kraiter every worker reaches over HTTP, and no API key or base URL "
    "is set, so this is the local Kraiter in the state directory: give --base-url and "
    "--api-key (or KRAITER_BASE_URL and KRAITER_API_KEY) of your account, or serve a local "
    "one with `kraiter-sync emulator --port 8787` and pass --base-url http://127.0.0.1:8787 "
    "--api-key kr_local"
)
WORKERS_NEED_POSTGRES = (
    "several workers share an import through a PostgreSQL state store: give "
    "--state postgresql://... (or KRAITER_SYNC_STATE), or drop --workers"
)


def require_postgres() -> None:
    """ConfigError (exit 2) naming the pip command when psycopg or its pool is missing."""
    missing = [m for m in ("psycopg", "psycopg_pool") if importlib.util.find_spec(m) is None]
    if missing:
        msg = (
            f"a PostgreSQL state store needs {' and '.join(missing)}, which are not "
            f"installed: {POSTGRES_EXTRA}"
        )
        raise ConfigError(msg)


def open_postgres(url: str, state_dir: Path | str) -> PostgresStore:
    """The PostgreSQL store at ``url`` (checked), its schema migrated."""
    require_postgres()
    from kraiter_sync.state.postgres import PostgresStore

    return PostgresStore(check_state_url(url), state_dir=state_dir)


def open_state(state_dir: Path | str, url: str | None = None) -> StateStore:
    """The state store of a state directory, or of a state URL when one is given."""
    if url:
        return open_postgres(url, state_dir)
    return LocalStore(state_dir)


def open_store(settings: Settings) -> StateStore:
    """The state store for ``settings`` (close it, or use it as a context manager)."""
    return open_state(settings.state_dir, settings.state_url)


def open_shared_files(settings: Settings) -> SharedFiles:
    """Blobs and locks alone (an export): the state directory's files, without opening
    the SQLite ledger, or the PostgreSQL store."""
    if settings.state_url:
        return open_postgres(settings.state_url, settings.state_dir)
    return StateFiles(settings.state_dir)


@contextlib.contextmanager
def worker_store(settings: Settings) -> Iterator[PostgresStore]:
    """The PostgreSQL store with this target's run lock held *shared*: one worker of an
    import run by several (they share the work through ``state.work``'s leases)."""
    if settings.state_url is None:
        raise ConfigError(WORKERS_NEED_POSTGRES)
    if settings.local:
        raise ConfigError(WORKERS_NEED_HTTP)
    ensure_state_dir(settings.state_dir)
    store = open_postgres(settings.state_url, settings.state_dir)
    try:
        with store.worker_lock(settings.target):
            yield store
    finally:
        store.close()


@contextlib.contextmanager
def locked_store(settings: Settings) -> Iterator[StateStore]:
    """The state store with this target's run lock held for the block.

    SQLite: the state directory's lock first, then the ledger (so that two processes
    never migrate one file at once). PostgreSQL: the store (migrated under its own
    advisory lock), then the target's lock.
    """
    if settings.state_url is None:
        ensure_state_dir(settings.state_dir)
        with state_lock(settings.state_dir), LocalStore(settings.state_dir) as local:
            yield local
        return
    store = open_postgres(settings.state_url, settings.state_dir)
    try:
        with store.run_lock(settings.target):
            yield store
    finally:
        store.close()
