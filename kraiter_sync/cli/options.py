"""The options every command shares: common ones, the target, sending (the options for
reading inputs are ``cli.input_options``)."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import quote, urlsplit

import click

from kraiter_sync.cli.progress import DEFAULT_HEARTBEAT, ProgressSink
from kraiter_sync.config import (
    DEFAULT_CONFIG_FILE,
    Settings,
    resolve_settings,
    resolve_state_dir,
    resolve_state_url,
)
from kraiter_sync.config.storage import StorageOptions
from kraiter_sync.logs import LogFormat, configure_logging, get_logger

if TYPE_CHECKING:
    from kraiter_sync.config.file import ConfigFile
    from kraiter_sync.inputs import InputOptions
    from kraiter_sync.verbs.importer import ImportOptions


F = TypeVar("F", bound=Callable[..., Any])
log = get_logger("cli")

#: Where the command's :class:`Common` is kept in the click context (the error funnel
#: reads it to answer in the command's output format).
COMMON_KEY = "kraiter_sync.common"
_ALIASES_KEY = "kraiter_sync.aliases"


@dataclass
class Common:
    """The options every command takes after its name (and, for the commands that talk
    to Kraiter, the target options)."""

    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    state_dir: Path | None = None
    #: ``--state``: a shared state store's URL (may hold a password: never print it).
    state: str | None = field(default=None, repr=False)
    config_path: Path | None = None
    tenant: str | None = None
    tenant_rotate: bool = False
    quiet: bool = False
    verbose: int = 0
    log_format: LogFormat = "text"
    #: ``--json``: the result as one JSON document on stdout, nothing else there.
    json: bool = False
    #: Seconds between progress lines when stderr is not a terminal (0: none).
    heartbeat: float = DEFAULT_HEARTBEAT
    #: The command's name (what a JSON error document names).
    command: str = ""
    _settings: Settings | None = field(default=None, repr=False)

    def config(self) -> ConfigFile | None:
        """kraiter-sync.toml (``--config``, else ./kraiter-sync.toml if present), read by the
        one model: its relative paths are relative to the file, for every command."""
        from kraiter_sync.config.file import load_config

        if self.config_path is not None:
            return load_config(self.config_path)
        if DEFAULT_CONFIG_FILE.is_file():
            return load_config(DEFAULT_CONFIG_FILE)
        return None

    def _target(self, config: ConfigFile | None) -> dict[str, Any]:
        return config.as_settings_config() if config is not None else {}

    def state_dir_only(self) -> Path:
        """The state directory, for commands that send nothing (no key, no host needed)."""
        return resolve_state_dir(self.state_dir, config=self._target(self.config()))

    def state_only(self) -> tuple[Path, str | None]:
        """The state directory and the state URL (None: SQLite in the directory), for
        commands that send nothing; the URL's password joins the secrets logs mask."""
        target = self._target(self.config())
        url = resolve_state_url(self.state, config=target)
        if url:
            self.mask_state_url(url)
        return resolve_state_dir(self.state_dir, config=target), url

    def mask_state_url(self, state_url: str | None) -> None:
        """Keep the API key and the state URL's password out of every log line."""
        secrets = [self.api_key or ""]
        if self._settings is not None:
            secrets.append(self._settings.api_key)
        if state_url:
            password = urlsplit(state_url).password
            secrets.extend([password, quote(password, safe="")] if password else [])
        configure_logging(
            verbose=self.verbose,
            quiet=self.quiet,
            log_format=self.log_format,
            secrets=[s for s in secrets if s],
        )

    def storage(self) -> StorageOptions:
        """The file's ``[storage]`` table (object-store endpoints, profiles)."""
        config = self.config()
        return config.storage if config is not None else StorageOptions()

    @property
    def config_auto_loaded(self) -> bool:
        """Whether the config is ./kraiter-sync.toml found by itself (not named by --config):
        a host only it names needs the user's confirmation before a key goes there."""
        return self.config_path is None

    def settings(self, config: ConfigFile | None = None) -> Settings:
        """Resolve flags > environment > config once, and announce the target (host and
        tenant fingerprint, never the key). ``config``: the file when the command has
        read it already (``sync``)."""
        if self._settings is None:
            self._settings = resolve_settings(
                api_key=self.api_key,
                base_url=self.base_url,
                state_dir=self.state_dir,
                tenant=self.tenant,
                config=self._target(config if config is not None else self.config()),
                config_auto_loaded=self.config_auto_loaded,
                tenant_rotate=self.tenant_rotate,
                state=self.state,
            )
            self.mask_state_url(self._settings.state_url)
            announce_target(self._settings, quiet=self.quiet, log_format=self.log_format)
        return self._settings

    def progress(self) -> ProgressSink:
        """The command's one progress display (a bar on a terminal, heartbeat lines off
        one, nothing with --quiet)."""
        return ProgressSink.for_cli(
            quiet=self.quiet, log_format=self.log_format, heartbeat=self.heartbeat
        )


