"""Properties → one flat, compact JSON object per row with sorted keys.

Struct columns (possibly nested) take the vectorised path: leaves are flattened to
``a.b`` keys, checked column by column, and encoded by polars. JSON-string columns
(CSV, NDJSON read as text) are parsed per row with the same rules and the same output
format, because polars' JSON decoding coerces mixed-type values silently.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import polars as pl

from kraiter_sync.validate._series import full
from kraiter_sync.validate.options import ValidationOptions
from kraiter_sync.validate.text_types import encode_values, json_values, type_leaf

__all__ = ["CanonicalProperties", "canonical_properties", "is_card_number", "looks_secret"]

#: Key fragments that name credentials; matched case-insensitively anywhere in the key.
_SECRET = re.compile(r"(?i)password|passwd|secret|token|api[_\-]?key|private[_\-]?key|credential")
_CARD_CANDIDATE = r"^\d(?:[ -]?\d){12,18}$"
_ISO_UTC = "%Y-%m-%dT%H:%M:%S%.3fZ"


@dataclass
class CanonicalProperties:
    """``json`` (Utf8, ``{}`` when empty) and ``rule`` (null when ok), one per row;
    ``legacy`` (with ``options.legacy_keys``): the JSON an earlier version made of the
    row before text values were typed, null where it is the same."""

    json: pl.Series
    rule: pl.Series
    legacy: pl.Series | None = None
    #: Whether typing (inference or declared types) changed any column.
    typed: bool = False


def looks_secret(key: str) -> bool:
    """True when a property key names a credential (password, token, secret, api_key)."""
    return bool(_SECRET.search(key))


def is_card_number(value: str) -> bool:
    """13-19 digits (spaces/dashes allowed) passing the Luhn check."""
    if not re.fullmatch(_CARD_CANDIDATE, value):
        return False
    digits = [int(c) for c in value if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _luhn_expr(digits: pl.Expr) -> pl.Expr:
    """Vectorised Luhn over a column of digit-only strings (13-19 long)."""
    rev = digits.str.reverse()
    total: pl.Expr = pl.lit(0)
    for i in range(19):
        d = rev.str.slice(i, 1).cast(pl.Int32, strict=False).fill_null(0)
        if i % 2 == 1:
            d = pl.when(d > 4).then(d * 2 - 9).otherwise(d * 2)
        total = total + d
    return (total % 10) == 0


def _flatten(s: pl.Series, prefix: str, out: list[tuple[str, pl.Series]]) -> None:
    for name in s.struct.fields:
        child = s.struct.field(name)
        key = f"{prefix}{name}"
        if isinstance(child.dtype, pl.Struct):
            _flatten(child, f"{key}.", out)
        else:
            out.append((key, child))


def _leaf(key: str, s: pl.Series, options: ValidationOptions) -> tuple[pl.Series, pl.Series | None]:
    """Convert one flattened leaf to a JSON-encodable column; rule per row (null = ok),
    or None when no row breaks a rule (the usual case: each check first asks a cheap
    whole-column question, such as the longest value, before it looks at rows)."""
    rule: pl.Series | None = None
    dtype = s.dtype
    if dtype in (pl.Categorical, pl.Enum) or isinstance(dtype, pl.Enum | pl.Categorical):
        s = s.cast(pl.String)
    elif isinstance(dtype, pl.Datetime):
        aware = (
            s if dtype.time_zone else s.dt.replace_time_zone(options.timezone, non_existent="null")
        )
        s = aware.dt.convert_time_zone("UTC").dt.strftime(_ISO_UTC)
    elif dtype == pl.Date:
        s = s.dt.strftime("%Y-%m-%d")
    elif dtype == pl.Time:
        s = s.dt.strftime("%H:%M:%S%.f")
    elif isinstance(dtype, pl.Decimal):
        s = s.cast(pl.Float64)
    elif not (dtype == pl.String or dtype == pl.Boolean or dtype.is_numeric() or dtype == pl.Null):
        rule = pl.select(
            pl.when(pl.lit(s).is_not_null()).then(pl.lit("properties.unsupported_type"))
        ).to_series()
        return full(len(s), None, pl.String), rule
    if s.dtype.is_float():
        if not s.is_finite().all():  # (all() passes over nulls)
            bad = (s.is_nan() | s.is_infinite()).fill_null(False)
            rule = pl.select(pl.when(pl.lit(bad)).then(pl.lit("properties.nan"))).to_series()
            s = pl.select(pl.when(~pl.lit(bad)).then(pl.lit(s))).to_series()
    elif s.dtype == pl.String:
        # the byte length is free (string offsets): it rules out most scans, since
        # characters never outnumber bytes and a card candidate is 13-37 ASCII characters
        n_bytes = s.str.len_bytes()
        longest = n_bytes.max()
        found: list[pl.Expr] = []
        if isinstance(longest, int) and longest > options.max_value_length:
            too_long = (s.str.len_chars() > options.max_value_length).fill_null(False)
            found.append(pl.when(pl.lit(too_long)).then(pl.lit("properties.value_too_long")))
        if (
            not options.allow_card_numbers
            and isinstance(longest, int)
            and longest >= 13
            and ((n_bytes >= 13) & (n_bytes <= 37)).any()
        ):
            cand = s.str.contains(_CARD_CANDIDATE).fill_null(False)
            if cand.any():
                digits = s.str.replace_all(r"[ -]", "")
                card = pl.select(
                    pl.lit(cand) & _luhn_expr(pl.lit(digits)).fill_null(False)
                ).to_series()
                found.append(pl.when(pl.lit(card)).then(pl.lit("properties.card_number")))
        if found:
            rule = pl.select(pl.coalesce(*found)).to_series()
    elif s.dtype.is_integer() and not options.allow_card_numbers and _may_hold_cards(s):
        cand = (
            (s.abs() >= 10**12).fill_null(False) if s.dtype.is_signed_integer() else (s >= 10**12)
        )
        if cand.fill_null(False).any():
            txt = s.cast(pl.String)
            card = pl.select(
                pl.lit(cand).fill_null(False)
                & pl.lit(txt).str.contains(_CARD_CANDIDATE).fill_null(False)
                & _luhn_expr(pl.lit(txt)).fill_null(False)
            ).to_series()
            rule = pl.select(
                pl.when(pl.lit(card)).then(pl.lit("properties.card_number"))
            ).to_series()
    key_rule = None
    if len(key) > options.max_key_length:
        key_rule = "properties.key_too_long"
    elif not options.allow_secret_keys and looks_secret(key):
        key_rule = "properties.secret"
    if key_rule is not None:
        on_key = pl.when(pl.lit(s).is_not_null()).then(pl.lit(key_rule))
        rule = pl.select(
            pl.coalesce(on_key, pl.lit(rule)) if rule is not None else on_key
        ).to_series()
    return s, rule


def _may_hold_cards(s: pl.Series) -> bool:
    """Whether an integer column has a value of 13 digits or more (two reductions)."""
    high, low = s.max(), s.min()
    return (isinstance(high, int) and high >= 10**12) or (isinstance(low, int) and low <= -(10**12))


def _typed_leaf(
    key: str, leaf: pl.Series, options: ValidationOptions, *, text: bool, rules: list[pl.Series]
) -> tuple[pl.Series, bool] | None:
    """A leaf typed (``validate.text_types``) and checked: (value, whether the value is
    JSON text: values of several types); None when typing leaves it as it is."""
    typed = type_leaf(key, leaf, options.types, text=text)
    if typed is None:
        return None
    if typed.rule is not None:
        rules.append(typed.rule)
    values = []
    for part in typed.parts:
        value, rule = _leaf(key, part, options)
        values.append(value)
        if rule is not None:
            rules.append(rule)
    if not values:
        return full(len(leaf), None, pl.String, key), True
    if len(values) == 1:
        return values[0], False
    merged = pl.select(pl.coalesce([pl.lit(json_values(v)) for v in values])).to_series()
    return merged.alias(key), True


def _struct_path(s: pl.Series, options: ValidationOptions) -> CanonicalProperties:
    leaves: list[tuple[str, pl.Series]] = []
    _flatten(s, "", leaves)
    n = len(s)
    rules: list[pl.Series] = []
    columns: dict[str, pl.Series] = {}
    # columns of JSON value texts (a text column whose values typed differently)
    raw: set[str] = set()
    typed_any = False
    # text columns are top-level fields (a CSV has no structs); typing is by key
    fields = s.dtype.fields if isinstance(s.dtype, pl.Struct) else []
    top_text = {
        f.name for f in fields if f.dtype == pl.String and f.name in options.text_properties
    }
    for key, leaf in leaves:
        if leaf.dtype == pl.Null:
            continue
        typed = (
            _typed_leaf(key, leaf, options, text=key in top_text, rules=rules)
            if top_text or options.types
            else None
        )
        is_raw = False
        if typed is None:
            value, rule = _leaf(key, leaf, options)
            if rule is not None:
                rules.append(rule)
        else:
            value, is_raw = typed
            typed_any = True
        if key in columns:  # "a.b" both nested and literal: reject rows that set both
            both = columns[key].is_not_null() & value.is_not_null()
            rules.append(
                pl.select(pl.when(pl.lit(both)).then(pl.lit("properties.key_conflict"))).to_series()
            )
            if is_raw or key in raw:
                earlier = columns[key] if key in raw else json_values(columns[key])
                value = value if is_raw else json_values(value)
                is_raw = True
            else:
                earlier = columns[key]
            value = pl.select(
                pl.coalesce(pl.lit(value), pl.lit(earlier.cast(value.dtype, strict=False)))
            ).to_series()
        if is_raw:
            raw.add(key)
        columns[key] = value
    if not columns:
        return CanonicalProperties(full(n, "{}", pl.String, "properties"), full(n, None, pl.String))
    frame = pl.DataFrame({k: columns[k].alias(k) for k in sorted(columns)})
    if frame.width > options.max_properties:  # else no row can have too many
        count = frame.select(pl.sum_horizontal(pl.all().is_not_null())).to_series()
        rules.append(
            pl.select(
                pl.when(pl.lit(count) > options.max_properties).then(pl.lit("properties.too_many"))
            ).to_series()
        )
    rules = [r for r in rules if r.null_count() < n]  # most checks find nothing
    encoded = encode_values(columns, raw) if raw else _encode(frame)
    rule = (
        pl.select(pl.coalesce([pl.lit(r) for r in rules])).to_series()
        if rules
        else full(n, None, pl.String)
    )
    return CanonicalProperties(encoded.alias("properties"), rule.alias("rule"), typed=typed_any)


def _encode(frame: pl.DataFrame) -> pl.Series:
    """One compact JSON object per row (keys in column order): ``json_encode``, then drop
    the ``"key":null`` entries."""
    encoded = frame.select(pl.struct(pl.all()).struct.json_encode()).to_series()
    with_nulls = [k for k in frame.columns if frame[k].null_count() > 0]
    if with_nulls:
        # drop "key":null entries, only in the rows that have any (quotes inside strings
        # are escaped, so '"key":null' cannot match inside a value)
        keys = "|".join(re.escape(json.dumps(k, ensure_ascii=False)) for k in with_nulls)
        rows = frame.select(pl.any_horizontal(pl.col(with_nulls).is_null())).to_series()
        idx = rows.arg_true()
        fixed = (
            encoded.gather(idx)
            .str.replace_all(f",?(?:{keys}):null", "")
            .str.replace("{,", "{", literal=True)
        )
        encoded = encoded.scatter(idx, fixed)
    return encoded


def _flatten_obj(obj: dict[str, Any], prefix: str, out: list[tuple[str, Any]]) -> None:
    for key, value in obj.items():
        if isinstance(value, dict):
            _flatten_obj(value, f"{prefix}{key}.", out)
        else:
            out.append((f"{prefix}{key}", value))


def canonical_json_row(text: str | None, options: ValidationOptions) -> tuple[str, str | None]:
    """One JSON-text properties value → (canonical JSON, rule or None). The reference path."""
    if text is None or not text.strip():
        return "{}", None
    try:
        obj = json.loads(text)
    except ValueError:
        return "{}", "properties.invalid_json"
    if not isinstance(obj, dict):
        return "{}", "properties.invalid_json"
    leaves: list[tuple[str, Any]] = []
    _flatten_obj(obj, "", leaves)
    flat: dict[str, Any] = {}
    rule: str | None = None
    for key, value in leaves:
        if value is None:
            continue
        if key in flat:
            rule = rule or "properties.key_conflict"
        if isinstance(value, list):
            rule = rule or "properties.unsupported_type"
            continue
        if isinstance(value, float) and not math.isfinite(value):
            rule = rule or "properties.nan"
            continue
        if len(key) > options.max_key_length:
            rule = rule or "properties.key_too_long"
        elif not options.allow_secret_keys and looks_secret(key):
            rule = rule or "properties.secret"
        if isinstance(value, str):
            if len(value) > options.max_value_length:
                rule = rule or "properties.value_too_long"
            elif not options.allow_card_numbers and is_card_number(value):
                rule = rule or "properties.card_number"
        elif (
            isinstance(value, int)
            and not isinstance(value, bool)
            and not options.allow_card_numbers
            and is_card_number(str(value))
        ):
            rule = rule or "properties.card_number"
        flat[key] = value
    if len(flat) > options.max_properties:
        rule = rule or "properties.too_many"
    text_out = json.dumps(dict(sorted(flat.items())), ensure_ascii=False, separators=(",", ":"))
    return text_out, rule


def _legacy_json(values: pl.Series, typed: pl.Series, options: ValidationOptions) -> pl.Series:
    """What an earlier version (no typing) made of these properties, null where the same."""
    untyped = dataclasses.replace(options, text_properties=frozenset(), types={}, legacy_keys=False)
    legacy = canonical_properties(values, untyped).json
    return (
        pl.select(pl.when(pl.lit(legacy) != pl.lit(typed)).then(pl.lit(legacy)))
        .to_series()
        .alias("legacy_properties")
    )


def canonical_properties(values: pl.Series, options: ValidationOptions) -> CanonicalProperties:
    """Flatten, check and encode a properties column of any supported dtype."""
    n = len(values)
    if isinstance(values.dtype, pl.Struct):
        # a null struct row means "no properties"
        out = _struct_path(values, options)
        if values.null_count():
            out.json = (
                pl.select(
                    pl.when(pl.lit(values).is_null()).then(pl.lit("{}")).otherwise(pl.lit(out.json))
                )
                .to_series()
                .alias("properties")
            )
        if options.legacy_keys and out.typed:
            out.legacy = _legacy_json(values, out.json, options)
        return out
    if values.dtype == pl.Null:
        return CanonicalProperties(
            full(n, "{}", pl.String, "properties"), full(n, None, pl.String, "rule")
        )
    if values.dtype == pl.String:
        # per row, but only the rows that hold text: empty and null cost nothing
        out_json = full(n, "{}", pl.String, "properties")
        out_rule = full(n, None, pl.String, "rule")
        idx = (values.str.strip_chars().str.len_bytes() > 0).fill_null(False).arg_true()
        if len(idx):
            pairs = [canonical_json_row(v, options) for v in values.gather(idx).to_list()]
            out_json = out_json.scatter(idx, pl.Series([p for p, _ in pairs], dtype=pl.String))
            out_rule = out_rule.scatter(idx, pl.Series([r for _, r in pairs], dtype=pl.String))
        return CanonicalProperties(out_json, out_rule)
    msg = f"properties column has unsupported type {values.dtype}: map it to a struct or JSON text"
    raise TypeError(msg)
