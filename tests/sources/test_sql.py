"""SQL sources against real databases: SQLite and DuckDB files, and a real PostgreSQL.

PostgreSQL comes from ``.ci/postgres.sh`` (``source .ci/postgres.sh`` locally), which
exports ``KRAITER_TEST_POSTGRES_URL``. Without it these tests skip locally and *fail*
in CI (``CI=true``), so CI cannot pass by silently skipping them.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import polars as pl
import pytest

from kraiter_sync.errors import ConfigError, InputError
from kraiter_sync.sources.sql import (
    CursorFilter,
    SqlSource,
    is_sql_url,
    open_sql_source,
    redact_url,
)
from tests.helpers.sql import make_duckdb, make_sqlite, pg_execute, postgres_url_or_skip


@pytest.fixture
def pg_url() -> str:
    return postgres_url_or_skip()


@pytest.fixture
def pg_table(pg_url: str) -> Iterator[str]:
    """A fresh table name in the test database, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    yield name
    pg_execute(pg_url, f"DROP TABLE IF EXISTS {name}")


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"  # an absolute path gives the four-slash form


# -- URLs ---------------------------------------------------------------------------------


def test_sql_urls_are_told_apart_from_paths() -> None:
    assert is_sql_url("postgresql://u@h/db")
    assert is_sql_url("postgres://u@h/db")
    assert is_sql_url("DuckDB:///x.duckdb")
    assert is_sql_url("sqlite:///x.db")
    assert not is_sql_url("exports/*.csv")
    assert not is_sql_url("s3://bucket/x.csv")
    assert not is_sql_url("C:/data/x.csv")


def test_redact_url_drops_only_the_password() -> None:
    assert redact_url("postgresql://me:s3cr%40t@db.example:6432/wh?sslmode=require") == (
        "postgresql://me@db.example:6432/wh?sslmode=require"
    )
    assert redact_url("postgresql://me@db/wh") == "postgresql://me@db/wh"
    assert redact_url("duckdb:///rel/x.duckdb") == "duckdb:///rel/x.duckdb"


def test_repr_and_source_file_never_hold_the_password() -> None:
    source = SqlSource("postgresql://me:hunter2@db/wh", "select 1", label="crm")
    assert "hunter2" not in repr(source)
    assert source.display == "postgresql://me@db/wh#crm"


def test_bad_urls_and_queries_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="not a SQL source URL"):
        SqlSource("mysql://u@h/db", "select 1")
    with pytest.raises(ConfigError, match="query is empty"):
        SqlSource("sqlite:///x.db", " ;; ")
    with pytest.raises(ConfigError, match="three slashes"):
        SqlSource("sqlite://x.db", "select 1").check()


# -- SQLite --------------------------------------------------------------------------------


def test_sqlite_streams_chunks_with_provenance(tmp_path: Path) -> None:
    db = make_sqlite(tmp_path / "app.db", rows=25)
    with open_sql_source(
        sqlite_url(db), "SELECT email, plan, n FROM people ORDER BY n;", label="crm", chunk_size=10
    ) as source:
        chunks = list(source.iter_chunks())
        schema = source.schema
    assert [c.height for c in chunks] == [10, 10, 5]
    frame = pl.concat(chunks)
    assert frame["source_row"].to_list() == list(range(1, 26))
    assert set(frame["source_file"]) == {f"{sqlite_url(db)}#crm"}
    assert frame["email"][0] == "p1@example.com"
    assert frame["n"].dtype == pl.Int64
    assert frame["plan"].dtype == pl.String  # nulls in the first rows stay a text column
    assert schema.names() == ["email", "plan", "n", "source_file", "source_row"]


def test_sqlite_relative_path_resolves_against_base_dir(tmp_path: Path) -> None:
    make_sqlite(tmp_path / "app.db", rows=3)
    source = SqlSource("sqlite:///app.db", "SELECT * FROM people", base_dir=tmp_path)
    assert source.read().height == 3


def test_sqlite_is_opened_read_only_and_never_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(InputError, match="no database file at"):
        SqlSource(sqlite_url(missing), "SELECT 1").check()
    assert not missing.exists()
    db = make_sqlite(tmp_path / "app.db", rows=1)
    source = SqlSource(sqlite_url(db), "DELETE FROM people RETURNING *")
    with pytest.raises(InputError, match="the query failed"):
        source.read()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM people").fetchone() == (1,)
    conn.close()


