"""``kraiter-sync state migrate --to postgresql://…``: copy a state directory's SQLite
state into a PostgreSQL state store, verified by counts.

What is copied: every table of the ledger (targets, events, key versions, runs, tenants,
the contact cache, watermarks) and every blob (export state documents, sync row caches).
The copy is one PostgreSQL transaction: it is verified by counts per table and target
(events per state, blobs by size) before it commits, and leaves nothing behind when it
fails. The SQLite state is read under its own lock and left as it was.

A destination that already holds state for the same targets is refused unless
``replace``: then that state is deleted first, in the same transaction. Runs keep their
numbers when the destination has none; otherwise they are numbered after its last run.
The targets' run locks are held in the destination while copying, so no run on another
machine can write them meanwhile.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kraiter_sync.errors import ConfigError, InputError, StateError
from kraiter_sync.state.backend import open_postgres
from kraiter_sync.state.local import BLOB_AREAS, LocalStore, StateFiles
from kraiter_sync.state.lock import state_lock
from kraiter_sync.state.store import BusyMessage

if TYPE_CHECKING:
    from kraiter_sync.state.postgres import PostgresStore

__all__ = ["MigrateResult", "migrate_state"]

#: Rows read from SQLite at a time while streaming them into COPY.
_BATCH = 10_000


@dataclass
class MigrateResult:
    """What ``state migrate`` copied (every count verified in the destination)."""

    source: str
    destination: str
    schema: str
    targets: list[str]
    #: Rows (blobs: documents) copied per table.
    counts: dict[str, int] = field(default_factory=dict)
    #: Events copied per state (inflight ones are verified against Kraiter by the next run).
    events: dict[str, int] = field(default_factory=dict)
    replaced: bool = False
    #: Added to every run number (0: the numbers were kept).
    run_offset: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "schema": self.schema,
            "targets": self.targets,
            "counts": self.counts,
            "events": self.events,
            "replaced": self.replaced,
            "run_offset": self.run_offset,
        }


class _Source:
    """The SQLite state, read (the caller holds its lock)."""

    def __init__(self, state_dir: Path) -> None:
        self.directory = state_dir
        LocalStore(state_dir).close()  # brings the ledger to this version's schema
        self.db = sqlite3.connect(state_dir / "ledger.db")
        self.ids = dict(self.db.execute("SELECT id, name FROM targets").fetchall())
        names = set(self.ids.values())
        for table in ("runs", "contacts", "watermarks"):
            names.update(row[0] for row in self.db.execute(f"SELECT DISTINCT target FROM {table}"))
        self.targets = sorted(names)
        self.files = StateFiles(state_dir)
        self.blobs = [name for area in BLOB_AREAS for name in self.files.list_blobs(area)]

    def rows(self, sql: str) -> Iterator[tuple[Any, ...]]:
        cursor = self.db.execute(sql)
        while batch := cursor.fetchmany(_BATCH):
            yield from batch

    def counts(self) -> Counter[tuple[str, str]]:
        """(table, target or detail) → rows: what the destination must hold afterwards."""
        found: Counter[tuple[str, str]] = Counter()
        queries = {
            "events": "SELECT t.name || ':' || e.state, count(*) FROM events e "
            "JOIN targets t ON t.id = e.target GROUP BY t.name, e.state",
            "key_versions": "SELECT t.name, count(*) FROM key_versions k "
            "JOIN targets t ON t.id = k.target GROUP BY t.name",
            "contacts": "SELECT target, count(*) FROM contacts GROUP BY target",
            "runs": "SELECT target, count(*) FROM runs GROUP BY target",
            "watermarks": "SELECT target, count(*) FROM watermarks GROUP BY target",
            "tenants": "SELECT base || '#' || tenant || '#' || key_fingerprint, 1 FROM tenants",
        }
        for table, sql in queries.items():
            for key, n in self.db.execute(sql):
                found[(table, str(key))] += int(n)
        for name in self.blobs:
            data = self.files.read_blob(name) or b""
            found[("blobs", f"{name}:{len(data)}")] += 1
        return found

    def close(self) -> None:
        self.db.close()


def _destination_counts(conn: Any, q: Any, targets: list[str], blobs: list[str]) -> Counter[Any]:
    """The same counts as :meth:`_Source.counts`, read in the destination."""
    found: Counter[tuple[str, str]] = Counter()
    queries = {
        "events": f"SELECT t.name || ':' || e.state, count(*) FROM {q('events')} e "
        f"JOIN {q('targets')} t ON t.id = e.target WHERE t.name = ANY(%(t)s::text[]) "
        "GROUP BY t.name, e.state",
        "key_versions": f"SELECT t.name, count(*) FROM {q('key_versions')} k "
        f"JOIN {q('targets')} t ON t.id = k.target WHERE t.name = ANY(%(t)s::text[]) "
        "GROUP BY t.name",
        "contacts": f"SELECT t.name, count(*) FROM {q('contacts')} c "
        f"JOIN {q('targets')} t ON t.id = c.target WHERE t.name = ANY(%(t)s::text[]) "
        "GROUP BY t.name",
        "runs": f"SELECT target, count(*) FROM {q('runs')} WHERE target = ANY(%(t)s::text[]) "
        "GROUP BY target",
        "watermarks": f"SELECT target, count(*) FROM {q('watermarks')} "
        "WHERE target = ANY(%(t)s::text[]) GROUP BY target",
        "blobs": f"SELECT name || ':' || octet_length(data), 1 FROM {q('blobs')} "
        "WHERE name = ANY(%(b)s::text[])",
    }
    for table, sql in queries.items():
        for key, n in conn.execute(sql, {"t": targets, "b": blobs}).fetchall():
            found[(table, str(key))] += int(n)
    return found


def _conflicts(conn: Any, q: Any, source: _Source) -> list[str]:
    """What the destination already holds for the source's targets, in words."""
    found = []
    for target in source.targets:
        held = []
        for table, column, by_id in (
            ("events", "target", True),
            ("contacts", "target", True),
            ("runs", "target", False),
            ("watermarks", "target", False),
        ):
            where = (
                f"{column} = (SELECT id FROM {q('targets')} WHERE name = %s)"
                if by_id
                else f"{column} = %s"
            )
            row = conn.execute(f"SELECT count(*) FROM {q(table)} WHERE {where}", [target])
            n = int(row.fetchone()[0])
            if n:
                held.append(f"{n:,} {table}")
        if held:
            found.append(f"{target}: {', '.join(held)}")
    for base, tenant, fingerprint in source.db.execute(
        "SELECT base, tenant, key_fingerprint FROM tenants"
    ):
        row = conn.execute(
            f"SELECT key_fingerprint FROM {q('tenants')} WHERE base = %s AND tenant = %s",
            [base, tenant],
        ).fetchone()
        if row is not None and row[0] != fingerprint:
            found.append(f"tenant {tenant!r} on {base}, bound to another key")
    if source.blobs:
        rows = conn.execute(
            f"SELECT name FROM {q('blobs')} WHERE name = ANY(%s::text[])", [source.blobs]
        ).fetchall()
        found.extend(f"{name}" for (name,) in rows)
    return found


