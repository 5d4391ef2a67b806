"""The ledger: SQLite state that makes a killed, retried or re-run import exact.

One file (``<state-dir>/ledger.db``, WAL) holds, per *target* (``Settings.target``:
base URL + key fingerprint or tenant name, never the key itself):

- ``events``: every event key's state — ``inflight`` (written before its request
  leaves), ``done`` (with Kraiter's id) or ``rejected`` (with Kraiter's code/message);
- ``contacts``: email → contact id and the hash of what was last written (the contact
  cache that makes unchanged contacts free);
- ``watermarks``: one value per (target, stream) for incremental exports and syncs;
- ``runs``: one row per command run with its arguments (never the key) and counts.

All calls are synchronous and short; batches of keys go through one transaction each,
so a run calls the ledger once per few hundred requests and it is never the
bottleneck. ``PRAGMA user_version`` is the schema version. sqlite3 errors are
translated into :class:`~kraiter_sync.errors.StateError` here, at this one boundary.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from kraiter_sync.errors import LockHeldError, StateError

__all__ = ["SCHEMA_VERSION", "Ledger", "RunRecord", "scrub_args", "state_lock"]

SCHEMA_VERSION = 1
_BATCH = 500  # keys per IN (...) query: well under SQLite's variable limit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    command TEXT NOT NULL,
    target TEXT NOT NULL,
    args TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    counts TEXT
);
CREATE TABLE IF NOT EXISTS events (
    target TEXT NOT NULL,
    event_key TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('inflight', 'done', 'rejected')),
    remote_id TEXT,
    code TEXT,
    message TEXT,
    run_id INTEGER,
    updated_at REAL NOT NULL,
    PRIMARY KEY (target, event_key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_inflight ON events (target, state) WHERE state = 'inflight';
CREATE TABLE IF NOT EXISTS contacts (
    target TEXT NOT NULL,
    email TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    props_hash TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (target, email)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS watermarks (
    target TEXT NOT NULL,
    stream TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (target, stream)
) WITHOUT ROWID;
"""

_SECRET_ARGS = frozenset({"api_key", "api-key", "apikey", "key", "password", "token"})


def scrub_args(args: dict[str, Any]) -> dict[str, Any]:
    """Arguments safe to record: anything that could hold a secret is dropped."""
    return {k: v for k, v in args.items() if k.lower() not in _SECRET_ARGS}


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _chunks(items: Sequence[Any], size: int = _BATCH) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class RunRecord:
    id: int
    command: str
    target: str
    args: dict[str, Any]
    started_at: str
    finished_at: str | None
    status: str
    counts: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "command": self.command,
            "target": self.target,
            "args": self.args,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "status": self.status,
            "counts": self.counts,
        }


