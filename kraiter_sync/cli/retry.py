"""``kraiter-sync retry``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from kraiter_sync.cli.app import main
from kraiter_sync.cli.importing import finish_import
from kraiter_sync.cli.input_options import validation_flags
from kraiter_sync.cli.options import (
    Common,
    SendFlags,
    common_options,
    send_options,
    target_options,
)
from kraiter_sync.logs import get_logger

if TYPE_CHECKING:
    from kraiter_sync.validate import ValidationOptions

F = TypeVar("F", bound=Callable[..., Any])
log = get_logger("cli")


@main.command("retry")
@click.argument("rejects_file")
@send_options
@validation_flags
@target_options
@common_options
def retry_command(
    rejects_file: str,
    sending: SendFlags,
    validation: ValidationOptions,
    common: Common,
) -> None:
    """Re-send the rows Kraiter rejected, once you have fixed the cause.

    REJECTS_FILE is the file an `import` named in its summary. Only rows Kraiter refused
    (stage "rejected", e.g. a property it found too long after you raised a limit, or a
    contact that was missing) are sent again; rows caught by validation (stage
    "invalid") need fixing in the source and a new import. Nothing is sent twice.
    The rows are validated again: pass the --allow-* switches the import had.
    """
    from kraiter_sync.inputs import InputOptions
    from kraiter_sync.verbs.retry import retry_

    inputs = InputOptions(storage=common.storage(), validation=validation)
    options = sending.import_options(inputs)
    settings = common.settings()
    with common.progress() as progress:
        result = retry_(
            rejects_file, settings=settings, options=options, on_progress=progress.sending
        )
    finish_import(result, common, command="retry")
