"""The Airflow adapter with real Airflow 3: the docs' DAG through ``dag.test()`` against
the served emulator; the XCom and the asset event read back from Airflow's database.

Airflow pins its own stack, so .ci/run installs it in a virtual environment of its own
and runs this file there with KRAITER_TEST_AIRFLOW=1; the main run skips it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from kraiter_sync.emulator import EmulatorConfig, create_app, serve_in_thread
from tests.helpers.imports import BAD_ROWS, stored_events, write_events
from tests.helpers.integrations import docs_example

KEY = "kr_airflow_test_secret_abc"

if os.environ.get("KRAITER_TEST_AIRFLOW") != "1":
    pytest.importorskip("airflow.sdk")


def test_docs_dag_returns_the_counts_as_xcom_and_on_the_asset(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    home = tmp_path / "airflow"
    home.mkdir()
    (tmp_path / "dags").mkdir()
    script = tmp_path / "dags" / "kraiter_nightly.py"
    script.write_text(docs_example("airflow"))
    expected = write_events(tmp_path / "events.parquet", rows=25, contacts=5)
    db, state = tmp_path / "kraiter.db", tmp_path / "st"
    with serve_in_thread(EmulatorConfig(db_path=str(db))) as url:
        env = dict(
            cli_env,
            AIRFLOW_HOME=str(home),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__DAGS_FOLDER=str(tmp_path / "dags"),
            KRAITER_API_KEY=KEY,
            KRAITER_BASE_URL=url,
            KRAITER_SYNC_STATE_DIR=str(state),
        )
        airflow = Path(sys.executable).parent / "airflow"
        migrate = subprocess.run(
            [str(airflow), "db", "migrate"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert migrate.returncode == 0, migrate.stderr[-3000:]
        run = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        assert KEY not in run.stdout + run.stderr
    with sqlite3.connect(home / "airflow.db") as conn:
        states = conn.execute("SELECT task_id, state FROM task_instance").fetchall()
        (xcom,) = conn.execute(
            "SELECT value FROM xcom WHERE task_id = 'import_events' AND key = 'return_value'"
        ).fetchone()
        (extra,) = conn.execute("SELECT extra FROM asset_event").fetchone()
    assert states == [("import_events", "success")]
    counts = json.loads(xcom if isinstance(xcom, str) else xcom.decode())
    assert (counts["sent"], counts["rejected"], counts["duplicate"]) == (25, BAD_ROWS, 1)
    assert counts["exit_code"] == 3  # rejects reported, not raised
    assert json.loads(extra) == {
        "row_count": 25 + 1 + BAD_ROWS,
        "sent": 25,
        "skipped": 0,
        "duplicate": 1,
        "rejected": BAD_ROWS,
        "run_id": counts["run_id"],
    }
    assert stored_events(db, KEY) == Counter(expected)


def test_too_many_rejects_fail_without_retry_and_an_incomplete_run_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from kraiter_sync.errors import IncompleteError
    from kraiter_sync.integrations.airflow import kraiter_import
    from kraiter_sync.verbs.importer import ImportOptions

    src = tmp_path / "events.parquet"
    write_events(src, rows=5, contacts=2)
    monkeypatch.setenv("KRAITER_API_KEY", KEY)
    healthy = EmulatorConfig(db_path=str(tmp_path / "k.db"))
    with (
        serve_in_thread(healthy) as url,
        pytest.raises(AirflowFailException, match=f"{BAD_ROWS} rows rejected"),
    ):
        kraiter_import([str(src)], max_rejected=0, base_url=url, state_dir=str(tmp_path / "a"))
    app = create_app(EmulatorConfig(db_path=str(tmp_path / "k2.db"), seed=5))
    options = ImportOptions(max_retries=0, allow_triggers=True)
    with serve_in_thread(app=app) as url:
        done = kraiter_import([str(src)], base_url=url, state_dir=str(tmp_path / "b"))
        assert done["sent"] == 5
        write_events(src, rows=8, contacts=2, seed=99)  # new events; now every request fails
        app.faults.fail_rate = 1.0
        with pytest.raises(IncompleteError, match="did not finish"):
            kraiter_import([str(src)], base_url=url, state_dir=str(tmp_path / "b"), options=options)
    app.close()
