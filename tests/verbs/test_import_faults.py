"""Exactly once over a misbehaving Kraiter: real HTTP, 5xx, dropped answers, 429s, kills."""

from __future__ import annotations

import contextlib
import random
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from kraiter_sync.config import resolve_settings
from kraiter_sync.emulator import EmulatorConfig, asgi_transport, create_app, serve_in_thread
from kraiter_sync.state.ledger import Ledger
from kraiter_sync.verbs.importer import ImportOptions, import_
from tests.helpers.imports import BAD_ROWS, remote_events, write_events

KEY = "kr_faults_test_secret_abcdef"


def _stored(db: Path) -> Counter[tuple]:
    """What Kraiter holds, read through a fault-free app over the same SQLite file."""
    app = create_app(EmulatorConfig(db_path=str(db)))
    try:
        return remote_events("http://local.kraiter", KEY, transport=asgi_transport(app))
    finally:
        app.close()


def _wait_for_events(db: Path, *, at_least: int, proc: subprocess.Popen[str]) -> None:
    """Wait until the import is sending (Kraiter holds some events), not a fixed time:
    on a loaded machine a fixed sleep can land before the engine runs."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the import ended before it was interrupted"
        if db.exists():
            with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
                try:
                    (held,) = conn.execute("SELECT count(*) FROM events").fetchone()
                except sqlite3.OperationalError:  # the table is not created yet
                    held = 0
            if held >= at_least:
                return
        time.sleep(0.05)
    pytest.fail("the import sent nothing within 60 s")


@pytest.mark.parametrize("mode", ["create", "not-found", "link-later"])
def test_faults_and_429s_still_give_each_event_exactly_once(tmp_path: Path, mode: str) -> None:
    src = tmp_path / "events.parquet"
    expected = write_events(src, rows=250, contacts=30, seed=11)
    db = tmp_path / "kraiter.db"
    # Headers hidden: the controller learns the limit from 429s alone, so they happen.
    config = EmulatorConfig(
        db_path=str(db),
        fail_rate=0.05,
        drop_rate=0.03,
        rate_limit=60,
        burst=5,
        hide_rate_headers=True,
        unknown_email=mode,  # type: ignore[arg-type]
        seed=5,
    )
    with serve_in_thread(config) as url:
        settings = resolve_settings(api_key=KEY, base_url=url, state_dir=tmp_path / "st", env={})
        options = ImportOptions(concurrency=16, max_retries=12)
        result = import_([src], settings=settings, options=options)
    assert result.exit_code == 3, result.as_dict()  # only the deliberately bad rows
    assert result.events.invalid == BAD_ROWS
    assert result.retries > 0  # the faults really happened
    assert result.rate_limited > 0
    assert result.events.sent + result.events.verified == 250
    assert _stored(db) == Counter(expected)
    rejects = pl.read_csv(result.rejects_path)  # type: ignore[arg-type]
    assert rejects.height == BAD_ROWS


def test_killed_imports_resume_to_the_exact_end_state(
    tmp_path: Path, python: str, cli_env: dict[str, str]
) -> None:
    src = tmp_path / "events.parquet"
    expected = write_events(src, rows=1500, contacts=60, seed=3)
    db = tmp_path / "kraiter.db"
    state = tmp_path / "st"
    rng = random.Random(20261127)
    config = EmulatorConfig(db_path=str(db), latency_ms=8, drop_rate=0.02, seed=9)
    env = dict(cli_env, KRAITER_API_KEY=KEY)
    kills = 0
    with serve_in_thread(config) as url:
        cmd = [
            python,
            "-m",
            "kraiter_sync",
            "import",
            str(src),
            "--base-url",
            url,
            "--state-dir",
            str(state),
            "--concurrency",
            "4",
            "--quiet",
        ]
        while kills < 6:
            proc = subprocess.Popen(
                cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(rng.uniform(1.0, 2.5))
            if proc.poll() is not None:
                break  # finished before the kill: the remaining kills are not needed
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        final = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=120, check=False
        )
    assert kills >= 5, "the import finished too fast to be killed mid-run"
    assert final.returncode == 3, final.stderr  # the bad rows, nothing else
    assert _stored(db) == Counter(expected)
    with Ledger(state / "ledger.db") as ledger:
        target = resolve_settings(api_key=KEY, base_url=url, state_dir=state, env={}).target
        assert ledger.count_states(target) == {"done": 1500}


def test_ctrl_c_drains_records_and_exits_4_with_the_resume_command(
    tmp_path: Path, python: str, cli_env: dict[str, str]
) -> None:
    src = tmp_path / "events.parquet"
    expected = write_events(src, rows=800, contacts=40, seed=8)
    db = tmp_path / "kraiter.db"
    state = tmp_path / "st"
    env = dict(cli_env, KRAITER_API_KEY=KEY)
    with serve_in_thread(EmulatorConfig(db_path=str(db), latency_ms=10)) as url:
        cmd = [
            python,
            "-m",
            "kraiter_sync",
            "import",
            str(src),
            "--base-url",
            url,
            "--state-dir",
            str(state),
            "--concurrency",
            "4",
        ]
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        _wait_for_events(db, at_least=20, proc=proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 4, err
        assert "re-run the same command to resume" in err
        assert f"kraiter-sync import {src}" in err
        assert "not sent" in out  # the summary says what is left
        with Ledger(state / "ledger.db") as ledger:
            target = resolve_settings(api_key=KEY, base_url=url, state_dir=state, env={}).target
            states = ledger.count_states(target)
        assert "inflight" not in states  # drained: every request that left was recorded
        assert 0 < states.get("done", 0) < 800
        final = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=120, check=False
        )
    assert final.returncode == 3, final.stderr
    assert _stored(db) == Counter(expected)
