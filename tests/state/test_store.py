"""The state store's behaviour on both backends (SQLite files and a PostgreSQL schema):
runs, blobs, locks that die with their holder, caches and export state kept whole, and
what a killed process leaves behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import polars as pl
import pytest

from kraiter_sync import errors
from kraiter_sync.config.file import parse_sync_config
from kraiter_sync.export.state import STATE_VERSION, ExportState
from kraiter_sync.state.backend import open_state
from kraiter_sync.state.ledger import SCHEMA_VERSION
from kraiter_sync.state.pglocks import run_lock_name
from kraiter_sync.state.pgschema import PG_SCHEMA_VERSION
from kraiter_sync.state.rowcache import RowCache
from tests.helpers.paths import REPO_ROOT
from tests.helpers.pgstate import Opener, pg_run, split_schema

T = "http://127.0.0.1:1#abc123"
OTHER = "https://api.kraiter.com#def456"


def _child(opener: Opener, code: str, *args: str) -> subprocess.Popen[str]:
    """A Python process running ``code`` over the test's state (``sys.argv[1:]``: args)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=opener.child_env(),
    )


#: How a child process opens the test's store, in the state directory ``sys.argv[1]``.
_OPEN = """
    import os, sys
    from kraiter_sync.state.backend import open_state
    store = open_state(sys.argv[1], os.environ.get("KRAITER_TEST_STATE_URL"))
"""


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(timeout=10)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


# -- the ledger's rules hold on both -------------------------------------------------------


def test_batches_with_repeated_keys_keep_the_last_word(opener: Opener) -> None:
    store = opener()
    store.mark_inflight(T, ["a", "b", "a"], run_id=1)
    store.mark_done(T, [("a", "evt_1"), ("a", "evt_2"), ("b", "evt_b")])
    store.mark_rejected(T, [("c", "X", "first"), ("c", "Y", "second")])
    assert store.known_states(T, ["a", "b", "c"]) == {"a": "done", "b": "done", "c": "rejected"}
    assert store.remote_id(T, "a") == "evt_2"  # type: ignore[attr-defined]
    assert store.rejection(T, "c") == ("Y", "second")  # type: ignore[attr-defined]
    store.put_contacts(T, [("x@y.io", "c1", "h1"), ("x@y.io", "c2", None)])
    assert store.get_contacts(T, ["x@y.io"]) == {"x@y.io": ("c2", "h1")}
    store.put_contacts(T, [("x@y.io", "c2", None)])  # None keeps what is known
    assert store.get_contacts(T, ["x@y.io"]) == {"x@y.io": ("c2", "h1")}
    store.forget_contacts(T, ["x@y.io"])
    assert store.get_contacts(T, ["x@y.io"]) == {}


def test_runs_are_recorded_listed_and_kept_apart_by_target(opener: Opener) -> None:
    store = opener()
    first = store.start_run("import", T, {"api_key": "kr_secret", "paths": [Path("a.csv")]})
    store.finish_run(first, "ok", {"sent": 3}, details={"timeline": {"series": {}}})
    second = store.start_run("sync:orders", OTHER)
    record = store.get_run(first)
    assert record is not None
    assert (record.command, record.status, record.counts) == ("import", "ok", {"sent": 3})
    assert record.args == {"paths": ["a.csv"]}
    assert record.details == {"timeline": {"series": {}}}
    assert (record.pid, record.host) == (os.getpid(), os.uname().nodename)
    assert [r.id for r in store.list_runs()] == [second, first]
    assert [r.id for r in store.list_runs(target=T)] == [first]
    assert [r.details for r in store.list_runs()] == [None, None]
    assert store.get_run(second + 100) is None
    again = opener()  # another process's view of the same state
    assert [r.status for r in again.list_runs()] == ["running", "ok"]


def test_what_a_killed_process_left_is_found_by_the_next(opener: Opener) -> None:
    store = opener()
    proc = _child(
        opener,
        _OPEN
        + f"""
    run = store.start_run("import", {T!r}, {{}})
    store.mark_inflight({T!r}, ["x", "y", "z"], run_id=run)
    store.mark_done({T!r}, [("x", "evt_x")])
    print(run, flush=True)
    sys.stdin.readline()
    """,
        str(opener.state_dir),
    )
    try:
        assert proc.stdout is not None
        run_id = int(proc.stdout.readline())
        assert store.mark_killed_runs() == []  # alive: still running
        os.kill(proc.pid, 9)
        proc.wait(timeout=10)
    finally:
        _stop(proc)
    fresh = opener()
    assert fresh.inflight(T) == ["y", "z"]  # ambiguous: verified before anything is re-sent
    assert fresh.known_states(T, ["x"]) == {"x": "done"}
    assert fresh.mark_killed_runs() == [run_id]
    killed = fresh.get_run(run_id)
    assert killed is not None
    assert (killed.status, killed.pid) == ("killed", proc.pid)


# -- blobs -------------------------------------------------------------------------------


