"""`kraiter-sync sync` end to end: real files and databases, the emulator over real HTTP,
every request counted where it arrives."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner

from kraiter_sync.api.blocking import SyncKraiterClient
from kraiter_sync.cli import main
from kraiter_sync.config import Settings
from kraiter_sync.config.file import SyncConfig, parse_sync_config
from kraiter_sync.errors import LockHeldError
from kraiter_sync.state.ledger import Ledger
from kraiter_sync.state.lock import state_lock
from kraiter_sync.sync import cursor_stream, run_sync
from tests.helpers.paths import REPO_ROOT
from tests.helpers.sql import pg_execute, postgres_url_or_skip
from tests.helpers.sync import KEY, CountingApp, remote, settings_for


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


EVENTS_HEADER = "email,event,at\n"


def events_rows(*rows: tuple[str, str, str]) -> str:
    return EVENTS_HEADER + "".join(f"{e},{n},{t}\n" for e, n, t in rows)


FILE_JOBS = (
    '[jobs.contacts]\nsource = "contacts.csv"\nkind = "contacts"\n'
    '[jobs.events]\nsource = "events.csv"\nkind = "events"\n'
    'map = { name = "event", timestamp = "at" }\ncursor = "at"\nlag = "1h"\n'
)


def test_second_run_over_unchanged_data_sends_no_write(
    tmp_path: Path, kraiter: tuple[CountingApp, str]
) -> None:
    app, url = kraiter
    write(tmp_path / "contacts.csv", "email,plan\na@example.com,pro\nb@example.com,free\n")
    write(
        tmp_path / "events.csv",
        events_rows(
            ("a@example.com", "signup", "2026-01-01T10:00:00Z"),
            ("b@example.com", "signup", "2026-01-02T10:00:00Z"),
        ),
    )
    config = parse_sync_config(FILE_JOBS, tmp_path / "kraiter-sync.toml")
    settings = settings_for(url, tmp_path)

    first = run_sync(config, settings=settings)
    assert first.exit_code == 0, first.as_dict()
    assert len(app.writes()) == 4  # 2 contacts + 2 events
    app.reset()

    second = run_sync(config, settings=settings)
    assert second.exit_code == 0, second.as_dict()
    assert app.writes() == []
    contacts_job, events_job = second.jobs
    assert contacts_job.unchanged_rows == 2  # dropped before validation (row cache)
    assert contacts_job.rows_read == 2
    assert events_job.counts["events"]["already"] == 1  # re-read inside the lag window only
    assert events_job.window_from == "2026-01-02T09:00:00+00:00"
    contacts, events = remote(url)
    assert contacts["a@example.com"]["properties"] == {"plan": "pro"}
    assert len(events) == 2

    # one contact changes: exactly one write
    write(tmp_path / "contacts.csv", "email,plan\na@example.com,team\nb@example.com,free\n")
    app.reset()
    third = run_sync(config, ["contacts"], settings=settings)
    assert [j.job for j in third.jobs] == ["contacts"]
    assert third.jobs[0].unchanged_rows == 1
    assert third.jobs[0].counts["contacts"]["read"] == 1
    a_id = contacts["a@example.com"]["id"]
    # the ledger knows a's id: one PATCH, no create or look-up first; nothing for b
    assert app.requests == [("PATCH", f"/api/contacts/{a_id}")]
    assert remote(url)[0]["a@example.com"]["properties"] == {"plan": "team"}


CONTACTS_JOB = '[jobs.c]\nsource = "contacts.csv"\nkind = "contacts"\n'


def cached_id(settings: Settings, email: str) -> str | None:
    """The contact id the ledger's contact cache holds for ``email``."""
    with Ledger(settings.ledger_path) as ledger:
        cached = ledger.get_contacts(settings.target, [email]).get(email)
    return cached[0] if cached else None


def first_night(tmp_path: Path, url: str, csv: str) -> tuple[SyncConfig, Settings, str]:
    """Syncs ``csv`` once; returns the config, the settings and a@example.com's cached id."""
    write(tmp_path / "contacts.csv", csv)
    config = parse_sync_config(CONTACTS_JOB, tmp_path / "kraiter-sync.toml")
    settings = settings_for(url, tmp_path)
    assert run_sync(config, settings=settings).exit_code == 0
    old = cached_id(settings, "a@example.com")
    assert old is not None
    return config, settings, old


