"""The validator: pure, vectorised; mapped frames in, canonical frames + rejects + report out.

Every input row is counted exactly once: ``valid + duplicates + rejected == rows_read``.
A rejected row gets the *first* failing rule, checked in the order email (or contact
identity) → name → timestamp → properties.

Stable rule codes (``options.RULE_MESSAGES`` holds the message for each)::

    identity.missing            events without email and contact id
    email.missing               contacts without an email
    email.invalid               not local@domain.tld (bad characters, empty labels, ...)
    email.quoted_local          "quoted"@example.com
    email.comment               comments in parentheses
    email.ip_literal            user@[1.2.3.4], user@1.2.3.4
    email.dotless_domain        user@localhost
    email.too_long              more than 254 characters (the domain in its IDNA form)
    email.local_too_long        more than 64 characters before @
    email.smtputf8              non-ASCII local part without allow_smtputf8
    email.idna                  a domain label that is not IDNA 2008: a malformed or
                                non-canonical xn-- label, ``--`` as 3rd-4th characters,
                                full-width or compatibility characters (refused, never
                                folded); before this code, ``email.invalid_domain``
    email.tld                   a TLD that cannot exist (numeric, hyphenated, one letter)
    email.special_use_domain    .test .invalid .localhost .local .onion .arpa .alt
                                .internal (validate/domains.py names the sources);
                                allow_special_use_domains accepts them
    name.empty                  empty after trimming
    name.control_chars          control characters
    name.too_long               more than 255 characters
    name.reserved               email.* (Kraiter system events)
    name.policy                 not snake_case / dot.case when a policy is set
    timestamp.missing           null or empty
    timestamp.unparseable       not ISO 8601, a date, or an epoch number
    timestamp.future            more than future_tolerance (5 min) after now
    timestamp.too_old           before floor (2000-01-01 by default)
    properties.invalid_json     JSON text that is not an object
    properties.unsupported_type lists, binary, durations
    properties.nan              NaN or ±inf (also NaN / infinity spellings in CSV text)
    properties.type             a value that does not fit its declared type
    properties.too_many         more than 100 keys after flattening
    properties.key_too_long     key over 128 characters
    properties.value_too_long   string over 10,000 characters
    properties.key_conflict     {"a": {"b": 1}, "a.b": 2}
    properties.too_deep         nested more than 32 levels
    properties.too_large        JSON text over 16 MiB (refused unparsed)
    properties.placeholder      a value the rejects file masked or cut, read back from it
    properties.secret           password / token / secret / api_key keys
    properties.card_number      a card number, alone or in text: 13-19 digits in groups
                                (spaces or dashes between) passing the Luhn check

Rejected rows keep their original values, as ``originals`` shows them: refused secrets
and card numbers masked (key, length and a keyed hash kept), values over 1,000
characters cut with their full length recorded, binary shown by size.

Modules: ``options`` (knobs, rule messages), ``emails``, ``domains`` (special-use names,
IDNA 2008, TLDs), ``names``, ``timestamps``, ``properties``, ``text_types`` (typing of CSV
text values, declared types), ``originals`` (original values for the rejects file),
``keys`` (event_key, ``canonical_json``: the one equality of properties, SeenKeys),
``engine`` (the per-chunk validators, whole-input runner), ``report`` (a chunk's result,
the report and its merging over chunks). The ``validate`` verb (rejects file, JSON
report, exit code) is :mod:`kraiter_sync.verbs.validate`.
"""

from __future__ import annotations

from kraiter_sync.validate.emails import normalise_email, normalise_emails
from kraiter_sync.validate.engine import (
    REJECT_SCHEMA,
    ChunkedValidation,
    merge_contacts,
    merged_contacts,
    validate_contacts,
    validate_events,
)
from kraiter_sync.validate.keys import SeenKeys, event_keys
from kraiter_sync.validate.options import RULE_MESSAGES, ValidationOptions
from kraiter_sync.validate.report import (
    DUPLICATE_SCHEMA,
    ReportAccumulator,
    ValidationReport,
    ValidationResult,
)

__all__ = [
    "DUPLICATE_SCHEMA",
    "REJECT_SCHEMA",
    "RULE_MESSAGES",
    "ChunkedValidation",
    "ReportAccumulator",
    "SeenKeys",
    "ValidationOptions",
    "ValidationReport",
    "ValidationResult",
    "event_keys",
    "merge_contacts",
    "merged_contacts",
    "normalise_email",
    "normalise_emails",
    "validate_contacts",
    "validate_events",
]
