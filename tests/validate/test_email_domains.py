"""Domains that can never receive mail, written from the RFCs (not from a library's tests).

Special-use names (RFC 6761, 6762, 7686, 9476, 8375, 3172 and the IANA registry), labels
that are not valid IDNA 2008 (RFC 5890-5893), top-level labels that cannot exist
(RFC 1123 §2.1, RFC 3696 §2) and the length limit on the encoded domain (RFC 1035
§2.3.4, RFC 5321 §4.5.3.1).
"""

from __future__ import annotations

import polars as pl
import pytest

from kraiter_sync.validate import ValidationOptions, emails, normalise_email, validate_events
from kraiter_sync.validate.domains import SPECIAL_USE, domain_rule


@pytest.mark.parametrize(
    "address",
    [
        "ada@mail.test",  # RFC 6761 §6.2
        "ada@box.localhost",  # RFC 6761 §6.3
        "ada@nowhere.invalid",  # RFC 6761 §6.4
        "ada@printer.local",  # RFC 6762
        "ada@expyuzz4wqqyqhjn.onion",  # RFC 7686
        "ada@thing.alt",  # RFC 9476
        "ada@router.home.arpa",  # RFC 8375
        "ada@1.168.192.in-addr.arpa",  # RFC 6761 §6.1 (and all of .arpa: RFC 3172)
        "ada@ipv4only.arpa",  # RFC 8880
        "ada@corp.internal",  # ICANN: private use, never delegated
        "Ada@Mail.TEST",  # after lower-casing
        "ada@bücher.test",  # after IDNA
    ],
)
def test_special_use_domains_are_rejected_unless_allowed(address: str) -> None:
    assert normalise_email(address) == (None, "email.special_use_domain")
    value, rule = normalise_email(address, allow_special_use_domains=True)
    assert rule is None
    assert value is not None
    assert value.endswith(address.lower().rsplit(".", 1)[1])


@pytest.mark.parametrize(
    "address",
    [
        # RFC 6761 §6.5: application software should not treat example names as special
        "ada@example.com",
        "ada@example.net",
        "ada@example.org",
        "ada@docs.example",
        # a special-use name as a label that is not the top level is an ordinary label
        "ada@test.com",
        "ada@localhost.co.uk",
        "ada@onion.example.org",
        "ada@arpa.io",
    ],
)
def test_documentation_names_and_lookalike_labels_are_accepted(address: str) -> None:
    assert normalise_email(address) == (address, None)


def test_the_table_names_a_source_for_every_entry() -> None:
    assert set(SPECIAL_USE) >= {"test", "invalid", "localhost", "local", "onion", "arpa", "alt"}
    assert all(source.strip() for source in SPECIAL_USE.values())
    assert not {"example", "com", "net", "org"} & set(SPECIAL_USE)


def _a_label(ulabel: str) -> str:
    """An A-label built with Punycode alone (RFC 3492), without IDNA's validity checks."""
    return "xn--" + ulabel.encode("punycode").decode("ascii")


@pytest.mark.parametrize(
    "address",
    [
        "ada@ab--cd.com",  # RFC 5890 §2.3.1: a reserved LDH label, not an A-label
        "ada@mail.a1--b.org",
        "ada@xn--zz.com",  # "xn--" + text that is not Punycode: a fake A-label
        "ada@xn---bbk.com",  # RFC 5890 §2.3.2.1: a non-canonical spelling of xn--bbk
        "ada@" + _a_label("\U0001f4a9") + ".la",  # decodes to a DISALLOWED code point
        "ada@" + _a_label("a\u05d0b") + ".com",  # RTL and LTR mixed: the Bidi rule
        "ada@" + _a_label("bu\u0308cher") + ".de",  # decodes to a string not in NFC
        "ada@b.xn--zz",  # the TLD is a fake A-label
    ],
)
def test_labels_that_are_not_valid_idna_2008_are_rejected(address: str) -> None:
    assert normalise_email(address) == (None, "email.idna")


@pytest.mark.parametrize(
    "address",
    [
        "ada@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",  # full-width "example"
        "ada@\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.com",  # full-width "EXAMPLE"
        "ada@\ufb01le.com",  # the "fi" ligature (NFKC would make it "fi")
        "ada@x\u00b2.com",  # superscript two
        "ada@\u24d4xample.com",  # circled e
        "ada@\U0001d41a.com",  # mathematical bold a
        "ada@example\u3002com",  # ideographic full stop as a dot
        "ada@example\uff0ecom",  # full-width full stop
        "ada@b\u00fccher\uff61de",  # half-width ideographic full stop
    ],
)
def test_compatibility_characters_are_refused_not_folded(address: str) -> None:
    assert normalise_email(address) == (None, "email.idna")


