"""The ``kraiter-sync`` command line: thin click commands over the library.

Each command parses its options, calls the library function of the same verb, and
renders the result. Every failure goes through one funnel (:class:`_Group.invoke`):
a :class:`~kraiter_sync.errors.KraiterSyncError` becomes one line on stderr and its
exit code, never a traceback.

Exit codes: 0 success; 1 failed; 2 usage or configuration error; 3 finished with
rejected rows; 4 incomplete (interrupted or out of retries; re-running resumes); 5 busy
(another run holds the state lock; nothing was started).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shlex
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from kraiter_sync import __version__
from kraiter_sync.config import (
    DEFAULT_CONFIG_FILE,
    Settings,
    load_config_file,
    resolve_settings,
    resolve_state_dir,
)
from kraiter_sync.errors import (
    EXIT_BUSY,
    EXIT_INCOMPLETE,
    ConfigError,
    KraiterSyncError,
    StateError,
)
from kraiter_sync.logs import LogFormat, configure_logging, get_logger

if TYPE_CHECKING:
    from kraiter_sync.emulator.config import ListShape, UnknownEmail
    from kraiter_sync.importer import ImportOptions, ImportResult
    from kraiter_sync.ledger import RunRecord
    from kraiter_sync.pipeline import InputOptions
    from kraiter_sync.validate import ValidationOptions

__all__ = ["Common", "SendFlags", "common_options", "input_options", "main", "send_options"]

F = TypeVar("F", bound=Callable[..., Any])
log = get_logger("cli")


class _Group(click.Group):
    """The one error → exit-code funnel for every command."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KraiterSyncError as exc:
            click.echo(f"error: {exc}", err=True)
            if exc.exit_code == EXIT_INCOMPLETE:
                click.echo("incomplete: re-run the same command to resume", err=True)
            elif exc.exit_code == EXIT_BUSY:
                click.echo("busy: another run holds the state lock, nothing was started", err=True)
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
    tenant: str | None = None
    tenant_rotate: bool = False
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

    def state_dir_only(self) -> Path:
        """The state directory, for commands that send nothing (no key, no host needed)."""
        return resolve_state_dir(self.state_dir, config=self.config())

    @property
    def config_auto_loaded(self) -> bool:
        """Whether the config is ./kraiter-sync.toml found by itself (not named by --config):
        a host only it names needs the user's confirmation before a key goes there."""
        return self.config_path is None

    def settings(self) -> Settings:
        """Resolve flags > environment > config once; announce the local Kraiter."""
        if self._settings is None:
            self._settings = resolve_settings(
                api_key=self.api_key,
                base_url=self.base_url,
                state_dir=self.state_dir,
                tenant=self.tenant,
                config=self.config(),
                config_auto_loaded=self.config_auto_loaded,
                tenant_rotate=self.tenant_rotate,
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
        help="Where the ledger, watermarks and the local Kraiter live "
        "[env: KRAITER_SYNC_STATE_DIR; default ./.kraiter-sync].",
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
                5 busy (another run holds the state lock; nothing was started)
    """


# ---------------------------------------------------------------------------------------
# validate, connectors (issue 3)
# ---------------------------------------------------------------------------------------


#: The validator's switches: (flag, ValidationOptions field, help).
_VALIDATION_FLAGS = (
    (
        "--allow-smtputf8",
        "allow_smtputf8",
        "Accept non-ASCII local parts (off: Kraiter sends through Amazon SES, which refuses them).",
    ),
    (
        "--allow-special-use-domains",
        "allow_special_use_domains",
        "Accept addresses under special-use and reserved domains (.test, .invalid, "
        ".localhost, .local, .onion, .arpa, .alt, .internal), e.g. for a test tenant; none "
        "of them can receive mail.",
    ),
    (
        "--allow-secret-keys",
        "allow_secret_keys",
        "Send properties whose keys look like secrets (password, token, secret, api_key), "
        "which are refused by default.",
    ),
    (
        "--allow-card-numbers",
        "allow_card_numbers",
        "Send property values that hold what looks like a payment card number (13-19 "
        "digits passing the Luhn check, alone or inside text), refused by default.",
    ),
)


def validation_flags(func: F) -> F:
    """The validator's switches; the command receives ``validation: ValidationOptions``
    (a connector's or a sync job's ``[validation]`` keys can turn them on too)."""
    for flag, _name, text in reversed(_VALIDATION_FLAGS):
        func = click.option(flag, is_flag=True, help=text)(func)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from kraiter_sync.validate import ValidationOptions

        switches = {name: kwargs.pop(name) for _flag, name, _text in _VALIDATION_FLAGS}
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
        from kraiter_sync.pipeline import InputOptions
        from kraiter_sync.proptypes import parse_type_overrides

        timezone = kwargs.pop("timezone")
        validation: ValidationOptions = kwargs.pop("validation")
        if timezone:
            validation = dataclasses.replace(validation, timezone=timezone)
        kwargs["inputs"] = InputOptions(
            storage=_storage_options(kwargs.get("config_path")),
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


def _storage_options(config_path: Path | None) -> Any:
    """The ``[storage]`` table of kraiter-sync.toml (object-store endpoints, profiles)."""
    from kraiter_sync.objectstore.stores import StorageOptions

    return StorageOptions.from_config(Common(config_path=config_path).config())


def _default_rejects(state_dir: Path, stem: str) -> Path:
    return state_dir / "rejects" / f"{stem}.csv"


@main.command("validate")
@click.argument("paths", nargs=-1, required=True)
@input_options
@click.option(
    "--rejects",
    type=click.Path(path_type=Path),
    default=None,
    help="Write rejected rows here (.csv, .parquet or .ndjson) "
    "[default: STATE_DIR/rejects/validate-TIME.csv].",
)
@click.option(
    "--report",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the full report as JSON here.",
)
@common_options
def validate_command(
    paths: tuple[str, ...],
    inputs: InputOptions,
    rejects: Path | None,
    report: Path | None,
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
    """
    from kraiter_sync.pipeline import validate_inputs

    state_dir = common.state_dir_only()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    rejects_path = rejects or _default_rejects(state_dir, f"validate-{stamp}")
    result = validate_inputs(paths, inputs, rejects_path=rejects_path, report_path=report)
    for line in result.detections:
        log.info("%s", line)
    click.echo(result.summary())
    if result.rejected:
        click.echo(f"rejected rows: {result.rejects_path}")
    sys.exit(result.exit_code)


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


def _render_import(result: ImportResult) -> str:
    """The final summary: every row accounted for, then the run's vital signs."""
    lines = []
    for kind, c in (("contacts", result.contacts), ("events", result.events)):
        if not c.read:
            continue
        parts = [f"{c.read:,} read"]
        for label, value in (
            ("sent", c.sent),
            ("verified already in Kraiter", c.verified),
            ("unchanged", c.unchanged),
            ("already imported", c.already),
            ("duplicates", c.duplicates),
            ("invalid", c.invalid),
            ("rejected by Kraiter", c.rejected),
            ("previously rejected", c.previously_rejected),
            ("failed", c.failed),
            ("would send" if result.dry_run else "not sent", c.pending),
        ):
            if value:
                parts.append(f"{value:,} {label}")
        lines.append(f"{kind}: " + ", ".join(parts))
    lines.append(
        f"{result.requests:,} requests in {result.duration_s:.1f}s "
        f"({result.requests_per_s:.1f}/s), {result.retries:,} retries, "
        f"{result.rate_limited:,} answered 429"
    )
    if any(c.invalid or c.rejected for c in (result.contacts, result.events)):
        lines.append(f"rejected rows: {result.rejects_path}")
    return "\n".join(lines)


@dataclass(frozen=True)
class SendFlags:
    """The options of every command that sends through the engine."""

    rejects: Path | None
    concurrency: int
    rate: float | None
    max_retries: int
    allow_triggers: bool

    def import_options(self, inputs: InputOptions, *, dry_run: bool = False) -> ImportOptions:
        from kraiter_sync.importer import ImportOptions

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


def _html_option(flag: str, name: str, what: str) -> Callable[[F], F]:
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


report_option = _html_option(
    "--report",
    "report_path",
    "Also write the run's HTML report to PATH: rows as a Sankey diagram, requests per "
    "second with 429s and retries, rejects by rule with sample rows.",
)


@main.command("import")
@click.argument("paths", nargs=-1, required=True)
@input_options
@click.option("--dry-run", is_flag=True, help="Validate and plan against the ledger, send nothing.")
@send_options
@json_summary_option
@report_option
@common_options
def import_command(
    paths: tuple[str, ...],
    inputs: InputOptions,
    dry_run: bool,
    sending: SendFlags,
    as_json: bool,
    report_path: Path | None,
    common: Common,
) -> None:
    """Load contacts and events into Kraiter: nothing lost, nothing sent twice.

    PATHS are files, directories or globs; each argument is one input whose kind
    (contacts or events) is detected from its columns unless --kind is given. Contacts
    are written first, then events, each event exactly once: a killed or failed run is
    resumed by running the same command again (the ledger in the state directory knows
    what was sent, and anything in doubt is checked against Kraiter before re-sending).

    \b
    Exit codes: 0 all sent · 3 finished with rejected rows (see the rejects file)
                4 incomplete (interrupted or out of retries: re-run to resume) · 2 usage
    \b
    Examples:
      kraiter-sync import sample_data/contacts.csv sample_data/events.parquet
      kraiter-sync import 'export/*.parquet' --connector segment_tracks --rate 50
      kraiter-sync import events.csv --map email=user_email --dry-run
    """
    from kraiter_sync.importer import import_
    from kraiter_sync.progress import ImportProgress

    if report_path is not None:
        from kraiter_sync.report.html import require_plotly

        require_plotly()  # before the run, not after hours of sending
    settings = common.settings()
    options = sending.import_options(inputs, dry_run=dry_run)
    args = {
        "paths": list(paths),
        "dry_run": dry_run,
        "kind": inputs.kind,
        "connector": inputs.connector,
        "concurrency": sending.concurrency,
        "rate": sending.rate,
    }
    with ImportProgress.for_cli(quiet=common.quiet, log_format=common.log_format) as progress:
        result = import_(
            paths, settings=settings, options=options, args=args, on_progress=progress.update
        )
    if report_path is not None:
        _write_report(settings.state_dir, result.run_id, report_path)
    _finish_import(result, as_json=as_json)


def _write_report(state_dir: Path, run_id: int, path: Path) -> None:
    from kraiter_sync.report import write_run_report

    written = write_run_report(state_dir, run_id, path)
    click.echo(f"report: {written}", err=True)


def _finish_import(result: ImportResult, *, as_json: bool) -> None:
    """Print the summary and exit with the run's code (import and retry)."""
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        click.echo(_render_import(result))
    for warning in result.warnings:
        log.warning("warning: %s", warning)
    if result.exit_code == EXIT_INCOMPLETE:
        click.echo(
            "incomplete: re-run the same command to resume (nothing will be sent twice): "
            + _resume_command(),
            err=True,
        )
    sys.exit(result.exit_code)


def _resume_command() -> str:
    """This command line again, minus any --api-key value (never echo a key)."""
    args = sys.argv[1:]
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--api-key":
            skip = True
            continue
        if arg.startswith("--api-key="):
            continue
        kept.append(arg)
    return shlex.join(["kraiter-sync", *kept])


@main.command("retry")
@click.argument("rejects_file")
@send_options
@validation_flags
@json_summary_option
@common_options
def retry_command(
    rejects_file: str,
    sending: SendFlags,
    validation: ValidationOptions,
    as_json: bool,
    common: Common,
) -> None:
    """Re-send the rows Kraiter rejected, once you have fixed the cause.

    REJECTS_FILE is the file an `import` named in its summary. Only rows Kraiter refused
    (stage "rejected", e.g. a property it found too long after you raised a limit, or a
    contact that was missing) are sent again; rows caught by validation (stage
    "invalid") need fixing in the source and a new import. Nothing is sent twice.
    The rows are validated again: pass the --allow-* switches the import had.
    """
    from kraiter_sync.importer import retry_
    from kraiter_sync.pipeline import InputOptions
    from kraiter_sync.progress import ImportProgress

    inputs = InputOptions(storage=_storage_options(common.config_path), validation=validation)
    options = sending.import_options(inputs)
    with ImportProgress.for_cli(quiet=common.quiet, log_format=common.log_format) as progress:
        result = retry_(
            rejects_file, settings=common.settings(), options=options, on_progress=progress.update
        )
    _finish_import(result, as_json=as_json)


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _run_dict(run: RunRecord, *, details: bool = False) -> dict[str, Any]:
    out = dataclasses.asdict(run)
    out["started_at"] = _iso(run.started_at)
    out["finished_at"] = _iso(run.finished_at)
    if not details:
        del out["details"]
    return out


@main.group("runs", invoke_without_command=True)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many of the latest runs to show.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON on stdout.")
@common_options
@click.pass_context
def runs_command(ctx: click.Context, limit: int, as_json: bool, common: Common) -> None:
    """Show the history of runs recorded in the state directory's ledger.

    A run whose process is gone (killed, crashed, machine rebooted) without finishing is
    shown as `killed`; re-run its command to resume it. `runs show N` shows one run, and
    `runs show N --html PATH` writes its HTML report.
    """
    if ctx.invoked_subcommand is not None:
        return
    from kraiter_sync.ledger import Ledger

    ledger_path = common.state_dir_only() / "ledger.db"
    if not ledger_path.exists():
        click.echo("no runs yet" if not as_json else "[]")
        return
    with Ledger(ledger_path) as ledger:
        ledger.mark_killed_runs()  # runs whose process died still say "running"
        runs = ledger.list_runs(limit=limit)
    if as_json:
        click.echo(json.dumps([_run_dict(r) for r in runs], indent=2))
        return
    width = max([7, *(len(run.command) for run in runs)])
    click.echo(f"{'ID':>5}  {'COMMAND':<{width}} {'STATUS':<11} {'STARTED':<20}  SUMMARY")
    for run in runs:
        summary = ""
        if run.counts:
            ev = run.counts.get("events") or {}
            ct = run.counts.get("contacts") or {}
            summary = (
                f"contacts {ct.get('sent', 0)} sent/{ct.get('read', 0)} read; "
                f"events {ev.get('sent', 0)} sent/{ev.get('read', 0)} read"
                if ev or ct
                else json.dumps(run.counts)[:60]
            )
        click.echo(
            f"{run.id:>5}  {run.command:<{width}} {run.status:<11} "
            f"{_iso(run.started_at):<20}  {summary}"
        )


@runs_command.command("show")
@click.argument("run_id", type=click.IntRange(min=1), metavar="N")
@_html_option("--html", "html_path", "Write the run's HTML report to PATH.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the whole run record as JSON, with the request timeline and rejects by rule.",
)
@common_options
def runs_show_command(run_id: int, html_path: Path | None, as_json: bool, common: Common) -> None:
    """Show run N: its command, target, times, status and counts.

    \b
    Examples:
      kraiter-sync runs show 12
      kraiter-sync runs show 12 --html run-12.html
    """
    from kraiter_sync.report import show_run

    state_dir = common.state_dir_only()
    if html_path is not None:
        _write_report(state_dir, run_id, html_path)
        if not as_json:
            return
    run = show_run(state_dir, run_id)
    if as_json:
        click.echo(json.dumps(_run_dict(run, details=True), indent=2))
        return
    click.echo(f"run {run.id}: {run.command} ({run.status})")
    click.echo(f"target: {run.target}")
    click.echo(f"started {_iso(run.started_at)}, finished {_iso(run.finished_at) or '-'}")
    for name, value in run.counts.items():
        if name in ("events", "contacts") and isinstance(value, dict):
            shown = ", ".join(f"{k} {v}" for k, v in value.items() if v)
            click.echo(f"{name}: {shown or 'none'}")
        elif isinstance(value, float):
            click.echo(f"{name}: {value:,.2f}")
        elif not isinstance(value, dict | list):
            click.echo(f"{name}: {value}")


# ---------------------------------------------------------------------------------------
# reconcile, restore (issue 5)
# ---------------------------------------------------------------------------------------


def _reconcile_progress(common: Common) -> Callable[[int], None] | None:
    """Contacts read so far, on stderr (quiet when asked or not a terminal)."""
    if common.quiet or not sys.stderr.isatty():
        return None

    def show(count: int) -> None:
        click.echo(f"\rreading Kraiter: {count:,} contacts", err=True, nl=False)

    return show


@main.command("reconcile")
@click.argument("paths", nargs=-1)
@input_options
@click.option(
    "--plan-out",
    type=click.Path(path_type=Path),
    default=None,
    metavar="PATH",
    help="Write the full plan (every contact and its action) to PATH: .json or .parquet.",
)
@click.option(
    "--apply", "do_apply", is_flag=True, help="Carry the plan out (default: only show it)."
)
@click.option(
    "--plan",
    "plan_path",
    type=click.Path(path_type=Path),
    default=None,
    metavar="PLAN",
    help="With --apply: carry out a plan saved by --plan-out (no PATHs), refusing if the "
    "affected contacts changed in Kraiter since it was computed.",
)
@click.option(
    "--mirror",
    is_flag=True,
    help="Delete contacts that are in Kraiter but not in the input (guarded: see below).",
)
@click.option(
    "--mirror-properties",
    is_flag=True,
    help="Remove properties Kraiter has but the input lacks (default: leave them alone).",
)
@click.option(
    "--max-delete-ratio",
    type=click.FloatRange(0, 1),
    default=0.05,
    show_default=True,
    metavar="R",
    help="With --mirror: refuse to delete more than this share of Kraiter's contacts.",
)
@click.option(
    "--tombstone",
    type=click.Path(path_type=Path),
    default=None,
    metavar="PATH",
    help="With --mirror: where to save the deleted contacts "
    "[default: STATE_DIR/tombstones/tombstone-TIME.json].",
)
@click.option(
    "--remote",
    "strategy",
    type=click.Choice(["auto", "listing", "lookups"]),
    default="auto",
    show_default=True,
    help="How to read Kraiter: list every contact, look each local email up, or pick "
    "the cheaper from the counts.",
)
@click.option(
    "--sample",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    metavar="N",
    help="Changes shown per action.",
)
@send_options
@common_options
def reconcile_command(
    *,
    common: Common,
    paths: tuple[str, ...],
    inputs: InputOptions,
    sending: SendFlags,
    plan_out: Path | None,
    do_apply: bool,
    plan_path: Path | None,
    mirror: bool,
    mirror_properties: bool,
    max_delete_ratio: float,
    tombstone: Path | None,
    strategy: str,
    sample: int,
) -> None:
    """Show what differs between the input and Kraiter, right now; optionally fix it.

    Contacts are matched by normalised email (case-insensitive). Each lands in one of:
    create (not in Kraiter), update (properties or userId differ: old → new shown),
    unchanged, or only-in-Kraiter (left alone unless --mirror). Changes made directly
    in Kraiter show up too. A property Kraiter has but the input lacks is left alone
    unless --mirror-properties.

    \b
    --mirror deletes only-in-Kraiter contacts, with guards (exit 2 when refused):
      * an empty input, or one with rejected rows, is refused;
      * deleting more than --max-delete-ratio of Kraiter's contacts is refused;
      * a tombstone file with every deleted contact is written first;
        `kraiter-sync restore TOMBSTONE` recreates them.

    \b
    Examples:
      kraiter-sync reconcile contacts.csv
      kraiter-sync reconcile contacts.csv --plan-out plan.json
      kraiter-sync reconcile --plan plan.json --apply
      kraiter-sync reconcile contacts.parquet --mirror --apply
      kraiter-sync reconcile --kind events events.parquet --apply

    With events, the count of valid local events per contact and event name is
    compared with Kraiter's; --apply sends the missing ones through the import engine
    (events are never deleted).
    """
    from kraiter_sync.reconcile_run import (
        ReconcileOptions,
        apply_saved_plan,
        reconcile,
        render_plan,
    )

    settings = common.settings()
    options = ReconcileOptions(
        mirror=mirror,
        mirror_properties=mirror_properties,
        max_delete_ratio=max_delete_ratio,
        strategy=cast("Any", strategy),
        apply=do_apply,
        plan_out=plan_out,
        tombstone=tombstone,
        rejects=sending.rejects,
        concurrency=sending.concurrency,
        max_retries=sending.max_retries,
        rate=sending.rate,
        allow_triggers=sending.allow_triggers,
    )
    if plan_path is not None:
        if paths:
            msg = "pass either PATHs to compare or --plan PLAN to apply, not both"
            raise ConfigError(msg)
        if not do_apply:
            msg = "--plan PLAN applies a saved plan: add --apply (or just read the file)"
            raise ConfigError(msg)
        result = apply_saved_plan(plan_path, settings=settings, options=options)
    else:
        if not paths:
            msg = "no input given: pass one or more files (or --plan PLAN --apply)"
            raise ConfigError(msg)
        progress = _reconcile_progress(common)
        result = reconcile(
            paths, settings=settings, inputs=inputs, options=options, on_progress=progress
        )
        if progress is not None:
            click.echo(err=True)
    if result.report is not None and not common.quiet:
        r = result.report
        what = "contacts" if result.events is None else "valid events"
        click.echo(
            f"input: {r.rows_read:,} rows, {r.valid:,} {what}, {r.duplicates:,} "
            f"{'merged ' if result.events is None else ''}duplicates, {r.rejected:,} rejected",
            err=True,
        )
    if result.snapshot is not None and not common.quiet:
        click.echo(result.snapshot.describe(), err=True)
    if result.events is not None:
        click.echo(result.events.render(sample=sample))
        sys.exit(result.exit_code)
    assert result.plan is not None  # noqa: S101 (contacts)
    click.echo(render_plan(result.plan, sample=sample))
    if result.plan_path is not None and not common.quiet:
        click.echo(f"plan written to {result.plan_path}", err=True)
    if result.applied is not None:
        click.echo(result.applied.summary())
    elif do_apply:
        click.echo("nothing to apply: Kraiter already matches the input")
    sys.exit(result.exit_code)


@main.command("restore")
@click.argument("tombstone", type=click.Path(path_type=Path))
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=16,
    show_default=True,
    help="Requests in flight at once.",
)
@common_options
def restore_command(*, common: Common, tombstone: Path, concurrency: int) -> None:
    """Recreate the contacts a `reconcile --mirror` run deleted, from its tombstone file.

    Each contact comes back with its email, properties, userId and unsubscribed state
    (it gets a new id). Contacts that exist again are left as they are, so running
    restore twice is safe. Events, sends and memberships of deleted contacts are not in
    the tombstone and cannot be restored.

    \b
    Example:
      kraiter-sync restore .kraiter-sync/tombstones/tombstone-20260101T020000.000000Z.json
    """
    from kraiter_sync.reconcile_run import ReconcileOptions, restore

    options = ReconcileOptions(concurrency=concurrency)
    result = restore(tombstone, settings=common.settings(), options=options)
    click.echo(result.summary())
    sys.exit(result.exit_code)


