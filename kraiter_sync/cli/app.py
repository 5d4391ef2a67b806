"""The ``kraiter-sync`` group and the one error → exit-code funnel.

Exit codes: 0 success; 1 failed; 2 usage or configuration error; 3 finished with
rejected rows; 4 incomplete (interrupted or out of retries; re-running resumes); 5 busy
(another run holds the state lock; nothing was started).

Every failure leaves through :meth:`_Group.invoke`: one line on stderr (a JSON line
with ``--log-format json``), with ``--json`` one error document on stdout, and the
exit code; never a bare traceback (an unexpected exception says it is a bug, exit 1;
its traceback is shown with ``-v`` and is in every ``--log-format json`` log).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from kraiter_sync import __version__
from kraiter_sync.errors import (
    EXIT_BUSY,
    EXIT_FAILED,
    EXIT_INCOMPLETE,
    EXIT_USAGE,
    ConnectError,
    KraiterSyncError,
    status_for_exit,
)
from kraiter_sync.logs import configure_logging, get_logger

F = TypeVar("F", bound=Callable[..., Any])
log = get_logger("cli")

_COMMON_KEY = "kraiter_sync.common"  # (cli.options.COMMON_KEY: options imports this module)
_ARGV_KEY = "kraiter_sync.argv"


def error_document(command: str, exit_code: int, error: BaseException | str) -> dict[str, Any]:
    """What ``--json`` prints on stdout when a command fails (docs/schemas/error.schema.json)."""
    kind = "UsageError" if isinstance(error, str) else type(error).__name__
    return {
        "command": command,
        "status": status_for_exit(exit_code),
        "exit_code": exit_code,
        "run_id": None,
        "error": {"type": kind, "message": str(error)},
    }


def _next_step(exc: KraiterSyncError) -> str | None:
    if isinstance(exc, ConnectError):
        return None  # its message says what to check; nothing was sent to resume
    if exc.exit_code == EXIT_INCOMPLETE:
        return "incomplete: re-run the same command to resume (nothing is sent twice)"
    if exc.exit_code == EXIT_BUSY:
        return "busy: another run holds the state lock, nothing was started"
    return None


def _sniff(args: Sequence[str]) -> tuple[bool, str]:
    """(--json, --log-format) from raw arguments, for errors click finds while parsing."""
    as_json = "--json" in args
    log_format = "text"
    for i, arg in enumerate(args):
        if arg == "--log-format" and i + 1 < len(args):
            log_format = args[i + 1]
        elif arg.startswith("--log-format="):
            log_format = arg.split("=", 1)[1]
    return as_json, log_format


class _Group(click.Group):
    """The one error → exit-code funnel for every command."""

    def _fail(
        self,
        ctx: click.Context,
        exit_code: int,
        error: BaseException | str,
        *,
        level: int,
        as_json: bool = False,
    ) -> None:
        common = self._common(ctx)
        command = getattr(common, "command", "") or (ctx.invoked_subcommand or "")
        message = str(error)
        extra: dict[str, Any] = {"exit_code": exit_code}
        if not isinstance(error, str):
            extra["error"] = type(error).__name__
        log.log(level, "error: %s", message, extra=extra)
        if isinstance(error, KraiterSyncError):
            step = _next_step(error)
            if step:
                log.log(level, "%s", step, extra={"exit_code": exit_code})
        if as_json or getattr(common, "json", False):
            click.echo(json.dumps(error_document(command, exit_code, error), ensure_ascii=False))
        ctx.exit(exit_code)

    @staticmethod
    def _common(ctx: click.Context) -> Any:
        """The command's options; when it failed before they were set up (click while
        parsing, or an option's own check such as reading --config), the output format
        from the raw arguments, with logging set up for it on this stderr."""
        common = ctx.meta.get(_COMMON_KEY)
        if common is None:
            as_json, log_format = _sniff(ctx.meta.get(_ARGV_KEY, []))
            configure_logging(log_format="json" if log_format == "json" else "text")
            common = ctx.meta[_COMMON_KEY] = _Parsed(ctx.invoked_subcommand or "", as_json)
        return common

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_ARGV_KEY] = list(args)  # (for errors click finds while parsing)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KraiterSyncError as exc:
            self._fail(ctx, exc.exit_code, exc, level=logging.ERROR)
        except KeyboardInterrupt:
            self._common(ctx)
            log.error(  # noqa: TRY400 (an interruption, not a failure to trace)
                "interrupted; re-run the same command to resume (nothing is sent twice)",
                extra={"exit_code": EXIT_INCOMPLETE},
            )
            ctx.exit(EXIT_INCOMPLETE)
        except click.ClickException as exc:
            as_json, log_format = _sniff(ctx.meta.get(_ARGV_KEY, []))
            if not as_json and log_format != "json":
                raise
            # (click found it while parsing: the command's own options never ran, though a
            # group's may have, without the subcommand's --json: `runs show abc --json`)
            self._fail(ctx, EXIT_USAGE, exc.format_message(), level=logging.ERROR, as_json=as_json)
        except (click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug: say so, with its traceback only with -v
            self._common(ctx)
            log.info("where it happened:", exc_info=True)
            text = (
                f"unexpected {type(exc).__name__}: {exc} (this is a bug in kraiter-sync: "
                "re-run with -v to see where, and report it)"
            )
            self._fail(ctx, EXIT_FAILED, text, level=logging.ERROR)
        return None


class _Parsed:
    """What the funnel knows of a command that failed while its options were parsed."""

    def __init__(self, command: str, as_json: bool) -> None:
        self.command = command
        self.json = as_json


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kraiter-sync")
def main() -> None:
    """Move contacts and event history into and out of Kraiter, losing and duplicating
    nothing.

    \b
    Quick start (no account needed: a local Kraiter runs in ./.kraiter-sync):
      kraiter-sync import sample_data/contacts.csv sample_data/events.parquet

    Set KRAITER_API_KEY (and KRAITER_BASE_URL if not https://api.kraiter.com) to talk to
    your real account. Run `kraiter-sync COMMAND --help` for each command. Every command
    takes --json (one result document on stdout) and --log-format json (diagnostics as
    JSON lines on stderr).

    \b
    Exit codes: 0 ok · 1 failed · 2 usage/config error · 3 finished with rejected rows
                4 incomplete (interrupted or out of retries; re-run to resume)
                5 busy (another run holds the state lock; nothing was started)
    """
