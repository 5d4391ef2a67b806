"""``kraiter-sync export``."""

from __future__ import annotations

import sys
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


def _since(value: str | None, *, flag: str = "--since") -> Any:
    """--since / --until through the library's parser; a bad value is a usage error."""
    from kraiter_sync.export.choices import parse_since

    if value is None:
        return None
    try:
        return parse_since(value, flag=flag)
    except UsageError as exc:
        raise click.BadParameter(str(exc)) from None


def _out(value: str | None) -> str | Path | None:
    """--out: an object URL as it is, anything else a directory path."""
    from kraiter_sync.urls import is_object_url

    if value is None or is_object_url(value):
        return value
    path = Path(value)
    if path.exists() and not path.is_dir():
        msg = f"Directory '{value}' is a file."
        raise click.BadParameter(msg)
    return path


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def _confirm_replace(notice: str | None) -> None:
    """--replace names what it deletes; on a terminal it asks first."""
    if notice is None:
        return
    if not _interactive():
        log.warning("%s", notice)
        return
    click.echo(notice, err=True)
    if not click.confirm("Continue?", default=False, err=True):
        msg = "--replace was not confirmed: nothing was exported or deleted"
        raise UsageError(msg)


@main.command("export")
@click.argument("stream", type=click.Choice([*STREAM_NAMES, "compact"]))
@click.option(
    "--out",
    "out",
    metavar="DIR|URL",
    callback=lambda _ctx, _param, value: _out(value),
    default=None,
    help="Directory to write into; the stream goes to OUT/STREAM/. Also a bucket prefix: "
    "s3://, gs://, az://, abfss:// (credentials from the cloud's own chain).",
)
@click.option(
    "--to",
    "to",
    metavar="URL",
    default=None,
    help="A table instead of files: duckdb:///FILE or postgresql://… (table "
    "kraiter_STREAM, upserted on the row's id).",
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
    "--replace",
    is_flag=True,
    help="Export everything again and then delete what earlier exports wrote (the files "
    "of OUT/STREAM in the manifest, or the table's rows not found again). Names what it "
    "deletes and asks on a terminal.",
)
@click.option("--full", is_flag=True, hidden=True, help="Old name of --replace.")
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
    help="Export only rows at/after DATE (ISO 8601; UTC unless an offset is given) into "
    "their own folder OUT/STREAM-since-DATE; never touches OUT/STREAM.",
)
@click.option(
    "--until",
    metavar="DATE",
    default=None,
    help="Export only rows before DATE (with or without --since), into their own folder.",
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
    "--concurrency",
    type=click.IntRange(1, 64),
    default=16,
    show_default=True,
    help="timelines, enrolments, memberships: contacts fetched at once (one shared rate limit).",
)
@click.option(
    "--table-prefix",
    default="kraiter_",
    show_default=True,
    help="--to: tables are named PREFIXSTREAM.",
)
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
    out: str | Path | None,
    to: str | None,
    fmt: str,
    replace: bool,
    full: bool,
    overwrite: bool,
    since: str | None,
    until: str | None,
    contacts_file: Path | None,
    flatten_properties: bool,
    raw_csv: bool,
    custom_only: bool,
    rate: float | None,
    max_retries: int,
    chunk_size: int,
    concurrency: int,
    table_prefix: str,
    page_size: int,
) -> None:
    """Export a stream from Kraiter to Parquet, CSV or NDJSON files, or to a DuckDB or
    PostgreSQL table, for analysis.

    \b
    Streams:
      contacts     every contact (snapshot)
      events       the tenant-wide event feed, system email.* events included
      timelines    each contact's timeline: events, emails, sequence changes
      sends        emails sent
      scheduled    emails queued to be sent (snapshot)
      enrolments   each contact's sequences (snapshot)
      memberships  each contact's segments (snapshot)

    events, timelines and sends are incremental: each run adds only what is new
    since the last run (a watermark per target, stream and --out in the state
    directory), one file per date partition. Snapshot streams are rewritten whole each
    run. Files appear atomically when the run ends; an interrupted run (Ctrl-C, kill,
    out of retries: exit 4) resumes from its last checkpoint when re-run, without
    duplicating rows. If the output no longer holds what the state says (deleted or
    changed files), the stream is exported again in full and the summary says why.

    `export compact --out DIR` merges the small files earlier runs left in each
    partition into one.

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
      kraiter-sync export events --to duckdb:///analytics.duckdb
      kraiter-sync export compact --out exports/
    """
    from kraiter_sync.export import ExportOptions, export, replacement
    from kraiter_sync.export.choices import read_contacts_file

    if (out is None) == (to is None):
        msg = "give one destination: --out DIR (files) or --to URL (a database table)"
        raise UsageError(msg)
    destination = str(to) if to is not None else cast(str | Path, out)
    if stream == "compact":
        _compact(common, out)
        return
    options = ExportOptions(
        format=cast(Any, fmt),
        replace=replace or full,
        overwrite=overwrite,
        since=_since(since),
        until=_since(until, flag="--until"),
        contacts=read_contacts_file(contacts_file) if contacts_file else None,
        storage=common.storage(),
        flatten_properties=flatten_properties,
        raw_csv=raw_csv,
        custom_only=custom_only,
        retries=max_retries,
        rate=rate,
        chunk_rows=aliased(click.get_current_context(), "chunk_size", chunk_size, 50_000),
        concurrency=concurrency,
        table_prefix=table_prefix,
        page_size=page_size,
    )
    settings = common.settings()
    if options.replacing:
        _confirm_replace(replacement(stream, destination, settings=settings, options=options))
    with common.progress() as progress:
        result = export(
            stream, destination, settings=settings, options=options, progress=progress.exporting()
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


def _compact(common: Common, out: str | Path | None) -> None:
    """``export compact --out DIR``."""
    from kraiter_sync.cli.render import compact_summary
    from kraiter_sync.export import compact

    if out is None:
        msg = "export compact works on exported files: give --out DIR"
        raise UsageError(msg)
    results = compact(out, settings=common.settings())
    doc = {
        "command": "export compact",
        "status": "ok",
        "exit_code": 0,
        "run_id": None,
        "folders": [
            {
                "folder": str(r.folder),
                "files_before": r.files_before,
                "files_after": r.files_after,
                "partitions": r.partitions,
                "rows": r.rows,
                "seconds": r.seconds,
                "skipped": r.skipped,
            }
            for r in results
        ],
    }
    emit(common, doc, "\n".join(compact_summary(r) for r in results))
