"""Email normalisation and checks: vectorised for ASCII, per row only for non-ASCII.

Normalisation: trim (including NBSP and zero-width characters), strip ``mailto:`` and a
``Display Name <addr>`` wrapper, NFC, lowercase the whole address, IDNA 2008 (A-labels)
for non-ASCII domains, strictly: no UTS #46 / NFKC mapping, so a full-width or other
compatibility character is refused rather than folded into a different address. The
ASCII majority never leaves polars; only rows with non-ASCII characters go one by one
(``email-validator`` for Unicode local parts, ``idna`` for domains), and only the few
distinct domains with ``--`` in them or under a special-use name go through
:func:`~kraiter_sync.validate.domains.domain_rule`.
"""

from __future__ import annotations

import re
import unicodedata

import polars as pl
from email_validator import EmailNotValidError
from email_validator.syntax import validate_email_local_part

from kraiter_sync.validate._series import MAX_TEXT_BYTES, full, overrule, without_huge
from kraiter_sync.validate.domains import SPECIAL_SUFFIXES, domain_rule, encode_domain

__all__ = ["normalise_email", "normalise_emails"]

#: Whitespace to trim: ASCII, no-break spaces and the zero-width family.
_TRIM = " \t\n\r\x0b\x0c\u00a0\u1680\u2007\u202f\u3000\u200b\u200c\u200d\u2060\ufeff"
_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
_ATOM = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]"
_ATOM_UTF8 = r"(?:[a-z0-9!#$%&'*+/=?^_`{|}~-]|[^\x00-\x7f])"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
#: A top-level label that can exist: letters only, two or more, or an A-label (whose
#: IDNA validity :func:`domains.domain_rule` checks, as for every label with ``--``).
_TLD = r"(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})"
_LOCAL = {False: rf"{_ATOM}+(?:\.{_ATOM}+)*", True: rf"{_ATOM_UTF8}+(?:\.{_ATOM_UTF8}+)*"}
#: Valid syntax with a TLD that can exist; ``_LOOSE`` takes any label as the TLD, so an
#: address that matches it but not ``_VALID`` breaks ``email.tld`` only.
_VALID = {utf8: rf"^{local}@(?:{_LABEL}\.)+{_TLD}$" for utf8, local in _LOCAL.items()}
_LOOSE = {utf8: rf"^{local}@(?:{_LABEL}\.)+{_LABEL}$" for utf8, local in _LOCAL.items()}


def _clean(s: pl.Series) -> pl.Series:
    """Trim, strip ``mailto:`` and ``Name <addr>``; vectorised, never changes validity."""
    s = s.cast(pl.String).str.strip_chars(_TRIM)
    if not s.str.contains("[:>]").any():  # one scan rules out both forms (the usual case)
        return s
    if s.str.contains("(?i)^mailto:").any():
        s = s.str.replace("(?i)^mailto:", "").str.strip_chars(_TRIM)
    if s.str.contains(">", literal=True).any():
        inner = s.str.extract(r"<([^<>]*)>$", 1)
        s = pl.select(pl.coalesce(inner, s)).to_series().str.strip_chars(_TRIM)
    return s


def _unicode_row(addr: str, allow_smtputf8: bool) -> tuple[str | None, str | None]:
    """One non-ASCII address: NFC, lowercase, IDNA 2008 domain. Returns (value, rule)."""
    for ch in _ZERO_WIDTH:
        addr = addr.replace(ch, "")
    addr = unicodedata.normalize("NFC", unicodedata.normalize("NFC", addr).lower())
    local, at, domain = addr.rpartition("@")
    if not at:
        return None, "email.invalid"
    if local.isascii() and domain.isascii():  # only zero-width characters were in the way
        return addr, None
    if not local.isascii() and not allow_smtputf8:
        return None, "email.smtputf8"
    if local.startswith('"') or "(" in addr:
        return None, "email.quoted_local" if local.startswith('"') else "email.comment"
    if not local.isascii():
        try:  # RFC 6531 characters (no controls, spaces, unassigned code points)
            validate_email_local_part(local, allow_smtputf8=True, quoted_local_part=False)
        except EmailNotValidError:
            return None, "email.invalid"
    if domain.isascii():
        return addr, None
    encoded = encode_domain(domain)
    if encoded is None:
        return None, "email.idna"
    # lengths are checked on this encoded form (the one that travels)
    return f"{local}@{encoded}", None


#: Below this many rows, :func:`_classify` checks row by row: its dozen vectorised
#: regex passes cost about 2 ms whatever the length (the few rejects of a chunk).
_PER_ROW_BELOW = 256