def test_a_changed_contact_deleted_in_kraiter_is_created_again(
    tmp_path: Path, kraiter: tuple[CountingApp, str]
) -> None:
    """The PATCH by the cached id answers 404: the id is dropped and the contact created."""
    app, url = kraiter
    csv = "email,plan\na@example.com,pro\nb@example.com,free\n"
    config, settings, old = first_night(tmp_path, url, csv)
    with SyncKraiterClient(url, KEY) as client:
        client.delete_contact(old)
    write(tmp_path / "contacts.csv", "email,plan\na@example.com,team\nb@example.com,free\n")
    app.reset()
    job = run_sync(config, settings=settings).jobs[0]
    assert job.exit_code == 0, job.as_dict()
    assert job.counts["contacts"]["sent"] == 1
    assert app.writes() == [("PATCH", f"/api/contacts/{old}"), ("POST", "/api/contacts")]
    contacts = remote(url)[0]
    assert contacts["a@example.com"]["properties"] == {"plan": "team"}
    new = cached_id(settings, "a@example.com")
    assert new == contacts["a@example.com"]["id"] != old
    # the ledger holds the new id: the next change is one PATCH again
    write(tmp_path / "contacts.csv", "email,plan\na@example.com,pro\nb@example.com,free\n")
    app.reset()
    assert run_sync(config, settings=settings).exit_code == 0
    assert app.requests == [("PATCH", f"/api/contacts/{new}")]
    assert remote(url)[0]["a@example.com"]["properties"] == {"plan": "pro"}


def test_a_cached_id_that_now_holds_another_email_is_not_trusted(
    tmp_path: Path, kraiter: tuple[CountingApp, str]
) -> None:
    """Someone changed a's email in Kraiter: a is written by email, and its new id cached."""
    app, url = kraiter
    config, settings, old = first_night(tmp_path, url, "email,plan\na@example.com,pro\n")
    with SyncKraiterClient(url, KEY) as client:
        client.update_contact(old, email="renamed@example.com")
    write(tmp_path / "contacts.csv", "email,plan\na@example.com,team\n")
    app.reset()
    job = run_sync(config, settings=settings).jobs[0]
    assert job.exit_code == 0, job.as_dict()
    assert app.writes() == [("PATCH", f"/api/contacts/{old}"), ("POST", "/api/contacts")]
    contacts = remote(url)[0]
    assert contacts["a@example.com"]["properties"] == {"plan": "team"}
    assert cached_id(settings, "a@example.com") == contacts["a@example.com"]["id"] != old


def test_without_the_row_cache_the_engine_cache_still_sends_nothing(
    tmp_path: Path, kraiter: tuple[CountingApp, str]
) -> None:
    app, url = kraiter
    write(tmp_path / "contacts.csv", "email,plan\na@example.com,pro\nb@example.com,free\n")
    config = parse_sync_config(
        '[jobs.c]\nsource = "contacts.csv"\nkind = "contacts"\n', tmp_path / "kraiter-sync.toml"
    )
    settings = settings_for(url, tmp_path)
    assert run_sync(config, settings=settings).exit_code == 0
    caches = list((settings.state_dir / "sync").glob("c.rows.*.parquet"))
    assert len(caches) == 1
    caches[0].unlink()  # lost (or written by another polars version)
    app.reset()
    job = run_sync(config, settings=settings).jobs[0]
    assert job.unchanged_rows == 0
    assert job.counts["contacts"]["unchanged"] == 2
    assert app.writes() == []
    # a mapping change starts a new row cache rather than trusting the old one
    changed = parse_sync_config(
        '[jobs.c]\nsource = "contacts.csv"\nkind = "contacts"\nmap = { email = "email" }\n',
        tmp_path / "kraiter-sync.toml",
    )
    assert run_sync(changed, settings=settings).jobs[0].unchanged_rows == 0
    assert len(list((settings.state_dir / "sync").glob("c.rows.*.parquet"))) == 1


def test_reordered_and_grown_sources_resend_only_new_rows(
    tmp_path: Path, kraiter: tuple[CountingApp, str]
) -> None:
    app, url = kraiter
    lines = [f"u{i}@example.com,plan{i % 3}" for i in range(300)]
    source = tmp_path / "contacts.csv"
    write(source, "email,plan\n" + "\n".join(lines) + "\n")
    config = parse_sync_config(
        '[jobs.c]\nsource = "contacts.csv"\nkind = "contacts"\n', tmp_path / "kraiter-sync.toml"
    )
    settings = settings_for(url, tmp_path)
    assert run_sync(config, settings=settings).exit_code == 0
    # every row moves (reversed) and one is inserted at the top
    write(source, "email,plan\nnew@example.com,pro\n" + "\n".join(reversed(lines)) + "\n")
    app.reset()
    job = run_sync(config, settings=settings).jobs[0]
    assert job.exit_code == 0, job.as_dict()
    assert job.unchanged_rows == 300  # found by content, not position
    assert job.counts["contacts"]["read"] == 1
    assert app.writes() == [("POST", "/api/contacts")]


