from __future__ import annotations

import subprocess

from click.testing import CliRunner

from kraiter_sync import __version__
from kraiter_sync.cli import main


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
