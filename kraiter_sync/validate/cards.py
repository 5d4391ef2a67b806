"""The payment card guard: card numbers alone or inside text (``properties.card_number``).

A value holds a card number when a run of digit groups separated by single spaces or
dashes has some consecutive whole groups making 13-19 digits that pass the Luhn check
(:func:`contains_card_number`); :func:`card_number_mask` checks a whole column, with a
regex pass first and the few candidates after.
"""

from __future__ import annotations

import re

import polars as pl

from kraiter_sync.validate._series import full

__all__ = [
    "CARD_CANDIDATE",
    "CARD_RUN",
    "card_number_mask",
    "card_number_spans",
    "contains_card_number",
    "is_card_number",
    "luhn_expr",
]

#: A whole value that may be a card number: 13-19 digits, single spaces or dashes between.
CARD_CANDIDATE = r"^\d(?:[ -]?\d){12,18}$"
#: Thirteen digits with at most single spaces or dashes between them: where a card
#: number may be (the vectorised pre-check; :func:`contains_card_number` decides).
CARD_RUN = r"[0-9](?:[ -]?[0-9]){12}"
#: A maximal run of digit groups joined by single spaces or dashes.
_DIGIT_GROUPS = re.compile(r"[0-9]+(?:[ -][0-9]+)*", re.ASCII)


def _luhn(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = ord(c) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_card_number(value: str) -> bool:
    """The whole value is 13-19 digits (spaces/dashes allowed) passing the Luhn check."""
    if not re.fullmatch(CARD_CANDIDATE, value):
        return False
    return _luhn("".join(c for c in value if c.isdigit()))


def card_number_spans(text: str) -> list[tuple[int, int]]:
    """Where card numbers are in ``text``: (start, end) of each run of digit groups that
    holds one (see :func:`contains_card_number`)."""
    spans = []
    for run in _DIGIT_GROUPS.finditer(text):
        if run.end() - run.start() < 13:
            continue
        groups = re.split("[ -]", run.group())
        found = False
        for i in range(len(groups)):
            digits = ""
            for group in groups[i:]:
                digits += group
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and _luhn(digits):
                    found = True
                    break
            if found:
                break
        if found:
            spans.append(run.span())
    return spans


def contains_card_number(text: str) -> bool:
    """Whether ``text`` holds what looks like a payment card number, alone or in text.

    Digits come in groups separated by single spaces or dashes (``4111 1111 1111 1111``,
    ``4111-1111-1111-1111``, ``4111111111111111``); some consecutive whole groups of one
    run must make 13-19 digits passing the Luhn check. So ``card 4111 1111 1111 1111``
    is found, and so is ``order 12 4111 1111 1111 1111``; a lone group of 20 digits or
    more (an id) is not.
    """
    return bool(card_number_spans(text))


def card_number_mask(s: pl.Series) -> pl.Series | None:
    """Which values of a String column hold a card number (:func:`contains_card_number`);
    None when none does.

    One regex pass finds the values with 13 digits in a row (separators allowed); values
    that are digits only are then checked vectorised, the rest (text around the digits)
    one by one."""
    cand = s.str.contains(CARD_RUN).fill_null(False)
    if not cand.any():
        return None
    idx = cand.arg_true()
    sub = s.gather(idx)
    digits_only = sub.str.contains(r"^[0-9]+$").fill_null(False)
    hits = pl.select(
        pl.lit(digits_only)
        & pl.lit(sub).str.len_bytes().is_between(13, 19)
        & luhn_expr(pl.lit(sub)).fill_null(False)
    ).to_series()
    text_idx = (~digits_only).arg_true()
    if len(text_idx):
        in_text = [contains_card_number(v) for v in sub.gather(text_idx).to_list()]
        hits = hits.scatter(text_idx, pl.Series(in_text, dtype=pl.Boolean))
    if not hits.any():
        return None
    return full(len(s), False, pl.Boolean).scatter(idx, hits)


def luhn_expr(digits: pl.Expr) -> pl.Expr:
    """Vectorised Luhn over a column of digit-only strings (13-19 long)."""
    rev = digits.str.reverse()
    total: pl.Expr = pl.lit(0)
    for i in range(19):
        d = rev.str.slice(i, 1).cast(pl.Int32, strict=False).fill_null(0)
        if i % 2 == 1:
            d = pl.when(d > 4).then(d * 2 - 9).otherwise(d * 2)
        total = total + d
    return (total % 10) == 0
