"""Email normalisation and rules: the vectorised ASCII path and the per-row Unicode path."""

from __future__ import annotations

import polars as pl
import pytest

from kraiter_sync.validate import normalise_email, normalise_emails


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
