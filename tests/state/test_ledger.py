"""The ledger: states, crash safety, batches, runs, the lock. Tests taking ``ledger`` run
on both backends (SQLite files and a PostgreSQL schema); the others are SQLite's own."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from kraiter_sync import errors
from kraiter_sync.state.ledger import SCHEMA_VERSION, Ledger
from kraiter_sync.state.lock import state_lock
from kraiter_sync.state.runs import scrub_args
from kraiter_sync.state.store import StateStore
from tests.helpers.pgstate import Opener

T = "http://127.0.0.1:1#abc123"
OTHER = "https://api.kraiter.com#def456"


@pytest.fixture
def ledger(opener: Opener) -> StateStore:
    """A state store of each backend (the same rules hold for both)."""
    return opener()


@pytest.fixture
def sqlite_ledger(tmp_path: Path) -> Ledger:
    led = Ledger(tmp_path / "state" / "ledger.db")
    yield led  # type: ignore[misc]
    led.close()


def test_creates_parents_wal_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "ledger.db"
    with Ledger(path) as led:
        assert led.schema_version == SCHEMA_VERSION == 5
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == 5
    db.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(errors.StateError, match="upgrade kraiter-sync"):
        Ledger(path)


def test_state_transitions_per_target(ledger: Any) -> None:
    ledger.mark_inflight(T, ["k1", "k2", "k3", "k4"], run_id=1)
    ledger.mark_done(T, [("k1", "evt_1"), ("k2", "evt_2")])
    ledger.mark_rejected(T, [("k3", "VALIDATION_ERROR", "name too long")])
    assert ledger.known_states(T, ["k1", "k2", "k3", "k4", "k5"]) == {
        "k1": "done",
        "k2": "done",
        "k3": "rejected",
        "k4": "inflight",
    }
    assert ledger.known_states(OTHER, ["k1"]) == {}
    assert ledger.inflight(T) == ["k4"]
    assert ledger.remote_id(T, "k1") == "evt_1"
    assert ledger.rejection(T, "k3") == ("VALIDATION_ERROR", "name too long")
    assert ledger.count_states(T) == {"done": 2, "rejected": 1, "inflight": 1}


def test_done_is_never_downgraded(ledger: Any) -> None:
    ledger.mark_done(T, [("k1", "evt_1")])
    ledger.mark_inflight(T, ["k1"], run_id=2)
    ledger.mark_rejected(T, [("k1", "X", "y")])
    assert ledger.known_states(T, ["k1"]) == {"k1": "done"}
    assert ledger.remote_id(T, "k1") == "evt_1"


def test_inflight_survives_reopen_like_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    led = Ledger(path)
    led.mark_inflight(T, ["a", "b"], run_id=7)
    led.mark_done(T, [("a", "evt_a")])
    # no close(): the process "dies" with the connection open
    del led
    with Ledger(path) as again:
        assert again.inflight(T) == ["b"]
        assert again.known_states(T, ["a"]) == {"a": "done"}


def test_killed_process_leaves_inflight_behind(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    code = textwrap.dedent(
        f"""
        import os
        from kraiter_sync.state.ledger import Ledger
        led = Ledger({str(path)!r})
        led.mark_inflight({T!r}, ["x", "y", "z"], run_id=1)
        led.mark_done({T!r}, [("x", "evt_x")])
        os._exit(9)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent.parent)
    assert proc.returncode == 9
    with Ledger(path) as led:
        assert led.inflight(T) == ["y", "z"]


def test_forget_makes_keys_sendable_again(ledger: Any) -> None:
    ledger.mark_rejected(T, [("k1", "X", "m"), ("k2", "X", "m")])
    assert ledger.forget(T, ["k1"]) == 1
    assert ledger.known_states(T, ["k1", "k2"]) == {"k2": "rejected"}


