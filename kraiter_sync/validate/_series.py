"""Column helpers: constant columns without building Python lists (``[None] * n`` costs
~0.1 µs a row), and mapped fields that may be absent."""

from __future__ import annotations

from typing import Any

import polars as pl

__all__ = ["column", "full"]


def full(n: int, value: Any, dtype: Any, name: str = "") -> pl.Series:
    """A column of ``n`` copies of ``value`` (``None`` for nulls) of type ``dtype``.

    (``new_from_index`` costs a few µs at any length; ``pl.repeat`` about 0.1 ms a call,
    which a chunk's dozens of constant columns add up.)"""
    return pl.Series(name, [value], dtype=dtype).new_from_index(0, n)


def column(frame: pl.DataFrame, name: str) -> pl.Series:
    """``frame[name]`` (a Null column as String), or nulls when the frame has no such
    column: the validator's way to read a mapped field that may be absent."""
    if name in frame.columns:
        s = frame[name]
        return s.cast(pl.String) if s.dtype == pl.Null else s
    return full(frame.height, None, pl.String, name)