def test_late_events_inside_the_lag_window_are_sent_once(
    tmp_path: Path, kraiter: tuple[CountingApp, str]
) -> None:
    app, url = kraiter
    write(tmp_path / "contacts.csv", "email\na@example.com\n")
    events = tmp_path / "events.csv"
    write(
        events,
        events_rows(
            ("a@example.com", "view", "2026-01-02T09:00:00Z"),
            ("a@example.com", "view", "2026-01-02T10:00:00Z"),
        ),
    )
    config = parse_sync_config(FILE_JOBS, tmp_path / "kraiter-sync.toml")
    settings = settings_for(url, tmp_path)
    assert run_sync(config, settings=settings).exit_code == 0
    with Ledger(settings.ledger_path) as ledger:
        mark = ledger.get_watermark(settings.target, cursor_stream("events"))
    assert mark is not None
    assert "2026-01-02T10:00:00+00:00" in mark

    # a late arrival 30 min behind the watermark, a new one, and one too late for the window
    write(
        events,
        events_rows(
            ("a@example.com", "view", "2026-01-02T09:00:00Z"),
            ("a@example.com", "view", "2026-01-02T10:00:00Z"),
            ("a@example.com", "view", "2026-01-02T09:30:00Z"),
            ("a@example.com", "view", "2026-01-02T11:00:00Z"),
            ("a@example.com", "view", "2026-01-01T00:00:00Z"),
        ),
    )
    app.reset()
    result = run_sync(config, ["events"], settings=settings)
    assert result.exit_code == 0, result.as_dict()
    sent = [r for r in app.writes() if r[1] == "/api/events"]
    assert len(sent) == 2
    job = result.jobs[0]
    assert job.counts["events"]["already"] == 2  # 09:00 and 10:00 re-read, not re-sent
    assert job.watermark_after == "2026-01-02T11:00:00+00:00"
    stamps = [t for _, _, t in remote(url)[1]]
    assert stamps == [
        "2026-01-02T09:00:00.000Z",
        "2026-01-02T09:30:00.000Z",
        "2026-01-02T10:00:00.000Z",
        "2026-01-02T11:00:00.000Z",
    ]
    # running again changes nothing
    app.reset()
    assert run_sync(config, ["events"], settings=settings).exit_code == 0
    assert app.writes() == []


def test_a_failing_job_does_not_stop_the_others(
    tmp_path: Path, kraiter: tuple[CountingApp, str]
) -> None:
    _, url = kraiter
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE people (email TEXT)")
        conn.execute("INSERT INTO people VALUES ('z@example.com')")
    conn.close()
    write(tmp_path / "contacts.csv", "email\nc@example.com\n")
    config = parse_sync_config(
        '[jobs.broken]\nsource = "sqlite:///app.db"\nquery = "SELECT mail FROM people"\n'
        'kind = "contacts"\n'
        '[jobs.gone]\nsource = "exports/*.csv"\nkind = "contacts"\n'
        '[jobs.fine]\nsource = "contacts.csv"\nkind = "contacts"\n',
        tmp_path / "kraiter-sync.toml",
    )
    result = run_sync(config, settings=settings_for(url, tmp_path))
    assert [(j.job, j.status) for j in result.jobs] == [
        ("broken", "error"),
        ("gone", "error"),
        ("fine", "ok"),
    ]
    assert "no such column: mail" in result.jobs[0].message
    assert result.exit_code == 2
    assert set(remote(url)[0]) == {"c@example.com"}


