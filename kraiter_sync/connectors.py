"""Connectors: declarative mappings from source columns to Kraiter fields.

A :class:`Connector` says which source column (or struct field, ``col.field``) holds
each Kraiter field, how to read the timestamp, which columns become properties, and how
to rename event names. It comes from one of three places:

* a preset shipped with the package (``connectors/*.toml`` in a checkout, installed as
  ``kraiter_sync/presets``), loaded by name: ``load_connector("mixpanel")``;
* a TOML file of the same shape: ``load_connector("my-export.toml")``;
* auto-detection from common column names: :func:`detect_connector`, which also
  reports what it chose and why, so a wrong guess is visible and fixable with
  ``--map FIELD=COLUMN``.

:func:`apply` turns a source frame into the *mapped frame* of docs/internals.md,
vectorised and lazily when given a LazyFrame. It never drops or reorders rows: every
row read reaches the validator, which decides what is rejected.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import polars as pl

from kraiter_sync.errors import InputError
from kraiter_sync.proptypes import PropertyType, check_types

__all__ = [
    "CONTACT_FIELDS",
    "EVENT_FIELDS",
    "VALIDATION_SWITCHES",
    "Connector",
    "Detection",
    "KeyValue",
    "apply",
    "detect_connector",
    "direct_property_columns",
    "list_presets",
    "load_connector",
    "mapped_schema",
    "parse_overrides",
    "preset_dirs",
    "resolve_connector",
    "with_overrides",
]

Kind = Literal["events", "contacts"]
TimeUnit = Literal["s", "ms", "us", "ns", "auto"]
FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)

EVENT_FIELDS: tuple[str, ...] = ("email", "contact_id", "user_id", "name", "timestamp")
CONTACT_FIELDS: tuple[str, ...] = ("email", "user_id")
SOURCE_FILE = "source_file"
SOURCE_ROW = "source_row"
_UNITS = ("s", "ms", "us", "ns", "auto")
#: Keys of a connector's ``[validation]`` table: validator switches (``ValidationOptions``
#: fields of the same name) that a connector can turn on for its inputs.
VALIDATION_SWITCHES: tuple[str, ...] = (
    "allow_smtputf8",
    "allow_special_use_domains",
    "allow_secret_keys",
    "allow_card_numbers",
)

# Auto-detection candidates, best first, compared after _norm() (case, spaces and
# punctuation removed) so "Email Address", "email_address" and "E-Mail" all match.
_CANDIDATES: dict[str, tuple[str, ...]] = {
    "email": (
        "email",
        "emailaddress",
        "email1",
        "useremail",
        "contactemail",
        "primaryemail",
        "customeremail",
        "personemail",
        "mail",
        "emailid",
    ),
    "contact_id": ("contactid", "kraitercontactid", "kraiterid"),
    "user_id": ("userid", "externalid", "customerid", "uid", "memberid"),
    "name": ("event", "eventname", "eventtype", "action", "name"),
    "timestamp": (
        "timestamp",
        "time",
        "ts",
        "occurredat",
        "eventtime",
        "eventtimestamp",
        "eventdate",
        "datetime",
        "createdat",
        "sentat",
        "receivedat",
        "date",
    ),
}
# Columns that on their own say "these are events" (a bare "name" does not: contacts
# have names, and "created_at" is a signup date as often as an event time).
_STRONG_NAME = frozenset({"event", "eventname", "eventtype", "action"})
_PROPERTY_COLUMNS = frozenset(
    {"properties", "props", "traits", "attributes", "eventproperties", "customattributes"}
)
# Columns *about* the email rather than holding it ("Email Marketing Consent").
_NOT_AN_ADDRESS = ("consent", "optin", "opt", "status", "verified", "bounce", "subscri", "count")
_STRONG_TIME = frozenset({"timestamp", "time", "ts", "occurredat", "eventtime", "eventtimestamp"})


def _norm(column: str) -> str:
    return re.sub(r"[^0-9a-z]", "", column.casefold())


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

    def describe(self) -> str:
        """A readable, TOML-like rendering of the mapping (for ``connectors --show``)."""
        lines = [f"name = {self.name!r}", f"kind = {self.kind!r}"]
        if self.description:
            lines.append(f"description = {self.description!r}")
        if self.path is not None:
            lines.append(f"# from {self.path}")
        lines.append("[fields]")
        for name in self.field_names:
            refs = self.fields.get(name, ())
            shown = " | ".join(refs) if refs else "(not mapped)"
            lines.append(f"{name} = {shown}")
        if self.kind == "events":
            lines.append("[timestamp]")
            lines.append(f"unit = {self.timestamp_unit!r}")
            if self.timestamp_format:
                lines.append(f"format = {self.timestamp_format!r}")
            lines.append(f"timezone = {self.timezone or '(from --timezone, default UTC)'!r}")
        lines.append("[properties]")
        cols = "all remaining columns" if self.properties == "rest" else list(self.properties)
        lines.append(f"columns = {cols!r}")
        for label, values in (
            ("exclude", self.exclude),
            ("spread", self.spread),
            ("json", self.json_columns),
        ):
            if values:
                lines.append(f"{label} = {list(values)!r}")
        for kv in self.key_values:
            lines.append(f"key_value = {kv.column}[{kv.key} -> {kv.value}]")
        if self.types:
            shown = ", ".join(f"{k!r} = {v!r}" for k, v in self.types.items())
            lines.append(f"types = {{{shown}}}")
        if self.renames:
            lines.append("[renames]")
            lines.extend(f"{old!r} = {new!r}" for old, new in self.renames.items())
        if self.validation:
            lines.append("[validation]")
            lines.extend(f"{k} = {str(v).lower()}" for k, v in self.validation.items())
        if self.expected_rejects is not None and self.sample:
            lines.append(
                f"# sample: sample_data/{self.sample} ({self.expected_rows} rows, "
                f"{self.expected_rejects} expected rejects)"
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------


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
        if preset.name == text or _norm(preset.name) == _norm(text):
            return preset
    names = ", ".join(p.name for p in presets) or "(none found)"
    msg = f"unknown connector {text!r}; presets: {names} (or pass a path to a .toml file)"
    raise InputError(msg)


# --------------------------------------------------------------------------------------
# auto-detection and overrides
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Detection:
    """What auto-detection (plus ``--map`` overrides) chose, for the report."""

    connector: Connector
    kind: Kind
    kind_reason: str
    chosen: Mapping[str, str]
    how: Mapping[str, str]
    ambiguous: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"kind: {self.kind} ({self.kind_reason})"]
        for name in self.connector.field_names:
            column = self.chosen.get(name)
            if column is None:
                out.append(f"{name}: not found")
                continue
            note = self.how.get(name, "detected")
            others = self.ambiguous.get(name)
            extra = f"; also matched {', '.join(map(repr, others))}" if others else ""
            out.append(f"{name}: {column!r} ({note}{extra})")
        return out


def parse_overrides(pairs: Iterable[str]) -> dict[str, str]:
    """``["email=Work Email", ...]`` (from ``--map``) → ``{"email": "Work Email"}``."""
    out: dict[str, str] = {}
    known = set(EVENT_FIELDS)
    for pair in pairs:
        fld, sep, column = pair.partition("=")
        fld = fld.strip()
        if not sep or not fld or not column:
            msg = f"--map {pair!r}: expected FIELD=COLUMN, e.g. --map email='Email Address'"
            raise InputError(msg)
        if fld not in known:
            msg = f"--map {pair!r}: unknown field {fld!r}; fields: {', '.join(EVENT_FIELDS)}"
            raise InputError(msg)
        out[fld] = column
    return out


def _top_column(ref: str, columns: Sequence[str]) -> str | None:
    """The top-level column a reference starts with (``props.a.b`` → ``props``)."""
    if ref in columns:
        return ref
    parts = ref.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:cut])
        if head in columns:
            return head
    return None


def _check_override_columns(overrides: Mapping[str, str], columns: Sequence[str]) -> None:
    for fld, ref in overrides.items():
        if _top_column(ref, columns) is None:
            msg = (
                f"--map {fld}={ref}: no column {ref!r}; available columns: {_list_columns(columns)}"
            )
            raise InputError(msg)


def detect_connector(
    columns: Sequence[str],
    *,
    kind: Kind | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Detection:
    """Pick columns for each field from common names; ``overrides`` win over guesses."""
    overrides = dict(overrides or {})
    _check_override_columns(overrides, columns)
    columns = [c for c in columns if c not in (SOURCE_FILE, SOURCE_ROW)]
    by_norm: dict[str, list[str]] = {}
    for column in columns:
        by_norm.setdefault(_norm(column), []).append(column)

    def matches(fld: str) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for candidate in _CANDIDATES[fld]:
            found.extend((candidate, col) for col in by_norm.get(candidate, []))
        if fld == "email":
            # last resort: any column with "email" in its name ("Work Email", "billingEmail")
            taken = {col for _, col in found}
            found.extend(
                (norm, col)
                for norm, cols in by_norm.items()
                if "email" in norm and not any(flag in norm for flag in _NOT_AN_ADDRESS)
                for col in cols
                if col not in taken
            )
        return found

    guesses = {fld: matches(fld) for fld in _CANDIDATES}
    if kind is None:
        name_norms = {n for n, _ in guesses["name"]}
        time_norms = {n for n, _ in guesses["timestamp"]}
        if {"name", "timestamp"} & set(overrides):
            kind, reason = "events", "--map gives a name or timestamp column"
        elif name_norms & _STRONG_NAME and time_norms:
            kind, reason = "events", "found an event-name and a timestamp column"
        elif name_norms and time_norms & _STRONG_TIME:
            kind, reason = "events", "found a name and a timestamp column"
        else:
            kind, reason = "contacts", "no event-name + timestamp column pair"
    else:
        reason = "given with --kind"
    allowed = EVENT_FIELDS if kind == "events" else CONTACT_FIELDS
    stray = sorted(set(overrides) - set(allowed))
    if stray:
        msg = f"--map {stray[0]}=…: {kind} have no field {stray[0]!r}; fields: {', '.join(allowed)}"
        raise InputError(msg)

    chosen: dict[str, str] = {}
    how: dict[str, str] = {}
    ambiguous: dict[str, tuple[str, ...]] = {}
    used: set[str] = set(overrides.values())
    for fld in allowed:
        if fld in overrides:
            chosen[fld] = overrides[fld]
            how[fld] = "from --map"
            continue
        options = [col for _, col in guesses[fld] if col not in used]
        if options:
            chosen[fld] = options[0]
            used.add(options[0])
            how[fld] = "detected"
            if len(options) > 1:
                ambiguous[fld] = tuple(options[1:])
    # A column that already holds the properties (struct or JSON text) is spread into
    # the top level rather than nested as {"properties": {...}}.
    nested = tuple(c for c in columns if _norm(c) in _PROPERTY_COLUMNS and c not in used)
    connector = Connector(
        name="auto",
        kind=kind,
        description="detected from column names",
        fields={fld: (col,) for fld, col in chosen.items()},
        spread=nested,
        json_columns=nested,
        required=("name", "timestamp") if kind == "events" else ("email",),
    )
    return Detection(connector, kind, reason, chosen, how, ambiguous)


def with_overrides(connector: Connector, overrides: Mapping[str, str]) -> Connector:
    """The connector with ``--map`` overrides replacing its field references."""
    if not overrides:
        return connector
    stray = sorted(set(overrides) - set(connector.field_names))
    if stray:
        msg = (
            f"--map {stray[0]}=…: {connector.kind} have no field {stray[0]!r}; "
            f"fields: {', '.join(connector.field_names)}"
        )
        raise InputError(msg)
    fields = dict(connector.fields)
    fields.update({fld: (col,) for fld, col in overrides.items()})
    return dataclasses.replace(
        connector, fields=fields, required=tuple({*connector.required, *overrides})
    )


def resolve_connector(
    columns: Sequence[str],
    *,
    connector: str | Path | None = None,
    kind: Kind | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Detection:
    """What the CLI does: a named/file connector plus ``--map``, else auto-detection."""
    if connector is None:
        return detect_connector(columns, kind=kind, overrides=overrides)
    loaded = load_connector(connector)
    if kind is not None and kind != loaded.kind:
        msg = f"connector {loaded.name!r} reads {loaded.kind}, but --kind {kind} was given"
        raise InputError(msg)
    overrides = dict(overrides or {})
    _check_override_columns(overrides, columns)
    final = with_overrides(loaded, overrides)
    chosen: dict[str, str] = {}
    how: dict[str, str] = {}
    for fld, refs in final.fields.items():
        present = [r for r in refs if _top_column(r, columns) is not None]
        if present:
            chosen[fld] = present[0]
            how[fld] = "from --map" if fld in overrides else f"connector {final.name}"
    return Detection(final, final.kind, f"connector {final.name}", chosen, how)


# --------------------------------------------------------------------------------------
# apply: source frame → mapped frame
# --------------------------------------------------------------------------------------


def mapped_schema(kind: Kind) -> list[str]:
    """Column names of the mapped frame, in order."""
    if kind == "events":
        return [*EVENT_FIELDS, "properties", SOURCE_FILE, SOURCE_ROW]
    return [*CONTACT_FIELDS, "properties", SOURCE_FILE, SOURCE_ROW]


def _list_columns(columns: Iterable[str]) -> str:
    shown = [c for c in columns if c not in (SOURCE_FILE, SOURCE_ROW)]
    text = ", ".join(repr(c) for c in shown[:40])
    return text + (f", … ({len(shown)} in all)" if len(shown) > 40 else "")


def _sample(frame: pl.DataFrame | pl.LazyFrame, exprs: list[pl.Expr], n: int) -> pl.DataFrame:
    if isinstance(frame, pl.LazyFrame):
        return frame.select(exprs).head(n).collect()
    return frame.select(exprs).head(n)


def _decode_json(frame: FrameT, column: str) -> FrameT:
    """Parse a Utf8 column of JSON objects into a struct (schema inferred from the data)."""
    schema = frame.collect_schema()
    if column not in schema or schema[column] != pl.String:
        return frame
    sample = _sample(frame, [pl.col(column)], 10_000).to_series().drop_nulls()
    sample = sample.filter(sample.str.strip_chars() != "")
    if sample.is_empty():
        return frame.with_columns(pl.lit(None, dtype=pl.Null).alias(column))
    try:
        dtype = sample.str.json_decode(infer_schema_length=None).dtype
    except pl.exceptions.PolarsError as exc:
        msg = f"column {column!r} should hold JSON objects but does not parse: {exc}"
        raise InputError(msg) from exc
    return frame.with_columns(
        pl.when(pl.col(column).str.strip_chars() != "")
        .then(pl.col(column))
        .str.json_decode(dtype)
        .alias(column)
    )


_TYPED_SLOTS = ("string_value", "int_value", "double_value", "float_value")


def _key_value_struct(frame: FrameT, kv: KeyValue) -> FrameT:
    """GA4-style ``[{key, value: {string_value, int_value, …}}]`` → ``{key: value}``."""
    schema = frame.collect_schema()
    if kv.column not in schema:
        return frame
    dtype = schema[kv.column]
    if not isinstance(dtype, pl.List) or not isinstance(dtype.inner, pl.Struct):
        msg = f"column {kv.column!r} should be a list of {{{kv.key}, {kv.value}}} structs"
        raise InputError(msg)
    inner = {f.name: f.dtype for f in dtype.inner.fields}
    value_dtype = inner.get(kv.value)
    exploded = (
        pl.col(kv.column).explode().struct.field(kv.key).alias("k"),
        pl.col(kv.column).explode().struct.field(kv.value).alias("v"),
    )
    long = _sample(frame, list(exploded), 2**62).drop_nulls("k")
    keys = sorted(long["k"].unique().to_list())
    if not keys:
        return frame.with_columns(pl.lit(None, dtype=pl.Null).alias(kv.column))
    slots: list[str] = []
    if isinstance(value_dtype, pl.Struct):
        slots = [f.name for f in value_dtype.fields]
    exprs = []
    for key in keys:
        picked = pl.element().filter(pl.element().struct.field(kv.key) == key)
        value = picked.struct.field(kv.value)
        if slots:
            rows = long.filter(pl.col("k") == key)["v"].struct.unnest()
            used = [s for s in slots if rows[s].null_count() < rows.height]
            if not used:
                continue
            if len(used) == 1:
                value = value.struct.field(used[0])
            elif all(s in ("int_value", "double_value", "float_value") for s in used):
                value = pl.coalesce([value.struct.field(s).cast(pl.Float64) for s in used])
            else:
                value = pl.coalesce([value.struct.field(s).cast(pl.String) for s in used])
        exprs.append(pl.col(kv.column).list.eval(value).list.first().alias(key))
    if not exprs:
        return frame.with_columns(pl.lit(None, dtype=pl.Null).alias(kv.column))
    return frame.with_columns(pl.struct(exprs).alias(kv.column))


def _ref_expr(ref: str, schema: pl.Schema) -> pl.Expr | None:
    """Expression for a column or a ``column.field.sub`` path into a struct."""
    if ref in schema:
        return pl.col(ref)
    parts = ref.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:cut])
        if head not in schema:
            continue
        expr = pl.col(head)
        dtype: Any = schema[head]
        rest = parts[cut:]
        # a field name may itself contain dots: greedily match the longest field name
        while rest:
            if not isinstance(dtype, pl.Struct):
                return None
            names = {f.name: f.dtype for f in dtype.fields}
            for take in range(len(rest), 0, -1):
                candidate = ".".join(rest[:take])
                if candidate in names:
                    expr = expr.struct.field(candidate)
                    dtype = names[candidate]
                    rest = rest[take:]
                    break
            else:
                return None
        return expr
    return None


def _field_expr(
    connector: Connector, fld: str, schema: pl.Schema
) -> tuple[pl.Expr | None, list[tuple[str, str]]]:
    """The field's expression (coalescing candidates) and the (ref, top column) used."""
    exprs = []
    used = []
    for ref in connector.fields.get(fld, ()):
        expr = _ref_expr(ref, schema)
        top = _top_column(ref, list(schema.names()))
        if expr is not None and top is not None:
            exprs.append(expr)
            used.append((ref, top))
    if not exprs:
        return None, []
    if len(exprs) == 1:
        return exprs[0], used
    return pl.coalesce([e.cast(pl.String) for e in exprs]), used


