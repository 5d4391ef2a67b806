"""``kraiter-sync.toml``: the one model of the file every command reads, declared with
pydantic; every error names the file, the line, the job and the key.

::

    [target]                       # optional: flags and environment win over it
    base_url = "https://api.kraiter.com"
    api_key_file = "/etc/kraiter-sync/key"     # never `api_key = …` in a file
    state_dir = "/var/lib/kraiter-sync"
    state = "postgresql://kraiter@db.internal/kraiter"   # optional: shared state store

    [storage.s3]                   # optional: object-store endpoints and profiles
    region = "eu-west-1"

    [jobs.crm_contacts]            # jobs run in file order (``sync``)
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
directory, for every command: cron and systemd start jobs in a directory of their own
choosing, and ``runs --config F`` must find the state ``sync --config F`` wrote.

The shape of each table is a pydantic model (:class:`TargetTable`, :class:`JobTable`);
pydantic's errors are put into words by :func:`_describe`. TOML parsers do not report
where a *value* sits, so ``config.key_lines.LineIndex`` scans the text lightly (table
headers and ``key =`` lines, skipping multi-line strings) to name the line of every key.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from kraiter_sync.config import Settings, resolve_settings, state_url_problem
from kraiter_sync.config.key_lines import LineIndex
from kraiter_sync.config.storage import StorageOptions
from kraiter_sync.errors import ConfigError
from kraiter_sync.frames import Kind
from kraiter_sync.proptypes import PropertyType
from kraiter_sync.urls import is_object_url, is_sql_url, redact, redact_url

__all__ = [
    "JOB_KEYS",
    "ConfigFile",
    "JobConfig",
    "SyncConfig",
    "load_config",
    "load_sync_config",
    "parse_config",
    "parse_duration",
    "parse_sync_config",
]

Mode = Literal["upsert", "mirror"]

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
# the model
# --------------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _source(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    elif not isinstance(value, list):
        msg = f"must be a string or an array of strings, not {_type_name(value)}"
        raise ValueError(msg)  # noqa: TRY004 (pydantic reports ValueError, not TypeError)
    if not value:
        msg = "must name at least one file, glob or URL"
        raise ValueError(msg)
    for item in value:
        if not isinstance(item, str):
            msg = f"must be a string, not {_type_name(item)}"
            raise ValueError(msg)  # noqa: TRY004
        if not item.strip():
            msg = "must not be empty"
            raise ValueError(msg)
    sql = [s for s in value if is_sql_url(s)]
    if sql and len(value) > 1:
        msg = "a database URL must be the job's only source"
        raise ValueError(msg)
    foreign = [s for s in value if "://" in s and not is_object_url(s)]
    if not sql and foreign:
        scheme = foreign[0].split("://", 1)[0]
        msg = (
            f"{scheme}:// is not a supported source; use files, s3://, gs://, az://, "
            "abfss://, https://, duckdb:///, sqlite:/// or postgresql://"
        )
        raise ValueError(msg)
    return tuple(value)


def _duration(value: Any) -> dt.timedelta:
    if not isinstance(value, str):
        msg = f"must be a string, not {_type_name(value)}"
        raise ValueError(msg)  # noqa: TRY004
    span = parse_duration(value)
    if not span:
        msg = "must be longer than 0"
        raise ValueError(msg)
    return span


def _lag(value: Any) -> dt.timedelta | int | float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        msg = (
            'must be a duration like "2h" (or a number for a numeric cursor), '
            f"not {_type_name(value)}"
        )
        raise ValueError(msg)  # noqa: TRY004
    if isinstance(value, str):
        return parse_duration(value)
    if value < 0:
        msg = "must not be negative"
        raise ValueError(msg)
    return value


Text = Annotated[str, Field(min_length=1)]
Source = Annotated[tuple[str, ...], BeforeValidator(_source)]
Duration = Annotated[dt.timedelta, BeforeValidator(_duration)]
Lag = Annotated[dt.timedelta | int | float, BeforeValidator(_lag)]
Storage = Annotated[StorageOptions, BeforeValidator(StorageOptions.from_table)]


class _Table(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, arbitrary_types_allowed=True
    )


class TargetTable(_Table):
    """``[target]``: where to send and where state lives (flags and environment win)."""

    base_url: Text | None = None
    api_key_file: Text | None = None
    state_dir: Text | None = None
    #: A shared state store's URL (``postgresql://user@host/db``), never with a password.
    state: Text | None = None
    tenant: Text | None = None


class JobTable(_Table):
    """One ``[jobs.NAME]`` table as written."""

    source: Source
    query: Text | None = None
    kind: Kind | None = None
    connector: Text | None = None
    mapping: dict[str, Text] = Field(default_factory=dict, alias="map")
    #: Declared property types (``types = {zip = "string"}``): win over the connector's.
    types: dict[str, PropertyType] = Field(default_factory=dict)
    mode: Mode = "upsert"
    cursor: Text | None = None
    #: How far behind the watermark to re-read: a duration, or a number for numeric cursors.
    lag: Lag | None = None
    full_every: Duration | None = None
    timezone: Text | None = None
    encoding: Text = "utf-8"
    chunk_size: int = Field(100_000, ge=1)
    enabled: bool = True
    #: Send events whose names trigger live sequences (a nightly feed usually should).
    allow_triggers: bool = False
    #: The validator's switches (``--allow-*`` of validate and import; the names of
    #: ``connectors.VALIDATION_SWITCHES`` and of ``ValidationOptions`` fields).
    allow_smtputf8: bool = False
    allow_special_use_domains: bool = False
    allow_secret_keys: bool = False
    allow_card_numbers: bool = False
    #: Ceiling in requests/s (None: as fast as Kraiter allows).
    rate: float | None = Field(None, gt=0)
    concurrency: int = Field(16, ge=1, le=256)
    max_retries: int = Field(5, ge=0, le=100)
    #: Mirror mode refuses to delete more than this share of Kraiter's contacts.
    max_delete_ratio: float = Field(0.05, ge=0, le=1)


#: Every key a job table takes, in the order of the model (docs/sync.md lists them all).
JOB_KEYS = tuple(f.alias or name for name, f in JobTable.model_fields.items())


class JobConfig(JobTable):
    """A validated job: its table, its name, where it was written and what it reads."""

    name: str = ""
    line: int | None = None
    base_dir: Path = Path()
    #: Object-store endpoints and profiles (the file's ``[storage]`` table).
    storage: StorageOptions = Field(default_factory=StorageOptions)

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


class ConfigFile(_Table):
    """A validated kraiter-sync.toml (every command's; ``sync`` needs its jobs)."""

    path: Path
    #: ``[target]`` with its paths made relative to the file (``resolve_settings`` input).
    target: Mapping[str, Any] = Field(default_factory=dict)
    storage: StorageOptions = Field(default_factory=StorageOptions)
    jobs: tuple[JobConfig, ...] = ()

    def as_settings_config(self) -> dict[str, Any]:
        """The mapping ``config.resolve_settings(config=…)`` takes."""
        return {"target": dict(self.target)}

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
            config=self.as_settings_config(),
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


#: ``sync`` reads the same model; the name says what it is used for there.
SyncConfig = ConfigFile


# --------------------------------------------------------------------------------------
# errors in words
# --------------------------------------------------------------------------------------

#: Per key, the words for a value out of range (pydantic's own say "greater than 0").
_RANGES = {
    "chunk_size": "must be at least 1",
    "rate": "must be more than 0 (leave it out for no ceiling)",
    "concurrency": "must be between 1 and 256",
    "max_retries": "must be between 0 and 100",
    "max_delete_ratio": "must be a share between 0 and 1 (0.05 = 5 %)",
}
_TYPES = {
    "rate": "must be a number of requests per second",
    "max_delete_ratio": "must be a share between 0 and 1 (0.05 = 5 %)",
}
_TOP_KEYS = ("target", "storage", "jobs")
_TARGET_KEYS = tuple(TargetTable.model_fields)


def _describe(error: Mapping[str, Any], allowed: Sequence[str]) -> str:
    """One pydantic error in the file's words."""
    kind = error["type"]
    value = error.get("input")
    key = str(error["loc"][0]) if error["loc"] else ""
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind == "extra_forbidden":
        close = [a for a in allowed if a.replace("_", "") == key.replace("_", "")]
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown key; {hint}allowed here: {', '.join(allowed)}"
    if kind.startswith(("greater_than", "less_than")):
        return _RANGES.get(key, f"must be {error['msg'].removeprefix('Input should be ')}")
    if kind == "literal_error" and isinstance(value, str):
        # pydantic writes "'a', 'b' or 'c'"; the messages have always read "'a' or 'b' or 'c'"
        options = str(error["ctx"]["expected"]).replace(", ", " or ")
        return f"must be {options}, not {value!r}"
    if kind in ("string_type", "literal_error"):
        return f"must be a string, not {_type_name(value)}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind in ("int_type", "int_from_float"):
        return f"must be an integer, not {_type_name(value)}"
    if kind == "bool_type":
        return f"must be true or false, not {_type_name(value)}"
    if kind in ("float_type", "float_parsing"):
        return _TYPES.get(key, f"must be a number, not {_type_name(value)}")
    if kind in ("dict_type", "model_type"):
        if key == "map":
            return f'must be a table like {{ email = "Email Address" }}, not {_type_name(value)}'
        if key == "types":
            return f'must be a table like {{ zip = "string" }}, not {_type_name(value)}'
        return f"must be a table, not {_type_name(value)}"
    return str(error["msg"])


class _Checker:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.index = LineIndex(text)

    def fail(self, message: str, *path: str) -> NoReturn:
        """Raise a ConfigError naming the file, the line and the key at ``path``."""
        line = self.index.line(*path) if path else None
        where = f"{self.path}:{line}" if line else str(self.path)
        key = ".".join(_fmt_key(p) for p in path)
        prefix = f"{where}: {key}: " if key else f"{where}: "
        raise ConfigError(prefix + message) from None

    def model(
        self, cls: type[_Table], table: Any, at: tuple[str, ...], allowed: Sequence[str]
    ) -> Any:
        """``table`` validated as ``cls``; the first problem as a ConfigError."""
        if not isinstance(table, dict):
            self.fail(f"must be a table, not {_type_name(table)}", *at)
        try:
            return cls.model_validate(table)
        except ValidationError as exc:
            error = exc.errors()[0]
            loc = tuple(str(part) for part in error["loc"])
            if error["type"] == "missing":
                self.fail(_missing(loc[0], at), *at)
            if loc and loc[0] in ("map", "types") and len(loc) > 1:
                loc = loc[:2]  # map.FIELD, types.PROPERTY
            elif loc:
                loc = loc[:1]
            self.fail(_describe(error, allowed), *at, *loc)


def _missing(key: str, at: tuple[str, ...]) -> str:
    if key == "source":
        return (
            'missing "source": give files/globs (source = "exports/*.csv") or a '
            'database URL with a query (source = "postgresql://…", query = "SELECT …")'
        )
    return f'missing "{key}"'


def _fmt_key(part: str) -> str:
    return part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else f'"{part}"'


def _job_rules(job: JobTable) -> tuple[str, str] | None:
    """What a job's keys say together; (key, problem) for the first rule broken."""
    sql = job.source if job.source and is_sql_url(job.source[0]) else ()
    if job.query is not None and not sql:
        return "query", "a query needs a database URL as source"
    if sql and job.query is None:
        return "", (
            f'missing "query": say what to read from {redact_url(sql[0])}, '
            'e.g. query = "SELECT email, name FROM customers"'
        )
    if job.lag is not None and job.cursor is None:
        return "lag", "lag only applies with a cursor column"
    if job.kind == "events":
        if job.mode == "mirror":
            return "mode", "mirror applies to contacts jobs only"
        if job.full_every is not None:
            return "full_every", (
                "full_every applies to contacts jobs (events are de-duplicated by the ledger)"
            )
    if job.kind == "contacts" and job.cursor is not None:
        return "cursor", (
            "cursor applies to events jobs; contacts jobs skip unchanged contacts through "
            "the change cache, and full_every re-checks everything"
        )
    if job.kind is None and (job.cursor is not None or job.mode == "mirror" or job.full_every):
        key = (
            "cursor"
            if job.cursor is not None
            else ("mode" if job.mode == "mirror" else "full_every")
        )
        return key, f'set kind = "events" or "contacts" when using {key}'
    if "max_delete_ratio" in job.model_fields_set and job.mode != "mirror":
        return "max_delete_ratio", 'only applies with mode = "mirror"'
    return None


def parse_config(
    text: str, path: Path = Path("kraiter-sync.toml"), *, need_jobs: bool = False
) -> ConfigFile:
    """Validate the text of a kraiter-sync.toml (``path`` names it in errors and anchors
    relative paths); ``need_jobs``: a file without jobs is an error (``sync``)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path} is not valid TOML: {exc}"
        raise ConfigError(msg) from None
    check = _Checker(path, text)
    base_dir = path.parent
    for key in data:
        if key not in _TOP_KEYS:
            check.fail(_describe({"type": "extra_forbidden", "loc": (key,)}, _TOP_KEYS), key)
    target: dict[str, Any] = {}
    if "target" in data:
        raw = data["target"]
        if isinstance(raw, dict) and "api_key" in raw:
            check.fail(
                "keys do not belong in files that get committed; set KRAITER_API_KEY, or "
                'point at a file readable only by the job: api_key_file = "PATH"',
                "target",
                "api_key",
            )
        table = check.model(TargetTable, raw, ("target",), _TARGET_KEYS)
        problem = state_url_problem(table.state, in_file=True) if table.state else None
        if problem is not None:
            check.fail(problem, "target", "state")
        for key, value in table.model_dump(exclude_none=True).items():
            if key in ("api_key_file", "state_dir"):
                as_path = Path(value).expanduser()
                value = str(as_path if as_path.is_absolute() else base_dir / as_path)
            target[key] = value
    storage = StorageOptions()
    if "storage" in data:
        try:
            storage = StorageOptions.from_table(data["storage"])
        except ConfigError as exc:
            line = check.index.line("storage")
            where = f"{path}:{line}" if line else str(path)
            msg = f"{where}: {exc}"
            raise ConfigError(msg) from None
    raw_jobs = data.get("jobs", {})
    if not isinstance(raw_jobs, dict):
        check.fail(f"must be tables like [jobs.NAME], not {_type_name(raw_jobs)}", "jobs")
    if need_jobs and not raw_jobs:
        check.fail(
            "no jobs: add at least one [jobs.NAME] table with a source, e.g.\n"
            '  [jobs.contacts]\n  source = "exports/contacts.csv"\n  kind = "contacts"'
        )
    jobs = []
    for name, raw in raw_jobs.items():
        at = ("jobs", name)
        if not _JOB_NAME.match(name):
            check.fail("job names may use letters, digits, _ and - only", *at)
        if not isinstance(raw, dict):
            check.fail(f"must be a table ([jobs.{name}]), not {_type_name(raw)}", *at)
        table = check.model(JobTable, raw, at, JOB_KEYS)
        broken = _job_rules(table)
        if broken is not None:
            key, problem = broken
            check.fail(problem, *at, *((key,) if key else ()))
        jobs.append(
            JobConfig.model_construct(
                **dict(table),
                _fields_set=table.model_fields_set,
                name=name,
                line=check.index.line(*at),
                base_dir=base_dir,
                storage=storage,
            )
        )
    return ConfigFile(path=path, target=target, storage=storage, jobs=tuple(jobs))


def parse_sync_config(text: str, path: Path = Path("kraiter-sync.toml")) -> ConfigFile:
    """:func:`parse_config` for ``sync``: the file must name at least one job."""
    return parse_config(text, path, need_jobs=True)


def load_config(path: Path | str, *, need_jobs: bool = False) -> ConfigFile:
    """Read and validate a kraiter-sync.toml; every problem is a ConfigError (exit 2)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = f"config file {path} does not exist; create it or drop --config"
        if need_jobs:
            msg = (
                f"config file {path} does not exist; create it (see `kraiter-sync sync "
                "--help`) or pass --config PATH"
            )
        raise ConfigError(msg) from None
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"cannot read config file {path}: {getattr(exc, 'strerror', None) or exc}"
        raise ConfigError(msg) from None
    return parse_config(text, path, need_jobs=need_jobs)


def load_sync_config(path: Path | str) -> ConfigFile:
    """:func:`load_config` for ``sync``: the file must name at least one job."""
    return load_config(path, need_jobs=True)