def test_sqlite_mixed_type_column_becomes_text(tmp_path: Path) -> None:
    db = tmp_path / "mixed.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (v)")
        conn.executemany("INSERT INTO t VALUES (?)", [(1,), ("two",), (3.5,)])
    conn.close()
    frame = SqlSource(sqlite_url(db), "SELECT v FROM t").read()
    assert frame["v"].to_list() == ["1", "two", "3.5"]


def test_sqlite_cursor_filter_is_a_bound_parameter(tmp_path: Path) -> None:
    db = make_sqlite(tmp_path / "app.db", rows=25)
    since = CursorFilter("seen", "2026-01-01 00:00:20")
    frame = SqlSource(sqlite_url(db), "SELECT * FROM people", since=since).read()
    assert frame["n"].to_list() == [20, 21, 22, 23, 24, 25]
    # spliced into the SQL, this would match every row; bound, it sorts after them all
    hostile = CursorFilter("seen", "9' OR '1'='1")
    assert SqlSource(sqlite_url(db), "SELECT * FROM people", since=hostile).read().height == 0


def test_sqlite_errors_name_the_source_and_the_fix(tmp_path: Path) -> None:
    db = make_sqlite(tmp_path / "app.db", rows=1)
    with pytest.raises(InputError) as info:
        SqlSource(sqlite_url(db), "SELECT nope FROM people", label="crm").check()
    assert "#crm: the query failed (no such column: nope)" in str(info.value)
    with pytest.raises(InputError, match="two columns named 'email'"):
        SqlSource(sqlite_url(db), "SELECT email, email FROM people").read()
    with pytest.raises(InputError, match="reserved"):
        SqlSource(sqlite_url(db), "SELECT email AS source_row FROM people").check()


def test_sqlite_empty_result_has_a_schema_and_no_chunks(tmp_path: Path) -> None:
    db = make_sqlite(tmp_path / "app.db", rows=2)
    source = SqlSource(sqlite_url(db), "SELECT email FROM people WHERE 0")
    assert list(source.iter_chunks()) == []
    assert source.read().columns == ["email", "source_file", "source_row"]


# -- DuckDB --------------------------------------------------------------------------------


def test_duckdb_streams_typed_chunks(tmp_path: Path) -> None:
    db = make_duckdb(tmp_path / "wh.duckdb", rows=25)
    source = SqlSource(
        f"duckdb:///{db}", "SELECT * FROM people ORDER BY seen", label="wh", chunk_size=7
    )
    chunks = list(source.iter_chunks())
    assert [c.height for c in chunks] == [7, 7, 7, 4]
    frame = pl.concat(chunks)
    assert frame["source_row"].to_list() == list(range(1, 26))
    assert frame["seen"].dtype == pl.Datetime("us", "UTC")
    assert frame["score"][3] == pytest.approx(1.0)
    source.close()


def test_duckdb_chunks_glued_from_several_batches_are_contiguous(tmp_path: Path) -> None:
    """DuckDB's batches end at its row groups (122,880 rows): a chunk glued from two, left
    in pieces, would be copied again by every later select or gather."""
    db = tmp_path / "big.duckdb"
    with duckdb.connect(str(db)) as conn:
        conn.execute("CREATE TABLE t AS SELECT i AS n, 'x' || i AS s FROM range(300000) r(i)")
    source = SqlSource(f"duckdb:///{db}", "SELECT * FROM t", chunk_size=100_000)
    chunks = list(source.iter_chunks())
    source.close()
    assert [c.height for c in chunks] == [100_000, 100_000, 100_000]
    assert all(set(c.n_chunks("all")) == {1} for c in chunks), [c.n_chunks("all") for c in chunks]
    assert pl.concat(chunks)["n"].sort().to_list() == list(range(300_000))


