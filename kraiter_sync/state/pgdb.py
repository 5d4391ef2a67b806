"""One PostgreSQL state database: its connections, its schema, its errors.

:class:`PgDatabase` is what the store and its locks share: the URL split into what libpq
takes and the schema name (``?schema=NAME``, default ``kraiter_sync``), the URL shown
without its password (:attr:`PgDatabase.display`), a psycopg pool (connections are
handed out per call, so another thread may use it too), the schema migrated on open
(:mod:`~kraiter_sync.state.pgschema`: under an advisory lock, so machines starting at
once on an empty database apply each migration once; a newer schema is refused), and
the one boundary where psycopg errors become kraiter-sync's
(:mod:`~kraiter_sync.state.pgerrors`).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from kraiter_sync.config import split_state_url
from kraiter_sync.errors import StateError
from kraiter_sync.state.pgerrors import connect_error, translate
from kraiter_sync.state.pgschema import PG_MIGRATIONS, PG_SCHEMA_VERSION, SCHEMA_TABLE
from kraiter_sync.urls import redact_url

__all__ = ["Connection", "PgDatabase"]

Connection = psycopg.Connection[Any]


def _tool_version() -> str:
    from kraiter_sync import __version__

    return __version__


class PgDatabase:
    """The state schema of one PostgreSQL database (see the module docstring)."""

    def __init__(self, url: str, *, pool_size: int = 4, connect_timeout: float = 10.0) -> None:
        self.display = redact_url(url)
        conninfo, self.schema = split_state_url(url)
        password = urlsplit(url).password or ""
        #: What no message may quote (the password, as written and URL-quoted).
        self.secrets = [s for s in (password, quote(password, safe="")) if s]
        self._s = f'"{self.schema}"'
        params = conninfo_to_dict(conninfo)
        defaults: dict[str, str | int] = {
            "connect_timeout": max(int(connect_timeout), 1),
            "application_name": "kraiter-sync",
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }
        self._conninfo = make_conninfo("", **{**defaults, **params})  # the URL's own win
        first = self.connect()
        try:
            self._migrate(first)
        except psycopg.Error as exc:
            raise self.translate(exc) from None
        finally:
            first.close()
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            self._conninfo,
            kwargs={"autocommit": True},
            min_size=1,
            max_size=max(pool_size, 1),
            open=False,
            name="kraiter-sync-state",
            check=ConnectionPool.check_connection,
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout + 5)
        except psycopg.Error as exc:
            self._pool.close()
            raise connect_error(exc, self.display, self.secrets) from None

    def close(self) -> None:
        self._pool.close()

    def q(self, text: str) -> str:
        """``text`` with ``{s}`` as the quoted schema name (checked: a plain identifier)."""
        return text.format(s=self._s)

    def table(self, name: str) -> str:
        """``name`` qualified with the schema, for SQL text."""
        return f"{self._s}.{name}"

    def translate(self, exc: BaseException) -> StateError:
        return translate(exc, self.display, self.secrets, schema=self.schema)

    def connect(self) -> Connection:
        """A connection of its own (autocommit), outside the pool (a lock's)."""
        try:
            return psycopg.connect(self._conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise connect_error(exc, self.display, self.secrets) from None

    @contextlib.contextmanager
    def conn(self) -> Iterator[Connection]:
        """A pooled connection for the block; psycopg errors translated."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            raise self.translate(exc) from None

    @contextlib.contextmanager
    def tx(self) -> Iterator[Connection]:
        """A pooled connection in one transaction for the block."""
        with self.conn() as conn, conn.transaction():
            yield conn

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        """The rows of one statement (``{s}``: the schema)."""
        with self.conn() as conn:
            return conn.execute(self.q(sql), params).fetchall()

    def lock_key(self, name: str) -> int:
        """A 64-bit advisory lock key for ``name`` in this schema."""
        digest = hashlib.sha256(f"kraiter-sync\n{self.schema}\n{name}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def _version(self, conn: Connection) -> int:
        row = conn.execute("SELECT to_regclass(%s)", [f"{self._s}.schema_migrations"]).fetchone()
        if row is None or row[0] is None:
            return 0
        found = conn.execute(
            self.q("SELECT coalesce(max(version), 0) FROM {s}.schema_migrations")
        ).fetchone()
        return int(found[0]) if found else 0

    def _refuse_newer(self, version: int) -> None:
        if version > PG_SCHEMA_VERSION:
            msg = (
                f"the state store {self.display} (schema {self.schema}) has schema version "
                f"{version}, newer than this kraiter-sync understands ({PG_SCHEMA_VERSION}): "
                "upgrade kraiter-sync on every machine that shares this state"
            )
            raise StateError(msg)

    def _migrate(self, conn: Connection) -> None:
        """Bring the schema to :data:`PG_SCHEMA_VERSION`, once, whoever else starts now."""
        version = self._version(conn)
        self._refuse_newer(version)
        if version == PG_SCHEMA_VERSION:
            return
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [self.lock_key("schema")])
            conn.execute(self.q("CREATE SCHEMA IF NOT EXISTS {s}"))
            conn.execute(self.q(SCHEMA_TABLE))
            version = self._version(conn)  # another machine may have just done it
            self._refuse_newer(version)
            for number in range(version, PG_SCHEMA_VERSION):
                conn.execute(self.q(PG_MIGRATIONS[number]))
                conn.execute(
                    self.q("INSERT INTO {s}.schema_migrations (version, tool) VALUES (%s, %s)"),
                    [number + 1, _tool_version()],
                )

    @property
    def schema_version(self) -> int:
        with self.conn() as conn:
            return self._version(conn)
