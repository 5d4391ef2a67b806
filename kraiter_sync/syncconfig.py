"""``kraiter-sync.toml`` for unattended syncs: parsed, validated, every error with its line.

::

    [target]                       # optional: flags and environment win over it
    base_url = "https://api.kraiter.com"
    api_key_file = "/etc/kraiter-sync/key"     # never `api_key = …` in a file
    state_dir = "/var/lib/kraiter-sync"

    [jobs.crm_contacts]            # jobs run in file order
    source = "postgresql://etl@warehouse/crm"
    query = "SELECT email, first_name, plan FROM contacts"
    kind = "contacts"
    mode = "upsert"                # or "mirror": also delete contacts gone from the source
    full_every = "7d"              # a full reconcile against Kraiter once a week

    [jobs.app_events]
    source = ["exports/events/*.parquet"]
    kind = "events"
    connector = "segment"
    cursor = "received_at"         # only rows at or past the watermark - lag are read
    lag = "2h"

Relative paths (file sources, ``duckdb:///`` / ``sqlite:///`` files, ``api_key_file``,
``state_dir``) are relative to the directory of the config file, not to the current
directory: cron and systemd start jobs in a directory of their own choosing.

TOML parsers do not report where a *value* sits, so :func:`_LineIndex` scans the text
lightly (table headers and ``key =`` lines, skipping multi-line strings) to name the
line of every key an error is about.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn, cast

from kraiter_sync.config import Settings, resolve_settings
from kraiter_sync.errors import ConfigError
from kraiter_sync.objectstore.stores import StorageOptions
from kraiter_sync.objectstore.urls import is_object_url, redact
from kraiter_sync.proptypes import PROPERTY_TYPES, PropertyType
from kraiter_sync.sql import is_sql_url, redact_url

__all__ = [
    "JobConfig",
    "SyncConfig",
    "load_sync_config",
    "parse_duration",
    "parse_sync_config",
]

Kind = Literal["contacts", "events"]
Mode = Literal["upsert", "mirror"]

_TOP_KEYS = ("target", "storage", "jobs")
_TARGET_KEYS = ("base_url", "api_key_file", "state_dir", "tenant")
_JOB_KEYS = (
    "source",
    "query",
    "kind",
    "connector",
    "map",
    "types",
    "mode",
    "cursor",
    "lag",
    "full_every",
    "timezone",
    "encoding",
    "chunk_size",
    "enabled",
    "allow_triggers",
    "allow_smtputf8",
    "allow_special_use_domains",
    "allow_secret_keys",
    "allow_card_numbers",
    "rate",
    "concurrency",
    "max_retries",
    "max_delete_ratio",
)
#: Job keys that are true or false, off unless set.
_SWITCHES = (
    "allow_triggers",
    "allow_smtputf8",
    "allow_special_use_domains",
    "allow_secret_keys",
    "allow_card_numbers",
)
_JOB_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_DURATION_PART = re.compile(r"(\d+)\s*([smhdw])", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+\s*[smhdw]\s*)+$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> dt.timedelta:
    """``"90s"``, ``"15m"``, ``"2h"``, ``"7d"``, ``"1w"``, ``"1d12h"`` → timedelta."""
    if not _DURATION.match(text):
        msg = f"{text!r} is not a duration; write e.g. 30m, 2h, 7d or 1d12h"
        raise ValueError(msg)
    seconds = sum(int(n) * _UNITS[u.lower()] for n, u in _DURATION_PART.findall(text))
    return dt.timedelta(seconds=seconds)


# --------------------------------------------------------------------------------------
# where keys are
# --------------------------------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[(?!\[)\s*(.+?)\s*\]\s*(?:#.*)?$")
_KEY = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)
_PART = re.compile(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""")


def _dotted(text: str) -> tuple[str, ...]:
    return tuple(p.strip("\"'") for p in _PART.findall(text))