def _py(pattern: str) -> re.Pattern[str]:
    """A polars (Rust) regex for Python: ``$`` there is the very end (``\\Z`` here)."""
    return re.compile(pattern.removesuffix("$") + r"\Z" if pattern.endswith("$") else pattern)


_PY_VALID = {utf8: _py(pattern) for utf8, pattern in _VALID.items()}
_PY_LOOSE = {utf8: _py(pattern) for utf8, pattern in _LOOSE.items()}
_PY_IP = _py(r"^\d{1,3}(?:\.\d{1,3}){3}$")


def _rule_of(s: str | None, allow_smtputf8: bool, allow_special_use: bool = False) -> str | None:
    """:func:`_classify` for one value (same rules, same order; the tests compare them)."""
    if s is None or s == "":
        return "email.missing"
    valid = _PY_VALID[allow_smtputf8].search(s) is not None
    local, at, after = s.rpartition("@")  # (the last "@", as the vectorised path splits)
    domain = after if at else None
    if not at:
        local = s
    if valid and len(s) <= 254 and len(local) <= 64:
        return domain_rule(after, allow_special_use=allow_special_use)
    if at and '"' in s.partition("@")[0]:
        return "email.quoted_local"
    if "(" in s or ")" in s:
        return "email.comment"
    if domain is not None and (domain.startswith("[") or _PY_IP.search(domain)):
        return "email.ip_literal"
    if len(s) > 254:
        return "email.too_long"
    if len(local) > 64:
        return "email.local_too_long"
    if domain is not None and "." not in domain:
        return "email.dotless_domain"
    # (a valid match within both lengths returned above)
    return "email.tld" if _PY_LOOSE[allow_smtputf8].search(s) else "email.invalid"


#: Addresses that may break a domain rule: a ``--`` anywhere, or a special-use TLD.
_MAYBE_DOMAIN_RULE = "--|(?:" + "|".join(re.escape(x) for x in SPECIAL_SUFFIXES) + ")$"


def _domain_rules(s: pl.Series, ok: pl.Series, allow_special_use: bool) -> pl.Series | None:
    """Rules of :func:`domains.domain_rule` for the rows in ``ok`` that may break one (a
    ``--`` or a special-use suffix: two cheap scans), checked once per distinct domain;
    None when no row may. Elsewhere the rule is null."""
    if allow_special_use:
        maybe = s.str.contains("--", literal=True)
    else:  # one regex: a third of the cost of a literal scan and eight ends_with
        maybe = s.str.contains(_MAYBE_DOMAIN_RULE)
    maybe = (maybe & ok).fill_null(False)
    if not maybe.any():
        return None
    idx = maybe.arg_true()
    domains = s.gather(idx).str.extract(r"@([^@]*)$", 1)
    distinct = domains.unique()
    rules = pl.Series(
        [domain_rule(d, allow_special_use=allow_special_use) for d in distinct.to_list()],
        dtype=pl.String,
    )
    found = domains.replace_strict(distinct, rules, return_dtype=pl.String)
    return full(len(s), None, pl.String, "rule").scatter(idx, found)


