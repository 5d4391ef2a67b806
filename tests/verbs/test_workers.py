"""Several workers on one import through PostgreSQL state: real processes, real HTTP.

The worker processes run the CLI against one served emulator with a rate limit and
faults (5xx, dropped answers); one of them is killed with SIGKILL mid-run. What Kraiter
holds afterwards is counted: every event exactly once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from kraiter_sync.emulator import EmulatorConfig, serve_in_thread
from tests.helpers.imports import BAD_ROWS, stored_events, write_events
from tests.helpers.pgstate import fresh_schema, pg_run, split_schema

KEY = "kr_workers_test_secret_abcdef"


@pytest.fixture
def state_url() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


def _scalar(state_url: str, sql: str) -> int:
    try:
        rows = pg_run(state_url, sql.format(s=split_schema(state_url)))
    except psycopg.errors.UndefinedTable:
        return 0  # not migrated yet
    return int(rows[0][0]) if rows else 0


def _import(python: str, src: Path, url: str, state_dir: Path, *extra: str) -> list[str]:
    return [
        python,
        "-m",
        "kraiter_sync",
        "import",
        str(src),
        "--base-url",
        url,
        "--state-dir",
        str(state_dir),
        "--concurrency",
        "4",
        "--max-retries",
        "12",
        "--quiet",
        *extra,
    ]


def test_three_workers_one_killed_mid_run_send_each_event_exactly_once(
    tmp_path: Path, python: str, cli_env: dict[str, str], state_url: str
) -> None:
    src = tmp_path / "events.parquet"
    expected = write_events(src, rows=1200, contacts=90, seed=21)
    db = tmp_path / "kraiter.db"
    config = EmulatorConfig(
        db_path=str(db), rate_limit=150, latency_ms=5, fail_rate=0.03, drop_rate=0.02, seed=13
    )
    env = dict(cli_env, KRAITER_API_KEY=KEY, KRAITER_SYNC_STATE=state_url)
    done = "SELECT count(*) FROM {s}.events WHERE state = 'done'"
    with serve_in_thread(config) as url:
        # three machines: each its own state directory, one PostgreSQL state
        procs = [
            subprocess.Popen(
                _import(
                    python,
                    src,
                    url,
                    tmp_path / f"machine{i}",
                    "--workers",
                    "1",
                    "--lease-seconds",
                    "3",
                ),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(3)
        ]
        deadline = time.monotonic() + 90
        while _scalar(state_url, done) < 150:
            assert time.monotonic() < deadline, "the workers sent nothing"
            assert all(p.poll() is None for p in procs), "a worker ended before the kill"
            time.sleep(0.1)
        procs[0].send_signal(signal.SIGKILL)
        outs = [p.communicate(timeout=180) for p in procs]
    assert procs[0].returncode == -signal.SIGKILL
    for proc, (_out, err) in zip(procs[1:], outs[1:], strict=True):
        assert proc.returncode == 3, err  # the deliberately bad rows, nothing else
    # every shard was finished, the killed worker's too (taken over after its lease)
    assert _scalar(state_url, "SELECT count(*) FROM {s}.work_shards WHERE NOT done") == 0
    assert _scalar(state_url, "SELECT count(*) FROM {s}.work_shards") > 0
    assert _scalar(state_url, "SELECT count(*) FROM {s}.events WHERE state <> 'done'") == 0
    assert stored_events(db, KEY) == Counter(expected)  # 0 duplicates, 0 missing


def test_workers_on_one_machine_split_the_work_and_add_up_their_counts(
    tmp_path: Path, python: str, cli_env: dict[str, str], state_url: str
) -> None:
    src = tmp_path / "events.parquet"
    expected = write_events(src, rows=400, contacts=50, seed=4)
    db = tmp_path / "kraiter.db"
    config = EmulatorConfig(db_path=str(db), rate_limit=200, fail_rate=0.02, seed=3)
    env = dict(cli_env, KRAITER_API_KEY=KEY, KRAITER_SYNC_STATE=state_url)
    with serve_in_thread(config) as url:
        cmd = _import(python, src, url, tmp_path / "st", "--workers", "2", "--json")
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
        assert run.returncode == 3, run.stderr
        summary = json.loads(run.stdout)
        events = summary["events"]
        assert events["sent"] + events["verified"] == 400
        assert events["invalid"] == BAD_ROWS
        assert events["pending"] == 0
        # each worker sent a part: two run records, both with events sent
        runs = _scalar(
            state_url,
            "SELECT count(*) FROM {s}.runs WHERE command = 'import' "
            "AND (counts::jsonb -> 'events' ->> 'sent')::int > 0",
        )
        assert runs == 2
        # the same command again: a new round over the same shards, nothing sent twice
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
        assert again.returncode == 3, again.stderr
        assert json.loads(again.stdout)["events"]["already"] == 400
    assert stored_events(db, KEY) == Counter(expected)


def test_workers_dry_run_and_reject_ratio_stop_say_so_not_incomplete(
    tmp_path: Path, python: str, cli_env: dict[str, str], state_url: str
) -> None:
    """Each worker's run is a dry run or stopped by --max-reject-ratio: the added-up
    result is that too (exit 3, its status and reason), not "incomplete, re-run" (4)."""
    src = tmp_path / "events.parquet"
    write_events(src, rows=40, contacts=10, seed=2)
    db = tmp_path / "kraiter.db"
    env = dict(cli_env, KRAITER_API_KEY=KEY, KRAITER_SYNC_STATE=state_url)
    with serve_in_thread(EmulatorConfig(db_path=str(db))) as url:
        cmd = _import(python, src, url, tmp_path / "st", "--workers", "2", "--json")
        dry = subprocess.run([*cmd, "--dry-run"], env=env, capture_output=True, text=True)
        stop = subprocess.run(
            [*cmd, "--max-reject-ratio", "0.01"], env=env, capture_output=True, text=True
        )
    assert (dry.returncode, json.loads(dry.stdout)["status"]) == (3, "dry-run"), dry.stderr
    assert stop.returncode == 3, stop.stderr
    assert "max-reject-ratio" in json.loads(stop.stdout)["stopped"]
    assert stored_events(db, KEY) == Counter()


def test_workers_need_a_postgresql_state(
    tmp_path: Path, python: str, cli_env: dict[str, str]
) -> None:
    src = tmp_path / "events.parquet"
    write_events(src, rows=5)
    cmd = _import(python, src, "http://127.0.0.1:9", tmp_path / "st", "--workers", "2")
    run = subprocess.run(
        cmd, env=dict(cli_env, KRAITER_API_KEY=KEY), capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2
    assert "--state postgresql://" in run.stderr
    assert "Traceback" not in run.stderr


def test_workers_on_the_local_kraiter_say_how_to_serve_it(
    tmp_path: Path, python: str, cli_env: dict[str, str]
) -> None:
    src = tmp_path / "events.parquet"
    write_events(src, rows=5)
    cmd = [python, "-m", "kraiter_sync", "import", str(src), "--state-dir", str(tmp_path / "st")]
    env = {k: v for k, v in cli_env.items() if not k.startswith("KRAITER_")}
    env["KRAITER_SYNC_STATE"] = "postgresql://kraiter@127.0.0.1:9/kraiter"
    run = subprocess.run(
        [*cmd, "--workers", "2"], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2, run.stderr
    assert "--local" not in run.stderr  # no such flag
    assert "kraiter-sync emulator" in run.stderr
    assert "--base-url http://127.0.0.1:" in run.stderr
    assert "Traceback" not in run.stderr


def test_workers_refuse_rebuild_in_every_worker(
    tmp_path: Path, python: str, cli_env: dict[str, str], state_url: str
) -> None:
    src = tmp_path / "events.parquet"
    write_events(src, rows=5)
    env = dict(cli_env, KRAITER_API_KEY=KEY, KRAITER_SYNC_STATE=state_url)
    for workers in ("1", "2"):
        cmd = _import(python, src, "http://127.0.0.1:9", tmp_path / "st", "--workers", workers)
        run = subprocess.run(
            [*cmd, "--rebuild"], env=env, capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 2, run.stderr
        assert "kraiter-sync state rebuild` first" in run.stderr
        assert "Traceback" not in run.stderr
