"""The connector model: a declarative mapping from source columns to Kraiter fields,
loaded from a preset, a TOML file or built by detection."""

from __future__ import annotations

import importlib.resources
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from kraiter_sync.errors import InputError
from kraiter_sync.frames import SOURCE_FILE, SOURCE_ROW, Kind
from kraiter_sync.proptypes import PropertyType, check_types

TimeUnit = Literal["s", "ms", "us", "ns", "auto"]


EVENT_FIELDS: tuple[str, ...] = ("email", "contact_id", "user_id", "name", "timestamp")
CONTACT_FIELDS: tuple[str, ...] = ("email", "user_id")
_UNITS = ("s", "ms", "us", "ns", "auto")
#: Keys of a connector's ``[validation]`` table: validator switches (``ValidationOptions``
#: fields of the same name) that a connector can turn on for its inputs.
VALIDATION_SWITCHES: tuple[str, ...] = (
    "allow_smtputf8",
    "allow_special_use_domains",
    "allow_secret_keys",
    "allow_card_numbers",
)


@dataclass(frozen=True)
class KeyValue:
    """A list-of-{key, value} column turned into a struct (GA4 ``event_params``).

    ``value`` names the value field; when it is a struct of typed slots
    (``string_value``, ``int_value``, ``double_value``, ``float_value``) the slot used
    by each key is picked from the data.
    """

    column: str
    key: str = "key"
    value: str = "value"