def test_cli_summary_exit_code_and_logs_of_a_bad_night(
    tmp_path: Path, kraiter: tuple[CountingApp, str]
) -> None:
    _, url = kraiter
    write(tmp_path / "contacts.csv", "email\nc@example.com\nnot-an-email\n")
    config = write(
        tmp_path / "kraiter-sync.toml",
        '[jobs.warehouse]\nsource = "postgresql://etl:s3cr3t@127.0.0.1:1/wh"\n'
        'query = "SELECT email FROM customers"\nkind = "contacts"\n'
        '[jobs.crm]\nsource = "contacts.csv"\nkind = "contacts"\n',
    )
    result = CliRunner(env={"KRAITER_API_KEY": KEY, "KRAITER_BASE_URL": url}).invoke(
        main,
        [
            "sync",
            "--config",
            str(config),
            "--state-dir",
            str(tmp_path / "state"),
            "--json",
            "--log-format",
            "json",
        ],
    )
    summary = json.loads(result.stdout)
    assert result.exit_code == 2
    assert summary["exit_code"] == 2
    assert [(j["job"], j["exit_code"]) for j in summary["jobs"]] == [("warehouse", 2), ("crm", 3)]
    logs = [json.loads(line) for line in result.stderr.splitlines()]
    errors = [r for r in logs if r["level"] == "error"]
    assert errors[0]["job"] == "warehouse"
    assert "cannot connect" in errors[0]["msg"]
    everything = result.stdout + result.stderr
    assert "s3cr3t" not in everything
    assert KEY not in everything
    for path in (tmp_path / "state").rglob("*"):  # ledger, run records, rejects, caches
        if path.is_file():
            data = path.read_bytes()
            assert b"s3cr3t" not in data, path
            assert KEY.encode() not in data, path


def test_runs_lists_one_record_per_job(tmp_path: Path, kraiter: tuple[CountingApp, str]) -> None:
    _, url = kraiter
    write(tmp_path / "contacts.csv", "email\na@example.com\n")
    write(tmp_path / "events.csv", events_rows(("a@example.com", "x", "2026-01-01T00:00:00Z")))
    config = parse_sync_config(FILE_JOBS, tmp_path / "kraiter-sync.toml")
    settings = settings_for(url, tmp_path)
    run_sync(config, settings=settings)
    with Ledger(settings.ledger_path) as ledger:
        runs = ledger.list_runs()
    assert sorted(r.command for r in runs) == ["sync:contacts", "sync:events"]
    assert all(r.status == "ok" for r in runs)


def test_live_sequence_triggers_need_allow_triggers(
    tmp_path: Path, kraiter: tuple[CountingApp, str]
) -> None:
    app, url = kraiter
    with SyncKraiterClient(url, KEY) as client:
        client.put_sequence("seq_welcome", name="Welcome", status="active", triggers=["signup"])
    write(tmp_path / "events.csv", events_rows(("a@example.com", "signup", "2026-01-01T00:00:00Z")))
    job = (
        '[jobs.events]\nsource = "events.csv"\nkind = "events"\n'
        'map = { name = "event", timestamp = "at" }\n'
    )
    settings = settings_for(url, tmp_path)
    refused = run_sync(parse_sync_config(job, tmp_path / "k.toml"), settings=settings).jobs[0]
    assert refused.exit_code == 2
    assert "Welcome" in refused.message
    assert [w for w in app.writes() if w[1] == "/api/events"] == []
    allowed = parse_sync_config(job + "allow_triggers = true\n", tmp_path / "k.toml")
    assert run_sync(allowed, settings=settings).exit_code == 0
    assert len([w for w in app.writes() if w[1] == "/api/events"]) == 1


def test_mirror_job_deletes_what_left_the_source_within_the_guard(
    tmp_path: Path, kraiter: tuple[CountingApp, str]
) -> None:
    app, url = kraiter
    with SyncKraiterClient(url, KEY) as client:
        for i in range(25):
            client.create_contact(f"u{i}@example.com", properties={"plan": "pro"})
    source = tmp_path / "contacts.csv"
    keep = [f"u{i}@example.com,pro" for i in range(24)]  # u24 left the warehouse
    write(source, "email,plan\n" + "\n".join(keep) + "\nnew@example.com,free\n")
    config = parse_sync_config(
        '[jobs.m]\nsource = "contacts.csv"\nkind = "contacts"\nmode = "mirror"\n',
        tmp_path / "kraiter-sync.toml",
    )
    settings = settings_for(url, tmp_path)
    app.reset()
    dry = run_sync(config, settings=settings, dry_run=True).jobs[0]
    assert dry.status == "dry-run"
    assert "1 to create, 0 to update, 1 to delete, 24 unchanged" in dry.message
    assert app.writes() == []
    job = run_sync(config, settings=settings).jobs[0]
    assert job.exit_code == 0, job.as_dict()
    assert "1 created, 0 updated, 1 deleted" in job.message
    with Ledger(settings.ledger_path) as ledger:  # recorded as the job, like the others
        runs = ledger.list_runs()
    assert [(r.id, r.command, r.status) for r in runs] == [(job.run_id, "sync:m", "ok")]
    assert runs[0].args["job"] == "m"
    assert runs[0].args["mirror"] is True
    contacts = remote(url)[0]
    assert "u24@example.com" not in contacts
    assert "new@example.com" in contacts
    assert len(contacts) == 25

    # a source that lost most of its rows is refused before anything is deleted
    write(source, "email,plan\nu0@example.com,pro\n")
    app.reset()
    refused = run_sync(config, settings=settings).jobs[0]
    assert refused.exit_code == 2
    assert "refusing to delete 24 of 25 contacts" in refused.message
    assert [w for w in app.writes() if w[0] == "DELETE"] == []
    assert len(remote(url)[0]) == 25


