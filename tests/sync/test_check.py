"""`kraiter-sync sync --check` and the job sources: real files, SQLite, DuckDB, PostgreSQL
and the local Kraiter; nothing is sent."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import duckdb
import polars as pl
import pytest
from click.testing import CliRunner

from kraiter_sync.cli import main
from kraiter_sync.config.file import parse_sync_config
from kraiter_sync.errors import ConfigError, InputError
from kraiter_sync.sources.sql import SqlSource
from kraiter_sync.sync.cursor import CursorWindow, decode_cursor, encode_cursor, window_start
from kraiter_sync.sync.jobs import open_job_source, worst_exit_code
from tests.helpers.sql import make_duckdb, make_sqlite, pg_execute, postgres_url_or_skip


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def run(config: Path, *args: str) -> tuple[int, str, str]:
    state = config.parent / "state"
    result = CliRunner().invoke(
        main, ["sync", "--config", str(config), "--state-dir", str(state), *args]
    )
    return result.exit_code, result.stdout, result.stderr


def events_csv(path: Path) -> Path:
    return write(
        path,
        "email,event,occurred_at\n"
        "a@example.com,signup,2026-01-01T10:00:00Z\n"
        "b@example.com,signup,2026-01-02T10:00:00Z\n"
        "c@example.com,login,\n",
    )


def test_check_passes_for_files_sqlite_and_duckdb(tmp_path: Path) -> None:
    events_csv(tmp_path / "events.csv")
    make_sqlite(tmp_path / "app.db")
    make_duckdb(tmp_path / "wh.duckdb")
    config = write(
        tmp_path / "kraiter-sync.toml",
        '[jobs.events]\nsource = "events.csv"\nkind = "events"\ncursor = "occurred_at"\n'
        'lag = "1h"\n'
        '[jobs.people]\nsource = "sqlite:///app.db"\nquery = "SELECT email, plan FROM people"\n'
        'kind = "contacts"\n'
        '[jobs.wh]\nsource = "duckdb:///wh.duckdb"\nquery = "SELECT email, score FROM people"\n'
        'kind = "contacts"\n',
    )
    code, out, err = run(config, "--check", "--json")
    assert code == 0, (out, err)
    report = json.loads(out)
    assert [j["job"] for j in report["jobs"]] == ["events", "people", "wh"]
    assert all(j["ok"] for j in report["jobs"])
    assert report["target"]["ok"]
    assert "local Kraiter" in report["target"]["message"]
    # nothing was sent: the local Kraiter holds no contact
    assert not (tmp_path / "state" / "ledger.db").exists()


def test_check_reports_each_broken_job_and_exits_2(tmp_path: Path) -> None:
    events_csv(tmp_path / "events.csv")
    make_sqlite(tmp_path / "app.db")
    config = write(
        tmp_path / "kraiter-sync.toml",
        '[jobs.good]\nsource = "events.csv"\nkind = "events"\n'
        '[jobs.badquery]\nsource = "sqlite:///app.db"\nquery = "SELECT nope FROM people"\n'
        '[jobs.nocursor]\nsource = "events.csv"\nkind = "events"\ncursor = "updated"\n'
        '[jobs.nofile]\nsource = "missing/*.csv"\n',
    )
    code, out, err = run(config, "--check")
    assert code == 2
    assert "ok   good: events from events.csv" in out
    assert "FAIL badquery:" in err
    assert "no such column: nope" in err
    assert "FAIL nocursor: job nocursor: cursor column 'updated' is not in the source" in err
    assert "columns: email, event, occurred_at" in err
    assert "FAIL nofile:" in err
    assert "no file matches this pattern" in err


def test_check_says_when_kraiter_cannot_be_reached(tmp_path: Path) -> None:
    events_csv(tmp_path / "events.csv")
    config = write(
        tmp_path / "kraiter-sync.toml",
        '[target]\nbase_url = "http://127.0.0.1:9"\n[jobs.e]\nsource = "events.csv"\n',
    )
    result = CliRunner(env={"KRAITER_API_KEY": "kr_test_secret"}).invoke(
        main, ["sync", "--config", str(config), "--check", "--json"]
    )
    report = json.loads(result.stdout)
    assert result.exit_code == 1
    assert report["jobs"][0]["ok"]
    assert not report["target"]["ok"]
    assert "http://127.0.0.1:9" in report["target"]["message"]
    assert "kr_test_secret" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[jobs.a]\nsource = "x.csv"\nfrobnicate = 1\n', "kraiter-sync.toml:3: jobs.a.frobnicate"),
        (
            '[jobs.a]\nsource = "x.csv"\nchunk_size = "x"\n',
            "kraiter-sync.toml:3: jobs.a.chunk_size",
        ),
        ('[jobs.a]\nkind = "contacts"\n', 'kraiter-sync.toml:1: jobs.a: missing "source"'),
    ],
)
def test_config_errors_exit_2_naming_the_key(tmp_path: Path, text: str, needle: str) -> None:
    config = write(tmp_path / "kraiter-sync.toml", text)
    for args in (["--check"], []):
        code, _, err = run(config, *args)
        assert code == 2
        assert needle in err
        assert "Traceback" not in err


def test_unknown_job_name_is_a_usage_error(tmp_path: Path) -> None:
    config = write(tmp_path / "kraiter-sync.toml", '[jobs.a]\nsource = "x.csv"\n')
    code, _, err = run(config, "nope", "--check")
    assert code == 2
    assert "no job named nope" in err


# -- windows and watermarks ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC),
        dt.datetime(2026, 1, 2, 3, 4, 5),
        dt.date(2026, 1, 2),
        42,
        2.5,
        "2026-01-02 03:04:05",
    ],
)
def test_cursor_values_round_trip_with_their_type(value: object) -> None:
    decoded = decode_cursor(encode_cursor(value))  # type: ignore[arg-type]
    assert decoded == value
    assert type(decoded) is type(value)


def test_window_start_subtracts_the_lag_by_cursor_type() -> None:
    ts = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    assert window_start(ts, dt.timedelta(hours=2), "j") == ts - dt.timedelta(hours=2)
    assert window_start(100, 10, "j") == 90
    assert window_start("2026-01-02T00:00:00Z", dt.timedelta(hours=1), "j") == dt.datetime(
        2026, 1, 1, 23, tzinfo=dt.UTC
    )
    assert window_start(ts, None, "j") == ts
    with pytest.raises(ConfigError, match="CAST"):  # a SQL text column: cast it in the query
        window_start("2026-01-02T00:00:00Z", dt.timedelta(hours=1), "j", parse_text=False)
    with pytest.raises(ConfigError, match="lag"):
        window_start("abc", dt.timedelta(hours=1), "j")
    with pytest.raises(ConfigError, match="lag"):
        window_start(ts, 5, "j")


def test_file_window_keeps_rows_at_or_after_since_and_null_cursors(tmp_path: Path) -> None:
    events_csv(tmp_path / "events.csv")
    job = parse_sync_config(
        '[jobs.e]\nsource = "events.csv"\nkind = "events"\ncursor = "occurred_at"\n',
        tmp_path / "k.toml",
    ).jobs[0]
    source = open_job_source(job, since="2026-01-02T10:00:00+00:00")
    assert isinstance(source, CursorWindow)
    frame = pl.concat(list(source.iter_chunks()))
    source.close()
    assert frame["email"].to_list() == ["b@example.com", "c@example.com"]
    assert source.max_value == dt.datetime(2026, 1, 2, 10, tzinfo=dt.UTC)
    assert (source.rows_read, source.rows_kept) == (3, 2)


def test_sql_window_is_pushed_down_and_keeps_null_cursors(tmp_path: Path) -> None:
    db = make_sqlite(tmp_path / "app.db", rows=5)
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO people VALUES ('late@example.com', NULL, NULL, 99)")
    conn.close()
    job = parse_sync_config(
        '[jobs.e]\nsource = "sqlite:///app.db"\nquery = "SELECT * FROM people"\n'
        'kind = "events"\ncursor = "n"\n',
        tmp_path / "k.toml",
    ).jobs[0]
    source = open_job_source(job, since=4)
    assert isinstance(source, CursorWindow)
    assert isinstance(source.inner, SqlSource)
    frame = pl.concat(list(source.iter_chunks()))
    source.close()
    assert sorted(frame["n"].to_list()) == [4, 5, 99]
    assert source.max_value == 99


def test_missing_cursor_column_names_the_columns(tmp_path: Path) -> None:
    make_duckdb(tmp_path / "wh.duckdb")
    job = parse_sync_config(
        '[jobs.e]\nsource = "duckdb:///wh.duckdb"\nquery = "SELECT email FROM people"\n'
        'kind = "events"\ncursor = "seen_at"\n',
        tmp_path / "k.toml",
    ).jobs[0]
    with pytest.raises(
        InputError, match="cursor column 'seen_at' is not in the source; columns: email"
    ):
        list(open_job_source(job, since=1).iter_chunks())


def test_postgres_job_source_pushes_the_window_down(tmp_path: Path) -> None:
    url = postgres_url_or_skip()
    pg_execute(
        url,
        "DROP TABLE IF EXISTS sync_window_t",
        "CREATE TABLE sync_window_t AS SELECT g AS id, "
        "timestamptz '2026-01-01Z' + g * interval '1 hour' AS at FROM generate_series(1, 10) g",
    )
    try:
        cfg = parse_sync_config(
            f'[jobs.e]\nsource = "{url}"\nquery = "SELECT * FROM sync_window_t"\n'
            'kind = "events"\ncursor = "at"\nlag = "2h"\n',
            tmp_path / "k.toml",
        )
        job = cfg.jobs[0]
        since = window_start(dt.datetime(2026, 1, 1, 9, tzinfo=dt.UTC), job.lag, job.name)
        source = open_job_source(job, since=since)
        frame = pl.concat(list(source.iter_chunks()))
        source.close()
        assert sorted(frame["id"].to_list()) == [7, 8, 9, 10]
        assert isinstance(source, CursorWindow)
        assert source.rows_read == 4  # the server filtered, not us
    finally:
        pg_execute(url, "DROP TABLE IF EXISTS sync_window_t")


def test_worst_exit_code_orders_by_severity() -> None:
    assert worst_exit_code([0, 3, 4]) == 4
    assert worst_exit_code([3, 1, 4]) == 1
    assert worst_exit_code([1, 2]) == 2
    assert worst_exit_code([0, 0]) == 0
    assert worst_exit_code([]) == 0


def test_check_reads_rows_the_way_the_run_does(tmp_path: Path) -> None:
    """--check reads the first rows through the same pipeline as the run (the validator's
    read-ahead thread included), so a job it passes does not fail when run."""
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE ev (email TEXT, event TEXT, at TEXT)")
        conn.execute("INSERT INTO ev VALUES ('a@example.com', 'signup', '2026-01-01T10:00:00Z')")
    conn.close()
    config = write(
        tmp_path / "kraiter-sync.toml",
        '[jobs.ev]\nsource = "sqlite:///app.db"\nquery = "SELECT * FROM ev"\nkind = "events"\n'
        'map = { timestamp = "at" }\n',
    )
    code, out, err = run(config, "--check")
    assert code == 0, (out, err)
    assert "ok   ev: events from sqlite:///app.db" in out
    code, out, err = run(config)
    assert code == 0, (out, err)


def test_check_fails_where_rows_fail_to_read(tmp_path: Path) -> None:
    """A query that only fails on its rows (LIMIT 0 runs fine) fails the check too."""
    conn = duckdb.connect(str(tmp_path / "wh.duckdb"))
    conn.execute("CREATE TABLE people AS SELECT 'a@example.com' AS email, 'x1' AS seats")
    conn.close()
    config = write(
        tmp_path / "kraiter-sync.toml",
        '[jobs.wh]\nsource = "duckdb:///wh.duckdb"\n'
        'query = "SELECT email, CAST(seats AS INTEGER) AS seats FROM people"\n'
        'kind = "contacts"\n',
    )
    run_code, _, run_err = run(config)
    assert run_code == 2
    assert "the query failed" in run_err
    code, out, err = run(config, "--check")
    assert code == 2, (out, err)
    assert "FAIL wh:" in err
    assert "the query failed" in err
    assert "Traceback" not in err


def test_check_reads_a_sample_not_the_whole_source(tmp_path: Path) -> None:
    make_sqlite(tmp_path / "app.db", rows=2_500)
    config = write(
        tmp_path / "kraiter-sync.toml",
        '[jobs.people]\nsource = "sqlite:///app.db"\nquery = "SELECT email, plan FROM people"\n'
        'kind = "contacts"\n',
    )
    code, out, err = run(config, "--check", "--json")
    assert code == 0, err
    (job,) = json.loads(out)["jobs"]
    assert "first 1,000 row(s) read and validated: 1,000 valid, 0 rejected" in job["details"]