def announce_target(settings: Settings, *, quiet: bool, log_format: LogFormat) -> None:
    """Say which Kraiter a command talks to, before it does: the host and the tenant
    (its name, or the key's fingerprint), never the key. Shown on a terminal (a person
    is watching, and may be about to write to production) and whenever it is the local
    Kraiter (no key or URL set: likely a mistake); otherwise with -v, and always as a
    JSON line with ``--log-format json``. Never with --quiet."""
    from kraiter_sync.config import describe_target

    target = describe_target(settings)
    line = f"target: {target['display']}"
    if quiet:
        return
    if log_format == "text" and (settings.local or sys.stderr.isatty()):
        click.echo(line, err=True)
        return
    log.info(line, extra={"target": {k: v for k, v in target.items() if k != "display"}})


def _json_option(func: F) -> F:
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print the result as one JSON document on stdout (its schema: "
        "docs/schemas/COMMAND.schema.json); diagnostics stay on stderr.",
    )(func)


def common_options(func: F) -> F:
    """The options every command takes; the command receives them as ``common: Common``.

    ``--api-key``, ``--base-url``, ``--tenant`` and ``--tenant-rotate`` belong to the
    commands that talk to Kraiter (:func:`target_options`); the others accept
    ``--api-key``/``--base-url`` for one more release, with a deprecation warning.
    """

    @click.option(
        "--state-dir",
        type=click.Path(path_type=Path),
        default=None,
        help="Where the ledger, watermarks, rejects files and the local Kraiter live "
        "[env: KRAITER_SYNC_STATE_DIR; default ./.kraiter-sync].",
    )
    @click.option(
        "--state",
        default=None,
        metavar="URL",
        help="Keep all state (ledger, runs, watermarks, caches, export state, locks) in a "
        "shared PostgreSQL store, e.g. postgresql://kraiter@db.internal/kraiter "
        "[env: KRAITER_SYNC_STATE; default: SQLite files in --state-dir]. Put the password "
        "in PGPASSWORD or ~/.pgpass, not on the command line.",
    )
    @click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        default=None,
        help="Path of kraiter-sync.toml [default: ./kraiter-sync.toml if present; a host "
        "only that automatic file names must be confirmed before a key is sent].",
    )
    @_json_option
    @click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
    @click.option("-v", "--verbose", count=True, help="More detail on stderr (-vv: debug).")
    @click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="Diagnostics on stderr (errors, warnings, progress) as text or JSON lines.",
    )
    @click.option(
        "--heartbeat",
        type=click.FloatRange(min=0),
        default=DEFAULT_HEARTBEAT,
        show_default=True,
        metavar="SECONDS",
        envvar="KRAITER_SYNC_HEARTBEAT",
        help="When stderr is not a terminal (cron, Airflow), a progress line every SECONDS "
        "during long work (0: none) [env: KRAITER_SYNC_HEARTBEAT].",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        common = Common(
            api_key=kwargs.pop("api_key", None),
            base_url=kwargs.pop("base_url", None),
            state_dir=kwargs.pop("state_dir"),
            state=kwargs.pop("state"),
            config_path=kwargs.pop("config_path"),
            tenant=kwargs.pop("tenant", None),
            tenant_rotate=kwargs.pop("tenant_rotate", False),
            quiet=kwargs.pop("quiet"),
            verbose=kwargs.pop("verbose"),
            log_format=kwargs.pop("log_format"),
            json=kwargs.pop("as_json"),
            heartbeat=kwargs.pop("heartbeat"),
            command=ctx.command_path.removeprefix(ctx.find_root().info_name or "").strip(),
        )
        ctx.meta[COMMON_KEY] = common
        configure_logging(
            verbose=common.verbose,
            quiet=common.quiet,
            log_format=common.log_format,
            secrets=[common.api_key] if common.api_key else None,
        )
        for flag in kwargs.pop("_deprecated", []):
            flag.warn()
        return func(*args, common=common, **kwargs)

    return cast(F, wrapper)


def target_options(func: F) -> F:
    """Which Kraiter account to talk to: for the commands that do (put it above
    :func:`common_options`)."""

    @click.option(
        "--api-key",
        envvar="KRAITER_API_KEY",
        show_envvar=True,
        default=None,
        help="Kraiter API key (kr_…). Prefer the environment variable: flags "
        "show up in shell history and process lists. A key is never sent to a host that "
        "only an automatically found ./kraiter-sync.toml names until you confirm it once "
        "(--base-url, KRAITER_BASE_URL, --config, or the user config's "
        '[hosts."HOST"] trust = true).',
    )
    @click.option(
        "--base-url",
        default=None,
        metavar="URL",
        help="Kraiter API base URL [env: KRAITER_BASE_URL; default "
        "https://api.kraiter.com]. Plain http:// only for loopback; no user:password@.",
    )
    @click.option(
        "--tenant",
        default=None,
        metavar="NAME",
        help="Name the Kraiter account in the ledger instead of a fingerprint of the key "
        "[env: KRAITER_TENANT]; keep it when you rotate keys so nothing is re-sent. The "
        "name keeps the key it was first used with: another key is refused.",
    )
    @click.option(
        "--tenant-rotate",
        is_flag=True,
        help="Accept a new API key for --tenant once (you rotated the key of that same "
        "Kraiter account); later runs must use the new key.",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return cast(F, wrapper)


@dataclass(frozen=True)
class Deprecated:
    """An old spelling that still works for one release (it warns when used)."""

    old: str
    new: str | None
    note: str = ""

    def warn(self) -> None:
        instead = f"use {self.new} instead" if self.new else self.note
        log.warning(
            "warning: %s is deprecated and will be removed in the next release: %s",
            self.old,
            instead,
            extra={"deprecated": self.old, "instead": self.new},
        )


def _note_deprecated(ctx: click.Context, flag: Deprecated) -> None:
    ctx.params.setdefault("_deprecated", []).append(flag)


def deprecated_alias(old: str, new: str, dest: str, **kw: Any) -> Callable[[F], F]:
    """``old`` as a hidden spelling of option ``new`` (which stores into ``dest``): the
    value is used when ``new`` was not given, with a deprecation warning."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        _note_deprecated(ctx, Deprecated(old, new))
        ctx.meta.setdefault(_ALIASES_KEY, {})[dest] = value
        return None

    return click.option(
        old,
        f"_alias_{dest}",
        hidden=True,
        default=None,
        expose_value=False,
        callback=callback,
        is_eager=False,
        **kw,
    )


def aliased(ctx: click.Context, dest: str, value: Any, default: Any) -> Any:
    """The value of option ``dest``, or its deprecated alias's when only that was given."""
    given = ctx.meta.get(_ALIASES_KEY, {})
    source = ctx.get_parameter_source(dest)
    if dest in given and source in (None, click.core.ParameterSource.DEFAULT):
        return given[dest]
    return value if value is not None else default


def no_target_options(func: F) -> F:
    """For commands that do not talk to Kraiter: ``--api-key`` and ``--base-url`` are
    accepted (hidden) for one more release, ignored, with a deprecation warning."""

    def note(flag: str) -> Callable[[click.Context, click.Parameter, Any], None]:
        def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
            if value is not None:
                what = ctx.command.name or "this command"
                _note_deprecated(
                    ctx, Deprecated(flag, None, f"{what} does not talk to Kraiter; drop it")
                )

        return callback

    for flag in ("--api-key", "--base-url"):
        func = click.option(
            flag, hidden=True, default=None, expose_value=False, callback=note(flag)
        )(func)
    return func


# ---- one vocabulary: the same flag means the same thing in every command ---------------

#: Requests in flight at once (import, retry, reconcile, restore, export, sync jobs).
concurrency_option = click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=16,
    show_default=True,
    metavar="N",
    help="Requests in flight at once.",
)

#: A ceiling in requests per second; the rate adapts below it either way.
rate_option = click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="N",
    help="Ceiling in requests/s [default: as fast as Kraiter allows; the rate "
    "adapts to 429s and X-RateLimit headers either way].",
)