def test_duckdb_cursor_filter_on_timestamps(tmp_path: Path) -> None:
    db = make_duckdb(tmp_path / "wh.duckdb", rows=25)
    since = CursorFilter("seen", dt.datetime(2026, 1, 1, 0, 0, 23, tzinfo=dt.UTC))
    frame = SqlSource(f"duckdb:///{db}", "SELECT * FROM people", since=since).read()
    assert frame["email"].sort().to_list() == [
        "p23@example.com",
        "p24@example.com",
        "p25@example.com",
    ]


def test_duckdb_missing_file_and_bad_sql(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no database file"):
        SqlSource(f"duckdb:///{tmp_path / 'x.duckdb'}", "SELECT 1").check()
    db = make_duckdb(tmp_path / "wh.duckdb", rows=1)
    with pytest.raises(InputError, match=r"the query failed .*syntax error"):
        SqlSource(f"duckdb:///{db}", "SELEC 1").check()


# -- PostgreSQL (a real server) ------------------------------------------------------------


def test_postgres_streams_chunks_in_result_order(pg_url: str, pg_table: str) -> None:
    pg_execute(
        pg_url,
        f"CREATE TABLE {pg_table} AS SELECT 'p' || g || '@example.com' AS email, "
        "timestamptz '2026-01-01Z' + g * interval '1 minute' AS seen, "
        "(g % 7)::numeric / 2 AS score, g % 2 = 0 AS even, NULL::text AS nothing "
        "FROM generate_series(1, 2500) AS g",
    )
    source = SqlSource(
        pg_url, f"SELECT * FROM {pg_table} ORDER BY seen", label="pg", chunk_size=1000
    )
    chunks = list(source.iter_chunks())
    assert [c.height for c in chunks] == [1000, 1000, 500]
    frame = pl.concat(chunks)
    assert frame["source_row"].to_list() == list(range(1, 2501))
    assert frame["email"][0] == "p1@example.com"
    assert frame["seen"].dtype == pl.Datetime("us", "UTC")
    assert frame["score"].dtype == pl.Float64  # PostgreSQL numeric arrives as a number
    assert frame["score"][6] == pytest.approx(0.0)
    assert frame["score"][5] == pytest.approx(3.0)
    assert frame["even"].dtype == pl.Boolean
    assert frame["nothing"].dtype == pl.String
    password = urlsplit(pg_url).password or ""
    assert password
    assert all(password not in name for name in frame["source_file"].unique())
    assert source.schema["score"] == pl.Float64
    source.close()


def test_postgres_cursor_filter_reads_only_newer_rows(pg_url: str, pg_table: str) -> None:
    pg_execute(
        pg_url,
        f"CREATE TABLE {pg_table} AS SELECT g AS id, "
        "timestamptz '2026-01-01Z' + g * interval '1 hour' AS seen FROM generate_series(1, 50) g",
    )
    since = CursorFilter("seen", dt.datetime(2026, 1, 2, 22, tzinfo=dt.UTC))
    with SqlSource(pg_url, f"SELECT * FROM {pg_table}", since=since) as source:
        frame = source.read()
    assert sorted(frame["id"].to_list()) == [46, 47, 48, 49, 50]
    with SqlSource(pg_url, f"SELECT * FROM {pg_table}", since=CursorFilter("id", 49)) as source:
        by_id = source.read()
    assert sorted(by_id["id"].to_list()) == [49, 50]


def test_postgres_errors_never_show_the_password(pg_url: str) -> None:
    parts = urlsplit(pg_url)
    password = parts.password or ""
    with pytest.raises(InputError) as info:
        SqlSource(pg_url, "SELECT * FROM no_such_table_here", label="job").check()
    text = str(info.value)
    assert "the query failed" in text
    assert "no_such_table_here" in text
    assert password not in text
    wrong = pg_url.replace(f":{password}@", ":wrong-password@")
    with pytest.raises(InputError) as info:
        SqlSource(wrong, "SELECT 1").check()
    assert "cannot connect" in str(info.value)
    assert "password authentication failed" in str(info.value)
    assert "wrong-password" not in str(info.value)
    refused = pg_url.replace(f":{parts.port}/", ":1/")
    with pytest.raises(InputError) as info:
        SqlSource(refused, "SELECT 1").check()
    assert "cannot connect" in str(info.value)
    assert "refused" in str(info.value)
    assert password not in str(info.value)