class _LineIndex:
    """Line numbers (1-based) of table headers and ``key =`` lines, by full key path."""

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        in_string: str | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            if in_string is not None:
                if line.count(in_string) % 2 == 1:
                    in_string = None
                continue
            header = _HEADER.match(line)
            if header:
                table = _dotted(header.group(1))
                self.lines.setdefault(table, number)
                continue
            key = _KEY.match(line)
            if key:
                path = table + _dotted(key.group(1))
                self.lines.setdefault(path, number)
                self.lines.setdefault(path[:-1], number)  # dotted keys define tables too
                rest = line[key.end() :]
                for quote in ('"""', "'''"):
                    if rest.count(quote) % 2 == 1:
                        in_string = quote
                        break

    def line(self, *path: str) -> int | None:
        """The line of ``path``, else of the nearest enclosing table that has one."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None


# --------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobConfig:
    """One ``[jobs.NAME]`` table, validated."""

    name: str
    source: tuple[str, ...]
    kind: Kind | None = None
    query: str | None = None
    connector: str | None = None
    mapping: Mapping[str, str] = field(default_factory=dict)
    #: Declared property types (``types = {zip = "string"}``): win over the connector's.
    types: Mapping[str, PropertyType] = field(default_factory=dict)
    mode: Mode = "upsert"
    cursor: str | None = None
    #: How far behind the watermark to re-read: a duration, or a number for numeric cursors.
    lag: dt.timedelta | int | float | None = None
    full_every: dt.timedelta | None = None
    timezone: str | None = None
    encoding: str = "utf-8"
    chunk_size: int = 100_000
    enabled: bool = True
    #: Send events whose names trigger live sequences (a nightly feed usually should).
    allow_triggers: bool = False
    #: The validator's switches (``--allow-*`` of validate and import).
    allow_smtputf8: bool = False
    allow_special_use_domains: bool = False
    allow_secret_keys: bool = False
    allow_card_numbers: bool = False
    #: Ceiling in requests/s (None: as fast as Kraiter allows).
    rate: float | None = None
    concurrency: int = 16
    max_retries: int = 5
    #: Mirror mode refuses to delete more than this share of Kraiter's contacts.
    max_delete_ratio: float = 0.05
    line: int | None = None
    base_dir: Path = Path()
    #: Object-store endpoints and profiles (the file's ``[storage]`` table).
    storage: StorageOptions = field(default_factory=StorageOptions)

    @property
    def is_sql(self) -> bool:
        return len(self.source) == 1 and is_sql_url(self.source[0])

    @property
    def source_label(self) -> str:
        """What to print for the source: the URL without password, or the paths."""
        if self.is_sql:
            return redact_url(self.source[0])
        return ", ".join(redact(s) if is_object_url(s) else s for s in self.source)

    @property
    def reads_objects(self) -> bool:
        """Whether a source is in object storage (s3://, gs://, az://, https://)."""
        return not self.is_sql and any(is_object_url(item) for item in self.source)

    def paths(self) -> list[str]:
        """File sources resolved against the config file's directory (URLs as they are)."""
        out = []
        for item in self.source:
            if is_object_url(item):
                out.append(item)
                continue
            path = Path(item).expanduser()
            out.append(str(path if path.is_absolute() else self.base_dir / path))
        return out


@dataclass(frozen=True)
class SyncConfig:
    """A validated kraiter-sync.toml."""

    path: Path
    jobs: tuple[JobConfig, ...]
    target: Mapping[str, Any] = field(default_factory=dict)

    def settings(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        state_dir: Path | str | None = None,
        env: Mapping[str, str] | None = None,
        tenant: str | None = None,
        tenant_rotate: bool = False,
        config_auto_loaded: bool = False,
    ) -> Settings:
        """Flags > environment > ``[target]`` (with its paths relative to this file);
        ``config_auto_loaded``: this file was found in the current directory, not named
        (see ``config.resolve_settings``)."""
        return resolve_settings(
            api_key=api_key,
            base_url=base_url,
            state_dir=state_dir,
            tenant=tenant,
            config={"target": dict(self.target)},
            env=env,
            config_auto_loaded=config_auto_loaded,
            tenant_rotate=tenant_rotate,
        )

    def select(self, names: Sequence[str] = ()) -> list[JobConfig]:
        """The named jobs in the order given, or every enabled job in file order."""
        if not names:
            return [job for job in self.jobs if job.enabled]
        by_name = {job.name: job for job in self.jobs}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            known = ", ".join(by_name) or "none"
            msg = f"no job named {', '.join(unknown)} in {self.path} (jobs: {known})"
            raise ConfigError(msg)
        return [by_name[n] for n in dict.fromkeys(names)]


class _Checker:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.index = _LineIndex(text)

    def fail(self, message: str, *path: str) -> NoReturn:
        """Raise a ConfigError naming the file, the line and the key at ``path``."""
        line = self.index.line(*path) if path else None
        where = f"{self.path}:{line}" if line else str(self.path)
        key = ".".join(_fmt_key(p) for p in path)
        prefix = f"{where}: {key}: " if key else f"{where}: "
        raise ConfigError(prefix + message) from None

    def string(self, value: Any, *path: str) -> str:
        if not isinstance(value, str):
            self.fail(f"must be a string, not {_type_name(value)}", *path)
        if not value.strip():
            self.fail("must not be empty", *path)
        return value

    def table(self, value: Any, example: str, *path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(f"must be a table like {example}, not {_type_name(value)}", *path)
        return value

    def choice(self, value: Any, choices: Sequence[str], *path: str) -> str:
        text = self.string(value, *path)
        if text not in choices:
            options = " or ".join(repr(c) for c in choices)
            self.fail(f"must be {options}, not {text!r}", *path)
        return text

    def unknown(self, table: Mapping[str, Any], allowed: Sequence[str], *path: str) -> None:
        for key in table:
            if key not in allowed:
                close = [a for a in allowed if a.replace("_", "") == key.replace("_", "")]
                hint = f"did you mean {close[0]!r}? " if close else ""
                self.fail(f"unknown key; {hint}allowed here: {', '.join(allowed)}", *path, key)


def _fmt_key(part: str) -> str:
    return part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else f'"{part}"'


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _job(check: _Checker, name: str, table: Any, base_dir: Path) -> JobConfig:
    at = ("jobs", name)
    if not _JOB_NAME.match(name):
        check.fail("job names may use letters, digits, _ and - only", *at)
    if not isinstance(table, dict):
        check.fail(f"must be a table ([jobs.{name}]), not {_type_name(table)}", *at)
    check.unknown(table, _JOB_KEYS, *at)
    if "source" not in table:
        check.fail(
            'missing "source": give files/globs (source = "exports/*.csv") or a '
            'database URL with a query (source = "postgresql://…", query = "SELECT …")',
            *at,
        )
    raw_source = table["source"]
    if isinstance(raw_source, str):
        source: tuple[str, ...] = (check.string(raw_source, *at, "source"),)
    elif isinstance(raw_source, list):
        if not raw_source:
            check.fail("must name at least one file, glob or URL", *at, "source")
        source = tuple(check.string(s, *at, "source") for s in raw_source)
    else:
        check.fail(
            f"must be a string or an array of strings, not {_type_name(raw_source)}",
            *at,
            "source",
        )
    sql = [s for s in source if is_sql_url(s)]
    if sql and len(source) > 1:
        check.fail("a database URL must be the job's only source", *at, "source")
    foreign = [s for s in source if "://" in s and not is_object_url(s)]
    if not sql and foreign:
        scheme = foreign[0].split("://", 1)[0]
        check.fail(
            f"{scheme}:// is not a supported source; use files, s3://, gs://, az://, "
            "abfss://, https://, duckdb:///, sqlite:/// or postgresql://",
            *at,
            "source",
        )
    query: str | None = None
    if "query" in table:
        query = check.string(table["query"], *at, "query")
        if not sql:
            check.fail("a query needs a database URL as source", *at, "query")
    elif sql:
        check.fail(
            f'missing "query": say what to read from {redact_url(sql[0])}, '
            'e.g. query = "SELECT email, name FROM customers"',
            *at,
        )

    kind = cast(
        Kind | None,
        check.choice(table["kind"], ("contacts", "events"), *at, "kind")
        if "kind" in table
        else None,
    )
    mode = cast(Mode, check.choice(table.get("mode", "upsert"), ("upsert", "mirror"), *at, "mode"))
    connector = check.string(table["connector"], *at, "connector") if "connector" in table else None
    mapping: dict[str, str] = {}
    if "map" in table:
        raw_map = check.table(table["map"], '{ email = "Email Address" }', *at, "map")
        for field_name, column in raw_map.items():
            mapping[field_name] = check.string(column, *at, "map", field_name)
    types: dict[str, PropertyType] = {}
    if "types" in table:
        raw_types = check.table(table["types"], '{ zip = "string" }', *at, "types")
        for key, value in raw_types.items():
            types[key] = cast(PropertyType, check.choice(value, PROPERTY_TYPES, *at, "types", key))

    cursor = check.string(table["cursor"], *at, "cursor") if "cursor" in table else None
    lag: dt.timedelta | int | float | None = None
    if "lag" in table:
        raw_lag = table["lag"]
        if cursor is None:
            check.fail("lag only applies with a cursor column", *at, "lag")
        if isinstance(raw_lag, bool) or not isinstance(raw_lag, str | int | float):
            check.fail(
                f'must be a duration like "2h" (or a number for a numeric cursor), '
                f"not {_type_name(raw_lag)}",
                *at,
                "lag",
            )
        if isinstance(raw_lag, str):
            try:
                lag = parse_duration(raw_lag)
            except ValueError as exc:
                check.fail(str(exc), *at, "lag")
        elif raw_lag < 0:
            check.fail("must not be negative", *at, "lag")
        else:
            lag = raw_lag
    full_every: dt.timedelta | None = None
    if "full_every" in table:
        try:
            full_every = parse_duration(check.string(table["full_every"], *at, "full_every"))
        except ValueError as exc:
            check.fail(str(exc), *at, "full_every")
        if not full_every:
            check.fail("must be longer than 0", *at, "full_every")

    if kind == "events":
        if mode == "mirror":
            check.fail("mirror applies to contacts jobs only", *at, "mode")
        if full_every is not None:
            check.fail(
                "full_every applies to contacts jobs (events are de-duplicated by the ledger)",
                *at,
                "full_every",
            )
    if kind == "contacts" and cursor is not None:
        check.fail(
            "cursor applies to events jobs; contacts jobs skip unchanged contacts through "
            "the change cache, and full_every re-checks everything",
            *at,
            "cursor",
        )
    if kind is None and (cursor is not None or mode == "mirror" or full_every is not None):
        key = "cursor" if cursor is not None else ("mode" if mode == "mirror" else "full_every")
        check.fail(f'set kind = "events" or "contacts" when using {key}', *at, key)

    timezone = check.string(table["timezone"], *at, "timezone") if "timezone" in table else None
    encoding = check.string(table.get("encoding", "utf-8"), *at, "encoding")
    chunk_size = table.get("chunk_size", 100_000)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        check.fail(f"must be an integer, not {_type_name(chunk_size)}", *at, "chunk_size")
    if chunk_size < 1:
        check.fail("must be at least 1", *at, "chunk_size")
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        check.fail(f"must be true or false, not {_type_name(enabled)}", *at, "enabled")
    switches: dict[str, bool] = {}
    for key in _SWITCHES:
        value = table.get(key, False)
        if not isinstance(value, bool):
            check.fail(f"must be true or false, not {_type_name(value)}", *at, key)
        switches[key] = value
    rate = table.get("rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)):
        check.fail(f"must be a number of requests per second, not {_type_name(rate)}", *at, "rate")
    if rate is not None and rate <= 0:
        check.fail("must be more than 0 (leave it out for no ceiling)", *at, "rate")
    limits: dict[str, int] = {}
    for key, default, low, high in (("concurrency", 16, 1, 256), ("max_retries", 5, 0, 100)):
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            check.fail(f"must be an integer, not {_type_name(value)}", *at, key)
        if not low <= value <= high:
            check.fail(f"must be between {low} and {high}", *at, key)
        limits[key] = value
    ratio = table.get("max_delete_ratio", 0.05)
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio <= 1:
        check.fail("must be a share between 0 and 1 (0.05 = 5 %)", *at, "max_delete_ratio")
    if "max_delete_ratio" in table and mode != "mirror":
        check.fail('only applies with mode = "mirror"', *at, "max_delete_ratio")
    return JobConfig(
        name=name,
        source=source,
        kind=kind,
        query=query,
        connector=connector,
        mapping=mapping,
        types=types,
        mode=mode,
        cursor=cursor,
        lag=lag,
        full_every=full_every,
        timezone=timezone,
        encoding=encoding,
        chunk_size=chunk_size,
        enabled=enabled,
        allow_triggers=switches["allow_triggers"],
        allow_smtputf8=switches["allow_smtputf8"],
        allow_special_use_domains=switches["allow_special_use_domains"],
        allow_secret_keys=switches["allow_secret_keys"],
        allow_card_numbers=switches["allow_card_numbers"],
        rate=float(rate) if rate is not None else None,
        concurrency=limits["concurrency"],
        max_retries=limits["max_retries"],
        max_delete_ratio=float(ratio),
        line=check.index.line(*at),
        base_dir=base_dir,
    )


def parse_sync_config(text: str, path: Path = Path("kraiter-sync.toml")) -> SyncConfig:
    """Validate the text of a kraiter-sync.toml (``path`` names it in errors and anchors
    relative paths)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path} is not valid TOML: {exc}"
        raise ConfigError(msg) from None
    check = _Checker(path, text)
    base_dir = path.parent
    check.unknown(data, _TOP_KEYS)

    target: dict[str, Any] = {}
    if "target" in data:
        raw_target = data["target"]
        if not isinstance(raw_target, dict):
            check.fail(f"must be a table, not {_type_name(raw_target)}", "target")
        if "api_key" in raw_target:
            check.fail(
                "keys do not belong in files that get committed; set KRAITER_API_KEY, or "
                'point at a file readable only by the job: api_key_file = "PATH"',
                "target",
                "api_key",
            )
        check.unknown(raw_target, _TARGET_KEYS, "target")
        for key, value in raw_target.items():
            text_value = check.string(value, "target", key)
            if key in ("api_key_file", "state_dir"):
                as_path = Path(text_value).expanduser()
                text_value = str(as_path if as_path.is_absolute() else base_dir / as_path)
            target[key] = text_value

    raw_jobs = data.get("jobs", {})
    if not isinstance(raw_jobs, dict):
        check.fail(f"must be tables like [jobs.NAME], not {_type_name(raw_jobs)}", "jobs")
    if not raw_jobs:
        check.fail(
            "no jobs: add at least one [jobs.NAME] table with a source, e.g.\n"
            '  [jobs.contacts]\n  source = "exports/contacts.csv"\n  kind = "contacts"'
        )
    storage = StorageOptions()
    if "storage" in data:
        try:
            storage = StorageOptions.from_table(data["storage"])
        except ConfigError as exc:
            check.fail(str(exc).removeprefix("[storage]").lstrip(".: "), "storage")
    jobs = tuple(
        dataclasses.replace(_job(check, name, table, base_dir), storage=storage)
        for name, table in raw_jobs.items()
    )
    return SyncConfig(path=path, jobs=jobs, target=target)


def load_sync_config(path: Path | str) -> SyncConfig:
    """Read and validate a kraiter-sync.toml; every problem is a ConfigError (exit 2)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = (
            f"config file {path} does not exist; create it (see `kraiter-sync sync --help`) "
            "or pass --config PATH"
        )
        raise ConfigError(msg) from None
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"cannot read config file {path}: {getattr(exc, 'strerror', None) or exc}"
        raise ConfigError(msg) from None
    return parse_sync_config(text, path)