def test_dry_run_sends_nothing_and_keeps_the_watermark(
    tmp_path: Path, kraiter: tuple[CountingApp, str]
) -> None:
    app, url = kraiter
    write(tmp_path / "contacts.csv", "email\na@example.com\n")
    write(tmp_path / "events.csv", events_rows(("a@example.com", "x", "2026-01-01T00:00:00Z")))
    config = parse_sync_config(FILE_JOBS, tmp_path / "kraiter-sync.toml")
    settings = settings_for(url, tmp_path)
    result = run_sync(config, settings=settings, dry_run=True)
    assert [j.status for j in result.jobs] == ["dry-run", "dry-run"]
    assert app.writes() == []
    with Ledger(settings.ledger_path) as ledger:
        assert ledger.get_watermark(settings.target, cursor_stream("events")) is None


def test_full_every_rechecks_every_contact_when_due(
    tmp_path: Path, kraiter: tuple[CountingApp, str]
) -> None:
    app, url = kraiter
    write(tmp_path / "contacts.csv", "email,plan\na@example.com,pro\nb@example.com,free\n")
    config = parse_sync_config(
        '[jobs.c]\nsource = "contacts.csv"\nkind = "contacts"\nfull_every = "7d"\n',
        tmp_path / "kraiter-sync.toml",
    )
    settings = settings_for(url, tmp_path)
    day0 = dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.UTC)
    assert run_sync(config, settings=settings, now=day0).jobs[0].full  # never done: due
    # someone edits a contact in Kraiter; the change cache cannot know
    with SyncKraiterClient(url, KEY) as client:
        contact = client.get_contact_by_email("a@example.com")
        assert contact is not None
        client.update_contact(contact["id"], properties={"plan": "edited-in-kraiter"})
    app.reset()
    day3 = run_sync(config, settings=settings, now=day0 + dt.timedelta(days=3)).jobs[0]
    assert not day3.full
    assert app.writes() == []
    day8 = run_sync(config, settings=settings, now=day0 + dt.timedelta(days=8)).jobs[0]
    assert day8.full
    assert remote(url)[0]["a@example.com"]["properties"] == {"plan": "pro"}
    app.reset()
    assert not run_sync(config, settings=settings, now=day0 + dt.timedelta(days=9)).jobs[0].full


# -- the lock -----------------------------------------------------------------------------


def test_a_second_run_exits_5_busy_at_once_naming_the_holder(tmp_path: Path) -> None:
    state = tmp_path / "state"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from kraiter_sync.state.lock import state_lock\n"
            f"with state_lock({str(state)!r}):\n print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        write(tmp_path / "contacts.csv", "email\na@example.com\n")
        config = write(
            tmp_path / "kraiter-sync.toml", '[jobs.c]\nsource = "contacts.csv"\nkind = "contacts"\n'
        )
        result = CliRunner().invoke(
            main, ["sync", "--config", str(config), "--state-dir", str(state)]
        )
        assert result.exit_code == 5
        assert f"pid {holder.pid}" in result.stderr
        assert result.stderr.splitlines()[-1] == (
            "busy: another run holds the state lock, nothing was started"
        )
        assert "resume" not in result.stderr
        with pytest.raises(LockHeldError):
            run_sync(
                parse_sync_config(config.read_text(), config),
                settings=Settings(base_url="http://127.0.0.1:9", api_key=KEY, state_dir=state),
            )
    finally:
        assert holder.stdin is not None
        assert holder.stdout is not None
        holder.stdin.close()
        holder.wait(timeout=30)
        holder.stdout.close()