# ---------------------------------------------------------------------------------------
# export (issue 6)
# ---------------------------------------------------------------------------------------


_EXPORT_STREAMS = (
    "contacts",
    "events",
    "timelines",
    "sends",
    "scheduled",
    "enrolments",
    "memberships",
)


def _parse_since(value: str | None) -> Any:
    """--since: an ISO 8601 date or date-time; without an offset it is UTC."""
    from datetime import UTC, datetime

    if value is None:
        return None
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        msg = f"--since {value!r} is not an ISO 8601 date or date-time (e.g. 2025-01-31)"
        raise click.BadParameter(msg) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _read_contacts_file(path: Path) -> tuple[str, ...]:
    """One contact id or email per line; blank lines, # comments and a header skipped."""
    from kraiter_sync.errors import InputError

    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as exc:
        msg = f"--contacts {path}: cannot read it ({exc.strerror})"
        raise InputError(msg) from None
    refs = [ln.split(",")[0].strip().strip('"') for ln in lines]
    refs = [r for r in refs if r and not r.startswith("#")]
    if refs and refs[0].lower() in {"email", "id", "contact_id", "contactid"}:
        refs = refs[1:]
    if not refs:
        msg = f"--contacts {path}: no contact ids or emails in it (one per line)"
        raise InputError(msg)
    return tuple(dict.fromkeys(refs))


