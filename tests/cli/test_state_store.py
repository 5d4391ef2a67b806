"""``--state postgresql://…`` and ``state migrate`` end to end: real HTTP to the emulator,
a real PostgreSQL server (``.ci/postgres.sh``), exit codes and messages, the password
never shown, and nothing sent when the store cannot be used."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner, Result

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.cli import main
from kraiter_sync.emulator import EmulatorConfig, serve_in_thread
from kraiter_sync.state.backend import open_state
from kraiter_sync.urls import redact_url
from tests.helpers.pgstate import pg_run, pg_state, split_schema
from tests.helpers.schemas import check_schema

__all__ = ["pg_state"]

KEY = "kr_state_store_tests"


@pytest.fixture
def kraiter(tmp_path: Path) -> Iterator[str]:
    """An emulator on real HTTP (its base URL)."""
    with serve_in_thread(EmulatorConfig(db_path=tmp_path / "kraiter.db")) as url:
        yield url


def _remote(url: str) -> tuple[int, int]:
    """(contacts, events) the emulator holds for KEY."""

    async def count() -> tuple[int, int]:
        async with KraiterClient(url, KEY) as client:
            contacts = [c async for c in client.list_contacts()]
            events = [e async for e in client.list_events()]
        return len(contacts), len(events)

    return asyncio.run(count())


def _events(path: Path, start: int, rows: int) -> Path:
    lines = ["email,event,timestamp"]
    lines += [
        f"u{i}@example.com,signed_up,2024-01-01T00:00:{i % 60:02d}Z"
        for i in range(start, start + rows)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _cli(args: list[str], url: str, tmp_path: Path, **env: str) -> Result:
    base = {
        "KRAITER_BASE_URL": url,
        "KRAITER_API_KEY": KEY,
        "KRAITER_SYNC_STATE_DIR": str(tmp_path / "state"),
    }
    return CliRunner().invoke(main, args, env={**base, **env})


def _password(url: str) -> str:
    password = urlsplit(url).password
    assert password, "the test server's URL carries a password"
    return password


def _refused_before_sending(result: Result, url: str, password: str) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert password not in result.output
    assert _remote(url) == (0, 0)


# -- --state, KRAITER_SYNC_STATE, [target].state ------------------------------------------


def test_an_import_keeps_its_state_in_postgresql_and_a_second_machine_sends_nothing_again(
    kraiter: str, pg_state: str, tmp_path: Path
) -> None:
    src = _events(tmp_path / "ev.csv", 0, 30)
    first = _cli(["import", str(src), "--state", pg_state], kraiter, tmp_path)
    assert first.exit_code == 0, first.output
    assert _remote(kraiter) == (30, 30)
    # another machine: another state directory, the same store through the environment
    other = tmp_path / "machine-b"
    again = _cli(
        ["import", str(src)],
        kraiter,
        tmp_path,
        KRAITER_SYNC_STATE=pg_state,
        KRAITER_SYNC_STATE_DIR=str(other),
    )
    assert again.exit_code == 0, again.output
    assert "30 already imported" in again.output
    assert _remote(kraiter) == (30, 30)
    assert not (other / "ledger.db").exists()
    assert not (tmp_path / "state" / "ledger.db").exists()
    # ... and through kraiter-sync.toml, without the password (PGPASSWORD)
    password = _password(pg_state)
    no_password = pg_state.replace(f":{password}@", "@")
    (tmp_path / "kraiter-sync.toml").write_text(f'[target]\nstate = "{no_password}"\n')
    runs = _cli(
        ["runs", "--config", str(tmp_path / "kraiter-sync.toml")],
        kraiter,
        tmp_path,
        PGPASSWORD=password,
    )
    assert runs.exit_code == 0, runs.output
    assert len([line for line in runs.output.splitlines() if " import " in line]) == 2
    stored = pg_run(pg_state, f"SELECT args::text FROM {split_schema(pg_state)}.runs")
    assert stored
    assert all(password not in row[0] for row in stored)
    assert all(password not in r.output for r in (first, again, runs))


def test_a_password_in_kraiter_sync_toml_is_refused(kraiter: str, tmp_path: Path) -> None:
    (tmp_path / "kraiter-sync.toml").write_text(
        '[target]\nstate = "postgresql://kraiter:hunter2@db.internal/kraiter"\n'
    )
    result = _cli(["runs", "--config", str(tmp_path / "kraiter-sync.toml")], kraiter, tmp_path)
    assert result.exit_code == 2
    assert "kraiter-sync.toml:2: target.state: a password does not belong in files" in result.output
    assert "PGPASSWORD" in result.output
    assert "hunter2" not in result.output


def test_an_unknown_state_scheme_names_the_schemes(kraiter: str, tmp_path: Path) -> None:
    src = _events(tmp_path / "ev.csv", 0, 3)
    result = _cli(
        ["import", str(src), "--state", "mysql://kraiter:hunter2@db.internal/kraiter"],
        kraiter,
        tmp_path,
    )
    _refused_before_sending(result, kraiter, "hunter2")
    assert "--state: 'mysql://kraiter@db.internal/kraiter' has the unknown scheme 'mysql'" in (
        result.output
    )
    assert "postgresql:// or postgres://" in result.output
    folder = _cli(["import", str(src)], kraiter, tmp_path, KRAITER_SYNC_STATE="/var/state")
    assert folder.exit_code == 2
    assert "KRAITER_SYNC_STATE takes the URL of a shared state store" in folder.output
    assert "--state-dir" in folder.output


def test_a_wrong_password_is_exit_2_before_anything_is_sent(
    kraiter: str, pg_state: str, tmp_path: Path
) -> None:
    password = _password(pg_state)
    wrong = pg_state.replace(f":{password}@", ":not-the-password@")
    src = _events(tmp_path / "ev.csv", 0, 3)
    result = _cli(["import", str(src), "--state", wrong], kraiter, tmp_path)
    _refused_before_sending(result, kraiter, "not-the-password")
    assert "cannot connect to the state store postgresql://kraiter@" in result.output
    assert "password authentication failed" in result.output
    assert "check the user and the password" in result.output
    assert "Nothing was sent" in result.output
    assert not (tmp_path / "state" / "ledger.db").exists()


def test_an_unreachable_store_is_exit_2_before_anything_is_sent(
    kraiter: str, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as sock:  # a free port: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    src = _events(tmp_path / "ev.csv", 0, 3)
    result = _cli(
        ["import", str(src)],
        kraiter,
        tmp_path,
        KRAITER_SYNC_STATE=f"postgresql://kraiter:hunter2@127.0.0.1:{port}/kraiter",
    )
    _refused_before_sending(result, kraiter, "hunter2")
    assert f"cannot connect to the state store postgresql://kraiter@127.0.0.1:{port}/kraiter" in (
        result.output
    )
    assert "check the host, port and database" in result.output


def test_a_read_only_store_fails_loudly_without_a_traceback(
    kraiter: str, pg_state: str, tmp_path: Path
) -> None:
    open_state(tmp_path / "unused", pg_state).close()  # the schema exists (a standby's copy)
    read_only = pg_state + "&options=-c%20default_transaction_read_only%3Don"
    src = _events(tmp_path / "ev.csv", 0, 3)
    result = _cli(["import", str(src), "--state", read_only], kraiter, tmp_path)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "cannot write the state store postgresql://kraiter@" in result.output
    assert "point the state URL at the primary" in result.output
    assert _password(pg_state) not in result.output
    assert _remote(kraiter) == (0, 0)  # the run's record could not be written: nothing sent


def test_a_full_store_stops_the_run_with_nothing_lost(
    kraiter: str, pg_state: str, tmp_path: Path
) -> None:
    first = _cli(
        ["import", str(_events(tmp_path / "a.csv", 0, 5)), "--state", pg_state], kraiter, tmp_path
    )
    assert first.exit_code == 0, first.output
    schema = split_schema(pg_state)
    pg_run(
        pg_state,
        f"""CREATE FUNCTION {schema}.no_space() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'
            USING ERRCODE = 'disk_full'; END $$""",
        f"""CREATE TRIGGER no_space BEFORE INSERT OR UPDATE ON {schema}.events
        FOR EACH STATEMENT EXECUTE FUNCTION {schema}.no_space()""",
    )
    src = _events(tmp_path / "b.csv", 5, 5)
    result = _cli(["import", str(src), "--state", pg_state], kraiter, tmp_path)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "is out of space (could not extend file: No space left on device" in result.output
    assert "re-run the same command to resume" in result.output
    assert _remote(kraiter)[1] == 5  # no event left without its ledger row
    pg_run(pg_state, f"DROP TRIGGER no_space ON {schema}.events")
    resumed = _cli(["import", str(src), "--state", pg_state], kraiter, tmp_path)
    assert resumed.exit_code == 0, resumed.output
    assert _remote(kraiter) == (10, 10)


# -- state migrate ---------------------------------------------------------------------


def test_state_migrate_copies_sqlite_state_and_nothing_is_sent_again(
    kraiter: str, pg_state: str, tmp_path: Path
) -> None:
    src = _events(tmp_path / "ev.csv", 0, 40)
    local = _cli(["import", str(src)], kraiter, tmp_path)
    assert local.exit_code == 0, local.output
    export = _cli(["export", "contacts", "--out", str(tmp_path / "out")], kraiter, tmp_path)
    assert export.exit_code == 0, export.output
    blobs = sorted(p.name for p in (tmp_path / "state" / "export").glob("*.json"))
    assert blobs

    result = _cli(["state", "migrate", "--to", pg_state, "--json"], kraiter, tmp_path)
    assert result.exit_code == 0, result.output
    copied = json.loads(result.stdout)
    check_schema(copied, "state-migrate")
    assert copied["counts"]["events"] == 40
    assert copied["counts"]["runs"] == 1  # an export records no run
    assert copied["counts"]["blobs"] == len(blobs)
    assert _password(pg_state) not in result.output

    store = open_state(tmp_path / "elsewhere", pg_state)
    try:
        assert [r.command for r in store.list_runs()] == ["import"]
        assert [n.split("/")[1] for n in store.list_blobs("export/")] == blobs
    finally:
        store.close()
    again = _cli(
        ["import", str(src), "--state", pg_state],
        kraiter,
        tmp_path,
        KRAITER_SYNC_STATE_DIR=str(tmp_path / "elsewhere"),
    )
    assert again.exit_code == 0, again.output
    assert "40 already imported" in again.output
    assert _remote(kraiter) == (40, 40)

    twice = _cli(["state", "migrate", "--to", pg_state], kraiter, tmp_path)
    assert twice.exit_code == 2
    assert "already holds state for these targets" in twice.output
    assert "pass --replace" in twice.output
    replaced = _cli(["state", "migrate", "--to", pg_state, "--replace"], kraiter, tmp_path)
    assert replaced.exit_code == 0, replaced.output
    assert "verified by counts" in replaced.output
    store = open_state(tmp_path / "elsewhere", pg_state)
    try:
        assert [r.command for r in store.list_runs()] == ["import"]
    finally:
        store.close()


def test_state_migrate_refuses_another_scheme_and_a_wrong_password(
    kraiter: str, pg_state: str, tmp_path: Path
) -> None:
    assert (
        _cli(["import", str(_events(tmp_path / "ev.csv", 0, 2))], kraiter, tmp_path).exit_code == 0
    )
    other = _cli(["state", "migrate", "--to", "sqlite:///tmp/x.db"], kraiter, tmp_path)
    assert other.exit_code == 2
    assert "--to: 'sqlite:///tmp/x.db' has the unknown scheme 'sqlite'" in other.output
    password = _password(pg_state)
    wrong = _cli(
        ["state", "migrate", "--to", pg_state.replace(f":{password}@", ":hunter2@")],
        kraiter,
        tmp_path,
    )
    assert wrong.exit_code == 2
    assert "password authentication failed" in wrong.output
    assert "hunter2" not in wrong.output
    assert "Traceback" not in wrong.output


def test_an_empty_postgresql_store_is_lost_state_until_rebuilt(
    kraiter: str, pg_state: str, tmp_path: Path
) -> None:
    """Pointing machines at a new, empty store without `state migrate` is a lost state:
    refused before sending, then `state rebuild` fills the PostgreSQL ledger."""
    src = _events(tmp_path / "ev.csv", 0, 30)
    local = _cli(["import", str(src)], kraiter, tmp_path)
    assert local.exit_code == 0, local.output
    refused = _cli(["import", str(src), "--state", pg_state], kraiter, tmp_path)
    assert refused.exit_code == 2, refused.output
    assert "state rebuild" in refused.output
    # the ledger that holds nothing is the store's, not the state directory's (whose
    # SQLite ledger holds all 30)
    assert f"the ledger in {redact_url(pg_state)} holds nothing" in refused.output
    assert _remote(kraiter) == (30, 30)
    rebuilt = _cli(["state", "rebuild", "--state", pg_state], kraiter, tmp_path)
    assert rebuilt.exit_code == 0, rebuilt.output
    store = open_state(tmp_path / "elsewhere", pg_state)
    try:
        assert [r.command for r in store.list_runs()] == ["state rebuild", "import"]
    finally:
        store.close()
    again = _cli(["import", str(src), "--state", pg_state], kraiter, tmp_path)
    assert again.exit_code == 0, again.output
    assert "30 already imported" in again.output
    assert _remote(kraiter) == (30, 30)
    assert _password(pg_state) not in refused.output + rebuilt.output + again.output


def test_exports_keep_their_state_in_postgresql_and_compact_through_it(
    kraiter: str, pg_state: str, tmp_path: Path
) -> None:
    src = _events(tmp_path / "ev.csv", 0, 30)
    assert _cli(["import", str(src), "--state", pg_state], kraiter, tmp_path).exit_code == 0
    out = tmp_path / "out"
    args = ["export", "events", "--out", str(out), "--state", pg_state]
    first = _cli(args, kraiter, tmp_path)
    assert first.exit_code == 0, first.output
    assert "(incremental)" in first.stdout
    assert not (tmp_path / "state" / "export").exists()  # the document is in PostgreSQL
    assert (
        _cli(
            ["import", str(_events(tmp_path / "b.csv", 30, 5)), "--state", pg_state],
            kraiter,
            tmp_path,
        ).exit_code
        == 0
    )
    second = _cli(args, kraiter, tmp_path)  # another machine would continue the same way
    assert second.exit_code == 0, second.output
    assert second.stdout.startswith("exported 5 events rows (incremental)")
    compacted = _cli(
        ["export", "compact", "--out", str(out), "--state", pg_state], kraiter, tmp_path
    )
    assert compacted.exit_code == 0, compacted.output
    assert "-> 1 file(s)" in compacted.stdout
    assert len(list((out / "events").rglob("part-*"))) == 1
    assert _password(pg_state) not in first.output + second.output + compacted.output
