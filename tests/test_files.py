"""Spreadsheet-formula neutralisation (shared by rejects and exports)."""

from __future__ import annotations

import polars as pl
import pytest

from kraiter_sync.files import neutralise, neutralise_frame


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+33 6 12", "'+33 6 12"),
        ("-5", "'-5"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("alice@example.com", "alice@example.com"),
        ("", ""),
    ],
)
def test_neutralise(value: str, expected: str) -> None:
    assert neutralise(value) == expected


def test_frame_only_touches_strings_and_keeps_nulls() -> None:
    frame = pl.DataFrame({"s": ["=x", None, "ok"], "n": [-1, 2, 3]})
    out = neutralise_frame(frame)
    assert out["s"].to_list() == ["'=x", None, "ok"]
    assert out["n"].to_list() == [-1, 2, 3]
