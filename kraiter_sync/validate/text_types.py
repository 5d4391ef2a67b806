"""Typed property values for text sources, and declared types.

A CSV holds text: ``12.50`` is the text ``"12.50"`` there, while the same value read from
Parquet or SQL is the number ``12.5``. Events are identified by a hash of their
properties, so the same row from two sources would be two events. Values read as text
(columns of CSV / TSV files that become properties under their own name,
:attr:`ValidationOptions.text_properties`) are therefore
typed, **value by value** — never by looking at the rest of the column, so a value's
type cannot depend on the chunk it sits in — by these rules (the whole value must match;
no spaces are trimmed):

* **integer**: ``0``, ``-12``, ``2134``: digits with no sign but ``-``, no leading zero,
  within ±9007199254740991 (2**53 - 1: what every JSON reader keeps exactly);
* **float**: ``12.50`` → 12.5, ``-0.5``, ``3.0``, ``0.30000000000000004``: digits, one
  point, digits, no leading zero; or ``1e-05``, ``-2.5e+16``: scientific notation with a
  signed exponent, as float writers print very small and very large numbers; and no
  digit lost in a float (it writes back as the same number; always so up to 15 digits).
  So a float column exported to CSV by polars, pandas or Python comes back as the same
  floats;
* **boolean**: ``true`` / ``false`` in any letter case;
* **rejected** as ``properties.nan`` (as a NaN in a Parquet float column is): ``NaN``,
  ``nan``, ``NAN``, and ``inf``, ``Inf``, ``INF``, ``infinity``, ``Infinity``,
  ``INFINITY`` with or without ``+`` / ``-``;
* **text**, unchanged, anything else: ``02134`` (zip codes), ``+442071234567`` (phone
  numbers), ``-0``, ``1e5`` and ``2E10`` (codes), ``.5``, ``12.``, `` 12``, ``1,5``,
  ``9007199254740993`` and longer ids, ``1.000000000000000001``, ``Nan`` (a name),
  ``yes``, ``""``.

**Declared types** win over inference, for any source: ``types = {zip = "string"}`` in a
connector's ``[properties]``, a sync job's ``types``, or ``--type zip=string``. Keys are
property keys (``utm.source`` for a nested field). What each does:

* ``string``: text stays text; a number or boolean becomes its JSON text (``12.5`` →
  ``"12.5"``, ``true`` → ``"true"``).
* ``integer``: text with optional sign and leading zeros (``007`` → 7), spaces trimmed,
  within the 64-bit range; a float with no fraction (``12.0`` → 12); else rejected.
* ``float``: any number text polars reads (``1e5``, ``.5``, `` 12 ``) or number; NaN
  and infinities are rejected (``properties.nan``).
* ``boolean``: ``true``/``false``, ``t``/``f``, ``yes``/``no``, ``y``/``n``,
  ``1``/``0`` (any case, spaces trimmed), or the integers 1 and 0.

A value that does not fit its declared type is rejected with ``properties.type``; empty
text is no value. Dates and times are not typed here (they become ISO text).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from kraiter_sync.proptypes import PropertyType
from kraiter_sync.validate._series import full

__all__ = [
    "MAX_SAFE_INTEGER",
    "TypedLeaf",
    "declare",
    "encode_values",
    "infer",
    "json_values",
    "type_leaf",
]

#: The largest integer every JSON reader keeps exactly (IEEE 754 doubles).
MAX_SAFE_INTEGER = 2**53 - 1
#: Digits any decimal keeps through a float (DBL_DIG); longer ones are checked one by one.
_FLOAT_DIGITS = 15

_INTEGER = r"^(?:0|-?[1-9][0-9]{0,15})$"
#: Positional (``12.50``), or scientific with a signed exponent as float writers print
#: it (``1e-05``, ``1.5e+16``; ``1e5`` and ``2E10`` look like codes and stay text).
_FLOAT = r"^-?(?:(?:0|[1-9][0-9]*)\.[0-9]+|[1-9](?:\.[0-9]+)?e[+-][0-9]+)$"
_BOOLEAN = r"^(?i:true|false)$"
_NAN = r"^(?:NaN|nan|NAN|[+-]?(?:inf|Inf|INF|infinity|Infinity|INFINITY))$"
#: One pass that tells whether a column holds any value that is not plain text.
_ANY = (
    r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?$|^-?[1-9](?:\.[0-9]+)?e[+-][0-9]+$|^(?i:true|false)$"
    r"|^(?:NaN|nan|NAN|[+-]?(?:inf|Inf|INF|infinity|Infinity|INFINITY))$"
)
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")


@dataclass
class TypedLeaf:
    """One property column, typed: ``parts`` hold the values by type (each null where the
    value is of another type, so at most one part is set per row); ``rule`` names the
    rows rejected (``properties.nan`` / ``properties.type``), or is None."""

    parts: list[pl.Series]
    rule: pl.Series | None = None


def _nullify(s: pl.Series, keep: pl.Series) -> pl.Series:
    return pl.select(pl.when(pl.lit(keep)).then(pl.lit(s))).to_series().alias(s.name)


def _flag(mask: pl.Series, rule: str) -> pl.Series | None:
    if not mask.any():
        return None
    return pl.select(pl.when(pl.lit(mask)).then(pl.lit(rule))).to_series()


def _decimal_key(text: pl.Expr) -> pl.Expr:
    """A number's text (``-12.50``, ``1.25e+17``) as sign, significant digits and
    decimal exponent: equal keys are equal numbers, however they are written."""
    parts = text.str.extract_groups(r"^(-?)([0-9]+)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?$")
    whole = parts.struct.field("2")
    digits = pl.concat_str(whole, parts.struct.field("3").fill_null(""))
    significant = digits.str.strip_chars_start("0")
    exponent = (
        whole.str.len_chars().cast(pl.Int64)
        - (digits.str.len_chars() - significant.str.len_chars()).cast(pl.Int64)
        + parts.struct.field("4").cast(pl.Int64, strict=False).fill_null(0)
    )
    return pl.concat_str(
        parts.struct.field("1"),
        significant.str.strip_chars_end("0"),
        pl.lit("e"),
        exponent.cast(pl.String),
    )


def _round_trips(s: pl.Series) -> pl.Series | bool:
    """Per row, whether a decimal text reads as a float that writes back as the same
    number (no digit lost); True for the whole column when every value is short enough
    to be sure (a point and up to 15 digits: any such decimal survives a float)."""
    long = (s.str.len_bytes() > _FLOAT_DIGITS + 1).fill_null(False)
    if not long.any():
        return True
    where = long.arg_true()
    text = s.gather(where)
    back = text.cast(pl.Float64, strict=False).cast(pl.String)
    # most texts are the float's own shortest digits: the same text, no parsing needed
    same = (text == back).fill_null(False)
    if not same.all():
        other = (~same).arg_true()
        keys = pl.select(
            _decimal_key(pl.lit(text.gather(other))) == _decimal_key(pl.lit(back.gather(other)))
        ).to_series()
        same = same.scatter(other, keys.fill_null(False))
    return full(len(s), True, pl.Boolean).scatter(where, same)


def _uniform(s: pl.Series) -> TypedLeaf | None:
    """The usual typed column, all integers, all floats or all booleans, found with a
    cast or one regex; None when the column is anything else."""
    present = s.null_count()
    as_int = s.cast(pl.Int64, strict=False)
    if as_int.null_count() == present:
        if s.str.contains(_INTEGER).all() and bool((as_int.abs() <= MAX_SAFE_INTEGER).all()):
            return TypedLeaf([as_int])
        return None
    as_float = s.cast(pl.Float64, strict=False)
    if as_float.null_count() == present:
        ok = _round_trips(s)
        if s.str.contains(_FLOAT).all() and (ok if isinstance(ok, bool) else bool(ok.all())):
            return TypedLeaf([as_float])
        return None
    if s.str.contains(_BOOLEAN).all():
        first = s.str.slice(0, 1)
        return TypedLeaf([((first == "t") | (first == "T")).alias(s.name)])
    return None


def infer(s: pl.Series) -> TypedLeaf | None:
    """Type a column of text by the rules of the module docstring; None when every value
    stays text (the usual case for names, ids, emails: one regex pass decides it)."""
    if not s.str.contains(_ANY).any():
        return None
    uniform = _uniform(s)
    if uniform is not None:
        return uniform
    frame = pl.DataFrame({"s": s})
    text = pl.col("s")
    as_int = text.cast(pl.Int64, strict=False)
    significant = _round_trips(s)
    typed = frame.select(
        pl.when(text.str.contains(_INTEGER) & (as_int.abs() <= MAX_SAFE_INTEGER))
        .then(as_int)
        .alias("i"),
        pl.when(text.str.contains(_FLOAT) & pl.lit(significant))
        .then(text.cast(pl.Float64, strict=False))
        .alias("f"),
        pl.when(text.str.contains(_BOOLEAN))
        .then(text.str.slice(0, 1).is_in(["t", "T"]))
        .alias("b"),
        text.str.contains(_NAN).fill_null(False).alias("nan"),
    )
    nan = typed["nan"]
    other = typed.select(
        pl.col("i").is_null() & pl.col("f").is_null() & pl.col("b").is_null() & ~pl.col("nan")
    ).to_series()
    parts = [typed["i"], typed["f"], typed["b"], _nullify(s, other)]
    named = [p.alias(s.name) for p in parts if p.null_count() < len(p)]
    return TypedLeaf(named, _flag(nan, "properties.nan"))


def _declared_text(s: pl.Series, declared: PropertyType) -> TypedLeaf:
    """Text parsed as the declared type; what does not parse is rejected."""
    if declared == "string":
        return TypedLeaf([s])
    trimmed = s.str.strip_chars()
    present = (trimmed.str.len_bytes() > 0).fill_null(False)
    value: pl.Series
    if declared == "integer":
        value = pl.select(
            pl.when(pl.lit(trimmed).str.contains(r"^[+-]?[0-9]+$")).then(
                pl.lit(trimmed).str.strip_chars_start("+").cast(pl.Int64, strict=False)
            )
        ).to_series()
    elif declared == "float":
        value = trimmed.cast(pl.Float64, strict=False)
    else:
        lower = trimmed.str.to_lowercase()
        value = pl.select(
            pl.when(pl.lit(lower).is_in(_TRUE))
            .then(True)
            .when(pl.lit(lower).is_in(_FALSE))
            .then(False)
        ).to_series()
    return _checked(value.alias(s.name), present)


def _checked(value: pl.Series, present: pl.Series, nan: pl.Series | None = None) -> TypedLeaf:
    """Rows with a value that did not convert are ``properties.type``; non-finite floats
    (and ``nan``, rows known to be NaN or infinite) are ``properties.nan``, without value."""
    if value.dtype.is_float() and not value.is_finite().all():
        non_finite = (value.is_nan() | value.is_infinite()).fill_null(False)
        value = _nullify(value, ~non_finite)
        nan = non_finite if nan is None else nan | non_finite
    if nan is not None:
        present = present & ~nan
    found = [
        _flag((present & value.is_null()).fill_null(False), "properties.type"),
        _flag(nan, "properties.nan") if nan is not None else None,
    ]
    rules = [r for r in found if r is not None]
    rule = pl.select(pl.coalesce([pl.lit(r) for r in rules])).to_series() if rules else None
    return TypedLeaf([value], rule)


def declare(s: pl.Series, declared: PropertyType) -> TypedLeaf | None:
    """A column converted to its declared type (see the module docstring); None for a
    column this does not apply to (dates, times: they become ISO text regardless)."""
    dtype = s.dtype
    if dtype == pl.String:
        return _declared_text(s, declared)
    if not (dtype == pl.Boolean or dtype.is_numeric()):
        return None
    if isinstance(dtype, pl.Decimal):
        s = s.cast(pl.Float64)
        dtype = s.dtype
    present = s.is_not_null()
    n = len(s)
    value: pl.Series
    if declared == "string":
        if dtype == pl.Boolean:
            value = pl.select(
                pl.when(pl.lit(s)).then(pl.lit("true")).otherwise(pl.lit("false"))
            ).to_series()
        elif dtype.is_integer():
            value = s.cast(pl.String)
        else:  # the value's JSON text, as it would have been sent: 12.5 → "12.5"
            nan = (s.is_nan() | s.is_infinite()).fill_null(False)
            value = json_values(_nullify(s, ~nan))
            return _checked(value.alias(s.name), present, nan)
    elif dtype == pl.Boolean:
        value = s if declared == "boolean" else full(n, None, pl.Int64)
    elif declared == "integer":
        if dtype.is_integer():
            return TypedLeaf([s])
        integral = (s == s.floor()) & (s.abs() < 2.0**63)
        value = pl.select(
            pl.when(pl.lit(integral)).then(pl.lit(s).cast(pl.Int64, strict=False))
        ).to_series()
        nan = (s.is_nan() | s.is_infinite()).fill_null(False)
        return _checked(value.alias(s.name), present, nan)
    elif declared == "float":
        value = s.cast(pl.Float64)
    elif dtype.is_integer():
        value = pl.select(
            pl.when(pl.lit(s) == 1).then(True).when(pl.lit(s) == 0).then(False)
        ).to_series()
    else:
        value = full(n, None, pl.Boolean)
    return _checked(value.alias(s.name), present)


def type_leaf(
    key: str, leaf: pl.Series, types: Mapping[str, PropertyType], *, text: bool
) -> TypedLeaf | None:
    """The typed form of one flattened property column: its declared type if it has one,
    else inference when it was read as ``text``; None when it stays as it is."""
    declared = types.get(key)
    if declared is not None:
        return declare(leaf, declared)
    if text and leaf.dtype == pl.String:
        return infer(leaf)
    return None


def json_values(s: pl.Series) -> pl.Series:
    """Each value's JSON text as polars encodes it in an object (null stays null)."""
    encoded = pl.select(
        pl.when(pl.lit(s).is_not_null()).then(
            pl.struct(pl.lit(s).alias("v")).struct.json_encode().str.slice(5).str.head(-1)
        )
    ).to_series()
    return encoded.alias(s.name)


def encode_values(columns: Mapping[str, pl.Series], raw: set[str]) -> pl.Series:
    """One compact JSON object per row from columns of values, keys in sorted order;
    the columns in ``raw`` already hold JSON value texts (mixed types). Gives the text
    ``struct.json_encode`` gives for the same typed values, nulls left out."""
    pieces = []
    for key in sorted(columns):
        value = columns[key] if key in raw else json_values(columns[key])
        label = json.dumps(key, ensure_ascii=False) + ":"
        pieces.append(pl.lit(label) + pl.lit(value))
    body = pl.select(pl.concat_str(pieces, separator=",", ignore_nulls=True)).to_series()
    return pl.select(pl.lit("{") + pl.lit(body) + pl.lit("}")).to_series()
