"""The ``kraiter-sync`` group and the one error → exit-code funnel.

Exit codes: 0 success; 1 failed; 2 usage or configuration error; 3 finished with
rejected rows; 4 incomplete (interrupted or out of retries; re-running resumes); 5 busy
(another run holds the state lock; nothing was started).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from kraiter_sync import __version__
from kraiter_sync.errors import (
    EXIT_BUSY,
    EXIT_INCOMPLETE,
    KraiterSyncError,
)
from kraiter_sync.logs import get_logger

F = TypeVar("F", bound=Callable[..., Any])
log = get_logger("cli")


class _Group(click.Group):
    """The one error → exit-code funnel for every command."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KraiterSyncError as exc:
            click.echo(f"error: {exc}", err=True)
            if exc.exit_code == EXIT_INCOMPLETE:
                click.echo("incomplete: re-run the same command to resume", err=True)
            elif exc.exit_code == EXIT_BUSY:
                click.echo("busy: another run holds the state lock, nothing was started", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted; re-run the same command to resume", err=True)
            ctx.exit(EXIT_INCOMPLETE)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kraiter-sync")
def main() -> None:
    """Move contacts and event history into and out of Kraiter, losing and duplicating
    nothing.

    \b
    Quick start (no account needed: a local Kraiter runs in ./.kraiter-sync):
      kraiter-sync import sample_data/contacts.csv sample_data/events.parquet

    Set KRAITER_API_KEY (and KRAITER_BASE_URL if not https://api.kraiter.com) to talk to
    your real account. Run `kraiter-sync COMMAND --help` for each command.

    \b
    Exit codes: 0 ok · 1 failed · 2 usage/config error · 3 finished with rejected rows
                4 incomplete (interrupted or out of retries; re-run to resume)
                5 busy (another run holds the state lock; nothing was started)
    """
