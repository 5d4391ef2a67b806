"""JSON values as polars columns, every value keeping its own JSON type.

A polars column has one type, and polars' JSON readers and row constructors give a
column that mixes types a common one, guessed from the other values of the chunk:
``true`` becomes ``1`` next to integers, ``1`` becomes ``1.0`` next to floats, numbers
become text next to strings, a list next to text becomes its JSON text. Events are
identified by a hash of their properties, so the same event would get another key in
another chunk, and be sent twice. The columns built here never coerce:

* :func:`exact_column` turns Python values (``json.loads`` output) into a
  column: one type when the values have one (``str`` → String, ``int`` → Int64, ``float``
  → Float64, ``bool`` → Boolean, ``dict`` → Struct, field by field in first-seen order);
  otherwise a **mixed column**;
* :func:`decode_json_texts` parses JSON texts one by one (Python's ``json``, the same
  reader as ``validate.keys.canonical_json``) into such columns, a text that is not a
  JSON object becoming a row problem instead of failing the whole column.

A *mixed column* is a Struct whose fields all have reserved names (:data:`PARTS`, a NUL
first): one field per JSON type present, at most one of them set in a row (all null:
no value). Objects are the ``OBJECT`` part (a Struct, itself exact); lists the ``LIST``
part (their JSON text: no property may be a list); integers beyond 64 bits the ``BIG``
part (their digits). ``WAS`` is not a value: an all-null field whose type is the one
kraiter-sync 0.x before key version 3 coerced these values to (see
:func:`legacy_type`), so the validator can still compute the keys such a version wrote
(``legacy_keys``). :func:`is_mixed` tells such a column; :func:`plain_type` gives the
type the coercing readers would have given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl

__all__ = [
    "BIG",
    "BOOL",
    "BYTES",
    "FLOAT",
    "INT",
    "LIST",
    "MAX_NESTING",
    "OBJECT",
    "PARTS",
    "TEXT",
    "WAS",
    "decode_json_texts",
    "exact_column",
    "is_mixed",
    "legacy_type",
    "mixed_field_names",
    "nesting_depth",
    "part_type",
    "plain_type",
]

BOOL = "\x00bool"
INT = "\x00int"
BIG = "\x00bigint"
FLOAT = "\x00float"
TEXT = "\x00str"
BYTES = "\x00bytes"
OBJECT = "\x00object"
LIST = "\x00list"
WAS = "\x00was"
#: The value parts of a mixed column, in the order they are laid out.
PARTS = (BOOL, INT, BIG, FLOAT, TEXT, BYTES, OBJECT, LIST)
_RESERVED = frozenset((*PARTS, WAS))

#: Deepest nesting of objects and lists a value may have. polars' Python layer recurses
#: once per level (about 150 levels exhaust the interpreter's stack, 600 crash its JSON
#: reader) and Kraiter's properties are flat anyway: deeper values are refused before
#: any reader sees them; the validator rejects rows nested past its own, lower limit.
MAX_NESTING = 64
_STRING_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")

_INT64 = (-(2**63), 2**63 - 1)
_NONE = type(None)
_SCALARS: dict[type, tuple[str, pl.DataType]] = {
    bool: (BOOL, pl.Boolean()),
    int: (INT, pl.Int64()),
    float: (FLOAT, pl.Float64()),
    str: (TEXT, pl.String()),
    bytes: (BYTES, pl.Binary()),
}


def is_mixed(dtype: Any) -> bool:
    """Whether ``dtype`` is a mixed column's (a Struct of reserved part names only)."""
    return (
        isinstance(dtype, pl.Struct)
        and bool(dtype.fields)
        and all(f.name in _RESERVED for f in dtype.fields)
    )


def mixed_field_names(dtype: Any) -> list[str]:
    """The part names of a mixed column's type, ``WAS`` left out."""
    return [f.name for f in dtype.fields if f.name != WAS]


def part_type(dtype: Any, name: str) -> Any:
    """The type of a mixed column's part ``name`` (``OBJECT``, ``WAS``, ...), or None."""
    return next((f.dtype for f in getattr(dtype, "fields", ()) if f.name == name), None)


def _part_of(value: Any) -> str:
    kind = type(value)
    if kind is dict:
        return OBJECT
    if kind is list:
        return LIST
    if kind is int and not _INT64[0] <= value <= _INT64[1]:
        return BIG
    if kind in _SCALARS:
        return _SCALARS[kind][0]
    return TEXT  # (anything else a driver hands out: its text)


def legacy_type(parts: Iterable[str]) -> pl.DataType | None:
    """The type the coercing readers gave a column with values of these parts: text
    next to any string, else a float next to any float (or integer beyond 64 bits), else
    an integer next to any integer, else boolean. None when there was no such type
    (objects or lists next to other values refused the file, or are rejected now)."""
    present = set(parts)
    if present & {OBJECT, LIST} or len(present) < 2:
        return None
    if present & {TEXT, BYTES}:
        return pl.String()
    if present & {FLOAT, BIG}:
        return pl.Float64()
    if INT in present:
        return pl.Int64()
    return pl.Boolean()


