"""A database target (``--to duckdb:///FILE``, ``--to postgresql://…``): one connection,
its SQL dialect, and the one boundary where driver errors become ours.

Drivers are the ones the ``sql`` extra already brings for SQL sources: ``duckdb`` and
``adbc-driver-postgresql`` (libpq ``COPY`` for staging rows). No ORM and no query
builder: the few statements an upsert needs are written here, identifiers always
quoted, values always bound. A password in the URL never appears in a message, a log
line or the state (:attr:`Database.display` is the URL without it).
"""

from __future__ import annotations

import contextlib
import importlib
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import polars as pl

from kraiter_sync.errors import ConfigError, StateError
from kraiter_sync.export.choices import DATABASE_SCHEMES
from kraiter_sync.urls import redact_url

__all__ = ["Database", "quote"]

_INSTALL_HINT = "install it with: pip install 'kraiter-sync[sql]'"
_CONNECTION_WORDS = re.compile(
    r"connect|connection refused|password authentication|could not translate host|"
    r"no such host|timeout expired|server closed|database .* does not exist|"
    r"role .* does not exist|could not set lock|conflicting lock",
    re.IGNORECASE,
)


def quote(name: str) -> str:
    """An identifier, quoted (standard double quotes: both dialects)."""
    return '"' + name.replace('"', '""') + '"'


def _driver(module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        msg = f"exporting into a database needs the {package} package; {_INSTALL_HINT}"
        raise ConfigError(msg) from None


def _is_driver_error(exc: BaseException) -> bool:
    root = type(exc).__module__.split(".")[0]
    return root in {"duckdb", "_duckdb", "adbc_driver_manager", "adbc_driver_postgresql"} or (
        isinstance(exc, OSError)
    )


class Database:
    """One connection to a database target, in explicit transactions."""

    def __init__(self, url: str, *, base_dir: Path | None = None) -> None:
        self.url = url.strip()
        self.display = redact_url(self.url)
        scheme = self.url.split("://", 1)[0].lower()
        self.dialect = DATABASE_SCHEMES[scheme]
        try:
            password = urlsplit(self.url).password
        except ValueError:
            password = None
        self._secrets = (
            sorted({password, unquote(password)}, key=len, reverse=True) if password else []
        )
        self._base_dir = base_dir
        self._conn: Any = None

    # ---- connection --------------------------------------------------------------------

    def path(self) -> Path:
        """A DuckDB file: ``duckdb:///rel.duckdb`` or ``duckdb:////abs/file.duckdb``."""
        rest = self.url.split("://", 1)[1]
        text = unquote(rest[1:].split("?", 1)[0]) if rest.startswith("/") else ""
        if not text:
            msg = (
                f"{self.display}: name the database file after three slashes, e.g. "
                "duckdb:///analytics.duckdb (relative) or duckdb:////srv/analytics.duckdb"
            )
            raise ConfigError(msg)
        path = Path(text).expanduser()
        if not path.is_absolute() and self._base_dir is not None:
            path = self._base_dir / path
        return path

    def connect(self) -> None:
        with self.translated("cannot open"):
            if self.dialect == "duckdb":
                duckdb = _driver("duckdb", "duckdb")
                path = self.path()
                path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = duckdb.connect(str(path))
            else:
                adbc = _driver("adbc_driver_postgresql.dbapi", "adbc-driver-postgresql")
                self._conn = adbc.connect(self.url, autocommit=False)

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def __enter__(self) -> Database:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- errors ------------------------------------------------------------------------

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text.replace(self.url, self.display)

    @contextlib.contextmanager
    def translated(self, doing: str) -> Iterator[None]:
        """Driver exceptions → ConfigError (cannot connect) or StateError, scrubbed."""
        try:
            yield
        except (ConfigError, StateError):
            raise
        except Exception as exc:
            if not _is_driver_error(exc):
                raise
            lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
            detail = self.scrub(" ".join(lines[:3]) or type(exc).__name__)
            if doing == "cannot open" or _CONNECTION_WORDS.search(detail):
                msg = (
                    f"{self.display}: cannot connect ({detail}); check the path or the host, "
                    "port, database name and credentials, and that nothing else holds the "
                    "database open for writing"
                )
                raise ConfigError(msg) from None
            msg = f"{self.display}: {doing} failed ({detail}); fix the cause and re-run to resume"
            raise StateError(msg) from None

    # ---- statements --------------------------------------------------------------------

    def _cursor(self) -> Any:
        return self._conn if self.dialect == "duckdb" else self._conn.cursor()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (``$1``-style parameters); its rows, if any."""
        cur = self._cursor()
        if self.dialect == "duckdb":
            cur.execute(sql, list(params))
            return list(cur.fetchall()) if cur.description else []
        try:
            cur.execute(sql, list(params) if params else None)
            return list(cur.fetchall()) if cur.description else []
        finally:
            cur.close()

    @contextlib.contextmanager
    def transaction(self, doing: str) -> Iterator[None]:
        """One atomic unit: everything inside commits together or not at all."""
        with self.translated(doing):
            if self.dialect == "duckdb":
                self._conn.begin()
            try:
                yield
            except BaseException:
                with contextlib.suppress(Exception):
                    self._conn.rollback()
                raise
            self._conn.commit()

    def stage(self, name: str, frame: pl.DataFrame) -> None:
        """The rows as a temporary table ``name`` (DuckDB: the Arrow data registered as
        a view; PostgreSQL: a temporary table filled with ``COPY``)."""
        table = frame.to_arrow()
        if self.dialect == "duckdb":
            with contextlib.suppress(Exception):
                self._conn.unregister(name)
            self._conn.register(name, table)
            return
        cur = self._conn.cursor()
        try:
            cur.adbc_ingest(name, table, mode="replace", temporary=True)
        finally:
            cur.close()

    def unstage(self, name: str) -> None:
        if self.dialect == "duckdb":
            with contextlib.suppress(Exception):
                self._conn.unregister(name)

    def table_exists(self, name: str) -> bool:
        schema = "main" if self.dialect == "duckdb" else "public"
        rows = self.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = $1 AND table_name = $2",
            [schema, name],
        )
        return bool(rows and rows[0][0])

    def columns(self, name: str) -> list[str]:
        schema = "main" if self.dialect == "duckdb" else "public"
        rows = self.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
            [schema, name],
        )
        return [str(r[0]) for r in rows]

    def sql_type(self, dtype: pl.DataType, *, json: bool) -> str:
        if json:
            return "JSONB" if self.dialect == "postgresql" else "JSON"
        if dtype == pl.Boolean():
            return "BOOLEAN"
        if dtype == pl.Int64():
            return "BIGINT"
        if isinstance(dtype, pl.Datetime):
            return "TIMESTAMPTZ"
        return "TEXT"

    @property
    def json_cast(self) -> str:
        return "::JSONB" if self.dialect == "postgresql" else "::JSON"