def test_a_stale_lock_from_a_dead_process_is_taken_over(
    tmp_path: Path, kraiter: tuple[CountingApp, str]
) -> None:
    _, url = kraiter
    settings = settings_for(url, tmp_path)
    settings.state_dir.mkdir(parents=True)
    (settings.state_dir / "lock").write_text("999999\n")  # a killed run's leftover
    write(tmp_path / "contacts.csv", "email\na@example.com\n")
    config = parse_sync_config(
        '[jobs.c]\nsource = "contacts.csv"\nkind = "contacts"\n', tmp_path / "kraiter-sync.toml"
    )
    assert run_sync(config, settings=settings).exit_code == 0
    with state_lock(settings.state_dir):  # and it was released afterwards
        pass


# -- each kind of database, end to end ----------------------------------------------------


def test_sqlite_job_end_to_end(tmp_path: Path, kraiter: tuple[CountingApp, str]) -> None:
    _, url = kraiter
    with sqlite3.connect(tmp_path / "app.db") as conn:
        conn.execute("CREATE TABLE users (email TEXT, plan TEXT, seats INTEGER)")
        conn.executemany(
            "INSERT INTO users VALUES (?, ?, ?)",
            [("a@example.com", "pro", 3), ("B@Example.com ", "free", 1)],
        )
    conn.close()
    config = parse_sync_config(
        '[jobs.users]\nsource = "sqlite:///app.db"\nquery = "SELECT * FROM users"\n'
        'kind = "contacts"\n',
        tmp_path / "kraiter-sync.toml",
    )
    result = run_sync(config, settings=settings_for(url, tmp_path))
    assert result.exit_code == 0, result.as_dict()
    contacts = remote(url)[0]
    assert contacts["a@example.com"]["properties"] == {"plan": "pro", "seats": 3}
    assert contacts["b@example.com"]["properties"] == {"plan": "free", "seats": 1}


def test_duckdb_events_job_end_to_end_and_incremental(
    tmp_path: Path, kraiter: tuple[CountingApp, str]
) -> None:
    app, url = kraiter
    db = tmp_path / "wh.duckdb"
    conn = duckdb.connect(str(db))
    conn.execute(
        "CREATE TABLE orders AS SELECT 'u' || (i % 3) || '@example.com' AS email, "
        "'order_placed' AS name, TIMESTAMPTZ '2026-02-01 00:00:00+00' + i * INTERVAL 1 HOUR "
        "AS placed_at, i * 10 AS total FROM range(6) t(i)"
    )
    conn.close()
    config = parse_sync_config(
        '[jobs.orders]\nsource = "duckdb:///wh.duckdb"\nquery = "SELECT * FROM orders"\n'
        'kind = "events"\nmap = { timestamp = "placed_at" }\ncursor = "placed_at"\nlag = "90m"\n',
        tmp_path / "kraiter-sync.toml",
    )
    settings = settings_for(url, tmp_path)
    assert run_sync(config, settings=settings).exit_code == 0
    assert len(remote(url)[1]) == 6
    conn = duckdb.connect(str(db))
    conn.execute(
        "INSERT INTO orders VALUES ('u1@example.com', 'order_placed', "
        "TIMESTAMPTZ '2026-02-01 06:00:00+00', 60)"
    )
    conn.close()
    app.reset()
    job = run_sync(config, settings=settings).jobs[0]
    assert job.rows_read == 3  # 04:00, 05:00 (inside 90 min of 05:00) and the new 06:00
    assert len([r for r in app.writes() if r[1] == "/api/events"]) == 1
    assert len(remote(url)[1]) == 7


