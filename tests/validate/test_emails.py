"""Email normalisation and rules: the vectorised ASCII path and the per-row Unicode path."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kraiter_sync.validate import emails, normalise_email, normalise_emails


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("alice@example.com", "alice@example.com"),
        ("  Alice@Example.COM  ", "alice@example.com"),
        ("\u00a0alice@example.com\u00a0", "alice@example.com"),
        ("\u200balice@example.com\ufeff", "alice@example.com"),
        ("\talice@example.com\n", "alice@example.com"),
        ("mailto:Alice@Example.com", "alice@example.com"),
        ("MAILTO:bob@x.org", "bob@x.org"),
        ("Alice Smith <Alice@Example.com>", "alice@example.com"),
        ('"Smith, Alice" <alice@example.com>', "alice@example.com"),
        ("<bob@x.org>", "bob@x.org"),
        ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
        ("user@bücher.de", "user@xn--bcher-kva.de"),
        ("user@BÜCHER.de", "user@xn--bcher-kva.de"),
        ("user@例え.jp", "user@xn--r8jz45g.jp"),
        ("ali\u200bce@example.com", "alice@example.com"),
    ],
)
def test_accepts_and_normalises(raw: str, expected: str) -> None:
    assert normalise_email(raw) == (expected, None)


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        (None, "email.missing"),
        ("   ", "email.missing"),
        ("plainaddress", "email.invalid"),
        ("a..b@example.com", "email.invalid"),
        (".a@example.com", "email.invalid"),
        ("a@-example.com", "email.invalid"),
        ("a@example..com", "email.invalid"),
        ("a b@example.com", "email.invalid"),
        ('"quoted"@example.com', "email.quoted_local"),
        ("alice(comment)@example.com", "email.comment"),
        ("user@[192.168.0.1]", "email.ip_literal"),
        ("user@192.168.0.1", "email.ip_literal"),
        ("user@localhost", "email.dotless_domain"),
        ("a" * 65 + "@example.com", "email.local_too_long"),
        (
            "a@" + "b" * 60 + "." + "c" * 60 + "." + "d" * 60 + "." + "e" * 70 + ".com",
            "email.too_long",
        ),
        ("josé@example.com", "email.smtputf8"),
        ("用户@例子.广告", "email.smtputf8"),
    ],
)
def test_rejects_with_stable_rule(raw: str | None, rule: str) -> None:
    value, got = normalise_email(raw)
    assert (value, got) == (None, rule)


def test_smtputf8_allowed_keeps_unicode_local_and_idna_domain() -> None:
    assert normalise_email("José@Bücher.de", allow_smtputf8=True) == (
        "josé@xn--bcher-kva.de",
        None,
    )


def test_nfc_applied_before_comparison() -> None:
    decomposed = "jose\u0301@example.com"  # e + combining acute
    assert normalise_email(decomposed, allow_smtputf8=True) == ("jos\u00e9@example.com", None)


def test_frame_keeps_row_order_and_length() -> None:
    s = pl.Series(["B@x.com", "bad", "ü@x.com", None, "c@Ü.de"])
    out = normalise_emails(s)
    assert out["email"].to_list() == ["b@x.com", None, None, None, "c@xn--tda.de"]
    assert out["rule"].to_list() == [None, "email.invalid", "email.smtputf8", "email.missing", None]


def test_smtputf8_local_limit_counts_characters_not_bytes() -> None:
    local = "é" * 40  # 40 characters, 80 bytes
    assert normalise_email(f"{local}@example.com", allow_smtputf8=True) == (
        f"{local}@example.com",
        None,
    )
    too_long = normalise_email("é" * 65 + "@example.com", allow_smtputf8=True)
    assert too_long == (None, "email.local_too_long")
    assert normalise_email("a" * 65 + "@bücher.de") == (None, "email.local_too_long")


def _domain(length: int) -> str:
    """A valid domain of exactly ``length`` characters (labels of at most 63)."""
    labels, left = [], length - 4  # room for ".com"
    while left > 0:
        size = min(63, left if left <= 63 else left - 2)
        labels.append("d" * size)
        left -= size + 1
    domain = ".".join(labels) + ".com"
    assert len(domain) == length, (len(domain), length)
    return domain


@pytest.mark.parametrize(
    ("local", "domain_length", "rule"),
    [
        (64, 20, None),
        (65, 20, "email.local_too_long"),
        (64, 189, None),  # 254 in total
        (64, 190, "email.too_long"),  # 255
        (3, 251, "email.too_long"),
        (1, 63, None),  # 65 bytes: the last length that skips the scans
    ],
)
def test_length_limits_at_their_boundaries(
    local: int, domain_length: int, rule: str | None
) -> None:
    addr = "a" * local + "@" + _domain(domain_length)
    mixed = pl.Series([addr, "x@y.io", addr.upper()])
    out = normalise_emails(mixed)
    assert out["rule"].to_list() == [rule, None, rule]
    assert out["email"].to_list() == [None if rule else addr, "x@y.io", None if rule else addr]


#: pieces of addresses, long runs included to reach the length limits
_DOMAIN_PIECES = [".test", ".local", "xn--", "--", "xn--bcher-kva", ".c", ".io"]
_RULE_PIECES = st.sampled_from(
    [*"ab09.-_+@@@", *'"()[]', "\n", " ", "é", "٣", "x" * 70, "y.z" * 45, *_DOMAIN_PIECES]
)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.none(), st.lists(_RULE_PIECES, max_size=12).map("".join)), max_size=30
    ),
    utf8=st.booleans(),
    special=st.booleans(),
)
def test_rules_row_by_row_match_the_vectorised_rules(
    values: list[str | None], utf8: bool, special: bool
) -> None:
    """A few rejected rows are named one by one (2 ms of regex passes saved a chunk): the
    names must be the vectorised ones, in the same order of rules."""
    _same_rules_both_ways(values, utf8, special)


def _label_domain(total: int) -> str:
    """A valid domain of ``total`` characters (labels of at most 63)."""
    labels, left = [], total - 3
    while left > 0:
        take = min(left, 60)
        labels.append("d" * take)
        left -= take + 1
    return ".".join(labels)[: total - 3] + ".io"


_EDGES = [
    "ab@ab.ab\n",  # "$" is the very end in polars (not before a final newline)
    "ab@ab.ab\nx",
    "a" * 64 + "@ab.ab",
    "a" * 65 + "@ab.ab",
    "a@" + _label_domain(252),
    "a@" + _label_domain(253),
    '"ab"@ab.ab',
    'ab"@cd.ef',
    "ab(c)@ab.ab",
    "ab@[1.2.3.4]",
    "ab@1.2.3.4",
    "ab@٣.٣.٣.٣",
    "ab@localhost",
    "ab",
    "",
    None,
    "a@b@c.de",
    "é@ab.ab",
    "ab@ab.ab",
    "ab@ab.test",
    "ab@ab--cd.ab",
    "ab@xn--zz.ab",
    "ab@ab.c",
    "ab@ab.c-d",
    "ab@ab.xn--p1ai",
]


@pytest.mark.parametrize("utf8", [False, True])
def test_rules_row_by_row_at_the_edges(utf8: bool) -> None:
    assert len("a@" + _label_domain(253)) == 255
    _same_rules_both_ways(_EDGES, utf8)


def _same_rules_both_ways(values: list[str | None], utf8: bool, special: bool = False) -> None:
    s = pl.Series(values, dtype=pl.String)
    rows = [emails._rule_of(v, utf8, special) for v in values]
    assert len(s) < emails._PER_ROW_BELOW
    real = emails._PER_ROW_BELOW
    try:
        emails._PER_ROW_BELOW = 0  # the vectorised path, whatever the length
        vectorised = emails._classify(s, utf8, special).to_list()
    finally:
        emails._PER_ROW_BELOW = real
    assert rows == vectorised
    assert emails._classify(s, utf8, special).to_list() == rows
