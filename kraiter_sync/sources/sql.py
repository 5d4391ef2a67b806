"""SQL sources: a query against a warehouse, read in chunks of polars DataFrames.

A sync job names its warehouse by URL and gives a query::

    duckdb:///exports/warehouse.duckdb        (DuckDB file, opened read-only)
    sqlite:///exports/app.db                  (SQLite file, opened read-only)
    postgresql://user:pass@host:5432/dbname   (PostgreSQL; also postgres://)

File paths follow SQLAlchemy's convention: ``sqlite:///rel/app.db`` is relative,
``sqlite:////abs/app.db`` absolute. :class:`SqlSource` behaves like
:class:`kraiter_sync.sources.Source` for the rest of the pipeline: ``.schema`` (the
query's columns plus ``source_file`` and ``source_row``), ``.iter_chunks()`` yielding
DataFrames of at most ``chunk_size`` rows, ``.read()``, and closing as a context manager.
``source_file`` is the URL without its password, then ``#`` and the label (the job name);
``source_row`` counts the result's rows from 1.

Why these drivers (``benchmarks/sql_drivers.py``, 1M rows in chunks of 100k on the
2-core CI machine): ADBC (libpq ``COPY`` → Arrow batches) 1.46 s, connectorx 1.72 s
(1.18x), psycopg 3 server-side cursor 4.61 s (3.2x) with more memory. ADBC it is, and
it streams: the result never sits in memory whole. DuckDB hands out Arrow batches
natively; SQLite goes through the standard library with ``fetchmany``.

An incremental job reads only rows whose cursor column is at or past a value: the
query is wrapped (``SELECT * FROM (query) WHERE cursor >= ? OR cursor IS NULL``) with a *bound*
parameter, so the warehouse filters (and can use an index) and nothing is spliced into
SQL text.

This module is the one boundary where driver exceptions (sqlite3, duckdb, ADBC)
become :class:`~kraiter_sync.errors.InputError` / :class:`~kraiter_sync.errors.ConfigError`
naming the source and the next step. A password in the URL never appears in a
message, a log line, ``repr()`` or ``source_file``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import polars as pl

from kraiter_sync.errors import ConfigError, InputError
from kraiter_sync.frames import SOURCE_FILE, SOURCE_ROW
from kraiter_sync.urls import SQL_SCHEMES, SqlDialect, is_sql_url, redact_url

__all__ = [
    "SQL_SCHEMES",
    "CursorFilter",
    "SqlSource",
    "is_sql_url",
    "open_sql_source",
    "redact_url",
]

DEFAULT_CHUNK_SIZE = 100_000
_WRAP_ALIAS = "kraiter_sync_q"
_INSTALL_HINT = "install it with: pip install 'kraiter-sync[sql]'"

CursorValue = int | float | str | dt.datetime | dt.date


def _secrets_of(url: str) -> list[str]:
    """The password as written and decoded, longest first, for scrubbing messages."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    if not password:
        return []
    return sorted({password, unquote(password)}, key=len, reverse=True)


@dataclass(frozen=True)
class CursorFilter:
    """Read only rows with ``column >= value`` or a NULL ``column`` (an incremental job's
    lower bound; rows without a cursor value cannot be placed, so they are always read)."""

    column: str
    value: CursorValue


def quote_identifier(name: str) -> str:
    """A column name as a SQL identifier (standard double quotes; all three dialects)."""
    return '"' + name.replace('"', '""') + '"'


def _strip_query(query: str) -> str:
    text = query.strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    return text