def test_postgres_job_end_to_end(tmp_path: Path, kraiter: tuple[CountingApp, str]) -> None:
    pg_url = postgres_url_or_skip()
    app, url = kraiter
    table = f"crm_{uuid.uuid4().hex[:8]}"
    pg_execute(
        pg_url,
        f"CREATE TABLE {table} (email text, plan text, mrr numeric, updated_at timestamptz)",
        f"INSERT INTO {table} VALUES ('a@example.com', 'pro', 49.5, now()), "
        "('b@example.com', 'team', 99, now()), ('broken', 'free', 0, now())",
    )
    try:
        config = parse_sync_config(
            f'[jobs.crm]\nsource = "{pg_url}"\nquery = "SELECT email, plan, mrr FROM {table}"\n'
            'kind = "contacts"\n',
            tmp_path / "kraiter-sync.toml",
        )
        settings = settings_for(url, tmp_path)
        result = run_sync(config, settings=settings)
        assert result.exit_code == 3  # one row is not an email: rejected, the rest sent
        contacts = remote(url)[0]
        assert contacts["a@example.com"]["properties"] == {"plan": "pro", "mrr": 49.5}
        assert set(contacts) == {"a@example.com", "b@example.com"}
        rejects = Path(result.jobs[0].counts["rejects_path"]).read_text()
        password = pg_url.split(":")[2].split("@")[0]
        assert "broken" in rejects
        assert password not in rejects
        for path in settings.state_dir.rglob("*"):  # run records, caches, rejects
            if path.is_file():
                assert password.encode() not in path.read_bytes(), path
        app.reset()
        again = run_sync(config, settings=settings).jobs[0]
        assert again.unchanged_rows == 2  # the good rows
        assert again.counts["contacts"]["invalid"] == 1  # the bad row is reported again
        assert again.exit_code == 3
        assert app.writes() == []
    finally:
        pg_execute(pg_url, f"DROP TABLE IF EXISTS {table}")


def test_cli_full_and_dry_run_flags(tmp_path: Path, kraiter: tuple[CountingApp, str]) -> None:
    app, url = kraiter
    write(tmp_path / "contacts.csv", "email,plan\na@example.com,pro\nb@example.com,free\n")
    config = write(
        tmp_path / "kraiter-sync.toml", '[jobs.c]\nsource = "contacts.csv"\nkind = "contacts"\n'
    )
    runner = CliRunner(env={"KRAITER_API_KEY": KEY, "KRAITER_BASE_URL": url})
    base = ["sync", "--config", str(config), "--state-dir", str(tmp_path / "state"), "--json"]

    def summary(*extra: str) -> dict[str, Any]:
        result = runner.invoke(main, [*base, *extra])
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    assert summary()["jobs"][0]["counts"]["contacts"]["sent"] == 2
    app.reset()
    assert summary()["jobs"][0]["unchanged_rows"] == 2
    assert app.writes() == []
    dry = summary("--full", "--dry-run")["jobs"][0]
    assert (dry["status"], dry["full"]) == ("dry-run", True)
    assert app.writes() == []
    full = summary("--full")["jobs"][0]
    assert full["full"]
    # every contact re-checked against Kraiter (reads); equal ones cost no write
    assert full["counts"]["contacts"]["read"] == 2
    assert full["counts"]["contacts"]["unchanged"] == 2
    assert app.writes() == []
    assert any(method == "GET" for method, _ in app.requests)


def test_sqlite_events_job_end_to_end_and_incremental(
    tmp_path: Path, kraiter: tuple[CountingApp, str]
) -> None:
    """The validator reads events a chunk ahead in a thread of its own: the SQLite
    connection must serve that thread (it was opened in the caller's for the schema)."""
    app, url = kraiter
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE orders (id INT, email TEXT, name TEXT, placed_at TEXT)")
        conn.executemany(
            "INSERT INTO orders VALUES (?, ?, 'order_placed', ?)",
            [(i, f"u{i % 3}@example.com", f"2026-02-01T0{i}:00:00Z") for i in range(6)],
        )
    conn.close()
    config = parse_sync_config(
        '[jobs.orders]\nsource = "sqlite:///app.db"\nquery = "SELECT * FROM orders"\n'
        'kind = "events"\nmap = { timestamp = "placed_at" }\ncursor = "id"\n'
        "chunk_size = 2\n",
        tmp_path / "kraiter-sync.toml",
    )
    settings = settings_for(url, tmp_path)
    first = run_sync(config, settings=settings)
    assert first.exit_code == 0, first.as_dict()
    assert first.jobs[0].counts["events"]["sent"] == 6
    assert len(remote(url)[1]) == 6
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO orders VALUES (6, 'u1@example.com', 'order_placed', "
            "'2026-02-01T07:00:00Z')"
        )
    conn.close()
    app.reset()
    again = run_sync(config, settings=settings).jobs[0]
    assert again.exit_code == 0, again.as_dict()
    assert again.rows_read == 2  # the watermark row (id 5) and the new one
    assert len([r for r in app.writes() if r[1] == "/api/events"]) == 1
    assert len(remote(url)[1]) == 7


