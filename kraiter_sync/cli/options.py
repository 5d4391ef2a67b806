"""The options every command shares: common ones, inputs, sending."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import quote, urlsplit

import click

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
    from kraiter_sync.validate import ValidationOptions
    from kraiter_sync.verbs.importer import ImportOptions


F = TypeVar("F", bound=Callable[..., Any])
log = get_logger("cli")


@dataclass
class Common:
    """The options every command takes after its name."""

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
        """Resolve flags > environment > config once; announce the local Kraiter.
        ``config``: the file when the command has read it already (``sync``)."""
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
            state=kwargs.pop("state"),
            config_path=kwargs.pop("config_path"),
            tenant=kwargs.pop("tenant"),
            tenant_rotate=kwargs.pop("tenant_rotate"),
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


#: The validator's switches: flag and help. The switch is the ValidationOptions field of
#: the flag's name (``--allow-smtputf8``: ``allow_smtputf8``), as in a connector's or a
#: sync job's ``[validation]`` keys (``connectors.VALIDATION_SWITCHES``).
_VALIDATION_FLAGS = (
    (
        "--allow-smtputf8",
        "Accept non-ASCII local parts (off: Kraiter sends through Amazon SES, which refuses them).",
    ),
    (
        "--allow-special-use-domains",
        "Accept addresses under special-use and reserved domains (.test, .invalid, "
        ".localhost, .local, .onion, .arpa, .alt, .internal), e.g. for a test tenant; none "
        "of them can receive mail.",
    ),
    (
        "--allow-secret-keys",
        "Send properties whose keys look like secrets (password, token, secret, api_key), "
        "which are refused by default.",
    ),
    (
        "--allow-card-numbers",
        "Send property values that hold what looks like a payment card number (13-19 "
        "digits passing the Luhn check, alone or inside text), refused by default.",
    ),
)


def _switch(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def validation_flags(func: F) -> F:
    """The validator's switches; the command receives ``validation: ValidationOptions``
    (a connector's or a sync job's ``[validation]`` keys can turn them on too)."""
    for flag, text in reversed(_VALIDATION_FLAGS):
        func = click.option(flag, is_flag=True, help=text)(func)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from kraiter_sync.validate import ValidationOptions

        switches = {_switch(flag): kwargs.pop(_switch(flag)) for flag, _text in _VALIDATION_FLAGS}
        kwargs["validation"] = ValidationOptions(**switches)
        return func(*args, **kwargs)

    return cast(F, wrapper)


def input_options(func: F) -> F:
    """Options for reading and mapping inputs, shared by validate, import and reconcile.

    The command receives them as ``inputs: InputOptions``.
    """

    @click.option(
        "--kind",
        type=click.Choice(["events", "contacts"]),
        default=None,
        help="What the files hold [default: detected from the columns].",
    )
    @click.option(
        "--connector",
        metavar="NAME|FILE",
        default=None,
        help="A preset (see `kraiter-sync connectors`) or a connector .toml file.",
    )
    @click.option(
        "--map",
        "mapping",
        metavar="FIELD=COLUMN",
        multiple=True,
        help="Use COLUMN for FIELD (email, contact_id, user_id, name, timestamp); "
        "repeatable. Wins over detection and connectors.",
    )
    @click.option(
        "--type",
        "types",
        metavar="PROPERTY=TYPE",
        multiple=True,
        help="Send PROPERTY as string, integer, float or boolean, whatever the typing of "
        "text values (CSV) would do, e.g. --type zip=string; repeatable. Wins over "
        "the connector's types.",
    )
    @click.option(
        "--timezone",
        default=None,
        metavar="ZONE",
        help="IANA zone for timestamps without an offset [default: UTC, reported].",
    )
    @click.option(
        "--encoding", default="utf-8", show_default=True, help="Text encoding of CSV/JSON inputs."
    )
    @validation_flags
    @click.option(
        "--chunk-size",
        type=click.IntRange(min=1),
        default=100_000,
        show_default=True,
        help="Rows read and validated at a time: the memory bound. Larger chunks run "
        "faster and hold more memory.",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from kraiter_sync.connectors import parse_overrides
        from kraiter_sync.inputs import InputOptions
        from kraiter_sync.proptypes import parse_type_overrides

        timezone = kwargs.pop("timezone")
        validation: ValidationOptions = kwargs.pop("validation")
        if timezone:
            validation = dataclasses.replace(validation, timezone=timezone)
        kwargs["inputs"] = InputOptions(
            storage=Common(config_path=kwargs.get("config_path")).storage(),
            kind=kwargs.pop("kind"),
            connector=kwargs.pop("connector"),
            mapping=parse_overrides(kwargs.pop("mapping")),
            types=parse_type_overrides(kwargs.pop("types")),
            encoding=kwargs.pop("encoding"),
            chunk_size=kwargs.pop("chunk_size"),
            timezone=timezone,
            validation=validation,
        )
        return func(*args, **kwargs)

    return cast(F, wrapper)


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


json_summary_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout."
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
    @click.option(
        "--concurrency",
        type=click.IntRange(1, 256),
        default=16,
        show_default=True,
        help="Requests in flight at once.",
    )
    @click.option(
        "--rate",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        help="Ceiling in requests/s [default: as fast as Kraiter allows; the rate "
        "adapts to 429s and X-RateLimit headers either way].",
    )
    @click.option(
        "--max-retries",
        type=click.IntRange(min=0),
        default=5,
        show_default=True,
        help="Retries per request on 429, 5xx, timeouts and dropped connections (0: no retries).",
    )
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


def write_report(state_dir: Path, run_id: int, path: Path, *, state: str | None = None) -> None:
    """Write run ``run_id``'s HTML report and say where (``state``: a state URL)."""
    from kraiter_sync.report import write_run_report

    written = write_run_report(state_dir, run_id, path, state=state)
    click.echo(f"report: {written}", err=True)
