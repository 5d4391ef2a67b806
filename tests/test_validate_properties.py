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