def plain_type(dtype: Any) -> Any:
    """A type with every mixed column replaced by :func:`legacy_type` of its parts (or
    String when there is none): the type a coercing reader would have given."""
    if is_mixed(dtype):
        was = part_type(dtype, WAS)
        if was is not None:
            return was
        return legacy_type(mixed_field_names(dtype)) or pl.String()
    if isinstance(dtype, pl.Struct):
        return pl.Struct([pl.Field(f.name, plain_type(f.dtype)) for f in dtype.fields])
    return dtype


def _scalar_series(name: str, values: list[Any], part: str) -> pl.Series:
    if part == BIG:
        return pl.Series(name, [None if v is None else str(v) for v in values], pl.String)
    if part == LIST:
        texts = [
            None if v is None else json.dumps(v, ensure_ascii=False, separators=(",", ":"))
            for v in values
        ]
        return pl.Series(name, texts, pl.String)
    if part == TEXT:
        return pl.Series(name, [v if v is None or type(v) is str else str(v) for v in values])
    dtype = {BOOL: pl.Boolean, INT: pl.Int64, FLOAT: pl.Float64, BYTES: pl.Binary}[part]
    return pl.Series(name, values, dtype=dtype, strict=True)


def exact_column(name: str, values: Sequence[Any]) -> pl.Series:
    """Python values (None, bool, int, float, str, bytes, dict, list) as one column
    whose values keep their types: a plain column when they share one, else a mixed
    column (see the module docstring). Dicts nest as Structs; nothing is coerced."""
    values = list(values)
    types = set(map(type, values))
    types.discard(_NONE)
    if not types:
        return pl.Series(name, [None] * len(values), dtype=pl.Null)
    if len(types) == 1:  # the usual case, decided without looking at each value
        (kind,) = types
        if kind is dict:
            return _struct(name, values)
        if kind in _SCALARS:
            try:
                return pl.Series(name, values, dtype=_SCALARS[kind][1], strict=True)
            except OverflowError:  # integers beyond 64 bits: the mixed form below
                pass
    kinds = {_part_of(v) for v in values if v is not None}
    if len(kinds) == 1 and kinds <= {OBJECT, BOOL, INT, FLOAT, TEXT, BYTES}:
        (part,) = kinds
        return _struct(name, values) if part == OBJECT else _scalar_series(name, values, part)
    parts = []
    for part in PARTS:
        if part not in kinds:
            continue
        picked = [v if v is not None and _part_of(v) == part else None for v in values]
        if part == OBJECT:
            parts.append(_struct(part, picked))
        else:
            parts.append(_scalar_series(part, picked, part))
    was = legacy_type(kinds)
    if was is not None:
        parts.append(pl.Series(WAS, [None] * len(values), dtype=was))
    return pl.struct(parts, eager=True).alias(name)


def _struct(name: str, values: list[Any]) -> pl.Series:
    """Dicts (or None) as a Struct column, keys in first-seen order."""
    keys = dict.fromkeys(k for v in values if v is not None for k in v)
    present = [v is not None for v in values]
    if not keys:  # only empty objects: a struct with no field cannot be built
        return pl.Series(name, [None] * len(values), dtype=pl.Null)
    fields = [exact_column(k, [None if v is None else v.get(k) for v in values]) for k in keys]
    built = pl.struct(fields, eager=True).alias(name)
    if all(present):
        return built
    where = pl.Series(present, dtype=pl.Boolean)
    return pl.select(pl.when(pl.lit(where)).then(pl.lit(built))).to_series().alias(name)


def exact_frame(objects: Sequence[dict[str, Any] | None]) -> pl.DataFrame:
    """Objects as a frame (a row of nulls for None), columns in first-seen key order."""
    keys = dict.fromkeys(k for o in objects if o is not None for k in o)
    columns = [exact_column(k, [None if o is None else o.get(k) for o in objects]) for k in keys]
    return (
        pl.DataFrame(columns, height=len(objects)) if columns else pl.DataFrame(height=len(objects))
    )


def nesting_depth(text: str, limit: int = MAX_NESTING) -> int:
    """How deep objects and lists nest in a JSON text, counted up to ``limit + 1``
    (enough to refuse it). Free for most texts: fewer brackets than ``limit`` cannot
    nest deeper; the others are scanned once, strings skipped."""
    if text.count("{") + text.count("[") <= limit:
        return 0
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRING_TOKEN.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                break
    return deepest


def decode_json_texts(
    texts: Sequence[str | None],
) -> tuple[pl.Series | None, dict[int, str]]:
    """JSON object texts → an exact Struct column (None when no row holds an object),
    and the rows that do not hold one (index → what is wrong). Null, empty and blank
    texts are no value."""
    objects: list[dict[str, Any] | None] = []
    problems: dict[int, str] = {}
    for i, text in enumerate(texts):
        if text is None or not text.strip():
            objects.append(None)
            continue
        if nesting_depth(text) > MAX_NESTING:
            objects.append(None)
            problems[i] = f"nested more than {MAX_NESTING} levels deep"
            continue
        try:
            value = json.loads(text)
        except RecursionError:
            value, problems[i] = None, "nested too deep to read"
        except ValueError as exc:
            value, problems[i] = None, f"not valid JSON ({exc})"
        else:
            if not isinstance(value, dict):
                problems[i] = f"a JSON {type(value).__name__}, not an object"
                value = None
        objects.append(value)
    if all(o is None for o in objects):
        return None, problems
    return _struct("", objects), problems