#: Retries per request after the first attempt.
max_retries_option = click.option(
    "--max-retries",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    metavar="N",
    help="Retries per request on 429, 5xx, timeouts and dropped connections (0: no retries).",
)


def chunk_size_option(default: int, text: str) -> Callable[[F], F]:
    """``--chunk-size N``: rows handled at a time (read and validated, or written)."""
    return click.option(
        "--chunk-size",
        type=click.IntRange(min=1),
        default=default,
        show_default=True,
        metavar="N",
        help=text,
    )


def default_rejects(state_dir: Path, stem: str) -> Path:
    return state_dir / "rejects" / f"{stem}.csv"


@dataclass(frozen=True)
class SendFlags:
    """The options of every command that sends through the engine."""

    rejects: Path | None
    concurrency: int
    rate: float | None
    max_retries: int
    allow_triggers: bool

    def import_options(self, inputs: InputOptions, *, dry_run: bool = False) -> ImportOptions:
        from kraiter_sync.verbs.importer import ImportOptions

        return ImportOptions(
            input=inputs,
            rejects=self.rejects,
            dry_run=dry_run,
            concurrency=self.concurrency,
            rate=self.rate,
            max_retries=self.max_retries,
            allow_triggers=self.allow_triggers,
        )


def send_options(func: F) -> F:
    """Options for sending (import, retry, reconcile); the command gets ``sending: SendFlags``."""

    @click.option(
        "--rejects",
        type=click.Path(path_type=Path),
        default=None,
        help="Write rejected rows here (.csv, .parquet or .ndjson) "
        "(import and retry default to STATE_DIR/rejects/run-N.csv).",
    )
    @concurrency_option
    @rate_option
    @max_retries_option
    @click.option(
        "--allow-triggers",
        is_flag=True,
        help="Send events even when their names trigger live sequences (this can "
        "enrol contacts and send real emails).",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs["sending"] = SendFlags(
            rejects=kwargs.pop("rejects"),
            concurrency=kwargs.pop("concurrency"),
            rate=kwargs.pop("rate"),
            max_retries=kwargs.pop("max_retries"),
            allow_triggers=kwargs.pop("allow_triggers"),
        )
        return func(*args, **kwargs)

    return cast(F, wrapper)


def html_option(flag: str, name: str, what: str) -> Callable[[F], F]:
    """An option naming where a run's HTML report goes (import --report, runs show --html)."""
    return click.option(
        flag,
        name,
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        metavar="PATH",
        help=f"{what} One static file that opens offline; needs "
        'pip install "kraiter-sync[report]".',
    )


report_option = html_option(
    "--report",
    "report_path",
    "Also write the run's HTML report to PATH: rows as a Sankey diagram, requests per "
    "second with 429s and retries, rejects by rule with sample rows.",
)


def note(common: Common, text: str, **fields: Any) -> None:
    """A diagnostic line on stderr at the default level (not with --quiet): plain text,
    or a JSON line with ``--log-format json``."""
    if common.quiet:
        return
    if common.log_format == "json":
        log.info(text, extra=fields)
    else:
        click.echo(text, err=True)


def emit(common: Common, doc: dict[str, Any] | list[Any], text: str | None) -> None:
    """A command's result on stdout: with ``--json`` the JSON document, on one line and
    nothing else there (Airflow's XCom takes the last line; ``jq`` pretty-prints it),
    else the text (None: nothing)."""
    if common.json:
        click.echo(json.dumps(doc, ensure_ascii=False, default=str))
    elif text:
        click.echo(text)


def write_report(state_dir: Path, run_id: int, path: Path, *, state: str | None = None) -> None:
    """Write run ``run_id``'s HTML report and say where (``state``: a state URL)."""
    from kraiter_sync.report import write_run_report

    written = write_run_report(state_dir, run_id, path, state=state)
    click.echo(f"report: {written}", err=True)
