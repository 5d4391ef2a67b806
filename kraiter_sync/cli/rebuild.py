"""``kraiter-sync state rebuild``: the ledger rebuilt from what Kraiter holds."""

from __future__ import annotations

import json
import sys

import click

from kraiter_sync.cli.options import Common, common_options
from kraiter_sync.cli.progress import ProgressSink
from kraiter_sync.cli.render import rebuild_line
from kraiter_sync.cli.state import state_group


@state_group.command("rebuild")
@click.option(
    "--from-start",
    is_flag=True,
    help="Read Kraiter's whole event feed again instead of going on from where the last "
    "rebuild of this state directory stopped.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Ceiling in requests/s [default: as fast as Kraiter allows].",
)
@click.option(
    "--max-retries",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Retries per request on 429, 5xx, timeouts and dropped connections.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@common_options
def rebuild_command(
    *, common: Common, from_start: bool, rate: float | None, max_retries: int, as_json: bool
) -> None:
    """Rebuild the ledger from what Kraiter holds, so nothing is sent twice.

    Use it when the state directory was lost, replaced or is new (another machine, a
    damaged ledger.db moved aside): it reads every contact and every event Kraiter holds
    (one request per 100 of each), computes each event's key exactly as `import` does,
    and records it as sent. Nothing is written to Kraiter. Ctrl-C stops it (exit 4); run
    it again to go on from where it stopped, and later to read only the events added
    since. `import --rebuild` runs it before importing.

    \b
    Exit codes: 0 rebuilt · 4 interrupted (run it again to resume) · 2 usage
    \b
    Example:
      kraiter-sync state rebuild --state-dir /var/lib/kraiter-sync
    """
    from kraiter_sync.verbs.rebuild import RebuildOptions, rebuild_state

    options = RebuildOptions(from_start=from_start, rate=rate, max_retries=max_retries)
    with ProgressSink.for_cli(quiet=common.quiet, log_format=common.log_format) as progress:
        result = rebuild_state(
            common.settings(), options=options, on_progress=progress.rebuilding()
        )
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        click.echo(rebuild_line(result.as_dict()))
    if not result.complete:
        click.echo("incomplete: run `kraiter-sync state rebuild` again to resume", err=True)
    sys.exit(result.exit_code)