def _timestamp_expr(connector: Connector, expr: pl.Expr, dtype: Any) -> pl.Expr:
    """Apply the connector's unit / format / zone; anything unparsed keeps its raw value."""
    unit = connector.timestamp_unit
    tz = connector.timezone
    if dtype.is_numeric() and unit != "auto":
        return pl.from_epoch(expr.cast(pl.Int64), time_unit=unit).dt.replace_time_zone("UTC")
    if dtype == pl.String and connector.timestamp_format:
        parsed = expr.str.strptime(pl.Datetime("us"), connector.timestamp_format, strict=False)
        if tz:
            parsed = parsed.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
            iso = parsed.dt.to_string("%Y-%m-%dT%H:%M:%S%.6f%:z")
        else:
            iso = parsed.dt.to_string("%Y-%m-%dT%H:%M:%S%.6f")
        return pl.coalesce(iso, expr)
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None and tz:
        return expr.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
    return expr


def _missing_error(connector: Connector, fld: str, schema: pl.Schema) -> InputError:
    refs = connector.fields.get(fld, ())
    wanted = f"column {refs[0]!r}" if len(refs) == 1 else f"any of {list(refs)}"
    if not refs:
        wanted = "a column for it"
    source = "auto-detection" if connector.name == "auto" else f"connector {connector.name!r}"
    kind_hint = (
        " (or --kind contacts if these are contacts)"
        if connector.kind == "events"
        else " (or --kind events if these are events)"
    )
    return InputError(
        f"no {fld} column: {source} looked for {wanted}. Available columns: "
        f"{_list_columns(schema.names())}. Pass --map {fld}=COLUMN, or --connector NAME|FILE"
        f"{kind_hint}"
    )