def _delete(conn: Any, q: Any, source: _Source) -> None:
    """Remove the destination's state of the source's targets (``replace``)."""
    targets = source.targets
    ids = f"(SELECT id FROM {q('targets')} WHERE name = ANY(%s::text[]))"
    for table in ("events", "contacts", "key_versions"):
        conn.execute(f"DELETE FROM {q(table)} WHERE target IN {ids}", [targets])
    for table in ("runs", "watermarks"):
        conn.execute(f"DELETE FROM {q(table)} WHERE target = ANY(%s::text[])", [targets])
    for base, tenant in source.db.execute("SELECT base, tenant FROM tenants"):
        conn.execute(f"DELETE FROM {q('tenants')} WHERE base = %s AND tenant = %s", [base, tenant])
    conn.execute(f"DELETE FROM {q('blobs')} WHERE name = ANY(%s::text[])", [source.blobs])


def _copy(conn: Any, q: Any, source: _Source, offset: int) -> None:
    """Every row and blob of the source into the destination (one transaction)."""
    dest_ids: dict[str, int] = {}
    for name in source.targets:
        row = conn.execute(
            f"INSERT INTO {q('targets')} (name) VALUES (%s) ON CONFLICT (name) DO UPDATE "
            "SET name = excluded.name RETURNING id",
            [name],
        ).fetchone()
        dest_ids[name] = int(row[0])
    by_id = {tid: dest_ids[name] for tid, name in source.ids.items()}
    cursor = conn.cursor()
    with cursor.copy(
        f"COPY {q('runs')} (id, command, target, args, started_at, finished_at, status, "
        "counts, pid, host, proc_start, details) FROM STDIN"
    ) as copy:
        for row in source.rows(
            "SELECT id, command, target, args, started_at, finished_at, status, counts, pid, "
            "host, proc_start, details FROM runs ORDER BY id"
        ):
            copy.write_row((row[0] + offset, *row[1:]))
    conn.execute(
        f"SELECT setval(pg_get_serial_sequence(%s, 'id'), max(id)) FROM {q('runs')} "
        "HAVING max(id) IS NOT NULL",
        [q("runs")],
    )
    with cursor.copy(
        f"COPY {q('events')} (target, event_key, state, remote_id, code, message, run_id, "
        "updated_at) FROM STDIN"
    ) as copy:
        for tid, key, state, remote_id, code, message, run_id, updated in source.rows(
            "SELECT target, event_key, state, remote_id, code, message, run_id, updated_at "
            "FROM events"
        ):
            run = None if run_id is None else run_id + offset
            copy.write_row((by_id[tid], key, state, remote_id, code, message, run, updated))
    with cursor.copy(
        f"COPY {q('contacts')} (target, email, contact_id, props_hash, updated_at) FROM STDIN"
    ) as copy:
        for target, email, contact_id, digest, updated in source.rows(
            "SELECT target, email, contact_id, props_hash, updated_at FROM contacts"
        ):
            copy.write_row((dest_ids[target], email, contact_id, digest, updated))
    for tid, oldest in source.rows("SELECT target, oldest FROM key_versions"):
        conn.execute(
            f"INSERT INTO {q('key_versions')} AS k (target, oldest) VALUES (%s, %s) "
            "ON CONFLICT (target) DO UPDATE SET oldest = least(k.oldest, excluded.oldest)",
            [by_id[tid], oldest],
        )
    for row in source.rows("SELECT target, stream, value, updated_at FROM watermarks"):
        conn.execute(
            f"INSERT INTO {q('watermarks')} (target, stream, value, updated_at) "
            "VALUES (%s, %s, %s, %s)",
            row,
        )
    for row in source.rows("SELECT base, tenant, key_fingerprint, updated_at FROM tenants"):
        conn.execute(
            f"INSERT INTO {q('tenants')} (base, tenant, key_fingerprint, updated_at) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (base, tenant) DO NOTHING",
            row,
        )
    for name in source.blobs:
        conn.execute(
            f"INSERT INTO {q('blobs')} (name, data, updated_at) "
            "VALUES (%s, %s, extract(epoch FROM now()))",
            [name, source.files.read_blob(name) or b""],
        )


