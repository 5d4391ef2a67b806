"""The dlt destination with the real dlt, against the served emulator: faults, kill -9
mid-load, replays after the pipeline folder is lost; counted in the emulator."""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from kraiter_sync.config import resolve_settings
from kraiter_sync.emulator import EmulatorConfig, create_app, serve_in_thread
from kraiter_sync.state.backend import open_state
from kraiter_sync.state.ledger import Ledger
from tests.helpers.imports import stored_events
from tests.helpers.integrations import docs_example, require
from tests.helpers.pgstate import fresh_schema

KEY = "kr_dlt_test_secret_abcdef"
ROWS = 600

# A pipeline a user would write: a plain resource of events, our destination.
PIPELINE = f"""
import sys
import dlt
from kraiter_sync.integrations.dlt import kraiter

@dlt.resource(name="events")
def events():
    for i in range({ROWS}):
        yield {{"email": f"user{{i % 60}}@example.com", "event": "viewed_page",
               "timestamp": f"2026-01-01T{{i // 3600:02d}}:{{i // 60 % 60:02d}}:{{i % 60:02d}}Z",
               "n": i}}

pipeline = dlt.pipeline(pipeline_name="kill_test", pipelines_dir=sys.argv[1],
                        destination=kraiter(batch_size=50))
pipeline.run(events())
"""


def _expected() -> Counter[tuple]:
    return Counter(
        (
            f"user{i % 60}@example.com",
            "viewed_page",
            f"2026-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000Z",
            json.dumps({"n": i}),
        )
        for i in range(ROWS)
    )


def _env(cli_env: dict[str, str], url: str, state: Path) -> dict[str, str]:
    return dict(
        cli_env,
        DESTINATION__KRAITER__API_KEY=KEY,
        DESTINATION__KRAITER__BASE_URL=url,
        DESTINATION__KRAITER__STATE_DIR=str(state),
    )