def _check_field_type(fld: str, ref: str, dtype: Any) -> None:
    """A field's column must hold single values: lists, structs and bytes cannot be an
    email, an id, an event name or a timestamp, and the text fields must be of a type
    that has a text form (a duration has none)."""
    unusable = dtype.is_nested() or dtype in (pl.Binary, pl.Object)
    if fld != "timestamp":  # (the validator rejects odd timestamps itself)
        unusable = unusable or isinstance(dtype, pl.Duration)
    if unusable:
        msg = (
            f"column {ref!r} (for {fld}) holds {dtype} values, not text: map {fld} to a "
            f"column of single values with --map {fld}=COLUMN (or a struct field, "
            "COLUMN.FIELD), or flatten it in the export"
        )
        raise InputError(msg)


def apply(connector: Connector, frame: FrameT) -> FrameT:
    """Map a source frame onto the mapped frame of docs/internals.md (same rows, same order).

    Works on a DataFrame (one chunk) or lazily on a LazyFrame. Raises InputError when a
    required field has no column, listing the columns that exist.
    """
    for column in connector.json_columns:
        frame = _decode_json(frame, column)
    for kv in connector.key_values:
        frame = _key_value_struct(frame, kv)
    schema = frame.collect_schema()

    used_tops: set[str] = set()
    out: dict[str, pl.Expr] = {}
    consumed_fields: dict[str, set[str]] = {}
    resolved: set[str] = set()
    for fld in connector.field_names:
        expr, tops = _field_expr(connector, fld, schema)
        if expr is None:
            if fld in connector.required:
                raise _missing_error(connector, fld, schema)
            out[fld] = pl.lit(None, dtype=pl.String).alias(fld)
            continue
        for ref, top in tops:
            if ref == top:
                used_tops.add(top)
            else:
                consumed_fields.setdefault(top, set()).add(ref[len(top) + 1 :].split(".")[0])
        resolved.add(fld)
        dtype = frame.select(expr).collect_schema().dtypes()[0]
        _check_field_type(fld, tops[0][0], dtype)
        if fld == "timestamp":
            out[fld] = _timestamp_expr(connector, expr, dtype).alias(fld)
        elif fld == "name":
            named = expr.cast(pl.String)
            if connector.renames:
                named = named.replace(dict(connector.renames))
            out[fld] = named.alias(fld)
        else:
            out[fld] = expr.cast(pl.String).alias(fld)
    if connector.kind == "events" and not resolved & {"email", "contact_id"}:
        # Kraiter tracks an event against an email or a contact id: one must exist.
        raise _missing_error(connector, "email", schema)

    out["properties"] = _properties_expr(connector, schema, used_tops, consumed_fields)
    out[SOURCE_FILE] = (
        pl.col(SOURCE_FILE).cast(pl.String)
        if SOURCE_FILE in schema
        else pl.lit("<frame>", dtype=pl.String)
    ).alias(SOURCE_FILE)
    out[SOURCE_ROW] = (
        pl.col(SOURCE_ROW).cast(pl.Int64)
        if SOURCE_ROW in schema
        else pl.int_range(1, pl.len() + 1, dtype=pl.Int64)
    ).alias(SOURCE_ROW)
    return frame.select([out[name] for name in mapped_schema(connector.kind)])