def _classify(s: pl.Series, allow_smtputf8: bool, allow_special_use: bool = False) -> pl.Series:
    """The first failing rule per row (null = valid), all vectorised.

    One regex and two lengths decide the common (valid) case; only the rows that fail are
    examined further to name the precise rule, and only domains that may break a domain
    rule are checked (per distinct domain). A few rows go through :func:`_rule_of`.
    """
    if len(s) < _PER_ROW_BELOW:
        named = [_rule_of(v, allow_smtputf8, allow_special_use) for v in s.to_list()]
        return pl.Series("rule", named, dtype=pl.String)
    valid = _VALID[allow_smtputf8]
    ok = s.str.contains(valid).fill_null(False)
    # the two length limits cost a scan each, so they are only computed where the byte
    # length (free: string offsets) says they could fail: a match holds an "@", whose byte
    # offset is below the byte length, and characters never outnumber bytes
    n_bytes = s.str.len_bytes().fill_null(0)
    if (n_bytes > 254).any():
        ok = ok & (s.str.len_chars() <= 254).fill_null(False)
    if (n_bytes > 65).any():
        ok = ok & ((n_bytes <= 65) | (s.str.find("@", literal=True) <= 64)).fill_null(False)
    by_domain = _domain_rules(s, ok, allow_special_use)
    if by_domain is not None:
        ok = ok & by_domain.is_null()
    if ok.all():
        return full(len(s), None, pl.String, "rule")
    idx = (~ok).arg_true()
    bad = s.gather(idx)
    local = bad.str.replace(r"@[^@]*$", "")
    domain = bad.str.extract(r"@([^@]*)$", 1)
    frame = pl.DataFrame({"s": bad, "local": local, "domain": domain})
    rules = frame.select(
        pl.when(pl.col("s").is_null() | (pl.col("s") == ""))
        .then(pl.lit("email.missing"))
        .when(pl.col("s").str.contains(r'^[^@]*"') & pl.col("s").str.contains("@"))
        .then(pl.lit("email.quoted_local"))
        .when(pl.col("s").str.contains(r"[()]"))
        .then(pl.lit("email.comment"))
        .when(
            pl.col("domain").str.starts_with("[")
            | pl.col("domain").str.contains(r"^\d{1,3}(?:\.\d{1,3}){3}$")
        )
        .then(pl.lit("email.ip_literal"))
        .when(pl.col("s").str.len_chars() > 254)
        .then(pl.lit("email.too_long"))
        .when(pl.col("local").str.len_chars() > 64)
        .then(pl.lit("email.local_too_long"))
        .when(pl.col("domain").is_not_null() & ~pl.col("domain").str.contains(".", literal=True))
        .then(pl.lit("email.dotless_domain"))
        .when(~pl.col("s").str.contains(_LOOSE[allow_smtputf8]))
        .then(pl.lit("email.invalid"))
        .when(~pl.col("s").str.contains(valid))
        .then(pl.lit("email.tld"))
        .otherwise(pl.lit(None, pl.String))  # the byte-offset shortcut, or a domain rule
        .alias("rule")
    ).to_series()
    by_syntax = full(len(s), None, pl.String, "rule").scatter(idx, rules)
    if by_domain is None:
        return by_syntax
    return pl.select(pl.coalesce(pl.lit(by_syntax), pl.lit(by_domain))).to_series().alias("rule")


def normalise_emails(
    values: pl.Series, *, allow_smtputf8: bool = False, allow_special_use_domains: bool = False
) -> pl.DataFrame:
    """Normalise and check a column of addresses.

    Returns a frame with ``email`` (normalised; null where rejected) and ``rule`` (null when
    valid, else the first failing rule code), one row per input row, in order.
    """
    # (an address wrapped in "Name <...>" and spaces is still far below the limit)
    s, huge = without_huge(values.cast(pl.String), MAX_TEXT_BYTES)
    s = _clean(s)
    special = allow_special_use_domains
    non_ascii = s.str.len_bytes() != s.str.len_chars()
    if non_ascii.any():
        pre_rule = full(len(s), None, pl.String, "rule")
        idx = non_ascii.arg_true()
        fixed = [_unicode_row(v, allow_smtputf8) for v in s.gather(idx).to_list()]
        s = s.scatter(idx, pl.Series([v for v, _ in fixed], dtype=pl.String))
        pre_rule = pre_rule.scatter(idx, pl.Series([r for _, r in fixed], dtype=pl.String))
        lowered = pl.select(
            pl.when(pl.lit(non_ascii)).then(pl.lit(s)).otherwise(pl.lit(s).str.to_lowercase())
        ).to_series()
        classified = _classify(lowered, allow_smtputf8, special)
        rule_s = pl.select(pl.coalesce(pl.lit(pre_rule), pl.lit(classified))).to_series()
    else:  # the common case: all ASCII, nothing per row
        lowered = s.str.to_lowercase()
        rule_s = _classify(lowered, allow_smtputf8, special)
    rule_s = overrule(rule_s, huge, "email.too_long")
    if rule_s.null_count() == len(rule_s):
        return pl.DataFrame({"email": lowered.alias("email"), "rule": rule_s.alias("rule")})
    email = pl.select(
        pl.when(pl.lit(rule_s).is_null()).then(pl.lit(lowered)).otherwise(None)
    ).to_series()
    return pl.DataFrame({"email": email.alias("email"), "rule": rule_s.alias("rule")})


def normalise_email(
    value: str | None, *, allow_smtputf8: bool = False, allow_special_use_domains: bool = False
) -> tuple[str | None, str | None]:
    """One address through the same path as :func:`normalise_emails`: (value, rule)."""
    out = normalise_emails(
        pl.Series([value], dtype=pl.String),
        allow_smtputf8=allow_smtputf8,
        allow_special_use_domains=allow_special_use_domains,
    )
    return out["email"][0], out["rule"][0]
