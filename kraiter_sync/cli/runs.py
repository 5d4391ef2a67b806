"""``kraiter-sync runs`` and ``runs show N``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from kraiter_sync.cli.app import main
from kraiter_sync.cli.options import Common, common_options, html_option, write_report
from kraiter_sync.cli.render import run_dict, run_lines, runs_table
from kraiter_sync.logs import get_logger

F = TypeVar("F", bound=Callable[..., Any])
log = get_logger("cli")


@main.group("runs", invoke_without_command=True)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many of the latest runs to show.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON on stdout.")
@common_options
@click.pass_context
def runs_command(ctx: click.Context, limit: int, as_json: bool, common: Common) -> None:
    """Show the history of runs recorded in the state (the state directory's ledger, or
    the --state store).

    A run whose process is gone (killed, crashed, machine rebooted) without finishing is
    shown as `killed`; re-run its command to resume it. `runs show N` shows one run, and
    `runs show N --html PATH` writes its HTML report.
    """
    if ctx.invoked_subcommand is not None:
        return
    from kraiter_sync.verbs.runs import runs

    state_dir, state = common.state_only()
    found = runs(state_dir, limit=limit, state=state)
    if as_json:
        click.echo(json.dumps([run_dict(r) for r in found], indent=2))
    elif not found:
        click.echo("no runs yet")
    else:
        click.echo(runs_table(found))


@runs_command.command("show")
@click.argument("run_id", type=click.IntRange(min=1), metavar="N")
@html_option("--html", "html_path", "Write the run's HTML report to PATH.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the whole run record as JSON, with the request timeline and rejects by rule.",
)
@common_options
def runs_show_command(run_id: int, html_path: Path | None, as_json: bool, common: Common) -> None:
    """Show run N: its command, target, times, status and counts.

    \b
    Examples:
      kraiter-sync runs show 12
      kraiter-sync runs show 12 --html run-12.html
    """
    from kraiter_sync.report import show_run

    state_dir, state = common.state_only()
    if html_path is not None:
        write_report(state_dir, run_id, html_path, state=state)
        if not as_json:
            return
    run = show_run(state_dir, run_id, state=state)
    if as_json:
        click.echo(json.dumps(run_dict(run, details=True), indent=2))
        return
    click.echo(run_lines(run))
