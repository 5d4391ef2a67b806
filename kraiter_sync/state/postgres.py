"""The PostgreSQL state store: one state for every machine, container and worker.

A nightly sync on a CI runner, a Kubernetes CronJob or an Airflow worker starts on a fresh
disk each time; with ``--state postgresql://…`` everything it must remember lives in one
PostgreSQL schema instead (``kraiter_sync``, or ``?schema=NAME``), keyed by target like
the SQLite ledger, so several tenants share one database:

* the ledger (``events``, ``key_versions``), ``runs``, ``tenants``, ``contacts``,
  ``watermarks`` — the same rows and the same rules as :mod:`~kraiter_sync.state.ledger`;
* ``blobs`` — an export's state document, a sync job's row cache (whole values replaced in
  one statement);
* locks — session advisory locks, each held on a connection of its own for as long as
  the lock is held. When the holder dies, even by ``kill -9``, its connection closes
  and PostgreSQL frees the lock at once; a machine that vanishes is noticed by TCP
  keepalives (set on the server side of the lock's connection: about a minute). Who
  holds a lock is written in ``lock_holders``, so a refused run can name it (exit 5).
  The connection holding a run's lock is checked before every batch is marked inflight:
  a run that lost its lock (and so could now overlap another) stops before sending more.

Writes are batched: a chunk of keys is one statement over arrays (``unnest``), in one
transaction. Connections, the schema's migrations and the error boundary are
:class:`~kraiter_sync.state.pgdb.PgDatabase`'s (a pool, so blobs may be written from
another thread: an export's chunk writer); locks are
:class:`~kraiter_sync.state.pglocks.AdvisoryLocks`. The URL's password appears in no
message: :attr:`PostgresStore.display` is the URL without it.

Needs the extra ``kraiter-sync[postgres]`` (psycopg 3 and psycopg-pool).
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kraiter_sync.state.pgdb import Connection, PgDatabase
from kraiter_sync.state.pglocks import AdvisoryLocks, run_lock_name
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
from kraiter_sync.state.schema import KEY_VERSION
from kraiter_sync.state.store import BusyMessage, EventState, in_chunks, key_list
from kraiter_sync.state.tenants import tenant_conflict

__all__ = ["PostgresStore", "run_lock_name"]

#: Keys per statement for lookups (one array parameter each).
_CHUNK = 50_000


class PostgresStore:
    """The state in one PostgreSQL schema (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        state_dir: Path | str,
        pool_size: int = 4,
        connect_timeout: float = 10.0,
    ) -> None:
        self.db = PgDatabase(url, pool_size=pool_size, connect_timeout=connect_timeout)
        self.display = self.db.display
        self.schema = self.db.schema
        self.locks = AdvisoryLocks(self.db, Path(state_dir))
        self._targets: dict[str, int] = {}
        #: Called before every batch is marked inflight; each raises to stop sending (a
        #: worker's shard lease lost to another worker).
        self.guards: list[Callable[[], None]] = []

    # -------------------------------------------------------------- plumbing

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transaction(self) -> contextlib.AbstractContextManager[Connection]:
        """A connection in one transaction (``state migrate``'s bulk copy); psycopg errors
        are translated. Write table names as ``self.table(name)``."""
        return self.db.tx()

    def table(self, name: str) -> str:
        """``name`` qualified with this store's schema, for SQL text."""
        return self.db.table(name)

    @property
    def schema_version(self) -> int:
        return self.db.schema_version

    # -------------------------------------------------------------- event keys

    def _target_id(self, target: str) -> int:
        cached = self._targets.get(target)
        if cached is not None:
            return cached
        rows = self.db.query("SELECT id FROM {s}.targets WHERE name = %s", [target])
        if not rows:
            rows = self.db.query(
                "INSERT INTO {s}.targets (name) VALUES (%s) ON CONFLICT (name) DO UPDATE "
                "SET name = excluded.name RETURNING id",
                [target],
            )
        self._targets[target] = int(rows[0][0])
        return self._targets[target]

    def known_states(self, target: str, keys: Sequence[str] | Any) -> dict[str, EventState]:
        tid = self._target_id(target)
        found: dict[str, EventState] = {}
        for chunk in in_chunks(key_list(keys), _CHUNK):
            rows = self.db.query(
                "SELECT event_key, state FROM {s}.events WHERE target = %s "
                "AND event_key = ANY(%s::text[])",
                [tid, list(chunk)],
            )
            found.update((key, state) for key, state in rows)
        return found

    def mark_inflight(self, target: str, keys: Sequence[str] | Any, run_id: int | None) -> None:
        """Record ``keys`` as about to be sent, in one statement (call before sending)."""
        self.locks.check_held()
        for guard in self.guards:
            guard()
        tid = self._target_id(target)
        unique = list(dict.fromkeys(key_list(keys)))
        with self.db.tx() as conn:
            conn.execute(
                self.db.q(
                    "INSERT INTO {s}.events AS e (target, event_key, state, run_id, updated_at) "
                    "SELECT %s, k, 'inflight', %s, %s FROM unnest(%s::text[]) AS k "
                    "ON CONFLICT (target, event_key) DO UPDATE SET state = 'inflight', "
                    "run_id = excluded.run_id, updated_at = excluded.updated_at, code = NULL, "
                    "message = NULL WHERE e.state <> 'done'"
                ),
                [tid, run_id, time.time(), unique],
            )

    def mark_done(self, target: str, done: Iterable[tuple[str, str | None]]) -> None:
        """Record ``(key, remote_id)`` pairs as created on Kraiter."""
        tid = self._target_id(target)
        pairs = dict(done)
        with self.db.tx() as conn:
            conn.execute(
                self.db.q(
                    "INSERT INTO {s}.events AS e (target, event_key, state, remote_id, "
                    "updated_at) SELECT %s, k, 'done', r, %s "
                    "FROM unnest(%s::text[], %s::text[]) AS d(k, r) "
                    "ON CONFLICT (target, event_key) DO UPDATE SET state = 'done', "
                    "remote_id = excluded.remote_id, code = NULL, message = NULL, "
                    "updated_at = excluded.updated_at"
                ),
                [tid, time.time(), list(pairs), list(pairs.values())],
            )

    def mark_rejected(self, target: str, rejected: Iterable[tuple[str, str, str]]) -> None:
        """Record ``(key, code, message)`` triples as refused by Kraiter."""
        tid = self._target_id(target)
        last = {key: (code, message) for key, code, message in rejected}
        with self.db.tx() as conn:
            conn.execute(
                self.db.q(
                    "INSERT INTO {s}.events AS e (target, event_key, state, code, message, "
                    "updated_at) SELECT %s, k, 'rejected', c, m, %s "
                    "FROM unnest(%s::text[], %s::text[], %s::text[]) AS d(k, c, m) "
                    "ON CONFLICT (target, event_key) DO UPDATE SET state = 'rejected', "
                    "code = excluded.code, message = excluded.message, "
                    "updated_at = excluded.updated_at WHERE e.state <> 'done'"
                ),
                [
                    tid,
                    time.time(),
                    list(last),
                    [code for code, _ in last.values()],
                    [message for _, message in last.values()],
                ],
            )

    def inflight(self, target: str) -> list[str]:
        rows = self.db.query(
            "SELECT event_key FROM {s}.events WHERE target = %s AND state = 'inflight' "
            "ORDER BY event_key",
            [self._target_id(target)],
        )
        return [row[0] for row in rows]

    def forget(self, target: str, keys: Sequence[str] | Any) -> int:
        tid = self._target_id(target)
        removed = 0
        with self.db.tx() as conn:
            for chunk in in_chunks(key_list(keys), _CHUNK):
                cur = conn.execute(
                    self.db.q(
                        "DELETE FROM {s}.events WHERE target = %s AND event_key = ANY(%s::text[])"
                    ),
                    [tid, list(chunk)],
                )
                removed += cur.rowcount
        return removed

    def count_states(self, target: str) -> dict[str, int]:
        rows = self.db.query(
            "SELECT state, count(*) FROM {s}.events WHERE target = %s GROUP BY state",
            [self._target_id(target)],
        )
        return {state: int(n) for state, n in rows}

    def rejection(self, target: str, key: str) -> tuple[str, str] | None:
        rows = self.db.query(
            "SELECT code, message FROM {s}.events WHERE target = %s AND event_key = %s "
            "AND state = 'rejected'",
            [self._target_id(target), key],
        )
        return (rows[0][0], rows[0][1]) if rows else None

    def remote_id(self, target: str, key: str) -> str | None:
        rows = self.db.query(
            "SELECT remote_id FROM {s}.events WHERE target = %s AND event_key = %s",
            [self._target_id(target), key],
        )
        return rows[0][0] if rows else None

    def oldest_key_version(self, target: str) -> int:
        rows = self.db.query(
            "SELECT oldest FROM {s}.key_versions WHERE target = %s", [self._target_id(target)]
        )
        return int(rows[0][0]) if rows else KEY_VERSION

    def adopt_keys(self, target: str, pairs: Iterable[tuple[str, str]]) -> int:
        """As :meth:`Ledger.adopt_keys <kraiter_sync.state.ledger.Ledger.adopt_keys>`."""
        tid = self._target_id(target)
        listed = list(pairs)
        with self.db.tx() as conn:
            cur = conn.execute(
                self.db.q(
                    "INSERT INTO {s}.events (target, event_key, state, remote_id, code, "
                    "message, run_id, updated_at) SELECT %s, p.new, e.state, e.remote_id, "
                    "e.code, e.message, e.run_id, %s "
                    "FROM unnest(%s::text[], %s::text[]) AS p(old, new) "
                    "JOIN {s}.events AS e ON e.target = %s AND e.event_key = p.old "
                    "AND e.state IN ('done', 'rejected') ON CONFLICT DO NOTHING"
                ),
                [tid, time.time(), [o for o, _ in listed], [n for _, n in listed], tid],
            )
            return max(cur.rowcount, 0)

    # -------------------------------------------------------------- runs

    def start_run(self, command: str, target: str, args: Mapping[str, Any] | None = None) -> int:
        self.mark_killed_runs()
        rows = self.db.query(
            f"INSERT INTO {{s}}.runs ({NEW_RUN_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "RETURNING id",
            new_run(command, target, args),
        )
        return int(rows[0][0])

    def mark_killed_runs(self) -> list[int]:
        """Runs of this host still ``running`` whose process is gone become ``killed``;
        runs of other hosts are left alone (their processes cannot be seen from here)."""
        rows = self.db.query(
            "SELECT id, pid, proc_start FROM {s}.runs WHERE status = 'running' AND host = %s "
            "AND pid IS NOT NULL",
            [socket.gethostname()],
        )
        dead = [int(run_id) for run_id, pid, identity in rows if process_gone(pid, identity)]
        if dead:
            self.db.query(
                "UPDATE {s}.runs SET status = 'killed' WHERE id = ANY(%s::bigint[]) "
                "AND status = 'running' RETURNING id",
                [dead],
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
        with self.db.tx() as conn:
            conn.execute(
                self.db.q(
                    "UPDATE {s}.runs SET finished_at = %s, status = %s, counts = %s, "
                    "details = %s WHERE id = %s"
                ),
                [*finished_run(status, counts, details), run_id],
            )

    def get_run(self, run_id: int) -> RunRecord | None:
        rows = self.db.query(
            f"SELECT {RUN_COLUMNS}, details FROM {{s}}.runs WHERE id = %s", [run_id]
        )
        return run_with_details(rows[0]) if rows else None

    def list_runs(self, *, target: str | None = None, limit: int = 50) -> list[RunRecord]:
        sql, params = runs_query("{s}.runs", "%s", target, limit)
        return [run_record(row) for row in self.db.query(sql, params)]

    # -------------------------------------------------------------- tenants

    def bind_tenant(
        self, base: str, tenant: str, fingerprint: str, *, rotate: bool = False
    ) -> None:
        """As :meth:`Ledger.bind_tenant <kraiter_sync.state.ledger.Ledger.bind_tenant>`;
        the first binding wins when two machines bind a new name at once."""
        now = time.time()
        with self.db.tx() as conn:
            conn.execute(
                self.db.q(
                    "INSERT INTO {s}.tenants (base, tenant, key_fingerprint, updated_at) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (base, tenant) DO NOTHING"
                ),
                [base, tenant, fingerprint, now],
            )
            row = conn.execute(
                self.db.q(
                    "SELECT key_fingerprint FROM {s}.tenants WHERE base = %s AND tenant = %s "
                    "FOR UPDATE"
                ),
                [base, tenant],
            ).fetchone()
            if row is not None and row[0] != fingerprint:
                if not rotate:
                    raise tenant_conflict(base, tenant)
                conn.execute(
                    self.db.q(
                        "UPDATE {s}.tenants SET key_fingerprint = %s, updated_at = %s "
                        "WHERE base = %s AND tenant = %s"
                    ),
                    [fingerprint, now, base, tenant],
                )

    # -------------------------------------------------------------- watermarks

    def get_watermark(self, target: str, stream: str) -> str | None:
        rows = self.db.query(
            "SELECT value FROM {s}.watermarks WHERE target = %s AND stream = %s", [target, stream]
        )
        return rows[0][0] if rows else None

    def set_watermark(self, target: str, stream: str, value: str) -> None:
        with self.db.tx() as conn:
            conn.execute(
                self.db.q(
                    "INSERT INTO {s}.watermarks (target, stream, value, updated_at) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (target, stream) DO UPDATE SET "
                    "value = excluded.value, updated_at = excluded.updated_at"
                ),
                [target, stream, value, time.time()],
            )

    # -------------------------------------------------------------- contacts cache

    def get_contacts(
        self, target: str, emails: Sequence[str] | Any
    ) -> dict[str, tuple[str, str | None]]:
        return {email: (cid, digest) for email, cid, digest in self.contact_rows(target, emails)}

    def contact_rows(
        self, target: str, emails: Sequence[str] | Any
    ) -> list[tuple[str, str, str | None]]:
        """``(email, contact_id, props_hash)`` of the cached ones, in the order asked."""
        tid = self._target_id(target)
        found: list[tuple[str, str, str | None]] = []
        for chunk in in_chunks(key_list(emails), _CHUNK):
            found.extend(
                tuple(row)
                for row in self.db.query(
                    "SELECT c.email, c.contact_id, c.props_hash "
                    "FROM unnest(%s::text[]) WITH ORDINALITY AS w(email, n) "
                    "JOIN {s}.contacts AS c ON c.target = %s AND c.email = w.email ORDER BY w.n",
                    [list(chunk), tid],
                )
            )
        return found

    def put_contacts(self, target: str, contacts: Iterable[tuple[str, str, str | None]]) -> None:
        """Cache ``(email, contact_id, props_hash)`` triples; a None hash keeps the known one."""
        merged: dict[str, tuple[str, str | None]] = {}
        for email, cid, digest in contacts:
            if digest is None and email in merged:
                digest = merged[email][1]  # as one write after the other would keep it
            merged[email] = (cid, digest)
        if not merged:
            return
        tid = self._target_id(target)
        with self.db.tx() as conn:
            conn.execute(
                self.db.q(
                    "INSERT INTO {s}.contacts AS c (target, email, contact_id, props_hash, "
                    "updated_at) SELECT %s, e, i, h, %s "
                    "FROM unnest(%s::text[], %s::text[], %s::text[]) AS d(e, i, h) "
                    "ON CONFLICT (target, email) DO UPDATE SET "
                    "contact_id = excluded.contact_id, "
                    "props_hash = COALESCE(excluded.props_hash, c.props_hash), "
                    "updated_at = excluded.updated_at"
                ),
                [
                    tid,
                    time.time(),
                    list(merged),
                    [cid for cid, _ in merged.values()],
                    [digest for _, digest in merged.values()],
                ],
            )

    def forget_contacts(self, target: str, emails: Iterable[str]) -> None:
        tid = self._target_id(target)
        with self.db.tx() as conn:
            conn.execute(
                self.db.q("DELETE FROM {s}.contacts WHERE target = %s AND email = ANY(%s::text[])"),
                [tid, list(emails)],
            )

    # -------------------------------------------------------------- blobs

    def blob_label(self, name: str) -> str:
        return f"{self.display} ({name})"

    def read_blob(self, name: str) -> bytes | None:
        rows = self.db.query("SELECT data FROM {s}.blobs WHERE name = %s", [name])
        return bytes(rows[0][0]) if rows else None

    def write_blob(self, name: str, data: bytes) -> None:
        with self.db.tx() as conn:
            conn.execute(
                self.db.q(
                    "INSERT INTO {s}.blobs (name, data, updated_at) VALUES (%s, %s, %s) "
                    "ON CONFLICT (name) DO UPDATE SET data = excluded.data, "
                    "updated_at = excluded.updated_at"
                ),
                [name, data, time.time()],
            )

    def list_blobs(self, prefix: str) -> list[str]:
        rows = self.db.query(
            "SELECT name FROM {s}.blobs WHERE left(name, %s) = %s ORDER BY name",
            [len(prefix), prefix],
        )
        return [row[0] for row in rows]

    def delete_blobs(self, prefix: str, *, keep: str | None = None) -> int:
        with self.db.tx() as conn:
            cur = conn.execute(
                self.db.q(
                    "DELETE FROM {s}.blobs WHERE left(name, %s) = %s AND name IS DISTINCT FROM %s"
                ),
                [len(prefix), prefix, keep],
            )
            return cur.rowcount

    # -------------------------------------------------------------- locks

    # -------------------------------------------------------------- locks

    def lock(self, name: str, *, busy: BusyMessage) -> contextlib.AbstractContextManager[None]:
        return self.locks.lock(name, busy=busy)

    def run_lock(self, target: str) -> contextlib.AbstractContextManager[None]:
        return self.locks.run_lock(target)

    def worker_lock(self, target: str) -> contextlib.AbstractContextManager[None]:
        """The target's run lock held shared: one worker of an import run by several."""
        return self.locks.run_lock(target, shared=True)