def test_big_batches_and_polars_series(ledger: Any) -> None:
    keys = pl.Series("event_key", [f"{i:016x}" for i in range(25_000)])
    ledger.mark_inflight(T, keys, run_id=1)
    ledger.mark_done(T, [(k, f"evt_{k}") for k in keys.to_list()[:12_345]])
    states = ledger.known_states(T, keys)
    assert len(states) == 25_000
    assert sum(1 for s in states.values() if s == "done") == 12_345
    assert len(ledger.inflight(T)) == 25_000 - 12_345
    assert ledger.forget(T, keys[:20_001]) == 20_001


def test_runs_store_scrubbed_args(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    secret = "kr_live_supersecret"
    with Ledger(path) as led:
        run = led.start_run(
            "import", T, {"api_key": secret, "paths": [Path("a.csv")], "rate": 10.0}
        )
        led.finish_run(run, "ok", {"sent": 3, "rejected": 1})
        rec = led.get_run(run)
        assert rec is not None
        assert rec.args == {"paths": ["a.csv"], "rate": 10.0}
        assert rec.status == "ok"
        assert rec.counts == {"sent": 3, "rejected": 1}
        assert rec.finished_at is not None
        second = led.start_run("runs", OTHER)
        assert [r.id for r in led.list_runs()] == [second, run]
        assert [r.id for r in led.list_runs(target=T)] == [run]
        assert led.get_run(999) is None
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert secret.encode() not in raw


def test_scrub_args() -> None:
    assert scrub_args({"api_key": "x", "API_KEY": "y", "quiet": True}) == {"quiet": True}


def test_watermarks_and_contacts(ledger: Any) -> None:
    assert ledger.get_watermark(T, "events") is None
    ledger.set_watermark(T, "events", "cursor-1")
    ledger.set_watermark(T, "events", "cursor-2")
    assert ledger.get_watermark(T, "events") == "cursor-2"
    assert ledger.get_watermark(OTHER, "events") is None
    ledger.put_contacts(T, [("a@x.io", "ctc_1", "h1"), ("b@x.io", "ctc_2", None)])
    ledger.put_contacts(T, [("a@x.io", "ctc_1", "h2")])
    assert ledger.get_contacts(T, ["a@x.io", "b@x.io", "c@x.io"]) == {
        "a@x.io": ("ctc_1", "h2"),
        "b@x.io": ("ctc_2", None),
    }


class NoJsonEach:
    """A connection of an SQLite built without its JSON functions."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def execute(self, sql: str, params: object = ()) -> sqlite3.Cursor:
        if "json_each" in sql:
            raise sqlite3.OperationalError("no such table: json_each")
        return self.db.execute(sql, params)  # type: ignore[arg-type]

    def close(self) -> None:
        self.db.close()


def test_contact_lookups_in_one_statement(ledger: StateStore) -> None:
    rows = [(f"u{i}@x.io", f"ctc_{i}", f"h{i}" if i % 3 else None) for i in range(25_000)]
    ledger.put_contacts(T, rows)
    ledger.put_contacts(OTHER, [("u1@x.io", "other", "h")])
    wanted = [f"u{i}@x.io" for i in range(0, 30_000, 2)]  # 2,500 of them never cached
    expected = sorted(r for r in rows if int(r[1][4:]) % 2 == 0)
    assert sorted(ledger.contact_rows(T, pl.Series(wanted))) == expected
    assert ledger.contact_rows(T, []) == []
    assert ledger.contact_rows(OTHER, ["u1@x.io", "u2@x.io"]) == [("u1@x.io", "other", "h")]


def test_contact_lookups_in_chunks_without_json_each(sqlite_ledger: Ledger) -> None:
    ledger = sqlite_ledger
    rows = [(f"u{i}@x.io", f"ctc_{i}", f"h{i}" if i % 3 else None) for i in range(25_000)]
    ledger.put_contacts(T, rows)
    wanted = [f"u{i}@x.io" for i in range(0, 30_000, 2)]  # 2,500 of them never cached
    expected = sorted(r for r in rows if int(r[1][4:]) % 2 == 0)
    ledger._db = NoJsonEach(ledger._db)  # type: ignore[assignment]
    assert sorted(ledger.contact_rows(T, wanted)) == expected  # IN lists of 10,000
    assert not ledger._json_each


def test_corrupt_file_is_a_state_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    path.write_bytes(b"this is not a database, just some bytes" * 100)
    with pytest.raises(errors.StateError, match="damaged") as info:
        Ledger(path)
    assert "Move it aside" in str(info.value)
    # the advice leads to rebuilding it, not to a fresh ledger that knows nothing
    assert "kraiter-sync state rebuild" in str(info.value)
    assert "--rebuild" in str(info.value)


def _foreign(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (body TEXT)")
    db.commit()
    db.close()


def _header_only(path: Path) -> None:
    """An SQLite header without tables: what an earlier version left when it died while
    creating the ledger, or a ledger.db copied before its first checkpoint without its
    -wal file."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.close()


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (lambda p: p.write_bytes(b""), "an empty file (0 bytes)"),
        (_foreign, "an SQLite database of something else"),
        (_header_only, "an empty SQLite database"),
    ],
    ids=["zero-bytes", "foreign-sqlite", "header-only"],
)
def test_a_file_that_is_not_a_ledger_is_never_taken_for_an_empty_one(
    tmp_path: Path, make, what: str
) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "ledger.db"
    make(path)
    before = path.read_bytes()
    with pytest.raises(errors.StateError) as info:
        Ledger(path)
    message = str(info.value)
    assert what in message
    assert "not a kraiter-sync ledger" in message
    assert "kraiter-sync state rebuild" in message
    assert "ledger.db-wal" in message
    assert path.read_bytes() == before  # left as it was: nothing migrated into it