class SqlSource:
    """A query's result as chunks of DataFrames; see the module docstring.

    Connects lazily (on ``.schema``, ``.check()`` or the first chunk) and keeps one
    connection until :meth:`close`.
    """

    def __init__(
        self,
        url: str,
        query: str,
        *,
        label: str | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        since: CursorFilter | None = None,
        base_dir: Path | None = None,
        limit: int | None = None,
    ) -> None:
        self._url = url.strip()
        self._secrets = _secrets_of(self._url)
        scheme = self._url.partition("://")[0].lower()
        if scheme not in SQL_SCHEMES:
            msg = (
                f"{self.redacted_url}: not a SQL source URL; use duckdb:///FILE, "
                "sqlite:///FILE or postgresql://USER@HOST/DB"
            )
            raise ConfigError(msg)
        self.dialect: SqlDialect = SQL_SCHEMES[scheme]
        self.query = _strip_query(query)
        if not self.query:
            msg = f"{self.redacted_url}: the query is empty; give the SELECT to read"
            raise ConfigError(msg)
        if chunk_size < 1:
            msg = f"chunk size must be at least 1, not {chunk_size}"
            raise ConfigError(msg)
        self.chunk_size = chunk_size
        self.since = since
        #: Read at most this many rows (``sync --check`` reads a sample, not the table).
        self.limit = limit
        self.label = label
        self.display = f"{self.redacted_url}#{label}" if label else self.redacted_url
        self._base_dir = base_dir
        self._conn: Any = None
        self._schema: pl.Schema | None = None

    # -- identity ------------------------------------------------------------------------

    @property
    def redacted_url(self) -> str:
        return redact_url(self._url)

    def __repr__(self) -> str:
        return f"SqlSource({self.display!r})"

    @property
    def files(self) -> list[str]:
        """For code that lists what an input is made of: the one redacted source name."""
        return [self.display]

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> SqlSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def _path(self) -> Path:
        rest = self._url.split("://", 1)[1]
        if not rest.startswith("/"):
            msg = (
                f"{self.redacted_url}: give the database file after three slashes, e.g. "
                f"{self.dialect}:///data/app.db (relative) or {self.dialect}:////srv/app.db "
                "(absolute)"
            )
            raise ConfigError(msg)
        text = unquote(rest[1:].split("?", 1)[0])
        if not text:
            msg = f"{self.redacted_url}: no database file named; e.g. {self.dialect}:///app.db"
            raise ConfigError(msg)
        path = Path(text).expanduser()
        if not path.is_absolute() and self._base_dir is not None:
            path = self._base_dir / path
        if not path.is_file():
            msg = f"{self.redacted_url}: no database file at {path}; check the path"
            raise InputError(msg)
        return path

    def _connect(self) -> Any:
        if self._conn is not None:
            return self._conn
        with self._translated("cannot open"):
            if self.dialect == "sqlite":
                path = self._path()
                # One thread at a time, but not always the same one: the schema is read
                # in the caller's thread and the rows in the validator's ahead thread
                # (validate/engine.py).
                self._conn = sqlite3.connect(
                    f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
                )
            elif self.dialect == "duckdb":
                duckdb = _driver("duckdb", "duckdb")
                self._conn = duckdb.connect(str(self._path()), read_only=True)
            else:
                adbc = _driver("adbc_driver_postgresql.dbapi", "adbc-driver-postgresql")
                self._conn = adbc.connect(self._url, autocommit=True)
        return self._conn

    # -- errors --------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text.replace(self._url, self.redacted_url)

    @contextlib.contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        """The one place driver exceptions become ours (with no password in them)."""
        try:
            yield
        except (ConfigError, InputError):
            raise
        except Exception as exc:
            if not _is_driver_error(exc):
                raise
            self.close()  # a failed connection or transaction is not reused
            detail = self._scrub(_first_lines(str(exc)))
            where = self.display
            if doing == "cannot open" or _looks_like_connection_error(detail):
                msg = (
                    f"{where}: cannot connect ({detail}); check the host, port, database "
                    "name and credentials, and that the server is running and reachable"
                )
            else:
                msg = f"{where}: the query failed ({detail}); fix the query and run again"
            raise InputError(msg) from None

    # -- SQL -----------------------------------------------------------------------------

    def _placeholder(self) -> str:
        return "$1" if self.dialect == "postgresql" else "?"

    def _sql(self, *, limit0: bool = False) -> tuple[str, list[Any]]:
        sql = self.query
        params: list[Any] = []
        # The schema is the query's own (LIMIT 0 without the window), so a wrong cursor
        # column is reported by name by the caller rather than as a SQL error.
        if self.since is not None and not limit0:
            column = quote_identifier(self.since.column)
            sql = (
                f"SELECT * FROM (\n{sql}\n) AS {_WRAP_ALIAS} "
                f"WHERE {_WRAP_ALIAS}.{column} >= {self._placeholder()} "
                f"OR {_WRAP_ALIAS}.{column} IS NULL"
            )
            params.append(_bindable(self.since.value, self.dialect))
        if limit0:
            sql = f"SELECT * FROM (\n{sql}\n) AS {_WRAP_ALIAS}_0 LIMIT 0"
        elif self.limit is not None:
            sql = f"SELECT * FROM (\n{sql}\n) AS {_WRAP_ALIAS}_n LIMIT {int(self.limit)}"
        return sql, params

    def _batches(self, sql: str, params: list[Any], size: int) -> Iterator[pl.DataFrame]:
        """Raw frames from the driver, of whatever size it streams."""
        conn = self._connect()
        if self.dialect == "sqlite":
            cur = conn.execute(sql, params)
            names = [d[0] for d in cur.description or []]
            _check_names(names, self.display)
            empty = True
            while rows := cur.fetchmany(size):
                empty = False
                yield _rows_frame(rows, names)
            if empty:
                yield pl.DataFrame(schema={n: pl.String() for n in names})
            return
        with contextlib.ExitStack() as stack:
            if self.dialect == "duckdb":
                relation = conn.sql(sql, params=params or None)
                if relation is None:
                    msg = f"{self.display}: the query returns no rows (is it a SELECT?)"
                    raise InputError(msg)
                reader = relation.to_arrow_reader(size)
            else:
                cur = stack.enter_context(contextlib.closing(conn.cursor()))
                cur.execute(sql, parameters=params or None)
                reader = cur.fetch_record_batch()
            _check_names(list(reader.schema.names), self.display)
            empty = True
            for batch in reader:
                if batch.num_rows:
                    empty = False
                    yield _arrow_frame(batch)
            if empty:
                yield _arrow_frame(reader.schema.empty_table())

    # -- the Source interface ------------------------------------------------------------

    def check(self) -> pl.Schema:
        """Connect and run the query with ``LIMIT 0``: fails fast on a bad URL or query."""
        self._schema = None
        return self.schema

    @property
    def schema(self) -> pl.Schema:
        """The query's columns and types, plus ``source_file`` and ``source_row``."""
        if self._schema is None:
            sql, params = self._sql(limit0=True)
            with self._translated("query"):
                frame = pl.concat(list(self._batches(sql, params, 1)), how="diagonal_relaxed")
            self._schema = _with_provenance(frame.schema)
        return self._schema

    def iter_chunks(self, *, chunk_size: int | None = None) -> Iterator[pl.DataFrame]:
        """The result as DataFrames of at most ``chunk_size`` rows, streamed."""
        size = chunk_size or self.chunk_size
        sql, params = self._sql()
        row = 0
        pending: list[pl.DataFrame] = []
        held = 0
        with self._translated("query"):
            for raw in self._batches(sql, params, size):
                if not raw.height:
                    continue
                pending.append(raw)
                held += raw.height
                while held >= size:
                    whole = pl.concat(pending, how="diagonal_relaxed")
                    yield self._finish(whole.head(size).rechunk(), row)
                    row += size
                    rest = whole.slice(size)
                    pending, held = ([rest], rest.height) if rest.height else ([], 0)
            if held:
                yield self._finish(pl.concat(pending, how="diagonal_relaxed").rechunk(), row)

    def read(self) -> pl.DataFrame:
        """Everything at once (only for results that fit in memory)."""
        chunks = list(self.iter_chunks())
        if not chunks:
            return pl.DataFrame(schema=self.schema)
        return pl.concat(chunks, how="diagonal_relaxed")

    def _finish(self, chunk: pl.DataFrame, first_row: int) -> pl.DataFrame:
        """Add the provenance columns to a chunk the caller made contiguous: the driver's
        batches glued together leave columns in several pieces, and a frame whose columns
        are pieced differently from the provenance ones is re-aligned (copied) by every
        later ``drop``, ``select`` or ``gather``: once here is cheaper."""
        return chunk.with_columns(
            pl.lit(self.display, dtype=pl.String).alias(SOURCE_FILE),
            pl.int_range(first_row + 1, first_row + 1 + chunk.height, dtype=pl.Int64).alias(
                SOURCE_ROW
            ),
        )