@dataclass(frozen=True)
class Connector:
    """How one kind of export maps onto Kraiter's fields.

    ``fields`` maps a Kraiter field to candidate references, first present wins (a
    column name, or ``column.field`` for a field inside a struct or JSON column).
    ``properties`` is ``"rest"`` (every column not used for a field, minus ``exclude``)
    or an explicit list of columns. ``spread`` lists struct / JSON columns whose
    fields become top-level properties instead of one nested property. ``types``
    declares property types (``{zip = "string"}``), which win over the typing of text
    values (``validate.text_types``).
    """

    name: str
    kind: Kind
    description: str = ""
    fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    timestamp_format: str | None = None
    timestamp_unit: TimeUnit = "auto"
    timezone: str | None = None
    properties: Literal["rest"] | tuple[str, ...] = "rest"
    exclude: tuple[str, ...] = ()
    spread: tuple[str, ...] = ()
    json_columns: tuple[str, ...] = ()
    key_values: tuple[KeyValue, ...] = ()
    renames: Mapping[str, str] = field(default_factory=dict)
    types: Mapping[str, PropertyType] = field(default_factory=dict)
    #: Validator switches turned on for this connector's inputs (``[validation]``).
    validation: Mapping[str, bool] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    sample: str | None = None
    expected_rows: int | None = None
    expected_rejects: int | None = None
    path: Path | None = None

    @property
    def field_names(self) -> tuple[str, ...]:
        return EVENT_FIELDS if self.kind == "events" else CONTACT_FIELDS

    def to_json(self) -> dict[str, Any]:
        """The mapping as data (``connectors --show NAME --json``)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "path": str(self.path) if self.path is not None else None,
            "fields": {name: list(self.fields.get(name, ())) for name in self.field_names},
            "timestamp": {
                "unit": self.timestamp_unit,
                "format": self.timestamp_format,
                "timezone": self.timezone,
            },
            "properties": {
                "columns": self.properties if self.properties == "rest" else list(self.properties),
                "exclude": list(self.exclude),
                "spread": list(self.spread),
                "json": list(self.json_columns),
                "types": dict(self.types),
            },
            "renames": dict(self.renames),
            "validation": dict(self.validation),
        }


def _as_refs(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    msg = f"{where}: expected a column name or a list of column names, got {value!r}"
    raise InputError(msg)


def _str_tuple(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    return _as_refs(value, where) if value != [] else ()


def _validation_table(table: Any, where: str) -> dict[str, bool]:
    """The ``[validation]`` table: known switches, each true or false."""
    if not isinstance(table, Mapping):
        msg = (
            f"{where}: [validation] must be a table of switches ({', '.join(VALIDATION_SWITCHES)})"
        )
        raise InputError(msg)
    unknown = sorted(set(table) - set(VALIDATION_SWITCHES))
    if unknown:
        msg = (
            f"{where}: unknown [validation] key(s) {unknown}; known: "
            f"{', '.join(VALIDATION_SWITCHES)}"
        )
        raise InputError(msg)
    for key, value in table.items():
        if not isinstance(value, bool):
            msg = f"{where}: [validation].{key} must be true or false, not {value!r}"
            raise InputError(msg)
    return dict(table)


def connector_from_dict(
    data: Mapping[str, Any], *, name: str, path: Path | None = None
) -> Connector:
    """Build a Connector from parsed TOML, with errors that name the offending key."""
    where = str(path) if path else name
    kind = data.get("kind")
    if kind not in ("events", "contacts"):
        msg = f'{where}: `kind` must be "events" or "contacts", not {kind!r}'
        raise InputError(msg)
    allowed = EVENT_FIELDS if kind == "events" else CONTACT_FIELDS
    raw_fields = data.get("fields", {})
    unknown = sorted(set(raw_fields) - set(allowed))
    if unknown:
        msg = f"{where}: unknown field(s) {unknown} for {kind}; known: {', '.join(allowed)}"
        raise InputError(msg)
    fields = {k: _as_refs(v, f"{where} [fields].{k}") for k, v in raw_fields.items()}
    ts = data.get("timestamp", {})
    unit = ts.get("unit", "auto")
    if unit not in _UNITS:
        msg = f"{where}: [timestamp].unit must be one of {', '.join(_UNITS)}, not {unit!r}"
        raise InputError(msg)
    props = data.get("properties", {})
    columns = props.get("columns", "rest")
    properties: Literal["rest"] | tuple[str, ...] = (
        "rest" if columns == "rest" else _str_tuple(columns, f"{where} [properties].columns")
    )
    key_values = tuple(
        KeyValue(kv["column"], kv.get("key", "key"), kv.get("value", "value"))
        for kv in props.get("key_value", [])
    )
    required_default = ("name", "timestamp") if kind == "events" else ("email",)
    return Connector(
        validation=_validation_table(data.get("validation", {}), where),
        name=str(data.get("name", name)),
        kind=cast(Kind, kind),
        description=str(data.get("description", "")),
        fields=fields,
        timestamp_format=ts.get("format"),
        timestamp_unit=cast(TimeUnit, unit),
        timezone=ts.get("timezone"),
        properties=properties,
        exclude=_str_tuple(props.get("exclude"), f"{where} [properties].exclude"),
        spread=_str_tuple(props.get("spread"), f"{where} [properties].spread"),
        json_columns=_str_tuple(props.get("json"), f"{where} [properties].json"),
        key_values=key_values,
        renames={str(k): str(v) for k, v in data.get("renames", {}).items()},
        types=check_types(props.get("types", {}), f"{where} [properties].types"),
        required=_str_tuple(data.get("required"), f"{where} required") or required_default,
        sample=data.get("sample"),
        expected_rows=data.get("expected_rows"),
        expected_rejects=data.get("expected_rejects"),
        path=path,
    )


def _load_file(path: Path, display: str | None = None) -> Connector:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        msg = f"{display or path}: cannot read connector file ({exc.strerror})"
        raise InputError(msg) from exc
    except tomllib.TOMLDecodeError as exc:
        msg = f"{display or path}: not valid TOML ({exc})"
        raise InputError(msg) from exc
    return connector_from_dict(data, name=path.stem, path=path)


def preset_dirs(package: str = "kraiter_sync") -> list[Path]:
    """Where presets live: the installed ``<package>/presets`` first, then a checkout's
    ``connectors/`` next to the package (source trees and editable installs)."""
    dirs: list[Path] = []
    try:
        installed = importlib.resources.files(package) / "presets"
        if installed.is_dir():
            dirs.append(Path(str(installed)))
    except ModuleNotFoundError:
        pass
    try:
        root = importlib.resources.files(package)
        checkout = Path(str(root)).parent / "connectors"
        if checkout.is_dir() and checkout not in dirs:
            dirs.append(checkout)
    except ModuleNotFoundError:
        pass
    return dirs


def list_presets(*, package: str = "kraiter_sync") -> list[Connector]:
    """Every preset, sorted by name (an installed preset shadows a checkout's)."""
    found: dict[str, Connector] = {}
    for directory in preset_dirs(package):
        for path in sorted(directory.glob("*.toml")):
            connector = _load_file(path)
            found.setdefault(connector.name, connector)
    return [found[name] for name in sorted(found)]


def load_connector(name_or_path: str | Path, *, package: str = "kraiter_sync") -> Connector:
    """A preset by name, or a connector TOML file by path."""
    text = str(name_or_path)
    path = Path(text)
    if text.endswith(".toml") or path.is_file():
        if not path.is_file():
            msg = f"{text}: no such connector file"
            raise InputError(msg)
        return _load_file(path, text)
    presets = list_presets(package=package)
    for preset in presets:
        if preset.name == text or norm_name(preset.name) == norm_name(text):
            return preset
    names = ", ".join(p.name for p in presets) or "(none found)"
    msg = f"unknown connector {text!r}; presets: {names} (or pass a path to a .toml file)"
    raise InputError(msg)


def norm_name(column: str) -> str:
    return re.sub(r"[^0-9a-z]", "", column.casefold())


def top_column(ref: str, columns: Sequence[str]) -> str | None:
    """The top-level column a reference starts with (``props.a.b`` → ``props``)."""
    if ref in columns:
        return ref
    parts = ref.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:cut])
        if head in columns:
            return head
    return None


def list_columns(columns: Iterable[str]) -> str:
    shown = [c for c in columns if c not in (SOURCE_FILE, SOURCE_ROW)]
    text = ", ".join(repr(c) for c in shown[:40])
    return text + (f", … ({len(shown)} in all)" if len(shown) > 40 else "")
