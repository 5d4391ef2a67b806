"""Event-name checks. Names are case-sensitive in Kraiter, so case is never changed."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import polars as pl

from kraiter_sync.validate import native
from kraiter_sync.validate._series import full
from kraiter_sync.validate.options import ValidationOptions

__all__ = ["check_names", "name_variants"]

_POLICY = {
    "snake_case": r"^[a-z0-9]+(?:_[a-z0-9]+)*$",
    "dot.case": r"^[a-z0-9_]+(?:\.[a-z0-9_]+)*$",
}


def check_names(values: pl.Series, options: ValidationOptions) -> pl.DataFrame:
    """Trim surrounding whitespace, apply the rename map, check; returns ``name``, ``rule``.

    Event data repeats a few names millions of times, so when the distinct names are
    few (a quarter of the rows or less) each is checked once and the results are mapped
    back: one cheap hash pass instead of a strip, a regex and three scans per row.
    """
    s = values.cast(pl.String)
    fast = native.distinct(s, len(s) // 4)
    if fast is not None:
        codes, first_rows = fast
        return _check_distinct(s, s.gather(first_rows), codes, options)
    distinct = s.drop_nulls().unique()
    if len(distinct) * 4 > len(s):
        return _check(s, options)
    small = _check(distinct, options)
    name = (
        s
        if small["name"].equals(distinct)  # trimming and renaming changed nothing
        else s.replace_strict(distinct, small["name"], return_dtype=pl.String)
    )
    rules = small["rule"]
    rule = pl.select(
        pl.when(pl.lit(s).is_null())
        .then(pl.lit("name.empty"))
        .otherwise(
            pl.lit(s).replace_strict(distinct, rules, default=None, return_dtype=pl.String)
            if rules.null_count() < len(rules)
            else pl.lit(None, pl.String)
        )
    ).to_series()
    return pl.DataFrame({"name": name.alias("name"), "rule": rule.alias("rule")})


def _check_distinct(
    s: pl.Series, distinct: pl.Series, codes: pl.Series, options: ValidationOptions
) -> pl.DataFrame:
    """:func:`check_names` from the native numbering: each distinct value checked once,
    results gathered by code (the code one past the last stands for null: name.empty)."""
    small = _check_few(distinct, options)
    rules = small["rule"]
    rule = (
        pl.concat([rules, pl.Series([None], dtype=pl.String)]).gather(codes)
        if rules.null_count() < len(rules)
        else full(len(s), None, pl.String)
    )
    if s.null_count():
        rule = pl.select(
            pl.when(pl.lit(s).is_null()).then(pl.lit("name.empty")).otherwise(pl.lit(rule))
        ).to_series()
    name = (
        s
        if small["name"].equals(distinct)  # trimming and renaming changed nothing
        else pl.concat([small["name"], pl.Series([None], dtype=pl.String)]).gather(codes)
    )
    return pl.DataFrame({"name": name.alias("name"), "rule": rule.alias("rule")})


#: Distinct names per chunk up to which their checks are remembered across chunks.
_REMEMBER_UP_TO = 1000

_Rules = tuple[tuple[tuple[str, str], ...], int, str | None]


def _check_few(distinct: pl.Series, options: ValidationOptions) -> pl.DataFrame:
    """:func:`_check` of a chunk's distinct names, remembered: event data repeats the same
    few names chunk after chunk, and checking them costs about 1 ms whatever their number."""
    if len(distinct) > _REMEMBER_UP_TO:
        return _check(distinct, options)
    rules = (tuple(sorted(options.rename.items())), options.max_name_length, options.name_policy)
    return _remembered(tuple(distinct.to_list()), rules)


@lru_cache(maxsize=64)
def _remembered(names: tuple[str | None, ...], rules: _Rules) -> pl.DataFrame:
    return _checked(pl.Series(names, dtype=pl.String), *rules)


def _check(values: pl.Series, options: ValidationOptions) -> pl.DataFrame:
    """The checks themselves, one row per value."""
    rename = tuple(options.rename.items())
    return _checked(values, rename, options.max_name_length, options.name_policy)


def _checked(
    values: pl.Series,
    rename: tuple[tuple[str, str], ...],
    max_name_length: int,
    name_policy: str | None,
) -> pl.DataFrame:
    s = values.str.strip_chars()
    if rename:
        s = s.replace(dict(rename))
    frame = pl.DataFrame({"name": s})
    n = pl.col("name")
    rule = (
        pl.when(n.is_null() | (n == ""))
        .then(pl.lit("name.empty"))
        .when(n.str.contains(r"[\x00-\x1f\x7f]"))
        .then(pl.lit("name.control_chars"))
        .when(n.str.len_chars() > max_name_length)
        .then(pl.lit("name.too_long"))
        .when(n.str.starts_with("email."))
        .then(pl.lit("name.reserved"))
    )
    if name_policy is not None:
        rule = rule.when(~n.str.contains(_POLICY[name_policy])).then(pl.lit("name.policy"))
    return frame.with_columns(rule.otherwise(pl.lit(None, pl.String)).alias("rule"))


def name_variants(names: Iterable[str]) -> list[list[str]]:
    """Groups of distinct names that differ only by case or separator (``Sign Up``/``sign_up``).

    Usually a sign of two tracking plans feeding one input; Kraiter would see two events.
    """
    groups: dict[str, set[str]] = {}
    for name in names:
        folded = "".join(ch for ch in name.casefold() if ch not in " _.-")
        groups.setdefault(folded, set()).add(name)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)