def _rate_observer(rate: float | None) -> Any:
    """The importer's rate controller (ratelimit.py), shared by every request."""
    from kraiter_sync.ratelimit import RateController

    return RateController(ceiling=rate)


def _export_progress(common: Common) -> Any:
    """A live status line on a terminal; else None (INFO / JSON log lines)."""
    if common.quiet or common.log_format != "text" or not sys.stderr.isatty():
        return None

    def show(info: dict[str, Any]) -> None:
        line = (
            f"{info['stream']}: {info['rows']:,} rows · {info['rows_per_s']:,.0f} rows/s · "
            f"{info['requests']:,} requests ({info['requests_per_s']:.1f}/s) · "
            f"{info['retries']} retries"
        )
        click.echo(f"\r\x1b[2K{line}", err=True, nl=bool(info["done"]))

    return show


@main.command("export")
@click.argument("stream", type=click.Choice(_EXPORT_STREAMS))
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
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="N",
    help="At most N requests per second (a ceiling; Kraiter's limit is followed anyway).",
)
@click.option(
    "--max-retries",
    "retries",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Retries per request on 429, 5xx and network errors (0 = none).",
)
@click.option(
    "--chunk-rows",
    type=click.IntRange(min=1),
    default=50_000,
    show_default=True,
    help="Rows per committed chunk (files written and watermark saved together).",
)
@click.option(
    "--page-size",
    type=click.IntRange(1, 100),
    default=100,
    show_default=True,
    help="Rows asked for per request (Kraiter allows at most 100).",
)
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
    retries: int,
    chunk_rows: int,
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
    import signal

    from kraiter_sync.export import ExportOptions, export

    options = ExportOptions(
        format=cast(Any, fmt),
        full=full,
        overwrite=overwrite,
        since=_parse_since(since),
        contacts=_read_contacts_file(contacts_file) if contacts_file else None,
        flatten_properties=flatten_properties,
        raw_csv=raw_csv,
        custom_only=custom_only,
        retries=retries,
        chunk_rows=chunk_rows,
        page_size=page_size,
    )
    settings = common.settings()

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        result = export(
            settings,
            stream,
            out,
            options=options,
            observer=_rate_observer(rate),
            progress=_export_progress(common),
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    if result.contacts_not_found:
        shown = ", ".join(result.contacts_not_found[:5])
        more = len(result.contacts_not_found) - 5
        log.warning(
            "%d contact(s) from --contacts not found in Kraiter: %s%s",
            len(result.contacts_not_found),
            shown,
            f" and {more} more" if more > 0 else "",
        )
    click.echo(result.summary())


# ---------------------------------------------------------------------------------------
# sync (issue 7)
# ---------------------------------------------------------------------------------------


def _sync_settings(common: Common, config_path: Path) -> tuple[Any, Settings]:
    """Load kraiter-sync.toml and resolve settings from it (its relative paths are
    relative to the file), with flags and environment winning; remembered on ``common``."""
    from kraiter_sync.syncconfig import load_sync_config

    sync_config = load_sync_config(config_path)
    settings = sync_config.settings(
        api_key=common.api_key,
        base_url=common.base_url,
        state_dir=common.state_dir,
        tenant=common.tenant,
        tenant_rotate=common.tenant_rotate,
        config_auto_loaded=common.config_auto_loaded,
    )
    common._settings = settings
    configure_logging(
        verbose=common.verbose,
        quiet=common.quiet,
        log_format=common.log_format,
        secrets=[settings.api_key],
    )
    if settings.local:
        log.warning(
            "No KRAITER_API_KEY or KRAITER_BASE_URL set: using the local Kraiter in "
            "%s (set both to talk to your real account).",
            settings.local_db,
        )
    return sync_config, settings


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
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@common_options
def sync_command(
    common: Common, jobs: tuple[str, ...], check: bool, dry_run: bool, full: bool, as_json: bool
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
    import json

    from kraiter_sync.sync import check_jobs

    config_path = common.config_path or DEFAULT_CONFIG_FILE
    sync_config, settings = _sync_settings(common, config_path)
    if check:
        result = check_jobs(sync_config, settings, jobs)
        if as_json:
            click.echo(json.dumps(result.as_dict()))
        else:
            for item in [*result.jobs, result.target]:
                mark = "ok  " if item.ok else "FAIL"
                click.echo(f"{mark} {item.name}: {item.message}", err=not item.ok)
                if item.ok and common.verbose:
                    for line in item.details:
                        click.echo(f"       {line}")
        ctx = click.get_current_context()
        ctx.exit(result.exit_code)
    from kraiter_sync.sync import run_sync

    outcome = run_sync(sync_config, settings, jobs, dry_run=dry_run, full=full)
    # Each job's outcome is logged (info when ok, so cron stays silent on a good night;
    # warning for rejected rows; error for failures). --json adds the summary on stdout.
    if as_json:
        click.echo(json.dumps(outcome.as_dict()))
    click.get_current_context().exit(outcome.exit_code)


# ---------------------------------------------------------------------------------------
# emulator (issue 2)
# ---------------------------------------------------------------------------------------


def _emulator_db(common: Common, db: str | None) -> str:
    """--db, else local-kraiter.db in the state directory (flag > env > toml > default)."""
    if db is not None:
        return db
    state_dir = common.state_dir_only()
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"cannot create the state directory {state_dir}: {exc.strerror}"
        raise ConfigError(msg) from None
    return str(state_dir / "local-kraiter.db")


@main.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8787,
    show_default=True,
    help="Port to listen on (0 picks a free one).",
)
@click.option(
    "--db",
    "db",
    default=None,
    metavar="PATH",
    help="SQLite file to keep the data in, or :memory: "
    "[default: local-kraiter.db in the state directory].",
)
@click.option(
    "--rate-limit",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    metavar="N",
    help="Requests per second per tenant (API key); 0 turns it off.",
)
@click.option(
    "--burst",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Requests a tenant may make at once [default: one second's worth].",
)
@click.option(
    "--latency",
    "latency_ms",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    metavar="MS",
    help="Delay added to every API request.",
)
@click.option(
    "--fail-rate",
    type=click.FloatRange(0, 1),
    default=0,
    show_default=True,
    metavar="P",
    help="Share of API requests answered 5xx without being applied.",
)
@click.option(
    "--drop-rate",
    type=click.FloatRange(0, 1),
    default=0,
    show_default=True,
    metavar="P",
    help="Share of API requests applied, then cut without an answer.",
)
@click.option(
    "--seed", type=int, default=None, help="Seed for the fault draws (reproducible runs)."
)
@click.option(
    "--unknown-email",
    type=click.Choice(["create", "not-found", "link-later"]),
    default="create",
    show_default=True,
    help="An event for an email with no contact: auto-create the contact, answer "
    "404, or store it and link it when the contact appears.",
)
@click.option(
    "--hide-rate-headers",
    is_flag=True,
    help="Send 429s but no X-RateLimit-* headers (an API that says nothing).",
)
@click.option(
    "--list-shape",
    type=click.Choice(["data", "items"]),
    default="data",
    show_default=True,
    help="List envelope: {data, nextCursor} or the SDK's {items, nextCursor}.",
)
@click.option(
    "--strict-contact-ref",
    is_flag=True,
    help="Reject events that carry both contactId and email (400) instead of "
    "letting contactId win.",
)
@common_options
def emulator_command(
    *,
    common: Common,
    host: str,
    port: int,
    db: str | None,
    rate_limit: float,
    burst: int | None,
    latency_ms: float,
    fail_rate: float,
    drop_rate: float,
    seed: int | None,
    unknown_email: UnknownEmail,
    hide_rate_headers: bool,
    list_shape: ListShape,
    strict_contact_ref: bool,
) -> None:
    """Run a local Kraiter: the full REST API over SQLite, on real HTTP.

    Any bearer key starting with kr_ is accepted; each distinct key is its own tenant.
    Point kraiter-sync (or anything else) at it with
    KRAITER_BASE_URL=http://127.0.0.1:8787 KRAITER_API_KEY=kr_test. Faults and rate
    limits make it behave like a busy, flaky API, for testing what you build on it.
    Stop it with Ctrl-C.

    \b
    Admin routes (same key, outside the Kraiter API):
      POST /_emulator/tick       deliver due scheduled sends (sends + email.* events)
      POST /_emulator/segments   {"name", "contactIds"}: a segment with members
      POST /_emulator/suppress   {"contactId", "suppressed"}
    """
    # Imported here: uvicorn and the app are not needed by any other command.
    from kraiter_sync.emulator import EmulatorConfig, run_server

    try:
        config = EmulatorConfig(
            db_path=_emulator_db(common, db),
            rate_limit=rate_limit,
            burst=burst,
            latency_ms=latency_ms,
            fail_rate=fail_rate,
            drop_rate=drop_rate,
            seed=seed,
            unknown_email=unknown_email,
            hide_rate_headers=hide_rate_headers,
            list_shape=list_shape,
            strict_contact_ref=strict_contact_ref,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        run_server(config, host=host, port=port)
    except OSError as exc:
        msg = f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port"
        raise ConfigError(msg) from None
    except sqlite3.Error as exc:
        msg = f"cannot use {config.db_path} as the local Kraiter's database: {exc}"
        raise StateError(msg) from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