def _tenants_present(conn: Any, q: Any, source: _Source) -> Counter[tuple[str, str]]:
    found: Counter[tuple[str, str]] = Counter()
    for base, tenant, fingerprint in source.db.execute(
        "SELECT base, tenant, key_fingerprint FROM tenants"
    ):
        row = conn.execute(
            f"SELECT 1 FROM {q('tenants')} WHERE base = %s AND tenant = %s "
            "AND key_fingerprint = %s",
            [base, tenant, fingerprint],
        ).fetchone()
        if row is not None:
            found[("tenants", f"{base}#{tenant}#{fingerprint}")] += 1
    return found


def _busy(target: str, store: PostgresStore) -> BusyMessage:
    def busy(holder: str) -> str:
        return (
            f"a kraiter-sync run ({holder or 'holder unknown'}) is using the state of {target} "
            f"in {store.display}: wait for it to finish, then migrate"
        )

    return busy


def migrate_state(state_dir: Path | str, to: str, *, replace: bool = False) -> MigrateResult:
    """Copy the SQLite state of ``state_dir`` into the PostgreSQL store ``to``.

    Raises InputError (exit 2) when there is no SQLite state, ConfigError (exit 2) when
    the destination already holds state of the same targets and ``replace`` is false,
    LockHeldError (exit 5) when a run uses either side, StateError when a count differs
    (nothing is kept then).
    """
    directory = Path(state_dir)
    if not (directory / "ledger.db").is_file():
        msg = (
            f"there is no SQLite state in {directory} (no ledger.db): pass the --state-dir "
            "your runs used"
        )
        raise InputError(msg)
    with state_lock(directory), contextlib.closing(_Source(directory)) as source:
        store = open_postgres(to, directory)
        with contextlib.closing(store), contextlib.ExitStack() as locks:
            from kraiter_sync.state.pglocks import run_lock_name  # needs the extra

            for target in source.targets:
                locks.enter_context(store.lock(run_lock_name(target), busy=_busy(target, store)))
            result = MigrateResult(
                str(directory), store.display, store.schema, source.targets, replaced=replace
            )
            expected = source.counts()
            with store.transaction() as conn:
                q = store.table
                held = _conflicts(conn, q, source)
                if held and not replace:
                    more = f"; and {len(held) - 5} more" if len(held) > 5 else ""
                    shown = "; ".join(held[:5]) + more
                    msg = (
                        f"{store.display} (schema {store.schema}) already holds state for these "
                        f"targets ({shown}): pass --replace to overwrite it with the state of "
                        f"{directory}, or migrate into another database or ?schema=NAME"
                    )
                    raise ConfigError(msg)
                if held:
                    _delete(conn, q, source)
                row = conn.execute(f"SELECT coalesce(max(id), 0) FROM {q('runs')}").fetchone()
                result.run_offset = int(row[0]) if row else 0
                _copy(conn, q, source, result.run_offset)
                found = _destination_counts(conn, q, source.targets, source.blobs)
                found.update(_tenants_present(conn, q, source))
                if found != expected:
                    differ = sorted(set(found.items()) ^ set(expected.items()))[:5]
                    msg = (
                        f"the copy into {store.display} does not match {directory} by counts "
                        f"({differ}); nothing was kept. Run it again; if it differs again, "
                        "report it"
                    )
                    raise StateError(msg)
            for (table, key), n in expected.items():
                result.counts[table] = result.counts.get(table, 0) + n
                if table == "events":
                    state = key.rsplit(":", 1)[1]
                    result.events[state] = result.events.get(state, 0) + n
    return result