def test_a_new_ledger_is_created_whole(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ledger.db"
    with Ledger(path) as led:
        assert led.schema_version == SCHEMA_VERSION
    # the file was built aside and linked into place: no temporary file is left
    assert sorted(p.name for p in path.parent.iterdir()) == ["ledger.db"]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


def test_locked_database_is_a_state_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger(path).close()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    led = Ledger(path)
    led._db.execute("PRAGMA busy_timeout = 50")
    try:
        with pytest.raises(errors.StateError, match="another kraiter-sync run"):
            led.mark_inflight(T, ["k"], run_id=None)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        led.close()


def test_state_lock_excludes_a_second_process(tmp_path: Path) -> None:
    state = tmp_path / "state"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from kraiter_sync.state.lock import state_lock\n"
            f"with state_lock({str(state)!r}):\n"
            "    print('held', flush=True)\n"
            "    sys.stdin.readline()\n",
        ],
        cwd=Path(__file__).parent.parent.parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with (
            pytest.raises(errors.LockHeldError, match=f"pid {holder.pid}") as info,
            state_lock(state),
        ):
            pass
        assert info.value.exit_code == 5
    finally:
        holder.kill()
        holder.wait(timeout=10)
        for pipe in (holder.stdin, holder.stdout):
            if pipe is not None:
                pipe.close()
    # the holder died without unlocking: the kernel released it, we take over
    with state_lock(state) as lock:
        assert lock.read_text().strip() == str(__import__("os").getpid())


def test_a_version_1_ledger_is_migrated_keeping_its_data(tmp_path: Path) -> None:
    from kraiter_sync.state.schema import MIGRATIONS

    path = tmp_path / "ledger.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(MIGRATIONS[0])
    db.execute("PRAGMA user_version = 1")
    db.execute(
        "INSERT INTO runs (command, target, started_at, status) VALUES ('import', ?, 1.0, 'ok')",
        [T],
    )
    db.close()
    with Ledger(path) as led:
        assert led.schema_version == 5
        (run,) = led.list_runs()
        assert (run.command, run.status, run.pid, run.host) == ("import", "ok", None, None)


