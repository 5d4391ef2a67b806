"""Column helpers: constant columns without building Python lists (``[None] * n`` costs
~0.1 µs a row), and mapped fields that may be absent."""

from __future__ import annotations

from typing import Any

import polars as pl

__all__ = ["MAX_TEXT_BYTES", "column", "full", "overrule", "without_huge"]


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


#: Text fields longer than this many bytes (an email, an event name) are judged by their
#: length alone: trimming, lowering or parsing would copy them, several times over for a
#: field of hundreds of megabytes, and no valid value comes near it.
MAX_TEXT_BYTES = 64 * 1024


def without_huge(s: pl.Series, max_bytes: int) -> tuple[pl.Series, pl.Series | None]:
    """``s`` with its values over ``max_bytes`` bytes set to null (found for free: string
    offsets), and where they were (None when there were none)."""
    huge = (s.str.len_bytes() > max_bytes).fill_null(False)
    if not huge.any():
        return s, None
    return pl.select(pl.when(~pl.lit(huge)).then(pl.lit(s))).to_series().alias(s.name), huge


def overrule(rule: pl.Series, where: pl.Series | None, code: str) -> pl.Series:
    """``rule`` with ``code`` where ``where`` is true (nothing to do when it is None)."""
    if where is None:
        return rule
    return (
        pl.select(pl.when(pl.lit(where)).then(pl.lit(code)).otherwise(pl.lit(rule)))
        .to_series()
        .alias(rule.name)
    )
