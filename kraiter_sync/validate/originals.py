"""Original values for the rejects file: enough to find and fix a row, never a refused
secret or card number, never a field of hundreds of megabytes.

Every original value is text. In it:

* **masked**: a property under a key that looks like a secret, or a value that holds a
  card number (unless the options allow them, when they would be sent anyway), becomes
  ``[masked: 19 characters, hash 3f2a9c81d0e4]``; the key stays. The hash is an
  HMAC-SHA256 under a random key drawn once per process and never stored: equal values
  of one run show the same hash, and nobody can recover a card number by hashing
  candidates (an unkeyed hash of a 16-digit number could be reversed that way).
* **cut**: a string longer than :data:`REJECT_VALUE_LIMIT` characters keeps its first
  1,000, followed by ``…[cut: 209715200 characters in all]``.
* **binary**: ``[binary: 2 bytes, hash …]``.
* properties nested deeper than ``max_depth`` show ``[nested deeper than 32 levels]``.

Rejected rows are few, so the masking runs per value where it must; cutting is
vectorised, so a huge value is never copied whole.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable
from functools import cache
from typing import Any

import polars as pl

from kraiter_sync.validate._series import column
from kraiter_sync.validate.options import ValidationOptions
from kraiter_sync.validate.properties import (
    _SECRET,
    _may_hold_cards,
    card_number_mask,
    card_number_spans,
    is_card_number,
    looks_secret,
)

__all__ = ["REJECT_VALUE_LIMIT", "mask", "original_values"]

#: Longest original value (characters) the rejects file holds; longer ones are cut.
REJECT_VALUE_LIMIT = 1_000
_FIELDS = ("email", "contact_id", "name", "timestamp")


#: Secret values longer than this are masked without a hash (hashing them would copy
#: them whole).
_HASH_LIMIT = 1 << 20
#: How far past the limit a value is read: a card number that starts before the cut
#: ends within 37 characters, and is masked whole.
_HEAD = REJECT_VALUE_LIMIT + 40


@cache
def _key() -> bytes:
    return secrets.token_bytes(32)


def _digest(data: bytes) -> str:
    return hmac.new(_key(), data, hashlib.sha256).hexdigest()[:12]


def mask(value: str) -> str:
    """What the rejects file shows instead of a refused secret or card number."""
    return f"[masked: {len(value)} characters, hash {_digest(value.encode())}]"


def _binary(value: bytes) -> str:
    return f"[binary: {len(value)} bytes, hash {_digest(value)}]"


def _shown_text(
    head: str, length: int, mask_cards: bool, redact: Callable[[str], str] | None = None
) -> str:
    """A text value as the rejects file shows it, from its first :data:`_HEAD`
    characters and its full length: card numbers masked where they are, the rest cut
    after :data:`REJECT_VALUE_LIMIT` characters (or after a card number crossing that
    point) with the full length recorded; ``redact`` applies to the part kept."""
    spans = card_number_spans(head) if mask_cards else []
    cut_at = min(length, REJECT_VALUE_LIMIT)
    for start, end in spans:
        if start < cut_at < end:
            cut_at = end
    parts: list[str] = []
    pos = 0
    for start, end in spans:
        if start >= cut_at:
            break
        parts += [head[pos:start], mask(head[start:end])]
        pos = end
    parts.append(head[pos:cut_at])
    kept = "".join(parts)
    if redact is not None:
        kept = redact(kept)
    if cut_at < length:
        kept += f"…[cut: {length} characters in all]"
    return kept


def _shown(text: pl.Series, mask_cards: bool, keep: pl.Series | None = None) -> pl.Series:
    """:func:`_shown_text` for the rows ``keep`` selects (all when None) of a text column.

    A long value is only read as far as it is shown: its first :data:`_HEAD` characters
    and its length are taken from the whole column before the rows are selected (a
    filter copies what it keeps; slicing does not). Only values that are long or may
    hold a card number go through Python."""
    longest = text.str.len_bytes().max()
    n_chars: pl.Series | None = None
    if isinstance(longest, int) and longest > _HEAD:
        n_chars = text.str.len_chars()
        text = text.str.slice(0, _HEAD)
    if keep is not None:
        text = text.filter(keep)
        n_chars = n_chars.filter(keep) if n_chars is not None else None
    if not isinstance(longest, int) or longest < 13:
        return text
    if n_chars is None:
        n_chars = text.str.len_chars()
    need = (n_chars > REJECT_VALUE_LIMIT).fill_null(False)
    if mask_cards:
        cards = card_number_mask(text)
        if cards is not None:
            need = need | cards
    idx = need.arg_true()
    if not len(idx):
        return text
    shown = [
        _shown_text(head, length, mask_cards)
        for head, length in zip(
            text.gather(idx).to_list(), n_chars.gather(idx).to_list(), strict=True
        )
    ]
    return text.scatter(idx, pl.Series(shown, dtype=pl.String))


def _masked_all(text: pl.Series, keep: pl.Series | None = None) -> pl.Series:
    """Every value masked (a secret-looking key): length always, hash unless huge."""
    n_chars = text.str.len_chars()
    heads = text.str.slice(0, _HASH_LIMIT + 1)
    if keep is not None:
        n_chars, heads = n_chars.filter(keep), heads.filter(keep)
    idx = heads.is_not_null().arg_true()
    if not len(idx):
        return heads
    lengths = n_chars.gather(idx).to_list()
    shown = [
        mask(head) if length <= _HASH_LIMIT else f"[masked: {length} characters]"
        for head, length in zip(heads.gather(idx).to_list(), lengths, strict=True)
    ]
    return heads.scatter(idx, pl.Series(shown, dtype=pl.String))


def _has_binary(dtype: Any) -> bool:
    if dtype == pl.Binary:
        return True
    inner = getattr(dtype, "inner", None)
    if inner is not None and _has_binary(inner):
        return True
    return isinstance(dtype, pl.Struct) and any(_has_binary(f.dtype) for f in dtype.fields)


def _jsonable(value: Any) -> Any:
    """A Python value from a nested column, binary shown as a marker."""
    if isinstance(value, bytes | bytearray):
        return _binary(bytes(value))
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _as_text(s: pl.Series) -> pl.Series:
    """Any column as text without failing: strings as they are, datetimes formatted,
    nested values as JSON, binary as a marker."""
    dtype = s.dtype
    if dtype == pl.String:
        return s
    if dtype == pl.Null:
        return s.cast(pl.String)
    if isinstance(dtype, pl.Datetime):
        return s.dt.to_string()
    if dtype == pl.Binary:  # (hashed when at most a megabyte: no big value is copied)
        sizes = s.bin.size()
        small = pl.select(pl.when(pl.lit(sizes) <= _HASH_LIMIT).then(pl.lit(s))).to_series()
        return pl.Series(
            s.name,
            [
                None if n is None else (_binary(v) if v is not None else f"[binary: {n} bytes]")
                for v, n in zip(small.to_list(), sizes.to_list(), strict=True)
            ],
            pl.String,
        )
    if dtype.is_nested():
        if _has_binary(dtype):
            texts = [
                None if v is None else json.dumps(_jsonable(v), ensure_ascii=False, default=str)
                for v in s.to_list()
            ]
            return pl.Series(s.name, texts, pl.String)
        encoded = pl.select(pl.struct(pl.lit(s).alias("v")).struct.json_encode()).to_series()
        return encoded.str.slice(5, encoded.str.len_chars() - 6)  # {"v":<value>} → <value>
    try:  # (durations, for one, do not cast)
        return s.cast(pl.String, strict=False)
    except pl.exceptions.PolarsError:
        return pl.Series(s.name, [None if v is None else str(v) for v in s.to_list()], pl.String)


#: Values to set in the encoded JSON of a row: (row, path of keys, value shown).
_Patches = list[tuple[int, tuple[str, ...], str]]


def _patch_where(
    s: pl.Series, hits: pl.Series, path: tuple[str, ...], show: Callable[[Any], str]
) -> _Patches:
    """Patches for the values of ``s`` where ``hits``: their type changes (a number
    masked as text), so they are set after the row is encoded."""
    idx = hits.fill_null(False).arg_true()
    values = s.gather(idx).to_list()
    return [(row, path, show(v)) for row, v in zip(idx.to_list(), values, strict=True)]


def _leaf(
    path: tuple[str, ...], s: pl.Series, options: ValidationOptions, keep: pl.Series
) -> tuple[pl.Series, _Patches]:
    """One property leaf (the whole column) as the rejects file shows its ``keep`` rows,
    and the patches their row JSON needs.

    Text is shown as :func:`_shown` does (cards masked in place, long values cut);
    binary as a marker. Numbers, booleans, dates and lists keep their type unless a
    value must be masked or cut: that value is patched in as text."""
    dtype = s.dtype
    key = ".".join(path)
    if isinstance(dtype, pl.Categorical | pl.Enum):
        s, dtype = s.cast(pl.String), pl.String()
    if not options.allow_secret_keys and looks_secret(key):
        if dtype == pl.String:
            return _masked_all(s, keep), []
        text = _as_text(s.filter(keep))
        if dtype == pl.Binary:
            return _masked_all(text), []
        return s.filter(keep), _patch_where(text, text.is_not_null(), path, mask)
    mask_cards = not options.allow_card_numbers
    if dtype == pl.String:
        return _shown(s, mask_cards, keep), []
    s = s.filter(keep)
    if dtype == pl.Binary:
        return _as_text(s), []
    if dtype.is_integer():
        if not mask_cards or not _may_hold_cards(s):
            return s, []
        digits = s.cast(pl.String).str.strip_chars_start("-")
        cards = [v is not None and is_card_number(v) for v in digits.to_list()]
        return s, _patch_where(s.cast(pl.String), pl.Series(cards), path, mask)
    if dtype.is_nested():  # lists: text where long or holding a card number
        if _has_binary(dtype):
            return _shown(_as_text(s), mask_cards), []
        text = _as_text(s)
        shown = _shown(text, mask_cards)
        changed = text.ne_missing(shown)
        if not changed.any():
            return s, []
        return s, _patch_where(shown, changed, path, str)
    return s, []  # numbers, booleans, dates, times, durations: as polars encodes them


def _struct(
    s: pl.Series, path: tuple[str, ...], options: ValidationOptions, keep: pl.Series
) -> tuple[pl.Series, _Patches]:
    """The ``keep`` rows of a properties struct, every leaf through :func:`_leaf`, same
    nesting. The struct is taken apart before rows are selected: selecting rows of a
    struct and then a field of it copied a 200 MB value five times over (polars 2.1)."""
    fields = []
    patches: _Patches = []
    for name in s.struct.fields:
        child = s.struct.field(name)
        child_path = (*path, name)
        if isinstance(child.dtype, pl.Struct):
            if len(child_path) > options.max_depth:
                marker = f"[nested deeper than {options.max_depth} levels]"
                child = pl.select(
                    pl.when(pl.lit(child.is_not_null().filter(keep))).then(pl.lit(marker))
                ).to_series()
            else:
                child, more = _struct(child, child_path, options, keep)
                patches += more
        else:
            child, more = _leaf(child_path, child, options, keep)
            patches += more
        fields.append(child.alias(name))
    valid = s.is_not_null().filter(keep)
    if not fields:
        return pl.select(pl.when(pl.lit(valid)).then(pl.lit(s.filter(keep)))).to_series(), patches
    built = pl.select(pl.struct(fields)).to_series()
    return pl.select(pl.when(pl.lit(valid)).then(pl.lit(built))).to_series(), patches


def _patched(encoded: pl.Series, patches: _Patches) -> pl.Series:
    """Encoded row JSON with the patches set (only the rows that have some)."""
    if not patches:
        return encoded
    by_row: dict[int, list[tuple[tuple[str, ...], str]]] = {}
    for row, path, value in patches:
        by_row.setdefault(row, []).append((path, value))
    rows = sorted(by_row)
    fixed = []
    for row, text in zip(rows, encoded.gather(rows).to_list(), strict=True):
        obj = json.loads(text)
        for path, value in by_row[row]:
            node = obj
            for part in path[:-1]:
                node = node[part]
            node[path[-1]] = value
        fixed.append(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
    return encoded.scatter(rows, pl.Series(fixed, dtype=pl.String))


def _walk(obj: dict[str, Any], options: ValidationOptions) -> dict[str, Any]:
    """A parsed JSON properties object with refused values masked and long ones cut
    (depth-limited, like the validator)."""

    def walk(value: dict[str, Any], prefix: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = f"{prefix}{k}"
            if not isinstance(v, dict):
                out[k] = _json_leaf(key, v, options)
            elif depth >= options.max_depth:
                out[k] = f"[nested deeper than {options.max_depth} levels]"
            else:
                out[k] = walk(v, f"{key}.", depth + 1)
        return out

    return walk(obj, "", 1)


def _json_leaf(key: str, value: Any, options: ValidationOptions) -> Any:
    """One parsed leaf as :func:`_leaf` shows a column's: the same masks and cuts."""
    if value is None or isinstance(value, bool):
        return value
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if not options.allow_secret_keys and looks_secret(key):
        return mask(text)
    mask_cards = not options.allow_card_numbers
    if isinstance(value, float):
        return value
    if isinstance(value, int):
        return mask(text) if mask_cards and is_card_number(str(abs(value))) else value
    shown = _shown_text(text[:_HEAD], len(text), mask_cards)
    return value if shown == text else shown