def test_a_version_2_ledger_keeps_its_runs_readable_without_details(tmp_path: Path) -> None:
    from kraiter_sync.state.schema import MIGRATIONS

    path = tmp_path / "ledger.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(MIGRATIONS[0])
    db.executescript(MIGRATIONS[1])
    db.execute("PRAGMA user_version = 2")
    db.execute(
        "INSERT INTO runs (command, target, started_at, finished_at, status, counts) "
        "VALUES ('import', ?, 1.0, 2.0, 'ok', '{\"requests\": 7}')",
        [T],
    )
    db.close()
    with Ledger(path) as led:
        assert led.schema_version == 5
        run = led.get_run(1)
        assert run is not None
        assert (run.status, run.counts, run.details) == ("ok", {"requests": 7}, None)
        new = led.start_run("import", T)
        led.finish_run(new, "ok", {"requests": 2}, details={"timeline": {"series": {}}})
        again = led.get_run(new)
        assert again is not None
        assert again.details == {"timeline": {"series": {}}}
        # listings stay light: details are read for one run only
        assert [r.details for r in led.list_runs()] == [None, None]


def _old_ledger(tmp_path: Path, version: int, *statements: str) -> Path:
    """A ledger as a release at schema ``version`` left it, with these rows."""
    from kraiter_sync.state.schema import MIGRATIONS

    path = tmp_path / "ledger.db"
    db = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:version]:
        db.executescript(migration)
    db.execute(f"PRAGMA user_version = {version}")
    for statement in statements:
        db.execute(statement)
    db.close()
    return path


def test_targets_with_events_from_before_exact_json_types_are_marked_version_2(
    tmp_path: Path,
) -> None:
    """A schema-4 ledger (key version 2: NDJSON values coerced to one type per column and
    chunk): a target that holds events may hold version-2 keys, so an import computes
    them; a version-1 mark stays; a target with no events holds only current keys."""
    from kraiter_sync.state.schema import KEY_VERSION

    path = _old_ledger(
        tmp_path,
        4,
        "INSERT INTO targets (id, name) VALUES (1, 'v2'), (2, 'v1'), (3, 'empty')",
        "INSERT INTO events (target, event_key, state, remote_id, updated_at) "
        "VALUES (1, 'k1', 'done', 'evt_1', 1.0), (2, 'k2', 'done', 'evt_2', 1.0)",
        "INSERT INTO key_versions (target, oldest) VALUES (2, 1)",
    )
    with Ledger(path) as led:
        assert led.schema_version == 5
        assert KEY_VERSION == 3
        assert led.oldest_key_version("v2") == 2
        assert led.oldest_key_version("v1") == 1
        assert led.oldest_key_version("empty") == 3


def test_targets_with_events_from_before_typed_keys_are_marked_version_1(tmp_path: Path) -> None:
    """A version-2 ledger: the target that holds events may hold version-1 (untyped text)
    keys; one with none, and a target first used now, hold only current keys."""
    from kraiter_sync.state.schema import KEY_VERSION

    path = _old_ledger(
        tmp_path,
        2,
        "INSERT INTO targets (id, name) VALUES (1, 'old'), (2, 'empty')",
        "INSERT INTO events (target, event_key, state, remote_id, updated_at) "
        "VALUES (1, 'k-old', 'done', 'evt_1', 1.0), (1, 'k-bad', 'rejected', NULL, 1.0), "
        "(1, 'k-maybe', 'inflight', NULL, 1.0)",
    )
    with Ledger(path) as led:
        assert led.schema_version == 5
        assert KEY_VERSION == 3
        assert led.oldest_key_version("old") == 1
        assert led.oldest_key_version("empty") == 3
        assert led.oldest_key_version("new") == 3
        adopted = led.adopt_keys(
            "old", [("k-old", "k-new"), ("k-bad", "k-bad2"), ("k-maybe", "k-m2"), ("x", "y")]
        )
        assert adopted == 2  # done and rejected are carried over; inflight is verified
        assert led.known_states("old", ["k-new", "k-bad2", "k-m2", "y"]) == {
            "k-new": "done",
            "k-bad2": "rejected",
        }
        assert led.remote_id("old", "k-new") == "evt_1"


