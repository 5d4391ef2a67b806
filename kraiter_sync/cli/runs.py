"""``kraiter-sync import``, ``retry`` and ``runs``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from kraiter_sync.cli.app import main
from kraiter_sync.cli.options import (
    Common,
    common_options,
)
from kraiter_sync.cli.render import run_dict, runs_table
from kraiter_sync.logs import get_logger

F = TypeVar("F", bound=Callable[..., Any])
log = get_logger("cli")


@main.command("runs")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many of the latest runs to show.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON on stdout.")
@common_options
def runs_command(limit: int, as_json: bool, common: Common) -> None:
    """Show the history of runs recorded in the state directory's ledger.

    A run whose process is gone (killed, crashed, machine rebooted) without finishing is
    shown as `killed`; re-run its command to resume it.
    """
    from kraiter_sync.verbs.runs import runs

    found = runs(common.state_dir_only(), limit=limit)
    if as_json:
        click.echo(json.dumps([run_dict(r) for r in found], indent=2))
    elif not found:
        click.echo("no runs yet")
    else:
        click.echo(runs_table(found))
