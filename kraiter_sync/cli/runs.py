"""``kraiter-sync runs`` and ``runs show N``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from kraiter_sync.cli.app import main
from kraiter_sync.cli.options import (
    Common,
    common_options,
    emit,
    html_option,
    no_target_options,
    write_report,
)
from kraiter_sync.cli.render import result_document, run_dict, run_lines, runs_table
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
@no_target_options
@common_options
@click.pass_context
def runs_command(ctx: click.Context, limit: int, common: Common) -> None:
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
    doc = result_document("runs", runs=[run_dict(r) for r in found])
    emit(common, doc, runs_table(found) if found else "no runs yet")


@runs_command.command("show")
@click.argument("run_id", type=click.IntRange(min=1), metavar="N")
@html_option("--html", "html_path", "Write the run's HTML report to PATH.")
@no_target_options
@common_options
def runs_show_command(run_id: int, html_path: Path | None, common: Common) -> None:
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
        if not common.json:
            return
    run = show_run(state_dir, run_id, state=state)
    doc = result_document("runs show", run_id=run.id, run=run_dict(run, details=True))
    emit(common, doc, run_lines(run))
