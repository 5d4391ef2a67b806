"""``kraiter-sync validate`` and ``kraiter-sync connectors``."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from kraiter_sync.cli.app import main
from kraiter_sync.cli.input_options import InputsCommand, input_options
from kraiter_sync.cli.options import (
    Common,
    common_options,
    default_rejects,
    deprecated_alias,
    emit,
    no_target_options,
)
from kraiter_sync.cli.render import connector_text, result_document
from kraiter_sync.logs import get_logger

if TYPE_CHECKING:
    from kraiter_sync.inputs import InputOptions


F = TypeVar("F", bound=Callable[..., Any])
log = get_logger("cli")


@main.command("validate", cls=InputsCommand)
@click.argument("paths", nargs=-1)
@input_options
@click.option(
    "--rejects",
    type=click.Path(path_type=Path),
    default=None,
    help="Write rejected rows here (.csv, .parquet or .ndjson) "
    "[default: STATE_DIR/rejects/validate-TIME.csv].",
)
@deprecated_alias("--report", "--json", "report", type=click.Path(path_type=Path))
@no_target_options
@common_options
def validate_command(
    paths: tuple[str, ...],
    inputs: InputOptions,
    rejects: Path | None,
    common: Common,
) -> None:
    """Check files without sending anything: what would be sent, what is wrong.

    PATHS are files, directories or globs (quote globs); each argument is one input with
    its own column mapping, and its kind (events or contacts) is detected unless --kind
    is given. Every row is counted once: valid, duplicate or rejected; rejected rows go
    to the rejects file with a rule code and a message.

    \b
    Exit codes: 0 nothing rejected · 3 rows rejected · 2 unusable input.
    \b
    Examples:
      kraiter-sync validate events.parquet
      kraiter-sync validate 'unload/part-*.csv.gz' --map email='Work Email' --timezone Europe/Berlin
      kraiter-sync validate --input hubspot.csv --connector hubspot \\
                            --input eu.csv --map email='Work Email' \\
                            --timestamp-format '%d/%m/%Y %H:%M'
    """
    from kraiter_sync.cli.render import validation_summary
    from kraiter_sync.verbs.validate import validate_inputs

    state_dir = common.state_dir_only()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    rejects_path = rejects or default_rejects(state_dir, f"validate-{stamp}")
    report = click.get_current_context().meta.get("kraiter_sync.aliases", {}).get("report")
    with common.progress() as progress:
        result = validate_inputs(
            paths,
            options=inputs,
            rejects_path=rejects_path,
            report_path=report,
            on_progress=progress.validating(),
            reuse_rejects=None if rejects else "validate-*.csv",
        )
    for line in result.detections:
        log.info("%s", line)
    text = "\n".join(validation_summary(r) for r in result.reports)
    if result.rejected:
        text += f"\nrejected rows: {result.rejects_path}"
    if result.duplicates_path is not None:
        text += f"\nduplicate rows (and the rows kept): {result.duplicates_path}"
    emit(common, result.to_json(), text)
    if result.stopped:
        log.warning("refused: %s", result.stopped, extra={"exit_code": result.exit_code})
    sys.exit(result.exit_code)


@main.command("connectors")
@click.option(
    "--show",
    "show",
    metavar="NAME|FILE",
    default=None,
    help="Print one connector's full mapping (a preset name or a .toml file).",
)
@no_target_options
@common_options
def connectors_command(common: Common, show: str | None) -> None:
    """List the connector presets, or show one mapping.

    A connector maps an export's columns onto Kraiter's fields (email, contact id, user
    id, event name, timestamp) and says which columns become properties. Pass one to
    `validate` or `import` with --connector NAME (or a path to your own .toml); without
    one, common column names are detected and the choice is reported.

    \b
    Examples:
      kraiter-sync connectors
      kraiter-sync connectors --show ga4
    """
    from kraiter_sync.connectors import list_presets, load_connector

    if show is not None:
        connector = load_connector(show)
        doc = result_document("connectors", connector=connector.to_json())
        emit(common, doc, connector_text(connector))
        return
    presets = list_presets()
    width = max((len(p.name) for p in presets), default=4)
    lines = [f"{'NAME':<{width}}  {'KIND':<8}  DESCRIPTION"]
    lines += [f"{p.name:<{width}}  {p.kind:<8}  {p.description}" for p in presets]
    doc = result_document(
        "connectors",
        connectors=[
            {"name": p.name, "kind": p.kind, "description": p.description} for p in presets
        ],
    )
    emit(common, doc, "\n".join(lines))