def test_sync_takes_tenant_and_refuses_another_key_for_it(
    tmp_path: Path, kraiter: tuple[CountingApp, str]
) -> None:
    app, url = kraiter
    write(tmp_path / "contacts.csv", "email\na@example.com\n")
    config = write(
        tmp_path / "kraiter-sync.toml", '[jobs.c]\nsource = "contacts.csv"\nkind = "contacts"\n'
    )
    args = ["sync", "--config", str(config), "--state-dir", str(tmp_path / "st")]
    first = CliRunner().invoke(
        main, [*args, "--tenant", "acme"], env={"KRAITER_API_KEY": KEY, "KRAITER_BASE_URL": url}
    )
    assert first.exit_code == 0, first.output
    runs = Ledger(tmp_path / "st" / "ledger.db")
    assert runs.list_runs()[0].target == f"{url}#acme"
    runs.close()
    app.reset()
    other = {"KRAITER_API_KEY": "kr_another_account", "KRAITER_BASE_URL": url}
    second = CliRunner().invoke(main, [*args, "--tenant", "acme"], env=other)
    assert second.exit_code == 2
    assert "tenant 'acme' was first used with another API key" in second.stderr
    assert app.requests == []
    rotated = CliRunner().invoke(main, [*args, "--tenant", "acme", "--tenant-rotate"], env=other)
    assert rotated.exit_code == 0, rotated.output


def test_postgres_events_job_reads_in_the_read_ahead_thread(
    tmp_path: Path, kraiter: tuple[CountingApp, str]
) -> None:
    """Like SQLite's, the PostgreSQL connection is opened for the schema in the caller's
    thread and read in the validator's read-ahead thread, chunk after chunk."""
    pg_url = postgres_url_or_skip()
    _, url = kraiter
    table = f"ev_{uuid.uuid4().hex[:8]}"
    pg_execute(
        pg_url,
        f"CREATE TABLE {table} (id int, email text, name text, placed_at timestamptz)",
        f"INSERT INTO {table} SELECT i, 'u' || (i % 3) || '@example.com', 'order_placed', "
        "TIMESTAMPTZ '2026-02-01 00:00:00+00' + i * INTERVAL '1 hour' FROM generate_series(0, 6) i",
    )
    try:
        config = parse_sync_config(
            f'[jobs.orders]\nsource = "{pg_url}"\nquery = "SELECT * FROM {table}"\n'
            'kind = "events"\nmap = { timestamp = "placed_at" }\ncursor = "id"\n'
            "chunk_size = 2\n",
            tmp_path / "kraiter-sync.toml",
        )
        result = run_sync(config, settings=settings_for(url, tmp_path))
        assert result.exit_code == 0, result.as_dict()
        assert result.jobs[0].counts["events"]["sent"] == 7
        assert len(remote(url)[1]) == 7
    finally:
        pg_execute(pg_url, f"DROP TABLE IF EXISTS {table}")


def test_a_lost_state_directory_stops_the_events_job_until_state_rebuild(
    tmp_path: Path, kraiter: tuple[CountingApp, str]
) -> None:
    """A nightly run on a fresh disk: the job refuses (it has no --rebuild of its own) and
    names `state rebuild`; after it, the night sends nothing twice."""
    from kraiter_sync.verbs.rebuild import rebuild_state

    app, url = kraiter
    write(tmp_path / "contacts.csv", "email\na@example.com\nb@example.com\n")
    write(
        tmp_path / "events.csv",
        events_rows(
            *(
                (f"{'ab'[i % 2]}@example.com", "view", f"2026-01-02T{i:02d}:00:00Z")
                for i in range(12)
            )
        ),
    )
    config = parse_sync_config(FILE_JOBS, tmp_path / "kraiter-sync.toml")
    settings = settings_for(url, tmp_path)
    assert run_sync(config, settings=settings).exit_code == 0
    held = remote(url)[1]
    assert len(held) == 12
    for path in settings.state_dir.glob("ledger.db*"):
        path.unlink()

    app.reset()
    night = run_sync(config, settings=settings)
    jobs = {job.job: job for job in night.jobs}
    assert jobs["contacts"].exit_code == 0  # contacts are idempotent by email: no check
    assert jobs["events"].exit_code == 2
    assert "lost state? all 12 events sampled" in jobs["events"].message
    assert "`kraiter-sync state rebuild` (the same --config" in jobs["events"].message
    assert "re-run with --rebuild" not in jobs["events"].message  # not sync's flag
    assert [w for w in app.writes() if w[1] == "/api/events"] == []

    assert rebuild_state(settings).complete
    app.reset()
    assert run_sync(config, settings=settings).exit_code == 0
    assert [w for w in app.writes() if w[1] == "/api/events"] == []
    assert remote(url)[1] == held