#: A quoted secret-looking key and its value, in text that is not a JSON object.
_SECRET_PAIR = re.compile(
    r'("(?:[^"\\]|\\.)*(?:' + _SECRET.pattern.removeprefix("(?i)") + r')(?:[^"\\]|\\.)*"\s*:\s*)'
    r'("(?:[^"\\]|\\.)*"?|[^,}\]\s]+)',
    re.IGNORECASE,
)


def _redact_secret_pairs(text: str) -> str:
    return _SECRET_PAIR.sub(lambda m: m.group(1) + json.dumps(mask(m.group(2))), text)


def _raw_text(head: str, length: int, options: ValidationOptions) -> str:
    """Text that is not a JSON object, or too big to parse, from its first characters:
    cut, and masked as far as text allows (card numbers; the values of quoted
    secret-looking keys)."""
    redact = None if options.allow_secret_keys else _redact_secret_pairs
    return _shown_text(head, length, not options.allow_card_numbers, redact)


def _json_text(text: str, options: ValidationOptions) -> str:
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        obj = None
    if not isinstance(obj, dict):
        return _raw_text(text[:_HEAD], len(text), options)
    shown = _walk(obj, options)
    if shown == obj:  # nothing to mask or cut: the text as it came
        return text
    return json.dumps(shown, ensure_ascii=False, separators=(",", ":"))