@contextlib.contextmanager
def _translated(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        if "locked" in text or "busy" in text:
            msg = (
                f"the ledger {path} is locked by another process; wait for the other "
                "kraiter-sync run to finish, or use a different --state-dir"
            )
        elif "not a database" in text or "malformed" in text:
            msg = (
                f"the ledger {path} is damaged ({text}); move it aside and re-run: the next "
                "run re-verifies against Kraiter instead of trusting it"
            )
        else:
            msg = f"the ledger {path} cannot be used: {text}"
        raise StateError(msg) from None


class Ledger:
    """The SQLite ledger; open with ``Ledger(path)`` (creates it), close with ``close()``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"cannot create the state directory {self.path.parent}: {exc.strerror}"
            raise StateError(msg) from None
        with _translated(self.path):
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                msg = (
                    f"the ledger {self.path} was written by a newer kraiter-sync (schema "
                    f"{version} > {SCHEMA_VERSION}); upgrade kraiter-sync"
                )
                raise StateError(msg)
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with _translated(self.path):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- runs ----------------------------------------------------------------------------

    def start_run(self, command: str, target: str, args: dict[str, Any]) -> int:
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO runs (command, target, args, started_at, status) "
                "VALUES (?, ?, ?, ?, 'running')",
                (command, target, json.dumps(scrub_args(args), default=str), _now_iso()),
            )
            return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, status: str, counts: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, status = ?, counts = ? WHERE id = ?",
                (_now_iso(), status, json.dumps(counts, default=str), run_id),
            )

    def list_runs(self, *, limit: int = 50, command: str | None = None) -> list[RunRecord]:
        sql = "SELECT * FROM runs"
        params: list[Any] = []
        if command:
            sql += " WHERE command = ?"
            params.append(command)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        with _translated(self.path):
            rows = self._db.execute(sql, params).fetchall()
        return [
            RunRecord(
                id=r[0],
                command=r[1],
                target=r[2],
                args=json.loads(r[3]),
                started_at=r[4],
                finished_at=r[5],
                status=r[6],
                counts=json.loads(r[7]) if r[7] else None,
            )
            for r in rows
        ]

    # -- event keys ----------------------------------------------------------------------

    def key_states(self, target: str, keys: Sequence[str]) -> dict[str, str]:
        """State of each key the ledger knows (unknown keys are absent)."""
        out: dict[str, str] = {}
        with _translated(self.path):
            for part in _chunks(keys):
                marks = ",".join("?" * len(part))
                out.update(
                    self._db.execute(
                        f"SELECT event_key, state FROM events WHERE target = ? "
                        f"AND event_key IN ({marks})",
                        [target, *part],
                    ).fetchall()
                )
        return out

    def mark_inflight(self, target: str, keys: Iterable[str], run_id: int) -> None:
        """Record keys about to be sent — one transaction, before any request leaves."""
        now = time.time()
        with self._tx() as db:
            db.executemany(
                "INSERT INTO events (target, event_key, state, run_id, updated_at) "
                "VALUES (?, ?, 'inflight', ?, ?) ON CONFLICT (target, event_key) DO UPDATE "
                "SET state = 'inflight', run_id = excluded.run_id, "
                "updated_at = excluded.updated_at",
                [(target, key, run_id, now) for key in keys],
            )

    def mark_done(self, target: str, done: Iterable[tuple[str, str]]) -> None:
        now = time.time()
        with self._tx() as db:
            db.executemany(
                "INSERT INTO events (target, event_key, state, remote_id, updated_at) "
                "VALUES (?, ?, 'done', ?, ?) ON CONFLICT (target, event_key) DO UPDATE "
                "SET state = 'done', remote_id = excluded.remote_id, code = NULL, "
                "message = NULL, updated_at = excluded.updated_at",
                [(target, key, remote_id, now) for key, remote_id in done],
            )

    def mark_rejected(self, target: str, rejected: Iterable[tuple[str, str, str]]) -> None:
        now = time.time()
        with self._tx() as db:
            db.executemany(
                "INSERT INTO events (target, event_key, state, code, message, updated_at) "
                "VALUES (?, ?, 'rejected', ?, ?, ?) ON CONFLICT (target, event_key) DO UPDATE "
                "SET state = 'rejected', code = excluded.code, message = excluded.message, "
                "updated_at = excluded.updated_at",
                [(target, key, code, message, now) for key, code, message in rejected],
            )

    def forget(self, target: str, keys: Iterable[str]) -> None:
        """Drop keys (never sent after all, or to be re-sent by ``retry``)."""
        with self._tx() as db:
            db.executemany(
                "DELETE FROM events WHERE target = ? AND event_key = ?",
                [(target, key) for key in keys],
            )

    def inflight(self, target: str) -> list[str]:
        """Keys a killed run left inflight: they must be verified before re-sending."""
        with _translated(self.path):
            rows = self._db.execute(
                "SELECT event_key FROM events WHERE target = ? AND state = 'inflight'", (target,)
            ).fetchall()
        return [r[0] for r in rows]

    def count_states(self, target: str) -> dict[str, int]:
        with _translated(self.path):
            rows = self._db.execute(
                "SELECT state, COUNT(*) FROM events WHERE target = ? GROUP BY state", (target,)
            ).fetchall()
        return {state: int(n) for state, n in rows}

    # -- contacts cache ------------------------------------------------------------------

    def _contact_column(self, target: str, emails: Sequence[str], column: str) -> dict[str, str]:
        out: dict[str, str] = {}
        with _translated(self.path):
            for part in _chunks(emails):
                marks = ",".join("?" * len(part))
                out.update(
                    (email, value)
                    for email, value in self._db.execute(
                        f"SELECT email, {column} FROM contacts WHERE target = ? "
                        f"AND email IN ({marks})",
                        [target, *part],
                    ).fetchall()
                    if value is not None
                )
        return out

    def contact_ids(self, target: str, emails: Sequence[str]) -> dict[str, str]:
        """Known contact ids for these (normalised) emails."""
        return self._contact_column(target, emails, "contact_id")

    def contact_hashes(self, target: str, emails: Sequence[str]) -> dict[str, str]:
        """Hash of what was last written for each of these emails (when known)."""
        return self._contact_column(target, emails, "props_hash")

    def put_contacts(self, target: str, rows: Iterable[tuple[str, str, str | None]]) -> None:
        """Remember (email, contact id, hash); a None hash keeps the known one."""
        now = time.time()
        with self._tx() as db:
            db.executemany(
                "INSERT INTO contacts (target, email, contact_id, props_hash, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (target, email) DO UPDATE SET "
                "contact_id = excluded.contact_id, "
                "props_hash = COALESCE(excluded.props_hash, contacts.props_hash), "
                "updated_at = excluded.updated_at",
                [(target, email, cid, digest, now) for email, cid, digest in rows],
            )

    def forget_contacts(self, target: str, emails: Iterable[str]) -> None:
        with self._tx() as db:
            db.executemany(
                "DELETE FROM contacts WHERE target = ? AND email = ?",
                [(target, email) for email in emails],
            )

    # -- watermarks ----------------------------------------------------------------------

    def get_watermark(self, target: str, stream: str) -> str | None:
        with _translated(self.path):
            row = self._db.execute(
                "SELECT value FROM watermarks WHERE target = ? AND stream = ?", (target, stream)
            ).fetchone()
        return None if row is None else str(row[0])

    def set_watermark(self, target: str, stream: str, value: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO watermarks (target, stream, value, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (target, stream) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (target, stream, value, time.time()),
            )

    def clear_watermark(self, target: str, stream: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM watermarks WHERE target = ? AND stream = ?", (target, stream))


@contextlib.contextmanager
def state_lock(state_dir: str | Path) -> Iterator[None]:
    """Hold the lock on a state directory for one run.

    ``flock`` on ``<state-dir>/lock``: the kernel releases it when the holder dies, so a
    lock left by a killed run is taken over without ceremony. A live holder makes this
    raise :class:`LockHeldError` (exit 4) naming its pid.
    """
    directory = Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            msg = (
                f"another kraiter-sync run (pid {holder}) holds {path}; wait for it to "
                "finish, or use a different --state-dir"
            )
            raise LockHeldError(msg) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
