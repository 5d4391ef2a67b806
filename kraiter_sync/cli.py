"""The ``kraiter-sync`` command line: thin click commands over the library.

Each command parses its options, calls the library function of the same verb, and
renders the result. Every failure goes through one funnel (:class:`_Group.invoke`):
a :class:`~kraiter_sync.errors.KraiterSyncError` becomes one line on stderr and its
exit code, never a traceback.

Exit codes: 0 success; 1 failed; 2 usage or configuration error; 3 finished with
rejected rows; 4 incomplete (interrupted or out of retries; re-running resumes).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from kraiter_sync import __version__
from kraiter_sync.config import (
    DEFAULT_CONFIG_FILE,
    Settings,
    load_config_file,
    resolve_settings,
)
from kraiter_sync.errors import EXIT_INCOMPLETE, KraiterSyncError
from kraiter_sync.logs import LogFormat, configure_logging, get_logger

__all__ = ["Common", "common_options", "main"]

F = TypeVar("F", bound=Callable[..., Any])
log = get_logger("cli")


class _Group(click.Group):
    """The one error → exit-code funnel for every command."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KraiterSyncError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted; re-run the same command to resume", err=True)
            ctx.exit(EXIT_INCOMPLETE)


@dataclass
class Common:
    """The options every command takes after its name."""

    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    state_dir: Path | None = None
    config_path: Path | None = None
    quiet: bool = False
    verbose: int = 0
    log_format: LogFormat = "text"
    _settings: Settings | None = field(default=None, repr=False)

    def config(self) -> dict[str, Any]:
        """The parsed kraiter-sync.toml (``--config``, else ./kraiter-sync.toml if present)."""
        if self.config_path is not None:
            return load_config_file(self.config_path)
        if DEFAULT_CONFIG_FILE.is_file():
            return load_config_file(DEFAULT_CONFIG_FILE)
        return {}

    def settings(self) -> Settings:
        """Resolve flags > environment > config once; announce the local Kraiter."""
        if self._settings is None:
            self._settings = resolve_settings(
                api_key=self.api_key,
                base_url=self.base_url,
                state_dir=self.state_dir,
                config=self.config(),
            )
            configure_logging(
                verbose=self.verbose,
                quiet=self.quiet,
                log_format=self.log_format,
                secrets=[self._settings.api_key],
            )
            if self._settings.local:
                log.warning(
                    "No KRAITER_API_KEY or KRAITER_BASE_URL set: using the local Kraiter in "
                    "%s (set both to talk to your real account).",
                    self._settings.local_db,
                )
        return self._settings


def common_options(func: F) -> F:
    """Add the common options; the command receives them as ``common: Common``."""

    @click.option(
        "--api-key",
        envvar="KRAITER_API_KEY",
        show_envvar=True,
        default=None,
        help="Kraiter API key (kr_…). Prefer the environment variable: flags "
        "show up in shell history and process lists.",
    )
    @click.option(
        "--base-url",
        default=None,
        metavar="URL",
        help="Kraiter API base URL [env: KRAITER_BASE_URL; default "
        "https://api.kraiter.com]. Plain http:// only for loopback.",
    )
    @click.option(
        "--state-dir",
        type=click.Path(path_type=Path),
        default=None,
        help="Where the ledger, watermarks and the local Kraiter live "
        "[env: KRAITER_SYNC_STATE_DIR; default ./.kraiter-sync].",
    )
    @click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        default=None,
        help="Path of kraiter-sync.toml [default: ./kraiter-sync.toml if present].",
    )
    @click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
    @click.option("-v", "--verbose", count=True, help="More detail on stderr (-vv: debug).")
    @click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="Diagnostics on stderr as text or JSON lines.",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        common = Common(
            api_key=kwargs.pop("api_key"),
            base_url=kwargs.pop("base_url"),
            state_dir=kwargs.pop("state_dir"),
            config_path=kwargs.pop("config_path"),
            quiet=kwargs.pop("quiet"),
            verbose=kwargs.pop("verbose"),
            log_format=kwargs.pop("log_format"),
        )
        configure_logging(
            verbose=common.verbose,
            quiet=common.quiet,
            log_format=common.log_format,
            secrets=[common.api_key] if common.api_key else None,
        )
        return func(*args, common=common, **kwargs)

    return cast(F, wrapper)


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
    """


# ---------------------------------------------------------------------------------------
# validate, connectors (issue 3)
# ---------------------------------------------------------------------------------------


@main.command("connectors")
@click.option(
    "--show",
    "show",
    metavar="NAME|FILE",
    default=None,
    help="Print one connector's full mapping (a preset name or a .toml file).",
)
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

    del common  # no Kraiter access needed: presets ship with the package
    if show is not None:
        click.echo(load_connector(show).describe())
        return
    presets = list_presets()
    width = max((len(p.name) for p in presets), default=4)
    click.echo(f"{'NAME':<{width}}  {'KIND':<8}  DESCRIPTION")
    for preset in presets:
        click.echo(f"{preset.name:<{width}}  {preset.kind:<8}  {preset.description}")


# ---------------------------------------------------------------------------------------
# import, runs, retry (issue 4)
# ---------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------
# reconcile, restore (issue 5)
# ---------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------
# export (issue 6)
# ---------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------
# sync (issue 7)
# ---------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------
# emulator (issue 2)
# ---------------------------------------------------------------------------------------


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
