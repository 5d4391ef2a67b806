"""``--to duckdb:///…`` / ``postgresql://…``: a table per stream, upserted, its cursor in
the same transaction; incremental and resumable exactly like the file exports."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kraiter_sync.emulator import EmulatorApp
from kraiter_sync.export import ExportResult
from kraiter_sync.export.database import Database, quote
from kraiter_sync.export.run import replace_notice
from tests.export.test_resume import Failing, Killed, _with_client
from tests.helpers.exports import add_events, new_app, seed, truth
from tests.helpers.sql import pg_execute, postgres_url_or_skip


@pytest.fixture(params=["duckdb", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(URL, table prefix): a DuckDB file, or the CI PostgreSQL with a fresh prefix."""
    prefix = f"t{secrets.token_hex(4)}_"
    if request.param == "duckdb":
        yield f"duckdb:///{tmp_path / 'analytics.duckdb'}", prefix
        return
    url = postgres_url_or_skip()
    yield url, prefix
    tables = [f"{prefix}{s}" for s in ("events", "contacts", "timelines", "export_state")]
    pg_execute(url, *(f"DROP TABLE IF EXISTS {quote(t)}" for t in tables))


def _export(app: EmulatorApp, tmp_path: Path, url: str, stream: str, **kw: Any) -> ExportResult:
    async def main() -> ExportResult:
        from kraiter_sync.export import export_async
        from tests.export.test_resume import _no_sleep, _opts
        from tests.helpers.exports import client_for

        async with client_for(app, wrap=kw.pop("wrap", None)) as client:
            return await export_async(
                client,
                stream,
                url,
                state_dir=tmp_path / "state",
                target="test",
                options=_opts(**kw),
                sleep=_no_sleep,
            )

    return asyncio.run(main())


def _rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with Database(url) as db:
        return db.execute(sql)


def _ids(url: str, table: str) -> list[str]:
    return sorted(str(r[0]) for r in _rows(url, f"SELECT id FROM {quote(table)}"))


def test_events_into_a_table_incrementally_with_proper_types(
    tmp_path: Path, target: tuple[str, str]
) -> None:
    url, prefix = target
    table = f"{prefix}events"
    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=40)))
    first = _export(app, tmp_path, url, "events", table_prefix=prefix)
    assert first.table is not None
    assert first.table.endswith(f"#{table}")
    expected = asyncio.run(_with_client(app, lambda c: truth(c, "events")))
    assert _ids(url, table) == sorted(expected)
    asyncio.run(_with_client(app, lambda c: add_events(c, 5, start=700)))
    again = _export(app, tmp_path, url, "events", table_prefix=prefix)
    assert (again.mode, again.rows) == ("incremental", 5)
    expected = asyncio.run(_with_client(app, lambda c: truth(c, "events")))
    assert _ids(url, table) == sorted(expected)
    assert again.rows_total == len(expected)
    # timestamps are timestamptz, properties JSON that the database can query
    (ts, path) = _rows(
        url,
        f"SELECT \"timestamp\", properties->>'path' FROM {quote(table)} "
        "WHERE properties->>'path' = '/p/7'",
    )[0]
    assert ts.tzinfo is not None
    assert ts.isoformat().startswith("2025-03-02T07:15:00.250")
    assert path == "/p/7"
    app.close()


def test_a_killed_table_export_resumes_exactly(tmp_path: Path, target: tuple[str, str]) -> None:
    url, prefix = target
    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=90)))
    with pytest.raises(Killed):
        _export(
            app,
            tmp_path,
            url,
            "timelines",
            table_prefix=prefix,
            chunk_rows=5,
            wrap=lambda t: Failing(t, 12),
        )
    resumed = _export(app, tmp_path, url, "timelines", table_prefix=prefix, chunk_rows=5)
    assert resumed.resumed
    expected = asyncio.run(_with_client(app, lambda c: truth(c, "timelines")))
    assert 0 < resumed.rows < len(expected)
    assert _ids(url, f"{prefix}timelines") == sorted(expected)
    app.close()


def test_a_damaged_table_is_exported_again_in_full(tmp_path: Path, target: tuple[str, str]) -> None:
    url, prefix = target
    table = f"{prefix}events"
    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=30)))
    _export(app, tmp_path, url, "events", table_prefix=prefix)
    with Database(url) as db, db.transaction("test"):
        db.execute(f"DELETE FROM {quote(table)} WHERE properties->>'path' = '/p/3'")
    again = _export(app, tmp_path, url, "events", table_prefix=prefix)
    assert again.mode == "full"
    assert again.reason is not None
    assert "holds" in again.reason
    expected = asyncio.run(_with_client(app, lambda c: truth(c, "events")))
    assert _ids(url, table) == sorted(expected)
    app.close()


def test_a_snapshot_table_loses_vanished_rows_and_replace_names_what_it_deletes(
    tmp_path: Path, target: tuple[str, str]
) -> None:
    url, prefix = target
    table = f"{prefix}contacts"
    app = new_app()
    ids = asyncio.run(_with_client(app, lambda c: seed(c, events=0)))
    _export(app, tmp_path, url, "contacts", table_prefix=prefix)
    gone = next(iter(ids.values()))
    asyncio.run(_with_client(app, lambda c: c.delete_contact(gone)))
    again = _export(app, tmp_path, url, "contacts", table_prefix=prefix)
    assert again.mode == "snapshot"
    assert again.replaced == 1
    assert _ids(url, table) == sorted(set(ids.values()) - {gone})
    notice = replace_notice(
        "events", url, state_dir=tmp_path / "state", target="test", options=None
    )
    assert notice is None  # nothing exported into kraiter_events yet
    from kraiter_sync.export import ExportOptions

    notice = replace_notice(
        "contacts",
        url,
        state_dir=tmp_path / "state",
        target="test",
        options=ExportOptions(table_prefix=prefix),
    )
    assert notice is not None
    assert f"{table}" in notice
    assert "4 rows" in notice
    app.close()


def test_a_window_upserts_into_the_table_and_never_deletes(
    tmp_path: Path, target: tuple[str, str]
) -> None:
    from datetime import UTC, datetime

    from kraiter_sync.errors import UsageError

    url, prefix = target
    table = f"{prefix}events"
    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=30)))
    _export(app, tmp_path, url, "events", table_prefix=prefix)
    everything = _ids(url, table)
    since = datetime(2025, 3, 2, tzinfo=UTC)
    window = _export(app, tmp_path, url, "events", table_prefix=prefix, since=since)
    assert window.mode == "window"
    assert window.replaced == 0
    assert 0 < window.rows < len(everything)
    assert _ids(url, table) == everything  # upserted the same rows: nothing lost, none twice
    again = _export(app, tmp_path, url, "events", table_prefix=prefix)
    assert (again.mode, again.rows, again.reason) == ("incremental", 0, None)
    with pytest.raises(UsageError, match="a window never deletes rows"):
        _export(app, tmp_path, url, "events", table_prefix=prefix, since=since, replace=True)
    with pytest.raises(UsageError, match="--flatten-properties writes files"):
        _export(app, tmp_path, url, "events", table_prefix=prefix, flatten_properties=True)
    app.close()