def direct_property_columns(connector: Connector, schema: pl.Schema) -> frozenset[str]:
    """The source columns :func:`apply` makes properties under their own name: not mapped
    to a field, excluded, spread, or decoded from JSON / key-value lists (the columns
    whose text values the validator types, for a CSV)."""
    used = {ref for refs in connector.fields.values() for ref in refs if ref in schema}
    skip = {
        SOURCE_FILE,
        SOURCE_ROW,
        *connector.exclude,
        *connector.spread,
        *connector.json_columns,
        *(kv.column for kv in connector.key_values),
    }
    if connector.properties == "rest":
        return frozenset(c for c in schema.names() if c not in skip and c not in used)
    return frozenset(c for c in connector.properties if c not in skip and c in schema)


def _properties_expr(
    connector: Connector,
    schema: pl.Schema,
    used_tops: set[str],
    consumed: Mapping[str, set[str]],
) -> pl.Expr:
    skip = {SOURCE_FILE, SOURCE_ROW, *connector.exclude}
    if connector.properties == "rest":
        columns = [c for c in schema.names() if c not in skip and c not in used_tops]
    else:
        missing = [c for c in connector.properties if c not in schema]
        if missing:
            msg = (
                f"connector {connector.name!r} lists property column {missing[0]!r}, which "
                f"is not in the input. Available columns: {_list_columns(schema.names())}"
            )
            raise InputError(msg)
        columns = [c for c in connector.properties if c not in skip]
    members: dict[str, pl.Expr] = {}
    spread_cols = [c for c in columns if c in connector.spread]
    for column in columns:
        if column in connector.spread:
            continue
        dtype = schema[column]
        if dtype == pl.Null:
            continue
        taken = consumed.get(column, set())
        if isinstance(dtype, pl.Struct) and taken:
            # a field already mapped (e.g. GA4 user_properties.email) is not repeated
            keep = [f.name for f in dtype.fields if f.name not in taken]
            if not keep:
                continue
            members[column] = pl.struct([pl.col(column).struct.field(f) for f in keep])
            continue
        members[column] = pl.col(column)
    for column in spread_cols:
        dtype = schema[column]
        if not isinstance(dtype, pl.Struct):
            continue
        for fld in dtype.fields:
            if fld.name in consumed.get(column, set()) or fld.name in connector.exclude:
                continue
            members[fld.name] = pl.col(column).struct.field(fld.name)
    if not members:
        return pl.lit(None, dtype=pl.Null).alias("properties")
    return pl.struct([expr.alias(name) for name, expr in members.items()]).alias("properties")