def test_blobs_are_replaced_whole_listed_by_prefix_and_dropped(opener: Opener) -> None:
    store = opener()
    assert store.read_blob("export/events-1.json") is None
    store.write_blob("export/events-1.json", b'{"v": 1}')
    store.write_blob("export/events-1.json", b'{"v": 2}')
    store.write_blob("export/events-2.json", b"{}")
    store.write_blob("sync/job.rows.aa-1.parquet", b"\x00\x01binary\xff")
    assert store.read_blob("export/events-1.json") == b'{"v": 2}'
    assert store.read_blob("sync/job.rows.aa-1.parquet") == b"\x00\x01binary\xff"
    assert store.list_blobs("export/") == ["export/events-1.json", "export/events-2.json"]
    assert store.list_blobs("export/events-2") == ["export/events-2.json"]
    assert store.delete_blobs("export/", keep="export/events-2.json") == 1
    assert store.list_blobs("export/") == ["export/events-2.json"]
    assert store.list_blobs("sync/") == ["sync/job.rows.aa-1.parquet"]
    assert "export/events-2.json" in store.blob_label("export/events-2.json")
    assert opener().read_blob("export/events-2.json") == b"{}"


def test_blobs_may_be_written_from_another_thread(opener: Opener) -> None:
    """An export saves its state from its chunk-writer thread."""
    store = opener()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: store.write_blob(f"export/s-{i}.json", b"%d" % i), range(16)))
    assert [store.read_blob(f"export/s-{i}.json") for i in range(16)] == [
        b"%d" % i for i in range(16)
    ]


def test_the_row_cache_and_the_export_state_live_in_the_store(opener: Opener) -> None:
    store = opener()
    job = parse_sync_config(
        '[jobs.c]\nsource = "*.csv"\nkind = "contacts"\n', Path("kraiter-sync.toml")
    ).jobs[0]
    rows = pl.DataFrame(
        {"source_file": ["a.csv"] * 3, "source_row": [1, 2, 4], "h": [11, 22, 44]},
        schema={"source_file": pl.String, "source_row": pl.Int64, "h": pl.UInt64},
    )
    mine, theirs = RowCache(store, job, T), RowCache(store, job, OTHER)
    mine.save(rows)
    theirs.save(rows.head(1))
    known = RowCache(opener(), job, T).load()
    assert known is not None
    assert (known.rows, known.by_file["a.csv"].to_list()) == (3, [11, 22, None, 44])
    # a new configuration of one target's job drops only that target's older cache
    changed = parse_sync_config(
        '[jobs.c]\nsource = "*.csv"\nkind = "contacts"\nmap = { email = "e" }\n',
        Path("kraiter-sync.toml"),
    ).jobs[0]
    RowCache(store, changed, T).save(rows)
    assert RowCache(store, job, T).load() is None
    other = RowCache(store, job, OTHER).load()
    assert other is not None
    assert other.rows == 1
    state = ExportState.in_store(store, T, "events", Path("out"))
    state.load()
    state.data["watermark"] = {"pos": {"last_id": "evt_9"}}
    state.save()
    again = ExportState.in_store(opener(), T, "events", Path("out")).load()
    assert again["watermark"] == {"pos": {"last_id": "evt_9"}}
    assert ExportState.in_store(store, OTHER, "events", Path("out")).load() == {
        "version": STATE_VERSION
    }


# -- locks -------------------------------------------------------------------------------


def test_a_held_lock_refuses_another_taker_and_names_its_holder(opener: Opener) -> None:
    store = opener()
    with store.lock("export/events-1.lock", busy=lambda who: f"busy ({who})"):
        with (
            pytest.raises(errors.LockHeldError, match=rf"busy \(pid {os.getpid()}\b") as info,
            opener().lock("export/events-1.lock", busy=lambda who: f"busy ({who})"),
        ):
            pass
        assert info.value.exit_code == 5
        with store.lock("export/events-2.lock", busy=str):  # another name: free
            pass
    with opener().lock("export/events-1.lock", busy=str):  # released
        pass


_HOLDER = f"""
    with store.run_lock({T!r}):
        print("held", flush=True)
        sys.stdin.readline()
"""


def _hold(opener: Opener, state_dir: Path) -> subprocess.Popen[str]:
    proc = _child(opener, _OPEN + _HOLDER, str(state_dir))
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_run_lock_killed_with_its_holder_is_free_at_once(opener: Opener, tmp_path: Path) -> None:
    """``kill -9`` the holder: nobody has to act, the next run takes the lock. With
    PostgreSQL the two processes share nothing but the database (two state directories:
    two machines)."""
    shared = opener.url is not None
    holder_dir = tmp_path / "machine-a" if shared else opener.state_dir
    mine = opener(tmp_path / "machine-b") if shared else opener()
    proc = _hold(opener, holder_dir)
    try:
        with (
            pytest.raises(errors.LockHeldError, match=f"pid {proc.pid}") as info,
            mine.run_lock(T),
        ):
            pass
        assert info.value.exit_code == 5
        if shared:
            assert "another kraiter-sync run" in str(info.value)
            assert os.uname().nodename in str(info.value)
        os.kill(proc.pid, 9)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while True:
            try:
                with mine.run_lock(T):
                    break
            except errors.LockHeldError:
                assert time.monotonic() < deadline, "the dead holder's lock was never freed"
                time.sleep(0.05)
    finally:
        _stop(proc)


