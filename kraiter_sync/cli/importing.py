"""``kraiter-sync import`` (and the end every sending command shares with it)."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from kraiter_sync.cli.app import main
from kraiter_sync.cli.input_options import InputsCommand, input_options
from kraiter_sync.cli.options import (
    Common,
    SendFlags,
    common_options,
    emit,
    report_option,
    send_options,
    target_options,
    write_report,
)
from kraiter_sync.cli.render import import_summary, resume_command
from kraiter_sync.errors import (
    EXIT_INCOMPLETE,
)
from kraiter_sync.logs import get_logger

if TYPE_CHECKING:
    from kraiter_sync.inputs import InputOptions
    from kraiter_sync.verbs.importer import ImportResult


F = TypeVar("F", bound=Callable[..., Any])
log = get_logger("cli")


@main.command("import", cls=InputsCommand)
@click.argument("paths", nargs=-1)
@input_options
@click.option("--dry-run", is_flag=True, help="Validate and plan against the ledger, send nothing.")
@click.option(
    "--rebuild",
    is_flag=True,
    help="Rebuild the ledger from what Kraiter holds first (`kraiter-sync state rebuild`: "
    "one request per 100 events and per 100 contacts Kraiter holds), then import: for a "
    "lost, new or replaced state directory.",
)
@click.option(
    "--adopt",
    is_flag=True,
    help="Look for every event the ledger does not know in Kraiter before sending it (one "
    "request per contact and event name): the other way on after lost state.",
)
@send_options
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Share this import among N worker processes through a PostgreSQL state store "
    "(--state postgresql://...); the same command on other machines joins the same work. "
    "Each worker claims shards of the contacts by lease; a killed worker's shard is taken "
    "over when its lease expires.",
)
@click.option(
    "--max-share",
    type=click.FloatRange(0, 1, min_open=True),
    default=1.0,
    show_default=True,
    help="Use at most this part of the tenant's rate limit (from --rate or the "
    "X-RateLimit-Limit header), together with the other runs on the same tenant that "
    "share the PostgreSQL state: e.g. 0.7 leaves 30%% to your application's own calls.",
)
@click.option(
    "--lease-seconds",
    type=click.FloatRange(min=2),
    default=60.0,
    show_default=True,
    help="How long a worker's claim on a shard lasts unless renewed (twice a second while "
    "it lives): a killed worker's shard is taken over after this.",
)
@report_option
@target_options
@common_options
def import_command(
    paths: tuple[str, ...],
    inputs: InputOptions,
    dry_run: bool,
    rebuild: bool,
    adopt: bool,
    sending: SendFlags,
    workers: int | None,
    max_share: float,
    lease_seconds: float,
    report_path: Path | None,
    common: Common,
) -> None:
    """Load contacts and events into Kraiter: nothing lost, nothing sent twice.

    PATHS are files, directories or globs; each argument is one input whose kind
    (contacts or events) is detected from its columns unless --kind is given. Contacts
    are written first, then events, each event exactly once: a killed or failed run is
    resumed by running the same command again (the ledger in the state directory knows
    what was sent, and anything in doubt is checked against Kraiter before re-sending).

    Before the first events go to a Kraiter the ledger knows nothing of, a sample of
    them (48) is looked for there: if some are in Kraiter already, the state was lost
    (or another state directory sent them) and the import stops, sending nothing
    (exit 2), unless --rebuild or --adopt is given.

    \b
    Exit codes: 0 all sent · 3 finished with rejected rows (see the rejects file)
                4 incomplete (interrupted or out of retries: re-run to resume) · 2 usage
    \b
    Examples:
      kraiter-sync import sample_data/contacts.csv sample_data/events.parquet
      kraiter-sync import 'export/*.parquet' --connector segment_tracks --rate 50
      kraiter-sync import events.csv --map email=user_email --dry-run
      kraiter-sync import --input hubspot.csv --connector hubspot \\
                          --input eu.csv --map email='Work Email'
    """
    from kraiter_sync.verbs.importer import import_

    if report_path is not None:
        from kraiter_sync.report.html import require_plotly

        require_plotly()  # before the run, not after hours of sending
    settings = common.settings()
    options = dataclasses.replace(
        sending.import_options(inputs, dry_run=dry_run),
        rebuild=rebuild,
        adopt=adopt,
        workers=workers or 0,
        max_share=max_share,
        lease_seconds=lease_seconds,
    )
    args = {
        "paths": [str(getattr(p, "path", p)) for p in paths],
        "dry_run": dry_run,
        "kind": inputs.kind,
        "connector": inputs.connector,
        "concurrency": sending.concurrency,
        "rate": sending.rate,
        "rebuild": rebuild,
        "adopt": adopt,
        "workers": workers,
        "max_share": max_share,
    }
    with common.progress() as progress:
        if options.workers > 1:
            from kraiter_sync.verbs.workers import import_with_workers

            result = import_with_workers(
                paths, settings=settings, options=options, args=args, on_progress=progress.sending
            )
        else:
            result = import_(
                paths,
                settings=settings,
                options=options,
                args=args,
                on_progress=progress.sending,
                on_validated=progress.validating(),
            )
    if report_path is not None:
        write_report(settings.state_dir, result.run_id, report_path, state=settings.state_url)
    finish_import(result, common, command="import")


def finish_import(result: ImportResult, common: Common, *, command: str) -> None:
    """Print the result and exit with the run's code (import and retry)."""
    for line in result.detections:
        log.info("%s", line)
    emit(common, result.to_json(command=command), import_summary(result))
    for warning in result.warnings:
        log.warning("warning: %s", warning)
    if result.exit_code == EXIT_INCOMPLETE:
        log.warning(
            "incomplete: re-run the same command to resume (nothing will be sent twice): %s",
            resume_command(),
            extra={"exit_code": result.exit_code},
        )
    sys.exit(result.exit_code)
