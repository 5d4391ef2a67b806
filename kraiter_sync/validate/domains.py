"""Domain rules that need data or a library: special-use names, IDNA 2008, possible TLDs.

They run per distinct domain (a chunk holds few), only for the addresses the vectorised
syntax checks could not settle alone: a domain with ``--`` in it (an A-label or a reserved
label) or under a special-use name. Nothing here touches the network.

Sources of the data:

* :data:`SPECIAL_USE`: the IANA "Special-Use Domain Names" registry
  (https://www.iana.org/assignments/special-use-domain-names/), plus ``internal.``,
  which ICANN reserved for private use (board resolution 2024.07.29.06). The registry's
  ``example.``, ``example.com.``, ``example.net.`` and ``example.org.`` are not in the
  table: RFC 6761 §6.5 asks application software not to treat them as special, and
  documentation, tests and sample data use them.
* IDNA 2008 validity: the ``idna`` package, strictly (no UTS #46 mapping: a full-width or
  compatibility character is refused, never folded into another address; only ``.``
  separates labels).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import idna

__all__ = ["SPECIAL_SUFFIXES", "SPECIAL_USE", "domain_rule", "encode_domain"]

#: Names under which no address can receive mail, with the document that reserves them.
#: A domain is special-use when its top-level label is one of these.
SPECIAL_USE: Mapping[str, str] = MappingProxyType(
    {
        "test": "RFC 6761 §6.2 (testing)",
        "localhost": "RFC 6761 §6.3 (loopback)",
        "invalid": "RFC 6761 §6.4 (guaranteed not to exist)",
        "local": "RFC 6762 (multicast DNS, link-local only)",
        "onion": "RFC 7686 (Tor onion services)",
        "alt": "RFC 9476 (names outside the DNS)",
        # The registry lists home.arpa (RFC 8375), the private in-addr.arpa and ip6.arpa
        # reverse zones (RFC 6761 §6.1, RFC 6303), ipv4only.arpa (RFC 8880),
        # resolver.arpa (RFC 9462), service.arpa, 6tisch.arpa (RFC 9031) and
        # eap-noob.arpa (RFC 9140); all of .arpa is infrastructure (RFC 3172), where no
        # mailbox lives.
        "arpa": "RFC 3172 (infrastructure) and the arpa entries of the registry",
        "internal": "ICANN board resolution 2024.07.29.06 (private use, never delegated)",
    }
)

#: ``.name`` suffixes for the vectorised pre-check (one cheap ``ends_with`` each).
SPECIAL_SUFFIXES: tuple[str, ...] = tuple(f".{name}" for name in SPECIAL_USE)

#: Label separators other than ``.`` that IDNA 2003 and UTS #46 accept and map to ``.``
#: (ideographic, full-width and half-width full stops): refused here, not mapped.
_OTHER_DOTS = frozenset("\u3002\uff0e\uff61")


def encode_domain(domain: str) -> str | None:
    """A lower-case, NFC domain with its non-ASCII labels as IDNA 2008 A-labels; ``None``
    when one of them is not a valid U-label.

    Strict: labels are split on ``.`` only, and every label must be valid IDNA 2008 as
    it stands (UTS #46 mapping is not applied, so full-width ``example.com`` is refused).
    ASCII labels are left to the syntax rules and :func:`domain_rule`; the length limits
    are checked afterwards on the encoded form.
    """
    if any(ch in _OTHER_DOTS for ch in domain):
        return None
    labels = domain.split(".")
    try:
        encoded = [lbl if lbl.isascii() else idna.alabel(lbl).decode("ascii") for lbl in labels]
    except (idna.IDNAError, UnicodeError):
        return None
    return ".".join(encoded)


def _label_rule(label: str) -> str | None:
    """``email.idna`` for a label that is not valid IDNA 2008, else None.

    Only labels with ``--`` in positions 3-4 need this: an A-label (``xn--``) must decode
    to a valid U-label and be its canonical encoding (RFC 5891 §5.3); any other such
    label is a reserved LDH label (RFC 5890 §2.3.1).
    """
    if label[2:4] != "--":
        return None
    try:
        ulabel = idna.ulabel(label)
        # canonical: compared here whatever the idna release checks itself
        if idna.alabel(ulabel).decode("ascii") != label:
            return "email.idna"
    except (idna.IDNAError, UnicodeError):
        return "email.idna"
    return None


def _tld_rule(tld: str) -> str | None:
    """``email.tld`` for a top-level label that cannot exist.

    ASCII TLDs are letters only, at least two (RFC 1123 §2.1 and RFC 3696 §2: never all
    numeric; ICANN's rules: letters only, two-letter names for country codes); an IDN TLD
    is an A-label (``xn--``), whose validity :func:`_label_rule` checks.
    """
    if tld.startswith("xn--"):
        return None
    if len(tld) >= 2 and tld.isascii() and tld.isalpha():
        return None
    return "email.tld"


def domain_rule(domain: str, *, allow_special_use: bool = False) -> str | None:
    """The first domain rule an ASCII (already encoded) domain breaks, or None.

    In order: ``email.idna`` (a label that is not valid IDNA 2008), ``email.tld``,
    ``email.special_use_domain`` (unless ``allow_special_use``). Syntax and lengths are
    checked before (the vectorised rules).
    """
    labels = domain.split(".")
    for label in labels:
        rule = _label_rule(label)
        if rule is not None:
            return rule
    rule = _tld_rule(labels[-1])
    if rule is not None:
        return rule
    if not allow_special_use and labels[-1] in SPECIAL_USE:
        return "email.special_use_domain"
    return None
