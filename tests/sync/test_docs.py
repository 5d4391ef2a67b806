"""docs/sync.md cannot drift: its config parses, its units verify, its Airflow DAG compiles."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kraiter_sync.config.file import parse_sync_config
from tests.helpers.paths import REPO_ROOT

DOC = REPO_ROOT / "docs" / "sync.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_example_config_is_valid() -> None:
    (text,) = blocks("toml")
    config = parse_sync_config(text, Path("/srv/kraiter/kraiter-sync.toml"))
    names = ["customers", "orders", "backfill", "app_events", "bq_events"]
    assert [j.name for j in config.jobs] == names
    assert config.jobs[1].cursor == "placed_at"
    assert dict(config.jobs[2].types) == {"zip": "string"}
    assert config.jobs[4].reads_objects
    assert config.jobs[4].storage.get("s3", "profile", env={}) == "warehouse-reader"


def test_every_job_key_is_documented() -> None:
    from kraiter_sync.config.file import JOB_KEYS as _JOB_KEYS

    table = DOC.read_text(encoding="utf-8").split("| key | meaning |", 1)[1].split("\n\n", 1)[0]
    for key in _JOB_KEYS:
        assert f"`{key}`" in table, key


def test_the_cron_line_has_five_fields_and_runs_sync() -> None:
    (text,) = blocks("cron")
    line = next(ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#"))
    fields = line.split(None, 5)
    assert all(re.fullmatch(r"[\d*/,-]+", f) for f in fields[:5]), fields
    assert "kraiter-sync sync --config" in fields[5]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not found")
def test_the_systemd_units_verify(tmp_path: Path) -> None:
    service, timer = blocks("ini")
    # verify insists that ExecStart's program exists: point it at one that does
    true = shutil.which("true") or "/bin/true"
    (tmp_path / "kraiter-sync.service").write_text(
        service.replace("/usr/local/bin/kraiter-sync", true), encoding="utf-8"
    )
    (tmp_path / "kraiter-sync.timer").write_text(timer, encoding="utf-8")
    done = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            "--man=no",
            str(tmp_path / "kraiter-sync.service"),
            str(tmp_path / "kraiter-sync.timer"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    # a bad setting is often only a warning (exit 0): any line about our files fails
    ours = [ln for ln in done.stderr.splitlines() if "kraiter-sync." in ln]
    assert done.returncode == 0, done.stderr
    assert ours == [], ours


def test_the_airflow_dag_compiles() -> None:
    (source,) = blocks("python")
    compile(source, "kraiter_sync_dag.py", "exec")
    assert "kraiter-sync sync" in source


def test_the_failing_night_is_a_real_log() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "PLACEHOLDER" not in text
    example = text.split("## What a failing night looks like", 1)[1]
    assert '"level": "error"' in example