_CONTENDER = f"""
    import time
    from kraiter_sync.errors import LockHeldError
    marker, got, end = sys.argv[2], 0, time.monotonic() + 3
    while time.monotonic() < end:
        try:
            with store.run_lock({T!r}):
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # fails on overlap
                time.sleep(0.01)
                os.close(fd)
                os.unlink(marker)
                got += 1
        except LockHeldError:
            pass
        time.sleep(0.002)
    print(got)
"""


def test_two_processes_never_hold_a_run_lock_together(opener: Opener, tmp_path: Path) -> None:
    shared = opener.url is not None
    marker = tmp_path / "inside"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(_OPEN + _CONTENDER),
                str(tmp_path / f"machine-{i}" if shared else opener.state_dir),
                str(marker),
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=opener.child_env(),
        )
        for i in range(3)
    ]
    outcomes = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], [err for _, err in outcomes]
    taken = [int(out) for out, _ in outcomes]
    assert sum(taken) >= 10, taken  # they did take turns


# -- schema versions -------------------------------------------------------------------


def test_processes_opening_a_fresh_store_at_once_migrate_it_once(opener: Opener) -> None:
    """Machines (or workers) started together on empty state: each migration once."""
    code = _OPEN + "    store.close()\n    print('ok')\n"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(opener.state_dir)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=opener.child_env(),
        )
        for _ in range(4)
    ]
    outcomes = [proc.communicate(timeout=60) for proc in procs]
    assert [out for out, _ in outcomes] == ["ok\n"] * 4, [err for _, err in outcomes]
    store = opener()
    assert store.schema_version == (PG_SCHEMA_VERSION if opener.url else SCHEMA_VERSION)  # type: ignore[attr-defined]


def test_a_newer_postgresql_schema_is_refused(pg_state: str, tmp_path: Path) -> None:
    open_state(tmp_path, pg_state).close()
    schema = split_schema(pg_state)
    applied = pg_run(pg_state, f"SELECT version FROM {schema}.schema_migrations ORDER BY 1")
    assert [v for (v,) in applied] == list(range(1, PG_SCHEMA_VERSION + 1))
    pg_run(
        pg_state,
        f"INSERT INTO {schema}.schema_migrations (version, tool) VALUES (%s, '99.0')",
        params=[PG_SCHEMA_VERSION + 1],
    )
    with pytest.raises(errors.StateError) as info:
        open_state(tmp_path, pg_state)
    message = str(info.value)
    assert f"has schema version {PG_SCHEMA_VERSION + 1}, newer than this kraiter-sync" in message
    assert "upgrade kraiter-sync on every machine that shares this state" in message
    assert str(urlsplit(pg_state).password) not in message


def test_a_postgresql_store_from_key_version_2_marks_its_targets(
    pg_state: str, tmp_path: Path
) -> None:
    """A store written by a release of key version 2 (NDJSON values coerced to one type
    per key and chunk): its targets holding events may hold version-2 keys, so imports to
    them compute those; a target with no events holds only current keys."""
    from kraiter_sync.state.schema import KEY_VERSION

    open_state(tmp_path, pg_state).close()
    schema = split_schema(pg_state)
    pg_run(pg_state, f"DELETE FROM {schema}.schema_migrations WHERE version > 1")
    pg_run(pg_state, f"INSERT INTO {schema}.targets (name) VALUES ('held'), ('empty')")
    pg_run(
        pg_state,
        f"INSERT INTO {schema}.events (target, event_key, state, updated_at) "
        f"SELECT id, 'k', 'done', 1.0 FROM {schema}.targets WHERE name = 'held'",
    )
    store = open_state(tmp_path, pg_state)
    try:
        assert KEY_VERSION == 3
        assert store.oldest_key_version("held") == 2
        assert store.oldest_key_version("empty") == 3
    finally:
        store.close()


def test_a_run_that_lost_its_lock_sends_nothing_more(pg_state: str, tmp_path: Path) -> None:
    """The lock's connection dies (a server restart, a network cut): another run may take
    the lock now, so no more keys are marked inflight (and so none sent)."""
    store = open_state(tmp_path, pg_state)
    try:
        with store.run_lock(T):
            store.mark_inflight(T, ["a"], run_id=1)
            key = store.db.lock_key(run_lock_name(T)) & 0xFFFF_FFFF_FFFF_FFFF  # type: ignore[attr-defined]
            ended = pg_run(
                pg_state,
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                "AND granted AND classid::bigint = %s AND objid::bigint = %s",
                params=[key >> 32, key & 0xFFFF_FFFF],
            )
            assert ended == [(True,)]
            with pytest.raises(errors.StateError, match="lost the connection that holds the lock"):
                store.mark_inflight(T, ["b"], run_id=1)
            assert store.known_states(T, ["a", "b"]) == {"a": "inflight"}
        other = open_state(tmp_path / "other", pg_state)
        with other.run_lock(T):  # free for the next run
            pass
        other.close()
    finally:
        store.close()
