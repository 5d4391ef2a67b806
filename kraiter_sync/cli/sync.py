"""``kraiter-sync sync``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from kraiter_sync.cli.app import main
from kraiter_sync.cli.options import Common, common_options, emit, target_options
from kraiter_sync.cli.render import check_lines
from kraiter_sync.config import (
    DEFAULT_CONFIG_FILE,
)
from kraiter_sync.logs import get_logger

F = TypeVar("F", bound=Callable[..., Any])
log = get_logger("cli")


@main.command("sync")
@click.argument("jobs", nargs=-1, metavar="[JOB]...")
@click.option(
    "--check",
    is_flag=True,
    help="Validate the config and every mapping, read and validate the first 1,000 rows of "
    "every source the way the run reads them, and make one read from Kraiter; send nothing.",
)
@click.option("--dry-run", is_flag=True, help="Read, validate and plan every job; send nothing.")
@click.option(
    "--full",
    is_flag=True,
    help="Ignore watermarks and the contact change cache: re-read and re-check everything.",
)
@target_options
@common_options
def sync_command(
    common: Common, jobs: tuple[str, ...], check: bool, dry_run: bool, full: bool
) -> None:
    """Run the jobs of kraiter-sync.toml (all enabled ones, or the JOBs named), in order.

    Meant for cron, systemd timers and Airflow: one lock per state directory (a second
    run exits 5 at once, naming the holder, and starts nothing), a watermark per
    incremental events job, a change cache so unchanged contacts cost nothing, a run
    record per job (`kraiter-sync runs`), and an exit code for the whole run. A failing
    job does not stop the others; the run exits with the most severe code of all jobs
    (2 config > 1 failed > 4 incomplete > 3 rejected rows > 0), or 5 when busy.

    \b
    kraiter-sync.toml (relative paths are relative to the file):
      [target]
      base_url = "https://api.kraiter.com"
      api_key_file = "/etc/kraiter-sync/key"   # or KRAITER_API_KEY; never inline
      [jobs.customers]
      source = "postgresql://etl@warehouse/crm"  # or duckdb:///x.duckdb, sqlite:///x.db,
      query = "SELECT email, plan FROM customers"  # or files/globs: "exports/*.csv"
      kind = "contacts"                          # contacts | events
      full_every = "7d"                          # re-check every contact weekly
      [jobs.events]
      source = "exports/events/*.parquet"
      kind = "events"
      cursor = "occurred_at"                     # read only rows >= watermark - lag
      lag = "2h"

    \b
    Examples:
      kraiter-sync sync --check
      kraiter-sync sync                    # every enabled job
      kraiter-sync sync events --dry-run   # one job, nothing sent
      kraiter-sync sync --json > last-sync.json
    """

    from kraiter_sync.sync import check_jobs

    config_path = common.config_path or DEFAULT_CONFIG_FILE
    from kraiter_sync.config.file import load_sync_config

    sync_config = load_sync_config(config_path)
    settings = common.settings(config=sync_config)
    if check:
        result = check_jobs(sync_config, jobs, settings=settings)
        if common.json:
            emit(common, result.to_json(), None)
        else:
            for line, ok in check_lines(result, verbose=bool(common.verbose)):
                click.echo(line, err=not ok)
        ctx = click.get_current_context()
        ctx.exit(result.exit_code)
    from kraiter_sync.sync import run_sync

    with common.progress() as progress:
        outcome = run_sync(
            sync_config,
            jobs,
            settings=settings,
            dry_run=dry_run,
            full=full,
            on_progress=progress.sending,
        )
    # Each job's outcome is logged (info when ok, so cron stays silent on a good night;
    # warning for rejected rows; error for failures). --json adds the summary on stdout.
    emit(common, outcome.to_json(), None)
    click.get_current_context().exit(outcome.exit_code)
