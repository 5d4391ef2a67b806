"""The ledger: SQLite state that makes imports exactly-once and resumable (design.md §4).

One database file (WAL, ``synchronous=NORMAL``) in the state directory holds, per
*target* (``Settings.target``: base URL + key fingerprint, never the key):

* ``events``: each event key's state, ``inflight`` (written, in one transaction per
  batch, **before** the requests leave) → ``done`` with the remote id, or
  ``rejected`` with Kraiter's code and message. ``inflight`` rows that survive a run
  are the ambiguous leftovers of a crash, to be verified before anything is re-sent.
* ``key_versions``: the targets whose events may hold keys of an earlier key version
  (:data:`KEY_VERSION`; 1: text values such as CSV columns were sent as text, 2: they
  are typed, 3: NDJSON and JSON column values keep their JSON type). An import to such
  a target also computes the earlier key of rows whose key changed, and finds them
  under it (:meth:`Ledger.adopt_keys`).
* ``runs``: one row per command run, with its arguments (scrubbed of secrets), final
  counts, ``details`` for its report (request timeline, rejects by rule), and the
  process that ran it (pid, host, and the process's start identity, so a
  run whose process died is told apart from a live one even when its pid was reused):
  :meth:`Ledger.mark_killed_runs` turns such ``running`` rows into ``killed``.
* ``tenants``: the key fingerprint each ``--tenant`` name was first used with, per base
  URL, so another account's key cannot slip into that tenant's ledger unnoticed.
* ``contacts``: the "this email exists, with these properties" cache.
* ``watermarks``: per stream, how far an incremental sync got.

Concurrency: the engine runs in one asyncio loop and calls the ledger synchronously
with whole batches (thousands of keys per call), so each call is short and one
connection is enough; do not share a :class:`Ledger` between threads. Another
*process* is kept out by :func:`state_lock`.

Every ``sqlite3`` error is translated into :class:`~kraiter_sync.errors.StateError` with
the next step to take (``state.ledger_file.translate``), and the file is opened only when
it is a ledger: a zero-byte or foreign ``ledger.db`` is refused, never taken for an empty
ledger, and a new one is created whole (``state.ledger_file``).
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kraiter_sync.config import key_fingerprint
from kraiter_sync.errors import StateError
from kraiter_sync.state.ledger_file import open_ledger_db, translate
from kraiter_sync.state.lock import ensure_state_dir
from kraiter_sync.state.runs import (
    NEW_RUN_COLUMNS,
    RUN_COLUMNS,
    RunRecord,
    finished_run,
    new_run,
    process_gone,
    run_record,
    run_with_details,
    runs_query,
)
from kraiter_sync.state.schema import KEY_VERSION, MIGRATIONS, SCHEMA_VERSION
from kraiter_sync.state.store import EventState, RunLog, in_chunks, key_list
from kraiter_sync.state.tenants import tenant_conflict

if TYPE_CHECKING:
    from kraiter_sync.config import Settings

__all__ = [
    "KEY_VERSION",
    "SCHEMA_VERSION",
    "Ledger",
    "check_tenant",
]


#: Keys per SQL statement for chunked lookups (well under SQLite's variable limit).
_CHUNK = 10_000


class Ledger:
    """The SQLite state of one state directory (see the module docstring)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._targets: dict[str, int] = {}
        #: Whether SQLite has ``json_each`` (built in since 3.38; older builds may lack it).
        self._json_each = True
        ensure_state_dir(self.path.parent)
        self._db = open_ledger_db(self.path, self._migrate)

    # -------------------------------------------------------------- plumbing

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            msg = (
                f"the ledger {self.path} has schema version {version}, newer than this "
                f"kraiter-sync understands ({SCHEMA_VERSION}): upgrade kraiter-sync"
            )
            raise StateError(msg)
        for number in range(version, SCHEMA_VERSION):
            db.execute("BEGIN IMMEDIATE")
            # another process opening the same older file may have migrated meanwhile
            if db.execute("PRAGMA user_version").fetchone()[0] > number:
                db.execute("COMMIT")
                continue
            try:
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number + 1}")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @property
    def schema_version(self) -> int:
        return int(self._query("PRAGMA user_version")[0][0])

    # -------------------------------------------------------------- event keys

    def _target_id(self, target: str) -> int:
        """Event rows carry a small integer per target: shorter keys, faster batches."""
        cached = self._targets.get(target)
        if cached is not None:
            return cached
        rows = self._query("SELECT id FROM targets WHERE name = ?", [target])
        if not rows:
            with self._tx() as db:
                db.execute("INSERT OR IGNORE INTO targets (name) VALUES (?)", (target,))
            rows = self._query("SELECT id FROM targets WHERE name = ?", [target])
        self._targets[target] = int(rows[0][0])
        return self._targets[target]

    def known_states(self, target: str, keys: Sequence[str] | Any) -> dict[str, EventState]:
        """The state of every key in ``keys`` that the ledger knows (absent = never sent)."""
        wanted = key_list(keys)
        tid = self._target_id(target)
        found: dict[str, EventState] = {}
        for chunk in in_chunks(wanted, _CHUNK):
            marks = ",".join("?" * len(chunk))
            rows = self._query(
                f"SELECT event_key, state FROM events WHERE target = ? AND event_key IN ({marks})",
                [tid, *chunk],
            )
            found.update((key, state) for key, state in rows)
        return found

    def mark_inflight(self, target: str, keys: Sequence[str] | Any, run_id: int | None) -> None:
        """Record ``keys`` as about to be sent, in one transaction (call before sending)."""
        now = time.time()
        tid = self._target_id(target)
        rows = [(tid, key, run_id, now) for key in key_list(keys)]
        with self._tx() as db:
            db.executemany(
                "INSERT INTO events (target, event_key, state, run_id, updated_at) "
                "VALUES (?, ?, 'inflight', ?, ?) "
                "ON CONFLICT (target, event_key) DO UPDATE SET state = 'inflight', "
                "run_id = excluded.run_id, updated_at = excluded.updated_at, code = NULL, "
                "message = NULL WHERE events.state != 'done'",
                rows,
            )

    def mark_done(self, target: str, done: Iterable[tuple[str, str | None]]) -> None:
        """Record ``(key, remote_id)`` pairs as created on Kraiter."""
        now = time.time()
        tid = self._target_id(target)
        rows = [(remote_id, now, tid, key) for key, remote_id in done]
        with self._tx() as db:
            # Keys are normally inflight already: a plain UPDATE by primary key is the
            # fast path; keys the ledger never saw are inserted afterwards.
            cur = db.executemany(
                "UPDATE events SET state = 'done', remote_id = ?1, code = NULL, "
                "message = NULL, updated_at = ?2 WHERE target = ?3 AND event_key = ?4",
                rows,
            )
            if cur.rowcount < len(rows):
                db.executemany(
                    "INSERT OR IGNORE INTO events (target, event_key, state, remote_id, "
                    "updated_at) VALUES (?3, ?4, 'done', ?1, ?2)",
                    rows,
                )

    def mark_rejected(self, target: str, rejected: Iterable[tuple[str, str, str]]) -> None:
        """Record ``(key, code, message)`` triples as refused by Kraiter."""
        now = time.time()
        tid = self._target_id(target)
        rows = [(tid, key, code, message, now) for key, code, message in rejected]
        with self._tx() as db:
            db.executemany(
                "INSERT INTO events (target, event_key, state, code, message, updated_at) "
                "VALUES (?, ?, 'rejected', ?, ?, ?) "
                "ON CONFLICT (target, event_key) DO UPDATE SET state = 'rejected', "
                "code = excluded.code, message = excluded.message, "
                "updated_at = excluded.updated_at WHERE events.state != 'done'",
                rows,
            )

    def inflight(self, target: str) -> list[str]:
        """Keys left ``inflight`` (by a crashed or killed run): verify before re-sending."""
        rows = self._query(
            "SELECT event_key FROM events WHERE target = ? AND state = 'inflight' "
            "ORDER BY event_key",
            [self._target_id(target)],
        )
        return [row[0] for row in rows]

    def forget(self, target: str, keys: Sequence[str] | Any) -> int:
        """Drop keys (e.g. rejected ones the user fixed) so they are sent again."""
        removed = 0
        tid = self._target_id(target)
        with self._tx() as db:
            for chunk in in_chunks(key_list(keys), _CHUNK):
                marks = ",".join("?" * len(chunk))
                cur = db.execute(
                    f"DELETE FROM events WHERE target = ? AND event_key IN ({marks})",
                    [tid, *chunk],
                )
                removed += cur.rowcount
        return removed

    def count_states(self, target: str) -> dict[str, int]:
        rows = self._query(
            "SELECT state, count(*) FROM events WHERE target = ? GROUP BY state",
            [self._target_id(target)],
        )
        return {state: int(n) for state, n in rows}

    def rejection(self, target: str, key: str) -> tuple[str, str] | None:
        rows = self._query(
            "SELECT code, message FROM events WHERE target = ? AND event_key = ? "
            "AND state = 'rejected'",
            [self._target_id(target), key],
        )
        return (rows[0][0], rows[0][1]) if rows else None

    def oldest_key_version(self, target: str) -> int:
        """The oldest event key version this target's ledger may hold (see the module
        docstring); :data:`KEY_VERSION` for targets first used by this version."""
        rows = self._query(
            "SELECT oldest FROM key_versions WHERE target = ?", [self._target_id(target)]
        )
        return int(rows[0][0]) if rows else KEY_VERSION

    def adopt_keys(self, target: str, pairs: Iterable[tuple[str, str]]) -> int:
        """Record each new key in the state its old key has (``done`` with the same remote
        id, or ``rejected``), for ``(old, new)`` pairs of the same event under two key
        versions, so that later runs find it under the new key at once."""
        tid = self._target_id(target)
        rows = [(tid, new, time.time(), tid, old) for old, new in pairs]
        with self._tx() as db:
            cur = db.executemany(
                "INSERT OR IGNORE INTO events (target, event_key, state, remote_id, code, "
                "message, run_id, updated_at) SELECT ?, ?, state, remote_id, code, message, "
                "run_id, ? FROM events WHERE target = ? AND event_key = ? "
                "AND state IN ('done', 'rejected')",
                rows,
            )
            return max(cur.rowcount, 0)

    def remote_id(self, target: str, key: str) -> str | None:
        rows = self._query(
            "SELECT remote_id FROM events WHERE target = ? AND event_key = ?",
            [self._target_id(target), key],
        )
        return rows[0][0] if rows else None

    # -------------------------------------------------------------- runs

    def start_run(self, command: str, target: str, args: Mapping[str, Any] | None = None) -> int:
        """Open a run; ``args`` are scrubbed of secrets before they are stored. The run
        records this process (pid, host, start identity); runs left ``running`` by dead
        processes are marked ``killed`` first."""
        self.mark_killed_runs()
        with self._tx() as db:
            cur = db.execute(
                f"INSERT INTO runs ({NEW_RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                new_run(command, target, args),
            )
        return int(cur.lastrowid or 0)

    def mark_killed_runs(self) -> list[int]:
        """Mark ``killed`` the runs still ``running`` whose process on this host is gone
        (or whose pid now belongs to another process); returns their ids. Runs recorded
        on another host are left alone: their processes cannot be seen from here."""
        rows = self._query(
            "SELECT id, pid, proc_start FROM runs WHERE status = 'running' AND host = ? "
            "AND pid IS NOT NULL",
            [socket.gethostname()],
        )
        dead = [int(run_id) for run_id, pid, identity in rows if process_gone(pid, identity)]
        if dead:
            with self._tx() as db:
                db.executemany(
                    "UPDATE runs SET status = 'killed' WHERE id = ? AND status = 'running'",
                    [(run_id,) for run_id in dead],
                )
        return dead

    def finish_run(
        self,
        run_id: int,
        status: str,
        counts: Mapping[str, Any] | None = None,
        *,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Close a run with its status and counts, and ``details`` for its report."""
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, status = ?, counts = ?, details = ? WHERE id = ?",
                (*finished_run(status, counts, details), run_id),
            )

    def get_run(self, run_id: int) -> RunRecord | None:
        """One run, with its :attr:`RunRecord.details`."""
        rows = self._query(f"SELECT {RUN_COLUMNS}, details FROM runs WHERE id = ?", [run_id])
        return run_with_details(rows[0]) if rows else None

    def list_runs(self, *, target: str | None = None, limit: int = 50) -> list[RunRecord]:
        """Most recent first."""
        sql, params = runs_query("runs", "?", target, limit)
        return [run_record(row) for row in self._query(sql, params)]

    # -------------------------------------------------------------- tenants

    def bind_tenant(
        self, base: str, tenant: str, fingerprint: str, *, rotate: bool = False
    ) -> None:
        """Remember the key (its fingerprint) a tenant name is used with on ``base``; a
        different key is refused (ConfigError) unless ``rotate`` makes it the new one."""
        now = time.time()
        with self._tx() as db:
            row = db.execute(
                "SELECT key_fingerprint FROM tenants WHERE base = ? AND tenant = ?",
                (base, tenant),
            ).fetchone()
            if row is not None and row[0] != fingerprint and not rotate:
                raise tenant_conflict(base, tenant)
            if row is None or row[0] != fingerprint:
                db.execute(
                    "INSERT INTO tenants (base, tenant, key_fingerprint, updated_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (base, tenant) DO UPDATE SET "
                    "key_fingerprint = excluded.key_fingerprint, "
                    "updated_at = excluded.updated_at",
                    (base, tenant, fingerprint, now),
                )

    # -------------------------------------------------------------- watermarks

    def get_watermark(self, target: str, stream: str) -> str | None:
        rows = self._query(
            "SELECT value FROM watermarks WHERE target = ? AND stream = ?", [target, stream]
        )
        return rows[0][0] if rows else None

    def set_watermark(self, target: str, stream: str, value: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO watermarks (target, stream, value, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (target, stream) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (target, stream, value, time.time()),
            )

    # -------------------------------------------------------------- contacts cache

    def get_contacts(
        self, target: str, emails: Sequence[str] | Any
    ) -> dict[str, tuple[str, str | None]]:
        """``email → (contact_id, props_hash)`` for the cached ones among ``emails``."""
        return {email: (cid, digest) for email, cid, digest in self.contact_rows(target, emails)}

    def contact_rows(
        self, target: str, emails: Sequence[str] | Any
    ) -> list[tuple[str, str, str | None]]:
        """``(email, contact_id, props_hash)`` of the cached ones among ``emails``.

        One statement whatever the number of emails: they go in as one JSON array
        (``json_each``) and each is one primary-key seek, in the array's order
        (``CROSS JOIN`` keeps SQLite from scanning the cache instead).
        """
        wanted = key_list(emails)
        if not wanted:
            return []
        if self._json_each:
            try:
                return self._db.execute(
                    "SELECT c.email, c.contact_id, c.props_hash FROM json_each(?) AS w "
                    "CROSS JOIN contacts AS c ON c.target = ? AND c.email = w.value",
                    [json.dumps(wanted), target],
                ).fetchall()
            except sqlite3.OperationalError as exc:
                if "json_each" not in str(exc):
                    raise translate(exc, self.path) from None
                self._json_each = False  # an SQLite built without its JSON functions
        found: list[tuple[str, str, str | None]] = []
        for chunk in in_chunks(wanted, _CHUNK):
            marks = ",".join("?" * len(chunk))
            found.extend(
                self._query(
                    "SELECT email, contact_id, props_hash FROM contacts "
                    f"WHERE target = ? AND email IN ({marks})",
                    [target, *chunk],
                )
            )
        return found

    def put_contacts(self, target: str, contacts: Iterable[tuple[str, str, str | None]]) -> None:
        """Cache ``(email, contact_id, props_hash)`` triples; a None hash keeps the known one
        (making sure a contact exists says nothing about its properties)."""
        now = time.time()
        rows = [(target, email, cid, props, now) for email, cid, props in contacts]
        with self._tx() as db:
            db.executemany(
                "INSERT INTO contacts (target, email, contact_id, props_hash, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (target, email) DO UPDATE SET "
                "contact_id = excluded.contact_id, "
                "props_hash = COALESCE(excluded.props_hash, contacts.props_hash), "
                "updated_at = excluded.updated_at",
                rows,
            )

    def forget_contacts(self, target: str, emails: Iterable[str]) -> None:
        """Drop contacts from the cache (deleted in Kraiter: the next import recreates them)."""
        with self._tx() as db:
            db.executemany(
                "DELETE FROM contacts WHERE target = ? AND email = ?",
                [(target, email) for email in emails],
            )


def check_tenant(ledger: RunLog, settings: Settings) -> None:
    """With a ``--tenant`` name, make sure this key is the one that name belongs to
    (:meth:`Ledger.bind_tenant`); ``settings.tenant_rotate`` accepts a new one."""
    if settings.tenant is None or settings.local:
        return
    ledger.bind_tenant(
        settings.base_url,
        settings.tenant,
        key_fingerprint(settings.api_key),
        rotate=settings.tenant_rotate,
    )
