"""The property guards: card numbers inside text, nesting depth, odd types, huge values."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from kraiter_sync.cli import main
from kraiter_sync.validate import ValidationOptions, validate_events
from kraiter_sync.validate.properties import (
    canonical_json_row,
    canonical_properties,
    contains_card_number,
)

OPTS = ValidationOptions()
VISA = "4111 1111 1111 1111"  # a test number: passes the Luhn check


def _events(**props: object) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "email": ["ada@example.com"],
            "name": ["signed_up"],
            "timestamp": ["2024-01-01T00:00:00Z"],
            "properties": [props],
        }
    )


@pytest.mark.parametrize(
    "text",
    [
        f"card {VISA}",
        f"card {VISA} exp 12/27",
        "paid with 4111-1111-1111-1111.",
        "x4111111111111111y",
        f"order 12 {VISA}",  # a longer run: the card is a span of whole groups
        "amex 3782 822463 10005 please",
        "5500000000000004",
    ],
)
def test_card_numbers_inside_text_are_found(text: str) -> None:
    assert contains_card_number(text)
    struct = canonical_properties(pl.Series([{"note": text}]), OPTS)
    assert struct.rule.to_list() == ["properties.card_number"]
    assert canonical_json_row(json.dumps({"note": text}), OPTS)[1] == "properties.card_number"


@pytest.mark.parametrize(
    "text",
    [
        "call 555 123 4567",
        "41111111111111111111",  # one group of 20 digits: an id, not a card
        "4111 1111 1111 1112",  # fails the Luhn check
        "4111  1111 1111 1111",  # a double space ends the run: no 13 digits in a row
        "invoice 2024-01-31",
        "",
    ],
)
def test_other_digits_are_not_card_numbers(text: str) -> None:
    assert not contains_card_number(text)
    assert canonical_properties(pl.Series([{"note": text}]), OPTS).rule.to_list() == [None]


def test_many_rows_take_the_vectorised_path_with_the_same_answer() -> None:
    texts = [f"card {VISA}", "plain", "4111111111111111", "12", None, "41111111111111111111"] * 50
    rules = canonical_properties(pl.Series([{"note": t} for t in texts]), OPTS).rule.to_list()
    expected = ["properties.card_number" if t and contains_card_number(t) else None for t in texts]
    assert rules == expected
    assert rules[:3] == ["properties.card_number", None, "properties.card_number"]


def test_negative_integer_card_numbers_are_found() -> None:
    ints = pl.Series([{"n": -4111111111111111}, {"n": 4111111111111111}, {"n": -5}])
    assert canonical_properties(ints, OPTS).rule.to_list() == [
        "properties.card_number",
        "properties.card_number",
        None,
    ]


def test_allow_card_numbers_lets_text_through() -> None:
    out = validate_events(
        _events(note=f"card {VISA}"), options=ValidationOptions(allow_card_numbers=True)
    )
    assert json.loads(out.valid["properties"][0]) == {"note": f"card {VISA}"}


def _nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {"x": 1}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


def test_nesting_deeper_than_the_limit_is_a_reject_row() -> None:
    ok = _nested(32)  # 32 levels: "k.k.…k.x", 63 characters
    deep = _nested(33)
    assert canonical_json_row(json.dumps(ok), OPTS)[1] is None
    assert canonical_json_row(json.dumps(deep), OPTS) == ("{}", "properties.too_deep")
    assert canonical_properties(pl.Series([deep, None]), OPTS).rule.to_list() == [
        "properties.too_deep",
        None,
    ]
    assert canonical_properties(pl.Series([ok]), OPTS).rule.to_list() == [None]


def test_json_text_nested_past_pythons_recursion_limit_is_a_reject_row() -> None:
    text = '{"k":' * 5000 + "1" + "}" * 5000  # json.loads raises RecursionError
    assert canonical_json_row(text, OPTS) == ("{}", "properties.too_deep")


def test_a_huge_json_text_is_refused_without_being_parsed() -> None:
    opts = ValidationOptions(max_properties_bytes=1000)
    big = json.dumps({"note": "v" * 2000})
    out = canonical_properties(pl.Series([big, '{"a":1}']), opts)
    assert out.rule.to_list() == ["properties.too_large", None]
    assert out.json.to_list() == ["{}", '{"a":1}']


def test_values_of_rejected_rows_are_not_encoded() -> None:
    """The JSON of a row over the length limit is never built (it may be huge)."""
    out = canonical_properties(pl.Series([{"v": "x" * 10_001}, {"v": "ok"}]), OPTS)
    assert out.rule.to_list() == ["properties.value_too_long", None]
    assert out.json.to_list() == ["{}", '{"v":"ok"}']


@pytest.mark.parametrize(
    "values",
    [pl.Series([[1, 2], None]), pl.Series([b"\x00\xff", None]), pl.Series([5, None])],
)
def test_a_properties_column_that_is_no_object_gives_reject_rows(values: pl.Series) -> None:
    out = canonical_properties(values, OPTS)
    assert out.rule.to_list() == ["properties.invalid_json", None]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["validate", *args])
    return result.exit_code, result.stdout, result.stderr


def test_a_binary_parquet_column_is_a_reject_row_not_a_panic(tmp_path: Path) -> None:
    src = tmp_path / "bin.parquet"
    pl.DataFrame(
        {
            "email": ["ada@example.com", "bob@example.com"],
            "event": ["signed_up", "signed_up"],
            "timestamp": ["2024-01-01T00:00:00Z"] * 2,
            "blob": [b"\x00\x01", None],
        }
    ).write_parquet(src)
    rejects = tmp_path / "rejects.csv"
    code, out, err = run(str(src), "--rejects", str(rejects), "--state-dir", str(tmp_path / "s"))
    assert code == 3, err
    assert "1 valid, 0 duplicates, 1 rejected" in out
    row = pl.read_csv(rejects).row(0, named=True)
    assert row["rule"] == "properties.unsupported_type"
    assert json.loads(row["properties"])["blob"].startswith("[binary: 2 bytes, hash ")


def test_a_list_typed_event_column_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "listevent.parquet"
    pl.DataFrame(
        {"email": ["ada@example.com"], "event": [["a", "b"]], "timestamp": ["2024-01-01"]}
    ).write_parquet(src)
    code, _out, err = run(str(src), "--state-dir", str(tmp_path / "s"))
    assert code == 2
    assert "Traceback" not in err
    assert "listevent.parquet: column 'event' (for name) holds List(String) values" in err
    assert "--map name=COLUMN" in err


def _deep_ndjson(path: Path, depth: int) -> None:
    value = '{"x":1}'
    for _ in range(depth - 1):
        value = '{"k":' + value + "}"
    path.write_text(
        '{"email":"ada@example.com","event":"e","timestamp":"2024-01-01T00:00:00Z",'
        f'"props":{value}}}\n'
    )


def test_properties_nested_200_deep_are_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "deep.ndjson"
    _deep_ndjson(src, 200)
    code, _out, err = run(str(src), "--state-dir", str(tmp_path / "s"))
    assert code == 2
    assert "Traceback" not in err
    # (its only line: nothing to read the columns from)
    assert "deep.ndjson: line 1 nests objects or lists more than 64 levels deep" in err


@pytest.mark.parametrize("depth", [200, 600, 5000])
def test_a_line_nested_deeper_than_64_among_others_is_a_reject_row(
    tmp_path: Path, depth: int
) -> None:
    """600 levels crashed polars' NDJSON reader (a segfault): the line's depth is
    counted before any parser sees it, and it becomes a reject with its line number."""
    src = tmp_path / "deep.ndjson"
    _deep_ndjson(src, 3)
    with src.open("a") as fh:
        fh.write("\n")  # a blank line: no row, but a line
        fh.write('{"email":"bo@example.com","event":"e","props":' + "[" * depth + "]" * depth)
        fh.write(',"timestamp":"2024-01-01T00:00:00Z"}\n')
    rejects = tmp_path / "rejects.csv"
    code, _out, err = run(str(src), "--rejects", str(rejects), "--state-dir", str(tmp_path / "s"))
    assert code == 3, err
    assert "Traceback" not in err
    row = pl.read_csv(rejects).row(0, named=True)
    assert (row["source_row"], row["rule"], row["field"]) == (2, "row.too_deep", "row")
    assert row["message"].startswith("line 3 nests objects or lists more than 64 levels deep")


def test_properties_nested_40_deep_are_a_reject_row(tmp_path: Path) -> None:
    src = tmp_path / "deep.ndjson"
    _deep_ndjson(src, 40)
    rejects = tmp_path / "rejects.csv"
    code, out, err = run(str(src), "--rejects", str(rejects), "--state-dir", str(tmp_path / "s"))
    assert code == 3, err
    assert "properties.too_deep" in out
    assert pl.read_csv(rejects)["rule"].to_list() == ["properties.too_deep"]
