"""``kraiter-sync state rebuild``: the ledger rebuilt from what Kraiter holds."""

from __future__ import annotations

import sys

import click

from kraiter_sync.cli.options import (
    Common,
    common_options,
    emit,
    max_retries_option,
    rate_option,
    target_options,
)
from kraiter_sync.cli.render import rebuild_line
from kraiter_sync.cli.state import state_group
from kraiter_sync.logs import get_logger

log = get_logger("cli")


@state_group.command("rebuild")
@click.option(
    "--from-start",
    is_flag=True,
    help="Read Kraiter's whole event feed again instead of going on from where the last "
    "rebuild of this state directory stopped.",
)
@rate_option
@max_retries_option
@target_options
@common_options
def rebuild_command(
    *, common: Common, from_start: bool, rate: float | None, max_retries: int
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
    settings = common.settings()
    with common.progress() as progress:
        result = rebuild_state(settings, options=options, on_progress=progress.rebuilding())
    emit(common, result.to_json(), rebuild_line(result.as_dict()))
    if not result.complete:
        log.warning(
            "incomplete: run `kraiter-sync state rebuild` again to resume",
            extra={"exit_code": result.exit_code},
        )
    sys.exit(result.exit_code)
