"""``kraiter-sync restore``: recreate the contacts a mirror run deleted."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from kraiter_sync.cli.app import main
from kraiter_sync.cli.options import (
    Common,
    common_options,
    concurrency_option,
    emit,
    max_retries_option,
    rate_option,
    target_options,
)
from kraiter_sync.cli.render import restore_summary


@main.command("restore")
@click.argument("tombstone", type=click.Path(path_type=Path))
@concurrency_option
@rate_option
@max_retries_option
@target_options
@common_options
def restore_command(
    *,
    common: Common,
    tombstone: Path,
    concurrency: int,
    rate: float | None,
    max_retries: int,
) -> None:
    """Recreate the contacts a `reconcile --mirror` run deleted, from its tombstone file.

    Each contact comes back with its email, properties, userId and unsubscribed state
    (it gets a new id). Contacts that exist again are left as they are, so running
    restore twice is safe. Events, sends and memberships of deleted contacts are not in
    the tombstone and cannot be restored.

    \b
    Example:
      kraiter-sync restore .kraiter-sync/tombstones/tombstone-20260101T020000.000000Z.json
    """
    from kraiter_sync.upload.context import RunOptions
    from kraiter_sync.verbs.restore import restore

    options = RunOptions(concurrency=concurrency, rate=rate, max_retries=max_retries)
    settings = common.settings()
    with common.progress() as progress:
        result = restore(
            tombstone, settings=settings, options=options, on_progress=progress.sending
        )
    emit(common, result.to_json(), restore_summary(result))
    sys.exit(result.exit_code)