def open_sql_source(
    url: str,
    query: str,
    *,
    label: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    since: CursorFilter | None = None,
    base_dir: Path | None = None,
) -> SqlSource:
    """A :class:`SqlSource` (nothing is connected until it is read or checked)."""
    return SqlSource(url, query, label=label, chunk_size=chunk_size, since=since, base_dir=base_dir)


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _driver(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        msg = f"reading this source needs the {package} package; {_INSTALL_HINT}"
        raise ConfigError(msg) from None


def _is_driver_error(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        return True
    root = type(exc).__module__.split(".")[0]
    return root in {
        "duckdb",
        "_duckdb",
        "adbc_driver_manager",
        "adbc_driver_postgresql",
        "pyarrow",
    } or (isinstance(exc, pl.exceptions.PolarsError | OSError))


_CONNECTION_WORDS = re.compile(
    r"connect|connection refused|password authentication|could not translate host|"
    r"no such host|timeout expired|server closed|database .* does not exist|role .* does not exist",
    re.IGNORECASE,
)


def _looks_like_connection_error(text: str) -> bool:
    return bool(_CONNECTION_WORDS.search(text))


def _first_lines(text: str, limit: int = 3) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " ".join(lines[:limit]) or "no detail from the driver"


def _check_names(names: Sequence[str], display: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            msg = (
                f"{display}: the query returns two columns named {name!r}; "
                "give one an alias (AS other_name)"
            )
            raise InputError(msg)
        if name in (SOURCE_FILE, SOURCE_ROW):
            msg = f"{display}: the query returns a column named {name!r}, which is reserved"
            raise InputError(msg)
        seen.add(name)


def _bindable(value: CursorValue, dialect: SqlDialect) -> Any:
    """A cursor value as the driver binds it (SQLite has no datetime type: ISO text)."""
    if dialect == "sqlite" and isinstance(value, dt.datetime | dt.date):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    return value


def _with_provenance(schema: pl.Schema) -> pl.Schema:
    items = [(n, t) for n, t in schema.items() if n not in (SOURCE_FILE, SOURCE_ROW)]
    return pl.Schema([*items, (SOURCE_FILE, pl.String()), (SOURCE_ROW, pl.Int64())])


def _rows_frame(rows: list[tuple[Any, ...]], names: list[str]) -> pl.DataFrame:
    """SQLite rows → DataFrame. A column mixing types (SQLite allows it) becomes text."""
    try:
        frame = pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)
    except (TypeError, ValueError, pl.exceptions.PolarsError):
        columns = list(zip(*rows, strict=True))
        series = []
        for name, values in zip(names, columns, strict=True):
            try:
                series.append(pl.Series(name, values, strict=True))
            except (TypeError, ValueError, pl.exceptions.PolarsError):
                text = [None if v is None else str(v) for v in values]
                series.append(pl.Series(name, text, dtype=pl.String))
        frame = pl.DataFrame(series)
    return _normalised(frame)


def _normalised(frame: pl.DataFrame) -> pl.DataFrame:
    """All-null columns become text; zone-aware datetimes are expressed in UTC (DuckDB
    says ``Etc/UTC``, PostgreSQL's session zone may be anything: same instants)."""
    exprs = []
    for name, dtype in frame.schema.items():
        if dtype == pl.Null:
            exprs.append(pl.col(name).cast(pl.String))
        elif isinstance(dtype, pl.Datetime) and dtype.time_zone not in (None, "UTC"):
            exprs.append(pl.col(name).dt.convert_time_zone("UTC"))
    return frame.with_columns(exprs) if exprs else frame


def _arrow_frame(batch: Any) -> pl.DataFrame:
    """Arrow → polars; PostgreSQL ``numeric`` (an opaque text type in ADBC) → Float64,
    other opaque/extension types → their text storage."""
    import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    columns = []
    changed = False
    for field, column in zip(table.schema, table.columns, strict=True):
        if isinstance(field.type, pa.BaseExtensionType):
            changed = True
            storage = pa.chunked_array(
                [chunk.storage for chunk in column.chunks], type=field.type.storage_type
            )
            if getattr(field.type, "type_name", "") == "numeric":
                storage = storage.cast(pa.float64())
            columns.append(storage)
        else:
            columns.append(column)
    if changed:
        table = pa.Table.from_arrays(columns, names=table.schema.names)
    frame = cast(pl.DataFrame, pl.from_arrow(table, rechunk=False))  # a Table → DataFrame
    return _normalised(frame)