# -- runs whose process is gone --------------------------------------------------------


def _start_run_in_a_process(path: Path) -> subprocess.Popen[str]:
    code = textwrap.dedent(
        f"""
        import sys
        from kraiter_sync.state.ledger import Ledger
        with Ledger({str(path)!r}) as led:
            print(led.start_run("import", {T!r}, {{}}), flush=True)
        sys.stdin.readline()
        """
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=Path(__file__).parent.parent.parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_run_whose_process_was_killed_is_marked_killed(tmp_path: Path) -> None:
    import os
    import socket

    path = tmp_path / "ledger.db"
    proc = _start_run_in_a_process(path)
    try:
        assert proc.stdout is not None
        run_id = int(proc.stdout.readline())
        with Ledger(path) as led:
            assert led.mark_killed_runs() == []  # alive: still running
            run = led.get_run(run_id)
            assert run is not None
            assert (run.status, run.pid, run.host) == ("running", proc.pid, socket.gethostname())
        os.kill(proc.pid, 9)
        proc.wait(timeout=10)
        with Ledger(path) as led:
            assert led.mark_killed_runs() == [run_id]
            run = led.get_run(run_id)
            assert run is not None
            assert (run.status, run.finished_at) == ("killed", None)
            assert led.mark_killed_runs() == []  # once
    finally:
        proc.kill()
        proc.wait(timeout=10)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


def test_a_recycled_pid_is_not_taken_for_the_run(tmp_path: Path) -> None:
    """A live process with the run's pid but another start time is not the run's."""
    import os

    path = tmp_path / "ledger.db"
    with Ledger(path) as led:
        mine = led.start_run("import", T, {})
        recycled = led.start_run("import", T, {})
        elsewhere = led.start_run("import", T, {})
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE runs SET proc_start = 'another-boot:123' WHERE id = ?", [recycled])
        db.execute("UPDATE runs SET host = 'another-host', pid = 1 WHERE id = ?", [elsewhere])
    db.close()
    with Ledger(path) as led:
        assert led.mark_killed_runs() == [recycled]
        statuses = {r.id: (r.status, r.pid) for r in led.list_runs()}
    assert statuses[mine] == ("running", os.getpid())  # this very process
    assert statuses[elsewhere][0] == "running"  # another host: cannot tell


def test_cli_runs_shows_a_killed_run(tmp_path: Path) -> None:
    import json
    import os

    from click.testing import CliRunner

    from kraiter_sync.cli import main

    state = tmp_path / "st"
    proc = _start_run_in_a_process(state / "ledger.db")
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        os.kill(proc.pid, 9)
        proc.wait(timeout=10)
    finally:
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
    result = CliRunner().invoke(main, ["runs", "--state-dir", str(state)])
    assert result.exit_code == 0, result.output
    assert " killed " in result.stdout.splitlines()[1]
    as_json = CliRunner().invoke(main, ["runs", "--json", "--state-dir", str(state)])
    (run,) = json.loads(as_json.stdout)["runs"]
    assert (run["status"], run["pid"]) == ("killed", proc.pid)


# -- a tenant name stays with the key it was first used with -----------------------------


def test_a_tenant_name_is_bound_to_its_first_key(ledger: Any) -> None:
    ledger.bind_tenant("https://api.kraiter.com", "acme", "fp-one")
    ledger.bind_tenant("https://api.kraiter.com", "acme", "fp-one")  # same key: fine
    ledger.bind_tenant("https://eu.kraiter.example", "acme", "fp-two")  # another base URL
    with pytest.raises(errors.ConfigError) as caught:
        ledger.bind_tenant("https://api.kraiter.com", "acme", "fp-two")
    assert "--tenant-rotate" in str(caught.value)
    ledger.bind_tenant("https://api.kraiter.com", "acme", "fp-two", rotate=True)
    with pytest.raises(errors.ConfigError):  # the old key is the stranger now
        ledger.bind_tenant("https://api.kraiter.com", "acme", "fp-one")