def test_docs_example_sends_valid_rows_once_and_rejects_the_bad_one(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    require("dlt")
    script = tmp_path / "example.py"
    script.write_text(docs_example("dlt"))
    db, state = tmp_path / "kraiter.db", tmp_path / "st"
    with serve_in_thread(EmulatorConfig(db_path=str(db))) as url:
        env = _env(cli_env, url, state)
        for _ in range(2):  # the second run replays everything: nothing is sent twice
            run = subprocess.run(
                [sys.executable, str(script)],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=240,
                check=False,
            )
            assert run.returncode == 0, run.stderr
            assert KEY not in run.stdout + run.stderr
    stored = stored_events(db, KEY)
    assert sorted(e[0] for e in stored.elements()) == ["ada@example.com", "grace@example.com"]
    rejects = pl.concat(
        [pl.read_csv(p, infer_schema=False) for p in sorted((state / "rejects").glob("*.csv"))],
        how="diagonal_relaxed",
    )
    assert rejects["rule"].to_list() == ["email.invalid", "email.invalid"]  # once per run
    for path in state.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def _held(db: Path) -> int:
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
        try:
            (held,) = conn.execute("SELECT count(*) FROM events").fetchone()
        except sqlite3.OperationalError:  # not created yet
            return 0
    return int(held)


def _sends_more(db: Path, more: int, proc: subprocess.Popen[bytes]) -> bool:
    """Wait until Kraiter holds ``more`` events beyond what it held at the start; False
    when the process ended first."""
    goal = _held(db) + more
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if _held(db) >= goal:
            return True
        time.sleep(0.02)
    return proc.poll() is None


@pytest.mark.slow
def test_killed_dlt_loads_and_a_lost_pipeline_folder_send_each_event_once(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    require("dlt")
    script = tmp_path / "pipeline.py"
    script.write_text(PIPELINE)
    db, state, folder = tmp_path / "kraiter.db", tmp_path / "st", tmp_path / "pipelines"
    config = EmulatorConfig(db_path=str(db), latency_ms=15, fail_rate=0.03, drop_rate=0.03, seed=4)
    rng = random.Random(20261206)
    kills = 0
    with serve_in_thread(config) as url:
        env = _env(cli_env, url, state)
        cmd = [sys.executable, str(script), str(folder)]
        while kills < 4:
            proc = subprocess.Popen(
                cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            # Killed once it has sent some more events (a random number), never after a
            # fixed time: an idle machine finishes the load sooner than a busy one.
            if not _sends_more(db, rng.randint(ROWS // 16, ROWS // 8), proc):
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        resumed = subprocess.run(
            cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
        )
        assert resumed.returncode == 0, resumed.stderr
        assert stored_events(db, KEY) == _expected()
        # A clean runner: the dlt pipeline folder is gone, dlt extracts and loads it all
        # again; the ledger in the state store sends none of it.
        shutil.rmtree(folder)
        replay = subprocess.run(
            cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
        )
        assert replay.returncode == 0, replay.stderr
        target = resolve_settings(api_key=KEY, base_url=url, state_dir=state, env={}).target
    assert kills >= 2, "the load finished too fast to be killed mid-run"
    stored = stored_events(db, KEY)
    assert sum(stored.values()) == ROWS  # 0 duplicates
    assert stored == _expected()  # 0 missing
    with Ledger(state / "ledger.db") as ledger:
        assert ledger.count_states(target) == {"done": ROWS}
    with sqlite3.connect(state / "ledger.db") as conn:
        counts = [json.loads(c or "{}") for (c,) in conn.execute("SELECT counts FROM runs")]
    # The replay reached the destination: every row came back and was found in the ledger.
    assert sum(c.get("events", {}).get("already", 0) for c in counts) >= ROWS


def _pipeline(tmp_path: Path, destination: object) -> object:
    import dlt

    return dlt.pipeline(
        pipeline_name=f"p{time.monotonic_ns()}",
        pipelines_dir=str(tmp_path / "pipelines"),
        destination=destination,
    )


def test_rows_kraiter_refuses_become_rejects_and_the_batch_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dlt = require("dlt")
    import httpx

    from kraiter_sync.integrations.dlt import kraiter

    db, state = tmp_path / "kraiter.db", tmp_path / "st"
    with serve_in_thread(EmulatorConfig(db_path=str(db))) as url:
        made = httpx.post(
            f"{url}/api/contacts",
            json={"email": "ada@example.com"},
            headers={"Authorization": f"Bearer {KEY}"},
        )
        real_id = made.json()["id"]
        rows = [
            {"contact_id": real_id if i % 2 else "cnt_gone", "event": "login",
             "timestamp": f"2026-02-0{i + 1}T10:00:00Z"}
            for i in range(6)
        ]  # fmt: skip
        monkeypatch.setenv("DESTINATION__KRAITER__API_KEY", KEY)
        monkeypatch.setenv("DESTINATION__KRAITER__BASE_URL", url)
        monkeypatch.setenv("DESTINATION__KRAITER__STATE_DIR", str(state))
        pipeline = _pipeline(tmp_path, kraiter())
        info = pipeline.run(dlt.resource(rows, name="events"))  # type: ignore[attr-defined]
        assert not info.has_failed_jobs
    stored = stored_events(db, KEY)
    assert sum(stored.values()) == 3
    (rejects_file,) = [p for p in (state / "rejects").glob("*.csv") if p.stat().st_size > 0]
    rejects = pl.read_csv(rejects_file, infer_schema=False)
    assert rejects.height == 3
    assert set(rejects["stage"]) == {"rejected"}


def test_a_batch_that_cannot_finish_raises_so_dlt_retries_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dlt = require("dlt")
    from dlt.load.exceptions import LoadClientJobRetry
    from dlt.pipeline.exceptions import PipelineStepFailed

    from kraiter_sync.integrations.dlt import kraiter
    from kraiter_sync.verbs.importer import ImportOptions

    rows = [
        {"email": f"u{i}@example.com", "event": "login", "timestamp": "2026-02-01T10:00:00Z"}
        for i in range(5)
    ]
    app = create_app(EmulatorConfig(db_path=str(tmp_path / "kraiter.db"), seed=1))
    with serve_in_thread(app=app) as url:
        monkeypatch.setenv("DESTINATION__KRAITER__API_KEY", KEY)
        monkeypatch.setenv("DESTINATION__KRAITER__BASE_URL", url)
        monkeypatch.setenv("DESTINATION__KRAITER__STATE_DIR", str(tmp_path / "st"))
        monkeypatch.setenv("LOAD__RAISE_ON_MAX_RETRIES", "2")
        options = ImportOptions(max_retries=0, allow_triggers=True)
        pipeline = _pipeline(tmp_path, kraiter(options=options))
        first = [{"email": "a@example.com", "event": "login", "timestamp": "2026-01-01T00:00:00Z"}]
        pipeline.run(dlt.resource(first, name="events"))  # type: ignore[attr-defined]
        # Now every request fails (5xx), and the run has no retries of its own.
        app.faults.fail_rate = 1.0
        with pytest.raises(PipelineStepFailed) as failed:
            pipeline.run(dlt.resource(rows, name="events"))  # type: ignore[attr-defined]
    app.close()
    cause = failed.value.__cause__
    assert isinstance(cause, LoadClientJobRetry), repr(cause)  # retried, not failed for good
    assert cause.retry_count == 2
    assert "IncompleteError: run 3 did not finish (5 failed, 0 pending)" in str(cause), cause
    assert KEY not in str(failed.value) + str(cause)


def test_a_table_that_maps_to_nothing_fails_for_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dlt = require("dlt")
    from dlt.common.destination.exceptions import DestinationTerminalException
    from dlt.pipeline.exceptions import PipelineStepFailed

    from kraiter_sync.integrations.dlt import kraiter

    with serve_in_thread(EmulatorConfig(db_path=str(tmp_path / "kraiter.db"))) as url:
        monkeypatch.setenv("DESTINATION__KRAITER__API_KEY", KEY)
        monkeypatch.setenv("DESTINATION__KRAITER__BASE_URL", url)
        monkeypatch.setenv("DESTINATION__KRAITER__STATE_DIR", str(tmp_path / "st"))
        pipeline = _pipeline(tmp_path, kraiter())
        with pytest.raises(PipelineStepFailed) as failed:
            pipeline.run(dlt.resource([{"colour": "red"}], name="events"))  # type: ignore[attr-defined]
    cause = failed.value.__cause__
    assert isinstance(cause, DestinationTerminalException), repr(cause)  # not retried
    assert "dlt table 'events': dlt:events@" in str(cause), cause
    assert "Table(kind=..., connector=..., mapping={...})" in str(cause), cause


@pytest.mark.slow
def test_with_postgresql_state_a_new_runner_replays_a_load_and_sends_nothing_twice(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """The state outlives the worker: the dlt pipeline folder and the state directory are
    both gone (a fresh runner), the ledger lives in PostgreSQL."""
    require("dlt")
    script = tmp_path / "pipeline.py"
    script.write_text(PIPELINE)
    db = tmp_path / "kraiter.db"
    config = EmulatorConfig(db_path=str(db), fail_rate=0.03, drop_rate=0.03, seed=8)
    with fresh_schema() as state_url, serve_in_thread(config) as url:
        for runner in ("first", "second"):  # each with its own folders, as a new machine
            env = dict(
                _env(cli_env, url, tmp_path / runner / "st"), DESTINATION__KRAITER__STATE=state_url
            )
            cmd = [sys.executable, str(script), str(tmp_path / runner / "pipelines")]
            done = subprocess.run(
                cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
            )
            assert done.returncode == 0, done.stderr[-3000:]
        settings = resolve_settings(
            api_key=KEY, base_url=url, state_dir=tmp_path / "check", state=state_url, env={}
        )
        store = open_state(settings.state_dir, state_url)
        try:
            assert store.count_states(settings.target) == {"done": ROWS}
        finally:
            store.close()
    assert not (tmp_path / "first" / "st" / "ledger.db").exists()  # the ledger is not local
    assert stored_events(db, KEY) == _expected()  # 0 duplicates, 0 missing


def test_a_table_mapped_by_name_kind_and_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dlt = require("dlt")
    from kraiter_sync.integrations.dlt import Table, kraiter

    rows = [
        {"who": f"u{i}@example.com", "what": "paid", "at": f"2026-03-0{i + 1}T08:00:00Z"}
        for i in range(4)
    ]
    db = tmp_path / "kraiter.db"
    with serve_in_thread(EmulatorConfig(db_path=str(db))) as url:
        monkeypatch.setenv("DESTINATION__KRAITER__API_KEY", KEY)
        monkeypatch.setenv("DESTINATION__KRAITER__BASE_URL", url)
        monkeypatch.setenv("DESTINATION__KRAITER__STATE_DIR", str(tmp_path / "st"))
        table = Table(kind="events", mapping={"email": "who", "name": "what", "timestamp": "at"})
        pipeline = _pipeline(tmp_path, kraiter(tables={"payments": table}))
        info = pipeline.run(dlt.resource(rows, name="payments"))  # type: ignore[attr-defined]
        assert not info.has_failed_jobs
    stored = stored_events(db, KEY)
    assert sorted((e[0], e[1]) for e in stored.elements()) == [
        (f"u{i}@example.com", "paid") for i in range(4)
    ]
