"""Properties: flattening, canonical JSON, and the refusal rules."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kraiter_sync.validate.options import ValidationOptions
from kraiter_sync.validate.properties import (
    _encode,
    canonical_json_row,
    canonical_properties,
    is_card_number,
)

OPTS = ValidationOptions()


def test_nested_struct_flattens_sorted_compact_nulls_dropped() -> None:
    s = pl.Series(
        [
            {"z": 1, "a": {"y": 'q"uote', "x": None}, "when": dt.date(2024, 1, 2), "ok": True},
            {"z": None, "a": {"y": None, "x": 2.5}, "when": None, "ok": None},
        ]
    )
    out = canonical_properties(s, OPTS)
    assert out.json.to_list() == [
        '{"a.y":"q\\"uote","ok":true,"when":"2024-01-02","z":1}',
        '{"a.x":2.5}',
    ]
    assert out.rule.to_list() == [None, None]


def test_struct_and_json_text_give_identical_canonical_json() -> None:
    rows = [
        {"b": 1, "a": {"c": "é\n", "d": 0.1, "e": 1e20}, "f": False},
        {"b": None, "a": {"c": None, "d": -3.5, "e": 2.0}, "f": True},
    ]
    from_struct = canonical_properties(pl.Series(rows), OPTS).json.to_list()
    from_text = canonical_properties(pl.Series([json.dumps(r) for r in rows]), OPTS).json
    assert from_struct == from_text.to_list()


def test_null_struct_and_empty_inputs_are_empty_objects() -> None:
    assert canonical_properties(pl.Series([{"a": 1}, None]), OPTS).json.to_list() == [
        '{"a":1}',
        "{}",
    ]
    assert canonical_properties(pl.Series([None, None]), OPTS).json.to_list() == ["{}", "{}"]
    assert canonical_json_row("", OPTS) == ("{}", None)


def test_datetime_values_become_iso_strings() -> None:
    s = pl.Series([{"at": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)}])
    assert canonical_properties(s, OPTS).json.to_list() == ['{"at":"2024-01-02T03:04:05.000Z"}']


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_inf_rejected(bad: float) -> None:
    out = canonical_properties(pl.Series([{"x": bad}, {"x": 1.0}]), OPTS)
    assert out.rule.to_list() == ["properties.nan", None]
    assert canonical_json_row('{"x": NaN}', OPTS)[1] == "properties.nan"


@pytest.mark.parametrize(
    "key", ["password", "user_password", "apiKey", "api_key", "Auth.Token", "client_secret"]
)
def test_secret_keys_refused_unless_allowed(key: str) -> None:
    s = pl.Series([{key: "hunter2"}, {key: None}])
    assert canonical_properties(s, OPTS).rule.to_list() == ["properties.secret", None]
    allowed = ValidationOptions(allow_secret_keys=True)
    assert canonical_properties(s, allowed).rule.to_list() == [None, None]


def test_card_numbers_refused_unless_allowed() -> None:
    s = pl.Series([{"v": "4111 1111 1111 1111"}, {"v": "4111111111111112"}, {"v": "hello"}])
    assert canonical_properties(s, OPTS).rule.to_list() == ["properties.card_number", None, None]
    ints = pl.Series([{"n": 4111111111111111}, {"n": 12}])
    assert canonical_properties(ints, OPTS).rule.to_list() == ["properties.card_number", None]
    allowed = ValidationOptions(allow_card_numbers=True)
    assert canonical_properties(s, allowed).rule.to_list() == [None, None, None]
    assert is_card_number("5500-0000-0000-0004")
    assert not is_card_number("1234")


def test_limits() -> None:
    many = {f"k{i:03d}": i for i in range(101)}
    assert canonical_properties(pl.Series([many]), OPTS).rule.to_list() == ["properties.too_many"]
    long_key = {"k" * 129: 1}
    assert canonical_properties(pl.Series([long_key]), OPTS).rule.to_list() == [
        "properties.key_too_long"
    ]
    long_value = {"k": "v" * 10_001}
    assert canonical_properties(pl.Series([long_value]), OPTS).rule.to_list() == [
        "properties.value_too_long"
    ]


def test_lists_unsupported_and_invalid_json() -> None:
    assert canonical_properties(pl.Series([{"l": [1, 2]}]), OPTS).rule.to_list() == [
        "properties.unsupported_type"
    ]
    texts = pl.Series(['{"l": [1]}', "[1, 2]", "{not json", '{"a": {"b": 1}, "a.b": 2}'])
    assert canonical_properties(texts, OPTS).rule.to_list() == [
        "properties.unsupported_type",
        "properties.invalid_json",
        "properties.invalid_json",
        "properties.key_conflict",
    ]


@settings(max_examples=80, deadline=None)
@given(
    st.dictionaries(
        st.text(alphabet="abc._ é", min_size=1, max_size=4),
        st.recursive(
            st.one_of(
                st.none(),
                st.booleans(),
                st.integers(-(10**6), 10**6),
                st.floats(allow_nan=False, allow_infinity=False),
                st.text(max_size=5),
            ),
            lambda inner: st.dictionaries(
                st.text(alphabet="xyz", min_size=1, max_size=2), inner, max_size=3
            ),
            max_leaves=6,
        ),
        max_size=5,
    )
)
def test_canonical_properties_are_idempotent(obj: dict[str, object]) -> None:
    once, rule = canonical_json_row(json.dumps(obj), OPTS)
    if rule is None:
        assert canonical_json_row(once, OPTS) == (once, None)
        assert json.loads(once) == dict(sorted(json.loads(once).items()))


def test_length_and_card_checks_at_the_byte_length_shortcuts() -> None:
    """Values on either side of the lengths below which scans are skipped."""
    base = "123456789012345678"
    card19 = next(base + d for d in "0123456789" if is_card_number(base + d))
    spaced = " ".join(card19)  # 37 characters: the longest card candidate
    card13 = next("412345678901" + d for d in "0123456789" if is_card_number("412345678901" + d))
    values = [
        {"v": spaced},
        {"v": card13},
        {"v": card13[:-1]},
        {"v": "é" * 10_000},  # 20,000 bytes but 10,000 characters: allowed
        {"v": "é" * 10_001},
        {"v": "x" * 10_000},
    ]
    assert len(spaced) == 37
    rules = canonical_properties(pl.Series(values), OPTS).rule.to_list()
    assert rules == [
        "properties.card_number",
        "properties.card_number",
        None,
        None,
        "properties.value_too_long",
        None,
    ]
    assert rules == [canonical_json_row(json.dumps(v), OPTS)[1] for v in values]
    wide = {f"k{i:03d}": i for i in range(100)}  # exactly the limit: no per-row count needed
    assert canonical_properties(pl.Series([wide]), OPTS).rule.to_list() == [None]


_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)
_LEAF_TYPES = {
    "s": (pl.String, _text),
    "f": (pl.Float64, st.floats(allow_nan=False, allow_infinity=False)),
    "b": (pl.Boolean, st.booleans()),
    "i8": (pl.Int8, st.integers(-(2**7), 2**7 - 1)),
    "i64": (pl.Int64, st.integers(-(2**63), 2**63 - 1)),
    "u32": (pl.UInt32, st.integers(0, 2**32 - 1)),
    "u64": (pl.UInt64, st.integers(0, 2**64 - 1)),
}


@st.composite
def _flat_frames(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(1, 12))
    kinds = draw(st.lists(st.sampled_from(sorted(_LEAF_TYPES)), min_size=1, max_size=5))
    cols = {}
    for j, kind in enumerate(kinds):
        dtype, values = _LEAF_TYPES[kind]
        # keys that need escaping, and ones a "key":null pattern could confuse
        name = draw(st.sampled_from(["a", "b.c", 'q"uote', "\u00e9", "tab\t", "null", f"k{j}"]))
        name += str(j)
        cols[name] = pl.Series(
            name, draw(st.lists(st.one_of(st.none(), values), min_size=n, max_size=n)), dtype
        )
    return pl.DataFrame(dict(sorted(cols.items())))


@settings(max_examples=150, deadline=None)
@given(frame=_flat_frames())
def test_encoded_objects_hold_exactly_the_non_null_values(frame: pl.DataFrame) -> None:
    """One compact object per row, keys in column order, null values left out (the
    ``"key":null`` entries are cut from polars' encoding: never inside a value)."""
    encoded = _encode(frame).to_list()
    for text, row in zip(encoded, frame.iter_rows(named=True), strict=True):
        expected = {k: v for k, v in row.items() if v is not None}
        assert json.loads(text) == expected
        assert list(json.loads(text)) == list(expected)
        if not any(isinstance(v, float) for v in expected.values()):
            # (polars writes small floats positionally: 1e-05 is 0.00001 there)
            assert text == json.dumps(expected, ensure_ascii=False, separators=(",", ":"))
