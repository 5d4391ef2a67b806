"""Tests of the integrations with the real libraries, installed by .ci/run (extras)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _library_homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each library keeps its files in the test's folder and phones nowhere."""
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt-data"))
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    home = tmp_path / "dagster-home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    for name in list(os.environ):
        if name.startswith("DESTINATION__"):
            monkeypatch.delenv(name)
