"""Event-name checks. Names are case-sensitive in Kraiter, so case is never changed."""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from kraiter_sync.validate._series import MAX_TEXT_BYTES, overrule, without_huge
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
    back: one cheap hash pass instead of a strip, a regex and three scans per row. A name
    of more than 64 KiB is too long as it is (never trimmed: that would copy it).
    """
    s, huge = without_huge(values.cast(pl.String), MAX_TEXT_BYTES)
    checked = _check_distinct(s, options)
    if huge is None:
        return checked
    return checked.with_columns(overrule(checked["rule"], huge, "name.too_long"))


def _check_distinct(s: pl.Series, options: ValidationOptions) -> pl.DataFrame:
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


def _check(values: pl.Series, options: ValidationOptions) -> pl.DataFrame:
    """The checks themselves, one row per value."""
    s = values.str.strip_chars()
    if options.rename:
        s = s.replace(dict(options.rename))
    frame = pl.DataFrame({"name": s})
    n = pl.col("name")
    rule = (
        pl.when(n.is_null() | (n == ""))
        .then(pl.lit("name.empty"))
        .when(n.str.contains(r"[\x00-\x1f\x7f]"))
        .then(pl.lit("name.control_chars"))
        .when(n.str.len_chars() > options.max_name_length)
        .then(pl.lit("name.too_long"))
        .when(n.str.starts_with("email."))
        .then(pl.lit("name.reserved"))
    )
    if options.name_policy is not None:
        rule = rule.when(~n.str.contains(_POLICY[options.name_policy])).then(pl.lit("name.policy"))
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