def test_valid_internationalised_domains_still_encode() -> None:
    assert normalise_email("ada@Bücher.de") == ("ada@xn--bcher-kva.de", None)
    assert normalise_email("ada@пример.рф") == ("ada@xn--e1afmkfd.xn--p1ai", None)
    assert normalise_email("ada@xn--bcher-kva.de") == ("ada@xn--bcher-kva.de", None)
    assert normalise_email("ada@shop.xn--p1ai") == ("ada@shop.xn--p1ai", None)


@pytest.mark.parametrize(
    "address",
    [
        "ada@example.c",  # one letter: no such TLD can be delegated
        "ada@example.123",  # RFC 1123 §2.1, RFC 3696 §2: never all numeric
        "ada@example.c-m",  # letters only
        "ada@example.co1",
        "ada@10.0.0.1x",  # not an IP literal either
    ],
)
def test_top_level_labels_that_cannot_exist_are_rejected(address: str) -> None:
    assert normalise_email(address) == (None, "email.tld")


def test_the_length_limit_applies_to_the_encoded_domain() -> None:
    label = "".join(chr(0x4E00 + i * 97) for i in range(12))  # 12 characters, 33 encoded
    address = "ada@" + ".".join([label] * 8) + ".de"
    assert len(address) <= 254
    encoded = "ada@" + ".".join(["xn--" + label.encode("punycode").decode()] * 8) + ".de"
    assert len(encoded) > 254
    assert normalise_email(address) == (None, "email.too_long")
    # with one label less the encoded address fits
    shorter = "ada@" + ".".join([label] * 7) + ".de"
    value, rule = normalise_email(shorter)
    assert rule is None
    assert value is not None
    assert value.startswith("ada@xn--")


def test_an_a_label_over_63_octets_is_not_valid_idna() -> None:
    long_label = "\u00fc" * 60  # 60 characters: a label, but its A-label is longer than 63
    assert normalise_email(f"ada@{long_label}.de") == (None, "email.idna")


def test_rules_come_in_order_syntax_idna_tld_special_use() -> None:
    assert domain_rule("xn--zz.test") == "email.idna"
    assert domain_rule("ab--c.t") == "email.idna"
    assert domain_rule("mail.t") == "email.tld"
    assert domain_rule("mail.test") == "email.special_use_domain"
    assert domain_rule("mail.test", allow_special_use=True) is None
    assert normalise_email("a..b@mail.test") == (None, "email.invalid")
    assert normalise_email("a@1.2.3.4") == (None, "email.ip_literal")


_MIXED = [
    "ada@mail.test",
    "ada@MAIL.TEST",
    "ada@ab--cd.com",
    "a--b@example.com",  # "--" in the local part only: fine
    "ada@xn--zz.com",
    "ada@xn--bcher-kva.de",
    "ada@example.c",
    "ada@example.123",
    "ada@example.com",
    "ada@router.home.arpa",
    "ada@docs.example",
    None,
    "bad",
]


@pytest.mark.parametrize("special", [False, True])
def test_vectorised_and_row_by_row_paths_agree(special: bool) -> None:
    """Chunks of 256 rows or more take the vectorised path, which checks domains per
    distinct domain; smaller ones are named row by row: both must say the same."""
    values = [v.lower() if v else v for v in _MIXED] * 30
    s = pl.Series(values, dtype=pl.String)
    assert len(s) >= emails._PER_ROW_BELOW
    vectorised = emails._classify(s, False, special).to_list()
    rows = [emails._rule_of(v, False, special) for v in values]
    assert vectorised == rows
    assert "email.special_use_domain" in rows or special
    assert {"email.idna", "email.tld", None} <= set(rows)


def test_the_option_reaches_the_validator() -> None:
    mapped = pl.DataFrame(
        {
            "email": ["ada@mail.test", "bob@example.com"],
            "name": ["signed_up", "signed_up"],
            "timestamp": ["2024-01-01T00:00:00Z"] * 2,
        }
    )
    strict = validate_events(mapped)
    assert strict.rejects["rule"].to_list() == ["email.special_use_domain"]
    assert "allow-special-use-domains" in strict.rejects["message"][0]
    loose = validate_events(mapped, options=ValidationOptions(allow_special_use_domains=True))
    assert loose.valid["email"].to_list() == ["ada@mail.test", "bob@example.com"]
