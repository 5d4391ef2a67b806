"""Locks that die with their holder: PostgreSQL session advisory locks.

Each lock is held on a connection of its own for as long as it is held. When the holder
dies, even by ``kill -9``, its connection closes and PostgreSQL frees the lock at once; a
machine that vanishes is noticed by TCP keepalives, set on the server's side of the
lock's connection (about a minute). Who holds a lock is written in ``lock_holders``, so
a refused run can name it (exit 5, :class:`~kraiter_sync.errors.LockHeldError`).

A run's lock is the target's (one run per target across every machine sharing the
store) plus the local state directory's (this machine's spools and rejects files). Its
connection is checked before each batch of keys is marked inflight
(:meth:`AdvisoryLocks.check_held`): a run that lost its lock, and so could now overlap
another, stops before sending more.

The workers of one import (``import --workers N``) hold the target's lock *shared*: they
run together, sharing the work through leases (``state.work``), while a plain run of the
target still excludes them all and is excluded by them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

from kraiter_sync.errors import LockHeldError, StateError
from kraiter_sync.state.lock import state_lock
from kraiter_sync.state.pgdb import Connection, PgDatabase
from kraiter_sync.state.pgerrors import scrub
from kraiter_sync.state.store import BusyMessage

__all__ = ["AdvisoryLocks", "run_lock_name"]

#: Server-side TCP keepalives on a lock's connection: a vanished holder's lock is freed
#: after about idle + interval x count seconds.
_KEEPALIVES = {"tcp_keepalives_idle": 30, "tcp_keepalives_interval": 10, "tcp_keepalives_count": 3}


def run_lock_name(target: str) -> str:
    """The name of a target's run lock (one run per target across machines)."""
    return f"run:{target}"


class AdvisoryLocks:
    """The locks of one PostgreSQL state store (see the module docstring)."""

    def __init__(self, db: PgDatabase, state_dir: Path) -> None:
        self.db = db
        self.state_dir = state_dir
        self._held: dict[str, Connection] = {}

    def check_held(self) -> None:
        """Every run lock this store holds is still held: its connection answers."""
        for target, conn in self._held.items():
            try:
                conn.execute("SELECT 1")
            except psycopg.Error as exc:
                reason = scrub(str(exc), self.db.secrets)
                msg = (
                    f"lost the connection that holds the lock of {target} in {self.db.display} "
                    f"({reason}): another run may take it now, so nothing more is sent; re-run "
                    "the same command to resume"
                )
                raise StateError(msg) from None

    @contextlib.contextmanager
    def advisory(
        self, name: str, busy: BusyMessage, *, shared: bool = False
    ) -> Iterator[Connection]:
        """A session advisory lock on a connection of its own, for the block (``shared``:
        held together with other shared holders, never with an exclusive one)."""
        key = self.db.lock_key(name)
        kind = "_shared" if shared else ""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        me = f"pid {os.getpid()} on {socket.gethostname()}, since {stamp}"
        conn = self.db.connect()
        try:
            try:
                for setting, value in _KEEPALIVES.items():
                    conn.execute("SELECT set_config(%s, %s, false)", [setting, str(value)])
                row = conn.execute(f"SELECT pg_try_advisory_lock{kind}(%s)", [key]).fetchone()
                if row is None or not row[0]:
                    holder = conn.execute(
                        self.db.q("SELECT holder FROM {s}.lock_holders WHERE name = %s"), [name]
                    ).fetchone()
                    raise LockHeldError(busy(holder[0] if holder else ""))
                conn.execute(
                    self.db.q(
                        "INSERT INTO {s}.lock_holders (name, holder, since) VALUES (%s, %s, %s) "
                        "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                        "since = excluded.since"
                    ),
                    [name, me, time.time()],
                )
            except psycopg.Error as exc:
                raise self.db.translate(exc) from None
            try:
                yield conn
            finally:
                with contextlib.suppress(psycopg.Error):
                    conn.execute(
                        self.db.q("DELETE FROM {s}.lock_holders WHERE name = %s AND holder = %s"),
                        [name, me],
                    )
                    conn.execute(f"SELECT pg_advisory_unlock{kind}(%s)", [key])
        finally:
            conn.close()

    @contextlib.contextmanager
    def lock(self, name: str, *, busy: BusyMessage) -> Iterator[None]:
        with self.advisory(name, busy):
            yield

    @contextlib.contextmanager
    def run_lock(self, target: str, *, shared: bool = False) -> Iterator[None]:
        """One run per target across every machine sharing this store (an advisory lock),
        and the local state directory's lock (this machine's spools and rejects files).
        ``shared``: one worker of an import run by several (see the module docstring)."""

        def busy(holder: str) -> str:
            who = f" ({holder})" if holder else ""
            workers = " (or the workers of an import run with --workers)" if not shared else ""
            return (
                f"another kraiter-sync run{who}{workers} holds the state of {target} in "
                f"{self.db.display}; wait for it to finish (`kraiter-sync runs` lists it)"
            )

        name = run_lock_name(target)
        with state_lock(self.state_dir), self.advisory(name, busy, shared=shared) as conn:
            self._held[target] = conn
            try:
                yield
            finally:
                del self._held[target]
