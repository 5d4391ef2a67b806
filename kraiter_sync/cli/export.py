"""``kraiter-sync export``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from kraiter_sync.cli.app import main
from kraiter_sync.cli.options import (
    Common,
    aliased,
    chunk_size_option,
    common_options,
    deprecated_alias,
    emit,
    max_retries_option,
    rate_option,
    target_options,
)
from kraiter_sync.cli.render import export_document, export_summary
from kraiter_sync.errors import UsageError
from kraiter_sync.export.choices import STREAM_NAMES
from kraiter_sync.logs import get_logger

F = TypeVar("F", bound=Callable[..., Any])
log = get_logger("cli")


def _since(value: str | None) -> Any:
    """--since through the library's parser; a bad value is click's usage error."""
    from kraiter_sync.export.choices import parse_since

    if value is None:
        return None
    try:
        return parse_since(value)
    except UsageError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command("export")
@click.argument("stream", type=click.Choice(STREAM_NAMES))
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory to write into; the stream goes to OUT/STREAM/.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["parquet", "csv", "ndjson"]),
    default="parquet",
    show_default=True,
    help="File format. events and timelines are partitioned by date=YYYY-MM-DD.",
)
@click.option(
    "--full",
    is_flag=True,
    help="Re-export everything and replace the files of OUT/STREAM when done (ignores the "
    "watermark).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Export into an OUT/STREAM that holds files kraiter-sync did not write (refused "
    "otherwise). Those files are left alone: only files kraiter-sync wrote are ever "
    "replaced or deleted.",
)
@click.option(
    "--since",
    metavar="DATE",
    default=None,
    help="Re-export only rows at/after DATE (ISO 8601; UTC unless an offset is given), "
    "replacing OUT/STREAM; later runs continue incrementally.",
)
@click.option(
    "--contacts",
    "contacts_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Limit timelines, enrolments and memberships to these contacts: a file with one "
    "contact id or email per line.",
)
@click.option(
    "--flatten-properties",
    is_flag=True,
    help="Also write one text column per property key (properties.KEY / data.KEY).",
)
@click.option(
    "--raw-csv",
    is_flag=True,
    help="Write CSV cells as they are. By default cells starting with = + - @ tab or CR "
    "get a leading ' so spreadsheets do not run them as formulas.",
)
@click.option(
    "--custom-only",
    is_flag=True,
    help="events/timelines: leave out Kraiter's own events (email.*, sequence changes). "
    "Use it for an export you want to import again.",
)
@rate_option
@max_retries_option
@chunk_size_option(50_000, "Rows per committed chunk (files written and watermark saved together).")
@deprecated_alias("--chunk-rows", "--chunk-size", "chunk_size", type=click.IntRange(min=1))
@click.option(
    "--page-size",
    type=click.IntRange(1, 100),
    default=100,
    show_default=True,
    help="Rows asked for per request (Kraiter allows at most 100).",
)
@target_options
@common_options
def export_command(
    *,
    common: Common,
    stream: str,
    out: Path,
    fmt: str,
    full: bool,
    overwrite: bool,
    since: str | None,
    contacts_file: Path | None,
    flatten_properties: bool,
    raw_csv: bool,
    custom_only: bool,
    rate: float | None,
    max_retries: int,
    chunk_size: int,
    page_size: int,
) -> None:
    """Export a stream from Kraiter to Parquet, CSV or NDJSON files for analysis.

    \b
    Streams:
      contacts     every contact (snapshot)
      events       the tenant-wide event feed, system email.* events included
      timelines    each contact's timeline: events, emails, sequence changes
      sends        emails sent
      scheduled    emails queued to be sent (snapshot)
      enrolments   each contact's sequences (snapshot)
      memberships  each contact's segments (snapshot)

    events, timelines and sends are incremental: each run appends only what is new
    since the last run (a watermark per target, stream and --out in the state
    directory). Snapshot streams are rewritten whole each run. Files appear
    atomically; an interrupted run (Ctrl-C, kill, out of retries: exit 4) resumes
    where it stopped when re-run, without duplicating rows.

    Only files kraiter-sync wrote are ever replaced or deleted (a manifest in the
    state directory lists them): an OUT/STREAM that already holds other files is
    refused unless --overwrite, and a symbolic link or a file there is refused.

    Re-import an events export with `kraiter-sync import OUT/events --connector
    kraiter_export` (export with --custom-only: email.* events cannot be sent).

    \b
    Examples:
      kraiter-sync export events --out exports/
      kraiter-sync export contacts --out exports/ --format csv
      kraiter-sync export timelines --out exports/ --contacts vip.txt
      kraiter-sync export events --out exports/ --since 2025-01-01
    """
    from kraiter_sync.export import ExportOptions, export
    from kraiter_sync.export.choices import read_contacts_file

    options = ExportOptions(
        format=cast(Any, fmt),
        full=full,
        overwrite=overwrite,
        since=_since(since),
        contacts=read_contacts_file(contacts_file) if contacts_file else None,
        flatten_properties=flatten_properties,
        raw_csv=raw_csv,
        custom_only=custom_only,
        retries=max_retries,
        rate=rate,
        chunk_rows=aliased(click.get_current_context(), "chunk_size", chunk_size, 50_000),
        page_size=page_size,
    )
    settings = common.settings()
    with common.progress() as progress:
        result = export(
            stream, out, settings=settings, options=options, progress=progress.exporting()
        )
    if result.contacts_not_found:
        shown = ", ".join(result.contacts_not_found[:5])
        more = len(result.contacts_not_found) - 5
        log.warning(
            "%d contact(s) from --contacts not found in Kraiter: %s%s",
            len(result.contacts_not_found),
            shown,
            f" and {more} more" if more > 0 else "",
        )
    emit(common, export_document(result), export_summary(result))