def _properties(s: pl.Series, options: ValidationOptions, keep: pl.Series) -> pl.Series:
    if isinstance(s.dtype, pl.Struct):
        shown, patches = _struct(s, (), options, keep)
        return _patched(_as_text(shown), patches)
    if s.dtype != pl.String:
        return _shown(_as_text(s.filter(keep)), not options.allow_card_numbers)
    # a text too big to parse is read only as far as the rejects file shows it
    n_chars = s.str.len_chars().filter(keep).to_list()
    big = (s.str.len_bytes() > options.max_properties_bytes).fill_null(False)
    texts = pl.select(
        pl.when(pl.lit(big)).then(pl.lit(s).str.slice(0, _HEAD)).otherwise(pl.lit(s))
    ).to_series()
    out: list[str | None] = []
    for text, length, is_big in zip(
        texts.filter(keep).to_list(), n_chars, big.filter(keep).to_list(), strict=True
    ):
        if text is None:
            out.append(None)
        elif is_big:
            out.append(_raw_text(text, length, options))
        else:
            out.append(_json_text(text, options))
    return pl.Series(s.name, out, dtype=pl.String)


def original_values(
    mapped: pl.DataFrame, keep: pl.Series, options: ValidationOptions
) -> pl.DataFrame:
    """The rejects file's original-value columns for the rows ``keep`` selects (the
    rejected ones): email, contact id, name, timestamp and properties, as text."""
    cols = {}
    for name in _FIELDS:
        s = column(mapped, name)
        shown = (
            _shown(s, False, keep)
            if s.dtype == pl.String
            else _shown(_as_text(s.filter(keep)), False)
        )
        cols[name] = shown.alias(name)
    cols["properties"] = _properties(column(mapped, "properties"), options, keep).alias(
        "properties"
    )
    return pl.DataFrame(cols)
