"""Databases for the SQL-source tests: SQLite and DuckDB files, the throwaway PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import duckdb
import pytest

POSTGRES_URL = os.environ.get("KRAITER_TEST_POSTGRES_URL", "")


def postgres_url_or_skip() -> str:
    """The test server's URL; skip locally without one, fail in CI."""
    if POSTGRES_URL:
        return POSTGRES_URL
    reason = "KRAITER_TEST_POSTGRES_URL is not set: run `source .ci/postgres.sh` first"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI must run the PostgreSQL tests, not skip them)")
    pytest.skip(reason)


def pg_execute(url: str, *statements: str) -> None:
    """Run statements on the test server (through ADBC: no extra test dependency)."""
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def make_sqlite(path: Path, rows: int = 25) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE people (email TEXT, plan TEXT, seen TEXT, n INTEGER)")
        conn.executemany(
            "INSERT INTO people VALUES (?, ?, ?, ?)",
            [
                (f"p{i}@example.com", "pro" if i % 2 else None, f"2026-01-01 00:00:{i:02d}", i)
                for i in range(1, rows + 1)
            ],
        )
    conn.close()
    return path


def make_duckdb(path: Path, rows: int = 25) -> Path:
    conn = duckdb.connect(str(path))
    conn.execute(
        "CREATE TABLE people AS SELECT 'p' || i || '@example.com' AS email, "
        "TIMESTAMPTZ '2026-01-01 00:00:00+00' + i * INTERVAL 1 SECOND AS seen, "
        "i::DECIMAL(10, 2) / 4 AS score FROM range(1, ? + 1) t(i)",
        [rows],
    )
    conn.close()
    return path
