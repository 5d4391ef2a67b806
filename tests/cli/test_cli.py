from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from kraiter_sync import __version__
from kraiter_sync.cli import main
from kraiter_sync.cli.render import resume_command


def test_help_lists_exit_codes_and_quick_start() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "Exit codes" in result.output
    assert "kraiter-sync import" in result.output


def test_every_command_has_help() -> None:
    runner = CliRunner()
    for name, command in main.commands.items():
        assert command.help, f"{name} has no help text"
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)


def test_python_dash_m_runs_the_cli(python: str, cli_env: dict[str, str]) -> None:
    done = subprocess.run(
        [python, "-m", "kraiter_sync", "--version"],
        env=cli_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert __version__ in done.stdout


def test_the_resume_command_drops_url_passwords_and_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A masked password (``:***@``) pasted back would be sent as the password: the line
    carries the URL without one (PGPASSWORD or ~/.pgpass supplies it) and no key."""
    argv = [
        "kraiter-sync",
        "import",
        "events.parquet",
        "--state",
        "postgresql://kraiter:s3cr3t@db.internal:5432/sync?schema=a",
        "--to=postgresql://me:hunter2@db/x",
        "--api-key",
        "kr_live_secret",
        "--workers",
        "2",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    line = resume_command()
    assert line == (
        "kraiter-sync import events.parquet --state "
        "'postgresql://kraiter@db.internal:5432/sync?schema=a' "
        "--to=postgresql://me@db/x --workers 2"
    )
    for secret in ("s3cr3t", "hunter2", "kr_live_secret", "***"):
        assert secret not in line
