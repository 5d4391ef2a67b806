"""Validation options and the stable rule codes (see the package docstring for the list)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from kraiter_sync.errors import ConfigError
from kraiter_sync.proptypes import PropertyType

__all__ = ["RULE_MESSAGES", "EpochUnit", "NamePolicy", "ValidationOptions"]

EpochUnit = Literal["s", "ms", "us", "ns"]
NamePolicy = Literal["snake_case", "dot.case"]

#: Every rule code with the message a user sees in the rejects file. Codes are stable:
#: scripts filter rejects by them, so never rename one (add a new one instead).
RULE_MESSAGES: Mapping[str, str] = MappingProxyType(
    {
        "row.invalid_json": "the line is not a JSON object",
        "row.too_large": "the line is larger than 16 MiB, more than any event or contact "
        "within Kraiter's limits; it was not read",
        "row.too_deep": "the line nests objects or lists more than 64 levels deep",
        "row.ragged": "the row has more or fewer fields than the header (a delimiter "
        "inside a value needs quotes)",
        "contact_id.too_long": "the contact id is longer than the limit (255 characters)",
        "user_id.too_long": "the user id is longer than the limit (255 characters)",
        "identity.missing": "neither an email nor a contact id: the event cannot be attributed",
        "email.missing": "no email address",
        "email.invalid": "not a valid email address",
        "email.quoted_local": 'quoted local parts ("..."@domain) are not accepted',
        "email.comment": "comments in parentheses are not accepted in addresses",
        "email.ip_literal": "IP-literal domains (user@[1.2.3.4]) cannot receive mail here",
        "email.dotless_domain": "the domain has no dot (user@localhost cannot receive mail)",
        "email.too_long": "the address is longer than 254 characters (an internationalised "
        "domain counts in its IDNA form)",
        "email.local_too_long": "the part before @ is longer than 64 characters",
        "email.smtputf8": "non-ASCII characters before @ need --allow-smtputf8 "
        "(Kraiter sends through Amazon SES, which needs an ASCII local part)",
        "email.idna": "a label of the domain is not valid IDNA 2008 (a malformed xn-- label, "
        "'--' as its 3rd and 4th characters, or full-width or other compatibility "
        "characters, which are refused rather than folded into another address)",
        "email.tld": "the top-level domain cannot exist (numeric, hyphenated or one letter)",
        "email.special_use_domain": "the domain is special-use or reserved (.test, .invalid, "
        ".localhost, .local, .onion, .arpa, .alt, .internal) and cannot receive mail; pass "
        "--allow-special-use-domains for a test tenant",
        "name.empty": "the event name is empty",
        "name.too_long": "the event name is longer than 255 characters",
        "name.control_chars": "the event name contains control characters",
        "name.reserved": "names starting with 'email.' are Kraiter system events",
        "name.policy": "the event name does not follow the configured naming policy",
        "timestamp.missing": "no timestamp",
        "timestamp.unparseable": "the timestamp is not ISO 8601, a date, or an epoch number",
        "timestamp.future": "the timestamp is more than the allowed tolerance in the future",
        "timestamp.too_old": "the timestamp is before the configured floor",
        "properties.invalid_json": "properties are not a JSON object",
        "properties.unsupported_type": "property values must be string, number or boolean "
        "(lists, binary and durations are not accepted)",
        "properties.nan": "a property value is NaN or infinite",
        "properties.type": "a property value does not fit its declared type "
        '(types = {key = "string" | "integer" | "float" | "boolean"})',
        "properties.too_many": "more properties than the limit (100)",
        "properties.key_too_long": "a property key is longer than the limit (128)",
        "properties.value_too_long": "a string property value is longer than the limit (10,000)",
        "properties.key_conflict": "two properties flatten to the same key",
        "properties.too_deep": "properties nest deeper than the limit (32 levels)",
        "properties.too_large": "the properties text is larger than the limit (16 MiB), "
        "more than any properties within the other limits can take",
        "properties.placeholder": "a value is a placeholder from a rejects file ([masked: ...], "
        "...[cut: ...], [binary: ...]): put the original value back from the source",
        "properties.secret": "a property key looks like a secret (password, token, secret, "
        "api_key); pass --allow-secret-keys (or allow_secret_keys = true in the connector's "
        "[validation] table or the sync job) to send it anyway",
        "properties.card_number": "a property value holds what looks like a payment card "
        "number (13-19 digits, alone or inside text, passing the Luhn check); pass "
        "--allow-card-numbers (or allow_card_numbers = true in the connector's [validation] "
        "table or the sync job) to send it anyway",
    }
)


@dataclass(frozen=True)
class ValidationOptions:
    """Every knob of the validator, with the defaults of design.md §3.

    Frozen so that one options object can be shared by every chunk of a run.
    """

    #: Accept non-ASCII local parts (SMTPUTF8); off because Amazon SES refuses them.
    allow_smtputf8: bool = False
    #: Accept special-use and reserved domains (.test, .invalid, .localhost, .local,
    #: .onion, .arpa, .alt, .internal): for test tenants; no such address receives mail.
    allow_special_use_domains: bool = False
    #: IANA zone assumed for naive timestamps (no offset); reported when used.
    timezone: str = "UTC"
    #: Unit of numeric (epoch) timestamps; ``None`` detects it from each value's magnitude.
    epoch_unit: EpochUnit | None = None
    #: How far in the future a timestamp may be (clock skew between machines).
    future_tolerance: dt.timedelta = dt.timedelta(minutes=5)
    #: Timestamps before this instant are rejected (epoch-zero bugs, 1900 placeholders).
    floor: dt.datetime = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    #: The clock, injectable for tests; ``None`` is the real UTC time at validation.
    now: dt.datetime | None = None
    #: Optional naming policy for event names; violations are rejected as ``name.policy``.
    name_policy: NamePolicy | None = None
    #: Exact event-name renames applied before any check (``{"Signed Up": "signed_up"}``).
    rename: Mapping[str, str] = field(default_factory=dict)
    max_name_length: int = 255
    #: Contact ids (Kraiter's are ``cnt_`` + 26 characters) and user ids (UUIDs, emails,
    #: numbers) longer than this are rejected, judged by their length.
    max_id_length: int = 255
    max_properties: int = 100
    max_key_length: int = 128
    max_value_length: int = 10_000
    #: Nesting levels of properties (``{"a": {"b": 1}}`` is two); deeper is rejected.
    max_depth: int = 32
    #: Properties given as JSON text longer than this (bytes) are refused unparsed:
    #: within the other limits even text escaped as ``\uXXXX`` throughout stays near
    #: 6 MiB, and parsing hundreds of megabytes would hold several copies of them.
    max_properties_bytes: int = 16 * 1024 * 1024
    #: Send properties whose keys look like secrets (password, token, secret, api_key).
    allow_secret_keys: bool = False
    #: Send values that hold what looks like a payment card number (13-19 digits, alone or
    #: inside text, spaces or dashes between groups, passing the Luhn check).
    allow_card_numbers: bool = False
    #: Top-level property keys whose values were read as text (CSV / TSV columns):
    #: numbers and booleans among them are typed (``validate.text_types``).
    text_properties: frozenset[str] = frozenset()
    #: Declared types by property key (connector, sync job, ``--type``); win over
    #: inference, for any source.
    types: Mapping[str, PropertyType] = field(default_factory=dict)
    #: Also give each row the key it had before properties were typed, where that
    #: differs (``legacy_key``): a ledger written by an earlier version holds those.
    legacy_keys: bool = False

    def __post_init__(self) -> None:
        """Refuse options that cannot work, with the fix in the message (exit 2 in the CLI)."""
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            msg = (
                f"unknown timezone {self.timezone!r}: pass an IANA name such as UTC, "
                "Europe/Paris or America/New_York"
            )
            raise ConfigError(msg) from None
        for name in ("now", "floor"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                msg = f"ValidationOptions.{name} must be timezone-aware (e.g. tzinfo=datetime.UTC)"
                raise ConfigError(msg)

    def current_time(self) -> dt.datetime:
        """The validation clock: ``now`` when injected, else the real time (UTC)."""
        return self.now if self.now is not None else dt.datetime.now(dt.UTC)
