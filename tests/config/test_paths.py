"""The one kraiter-sync.toml model: every command reads the file the same way."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from kraiter_sync.cli import main


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A working directory that is not the config file's."""
    work = tmp_path / "work"
    work.mkdir()
    return work


def test_runs_reads_the_state_dir_sync_wrote_relative_to_the_file(
    tmp_path: Path, elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``state_dir = "state"`` in etc/kraiter-sync.toml is etc/state for sync *and* runs
    (runs once resolved it against the current directory and said "no runs yet")."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "contacts.csv").write_text("email,plan\nann@example.com,pro\n")
    config = etc / "kraiter-sync.toml"
    config.write_text(
        '[target]\nstate_dir = "state"\n\n[jobs.crm]\nsource = "contacts.csv"\nkind = "contacts"\n'
    )
    monkeypatch.chdir(elsewhere)
    runner = CliRunner()
    synced = runner.invoke(main, ["sync", "--config", str(config)])
    assert synced.exit_code == 0, synced.output
    assert (etc / "state" / "ledger.db").is_file()
    runs = runner.invoke(main, ["runs", "--config", str(config)])
    assert runs.exit_code == 0, runs.output
    assert "no runs yet" not in runs.output
    assert "sync:crm" in runs.output
    assert not (elsewhere / "state").exists()
    assert os.listdir(elsewhere) == []
