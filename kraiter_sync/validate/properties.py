"""Properties → one flat, compact JSON object per row with sorted keys.

Struct columns (possibly nested) take the vectorised path: leaves are flattened to
``a.b`` keys, checked column by column, and encoded by polars. JSON-string columns
(CSV, NDJSON read as text) are parsed per row with the same rules and the same output
format, because polars' JSON decoding coerces mixed-type values silently.

The guards: keys that look like secrets (:func:`looks_secret`), and values that hold a
payment card number, alone or inside text (:func:`contains_card_number`: a run of digit
groups separated by single spaces or dashes, some consecutive groups of which make 13-19
digits passing the Luhn check). Values of rejected rows are never encoded (a value over
the length limit may be hundreds of megabytes); the rejects file gets them masked and
cut by ``originals``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import polars as pl

from kraiter_sync.jsontypes import is_mixed
from kraiter_sync.validate._series import full
from kraiter_sync.validate.cards import (
    CARD_CANDIDATE,
    CARD_RUN,
    card_number_mask,
    card_number_spans,
    contains_card_number,
    is_card_number,
    luhn_expr,
)
from kraiter_sync.validate.mixed import has_legacy_type, object_part, take_apart
from kraiter_sync.validate.options import ValidationOptions
from kraiter_sync.validate.text_types import encode_values, json_values, type_leaf

__all__ = [
    "PLACEHOLDER",
    "CanonicalProperties",
    "canonical_properties",
    "card_number_mask",
    "card_number_spans",
    "contains_card_number",
    "is_card_number",
    "looks_secret",
]

#: Key fragments that name credentials; matched case-insensitively anywhere in the key.
_SECRET = re.compile(r"(?i)password|passwd|secret|token|api[_\-]?key|private[_\-]?key|credential")
#: What the rejects file puts in place of a value (``originals``): a row read back from a
#: rejects file must not send the placeholder instead of the value.
PLACEHOLDER = (
    r"\[(?:masked: [0-9]+ characters|binary: [0-9]+ bytes|nested deeper than [0-9]+ levels)"
    r"|…\[cut: [0-9]+ characters in all\]"
)
_PLACEHOLDER = re.compile(PLACEHOLDER)
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


def _scan_text(s: pl.Series, *, find_cards: bool) -> tuple[pl.Series | None, pl.Series | None]:
    """Which values hold a rejects-file placeholder, and which a card number (None when
    none does): one regex pass over the column, then the few candidates only."""
    pattern = f"{CARD_RUN}|{PLACEHOLDER}" if find_cards else PLACEHOLDER
    cand = s.str.contains(pattern).fill_null(False)
    if not cand.any():
        return None, None
    idx = cand.arg_true()
    sub = s.gather(idx)
    none = full(len(s), False, pl.Boolean)
    placeholder = sub.str.contains(PLACEHOLDER).fill_null(False)
    card = card_number_mask(sub) if find_cards else None
    return (
        none.scatter(idx, placeholder) if placeholder.any() else None,
        none.scatter(idx, card) if card is not None else None,
    )


def _flatten(s: pl.Series, max_depth: int) -> tuple[list[tuple[str, pl.Series]], list[pl.Series]]:
    """Leaves of a struct column as ``(a.b key, column)``, depth first in field order,
    plus the structs nested deeper than ``max_depth`` (not descended: their rows are
    rejected). A mixed column (``jsontypes``) is a leaf; its objects are flattened under
    its key. Iterative, so no nesting depth can exhaust Python's stack."""
    leaves: list[tuple[str, pl.Series]] = []
    too_deep: list[pl.Series] = []
    stack: list[tuple[Iterator[str], pl.Series, str, int]] = [(iter(s.struct.fields), s, "", 1)]
    while stack:
        fields, struct, prefix, depth = stack[-1]
        name = next(fields, None)
        if name is None:
            stack.pop()
            continue
        child = struct.struct.field(name)
        key = f"{prefix}{name}"
        if is_mixed(child.dtype):
            leaves.append((key, child))
            objects = object_part(child)
            if objects is None:
                continue
            child = objects
        if not isinstance(child.dtype, pl.Struct):
            leaves.append((key, child))
        elif depth >= max_depth:
            too_deep.append(child)
        else:
            stack.append((iter(child.struct.fields), child, f"{key}.", depth + 1))
    return leaves, too_deep


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
        # characters never outnumber bytes and a card number needs 13 digits
        longest = s.str.len_bytes().max()
        found: list[pl.Expr] = []
        if isinstance(longest, int) and longest > options.max_value_length:
            too_long = (s.str.len_chars() > options.max_value_length).fill_null(False)
            if too_long.any():
                found.append(pl.when(pl.lit(too_long)).then(pl.lit("properties.value_too_long")))
                # the row is rejected: its value is neither scanned nor encoded (it may be
                # hundreds of megabytes)
                s = pl.select(pl.when(~pl.lit(too_long)).then(pl.lit(s))).to_series()
                longest = s.str.len_bytes().max()
        if isinstance(longest, int) and longest >= 13:  # (no shorter value can match)
            placeholder, card = _scan_text(s, find_cards=not options.allow_card_numbers)
            if placeholder is not None:
                found.append(pl.when(pl.lit(placeholder)).then(pl.lit("properties.placeholder")))
            if card is not None:
                found.append(pl.when(pl.lit(card)).then(pl.lit("properties.card_number")))
        if found:
            rule = pl.select(pl.coalesce(*found)).to_series()
    elif s.dtype.is_integer() and not options.allow_card_numbers and _may_hold_cards(s):
        cand = (
            (s.abs() >= 10**12).fill_null(False) if s.dtype.is_signed_integer() else (s >= 10**12)
        )
        if cand.fill_null(False).any():
            txt = s.cast(pl.String).str.strip_chars_start("-")  # a sign is not a digit
            card = pl.select(
                pl.lit(cand).fill_null(False)
                & pl.lit(txt).str.contains(CARD_CANDIDATE).fill_null(False)
                & luhn_expr(pl.lit(txt)).fill_null(False)
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


def _mixed_leaf(
    key: str, leaf: pl.Series, options: ValidationOptions, *, legacy: bool, rules: list[pl.Series]
) -> tuple[pl.Series, bool]:
    """A mixed column (``jsontypes``) checked part by part: (value, whether the value is
    JSON text). Each part is a plain column of one type, so each value gets the JSON
    text it would get in a column of its own type, whatever else its chunk holds."""
    apart = take_apart(leaf, legacy=legacy)
    if apart.unsupported is not None:
        rules.append(
            pl.select(
                pl.when(pl.lit(apart.unsupported)).then(pl.lit("properties.unsupported_type"))
            ).to_series()
        )
    values = []
    for part in apart.parts:
        if part.null_count() == len(part):
            continue
        declared = type_leaf(key, part, {} if legacy else options.types, text=False)
        if declared is not None and declared.rule is not None:
            rules.append(declared.rule)
        for piece in declared.parts if declared is not None else [part]:
            value, rule = _leaf(key, piece, options)
            values.append(value)
            if rule is not None:
                rules.append(rule)
    raws = [r for r in apart.raw if r.null_count() < len(r)]
    if len(values) == 1 and not raws:
        return values[0], False
    if not values and not raws:
        return full(len(leaf), None, pl.String, key), True
    texts = [pl.lit(json_values(v)) for v in values] + [pl.lit(r) for r in raws]
    return pl.select(pl.coalesce(texts)).to_series().alias(key), True


def _struct_path(
    s: pl.Series, options: ValidationOptions, *, legacy: bool = False
) -> CanonicalProperties:
    leaves, too_deep = _flatten(s, options.max_depth)
    n = len(s)
    rules: list[pl.Series] = [
        pl.select(pl.when(pl.lit(deep).is_not_null()).then(pl.lit("properties.too_deep")))
        .to_series()
        .alias("rule")
        for deep in too_deep
    ]
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
        mixed = is_mixed(leaf.dtype)
        typed = (
            _typed_leaf(key, leaf, options, text=key in top_text, rules=rules)
            if (top_text or options.types) and not mixed
            else None
        )
        is_raw = False
        if mixed:
            value, is_raw = _mixed_leaf(key, leaf, options, legacy=legacy, rules=rules)
            typed_any = typed_any or has_legacy_type(leaf.dtype)
        elif typed is None:
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
    frame = pl.DataFrame({k: columns[k].alias(k) for k in sorted(columns)})
    if frame.width > options.max_properties:  # else no row can have too many
        count = frame.select(pl.sum_horizontal(pl.all().is_not_null())).to_series()
        rules.append(
            pl.select(
                pl.when(pl.lit(count) > options.max_properties).then(pl.lit("properties.too_many"))
            ).to_series()
        )
    rules = [r for r in rules if r.null_count() < n]  # most checks find nothing
    if raw:
        encoded = encode_values(columns, raw)
    else:
        encoded = _encode(frame) if columns else full(n, "{}", pl.String)
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


def _flatten_obj(obj: dict[str, Any], max_depth: int) -> tuple[list[tuple[str, Any]], bool]:
    """Leaves of a parsed object as ``(a.b key, value)``, depth first in key order, and
    whether an object sits deeper than ``max_depth`` (not descended)."""
    leaves: list[tuple[str, Any]] = []
    too_deep = False
    stack: list[tuple[Iterator[tuple[str, Any]], str, int]] = [(iter(obj.items()), "", 1)]
    while stack:
        items, prefix, depth = stack[-1]
        item = next(items, None)
        if item is None:
            stack.pop()
            continue
        key, value = item
        if not isinstance(value, dict):
            leaves.append((f"{prefix}{key}", value))
        elif depth >= max_depth:
            too_deep = True
        else:
            stack.append((iter(value.items()), f"{prefix}{key}.", depth + 1))
    return leaves, too_deep


def canonical_json_row(text: str | None, options: ValidationOptions) -> tuple[str, str | None]:
    """One JSON-text properties value → (canonical JSON, rule or None). The reference path.

    A rejected value gives ``{}``: its JSON is never sent, and need not be built."""
    if text is None or not text.strip():
        return "{}", None
    try:
        obj = json.loads(text)
    except RecursionError:  # nested deeper than the parser can go
        return "{}", "properties.too_deep"
    except ValueError:
        return "{}", "properties.invalid_json"
    if not isinstance(obj, dict):
        return "{}", "properties.invalid_json"
    leaves, too_deep = _flatten_obj(obj, options.max_depth)
    flat: dict[str, Any] = {}
    rule: str | None = "properties.too_deep" if too_deep else None
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
            elif _PLACEHOLDER.search(value):
                rule = rule or "properties.placeholder"
            elif not options.allow_card_numbers and contains_card_number(value):
                rule = rule or "properties.card_number"
        elif (
            isinstance(value, int)
            and not isinstance(value, bool)
            and not options.allow_card_numbers
            and is_card_number(str(abs(value)))
        ):
            rule = rule or "properties.card_number"
        flat[key] = value
    if len(flat) > options.max_properties:
        rule = rule or "properties.too_many"
    if rule is not None:
        return "{}", rule
    text_out = json.dumps(dict(sorted(flat.items())), ensure_ascii=False, separators=(",", ":"))
    return text_out, None


def _legacy_json(values: pl.Series, typed: pl.Series, options: ValidationOptions) -> pl.Series:
    """What an earlier version (no typing) made of these properties, null where the same."""
    untyped = dataclasses.replace(options, text_properties=frozenset(), types={}, legacy_keys=False)
    legacy = canonical_properties(values, untyped, legacy=True).json
    return (
        pl.select(pl.when(pl.lit(legacy) != pl.lit(typed)).then(pl.lit(legacy)))
        .to_series()
        .alias("legacy_properties")
    )


def _mixed_properties(
    values: pl.Series, options: ValidationOptions, *, legacy: bool
) -> CanonicalProperties:
    """A properties column that holds an object in some rows and something else in
    others: the objects as usual, the others rejected as not an object."""
    objects = object_part(values)
    n = len(values)
    if objects is None:
        out = CanonicalProperties(
            full(n, "{}", pl.String, "properties"), full(n, None, pl.String, "rule")
        )
    else:
        out = canonical_properties(objects, options, legacy=legacy)
    other = (values.is_not_null() & (objects.is_null() if objects is not None else True)).fill_null(
        False
    )
    if other.any():
        out.rule = (
            pl.select(
                pl.when(pl.lit(other))
                .then(pl.lit("properties.invalid_json"))
                .otherwise(pl.lit(out.rule))
            )
            .to_series()
            .alias("rule")
        )
    return out


def canonical_properties(
    values: pl.Series, options: ValidationOptions, *, legacy: bool = False
) -> CanonicalProperties:
    """Flatten, check and encode a properties column of any supported dtype (with
    ``legacy``: mixed columns as an earlier version coerced them)."""
    n = len(values)
    if is_mixed(values.dtype):  # objects in some rows, other values in others
        return _mixed_properties(values, options, legacy=legacy)
    if isinstance(values.dtype, pl.Struct):
        # a null struct row means "no properties"
        out = _struct_path(values, options, legacy=legacy)
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
        n_bytes = values.str.len_bytes()
        huge = (n_bytes > options.max_properties_bytes).fill_null(False)
        if huge.any():  # refused unparsed (and never copied into Python)
            out_rule = pl.select(
                pl.when(pl.lit(huge)).then(pl.lit("properties.too_large")).otherwise(out_rule)
            ).to_series()
            values = pl.select(pl.when(~pl.lit(huge)).then(pl.lit(values))).to_series()
        idx = (values.str.strip_chars().str.len_bytes() > 0).fill_null(False).arg_true()
        if len(idx):
            pairs = [canonical_json_row(v, options) for v in values.gather(idx).to_list()]
            out_json = out_json.scatter(idx, pl.Series([p for p, _ in pairs], dtype=pl.String))
            out_rule = out_rule.scatter(idx, pl.Series([r for _, r in pairs], dtype=pl.String))
        return CanonicalProperties(out_json, out_rule)
    # a list, a number, binary...: not an object, whatever it holds
    rule = pl.select(
        pl.when(pl.lit(values).is_not_null()).then(pl.lit("properties.invalid_json"))
    ).to_series()
    return CanonicalProperties(full(n, "{}", pl.String, "properties"), rule.alias("rule"))
