"""Auto-detection: which source columns hold Kraiter's fields, chosen from common column
names and reported, so a wrong guess is visible and fixable with ``--map FIELD=COLUMN``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kraiter_sync.connectors.model import (
    CONTACT_FIELDS,
    EVENT_FIELDS,
    Connector,
    list_columns,
    load_connector,
    norm_name,
    top_column,
)
from kraiter_sync.errors import InputError
from kraiter_sync.frames import SOURCE_FILE, SOURCE_ROW, Kind

# Auto-detection candidates, best first, compared after norm_name() (case, spaces and
# punctuation removed) so "Email Address", "email_address" and "E-Mail" all match.
_CANDIDATES: dict[str, tuple[str, ...]] = {
    "email": (
        "email",
        "emailaddress",
        "email1",
        "useremail",
        "contactemail",
        "primaryemail",
        "customeremail",
        "personemail",
        "mail",
        "emailid",
    ),
    "contact_id": ("contactid", "kraitercontactid", "kraiterid"),
    "user_id": ("userid", "externalid", "customerid", "uid", "memberid"),
    "name": ("event", "eventname", "eventtype", "action", "name"),
    "timestamp": (
        "timestamp",
        "time",
        "ts",
        "occurredat",
        "eventtime",
        "eventtimestamp",
        "eventdate",
        "datetime",
        "createdat",
        "sentat",
        "receivedat",
        "date",
    ),
}


# Columns that on their own say "these are events" (a bare "name" does not: contacts
# have names, and "created_at" is a signup date as often as an event time).
_STRONG_NAME = frozenset({"event", "eventname", "eventtype", "action"})


_PROPERTY_COLUMNS = frozenset(
    {"properties", "props", "traits", "attributes", "eventproperties", "customattributes"}
)


# Columns *about* the email rather than holding it ("Email Marketing Consent").
_NOT_AN_ADDRESS = ("consent", "optin", "opt", "status", "verified", "bounce", "subscri", "count")


_STRONG_TIME = frozenset({"timestamp", "time", "ts", "occurredat", "eventtime", "eventtimestamp"})


@dataclass(frozen=True)
class Detection:
    """What auto-detection (plus ``--map`` overrides) chose, for the report."""

    connector: Connector
    kind: Kind
    kind_reason: str
    chosen: Mapping[str, str]
    how: Mapping[str, str]
    ambiguous: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"kind: {self.kind} ({self.kind_reason})"]
        for name in self.connector.field_names:
            column = self.chosen.get(name)
            if column is None:
                out.append(f"{name}: not found")
                continue
            note = self.how.get(name, "detected")
            others = self.ambiguous.get(name)
            extra = f"; also matched {', '.join(map(repr, others))}" if others else ""
            out.append(f"{name}: {column!r} ({note}{extra})")
        return out


def parse_overrides(pairs: Iterable[str]) -> dict[str, str]:
    """``["email=Work Email", ...]`` (from ``--map``) → ``{"email": "Work Email"}``."""
    out: dict[str, str] = {}
    known = set(EVENT_FIELDS)
    for pair in pairs:
        fld, sep, column = pair.partition("=")
        fld = fld.strip()
        if not sep or not fld or not column:
            msg = f"--map {pair!r}: expected FIELD=COLUMN, e.g. --map email='Email Address'"
            raise InputError(msg)
        if fld not in known:
            msg = f"--map {pair!r}: unknown field {fld!r}; fields: {', '.join(EVENT_FIELDS)}"
            raise InputError(msg)
        out[fld] = column
    return out


def _check_override_columns(overrides: Mapping[str, str], columns: Sequence[str]) -> None:
    for fld, ref in overrides.items():
        if top_column(ref, columns) is None:
            msg = (
                f"--map {fld}={ref}: no column {ref!r}; available columns: {list_columns(columns)}"
            )
            raise InputError(msg)


def detect_connector(
    columns: Sequence[str],
    *,
    kind: Kind | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Detection:
    """Pick columns for each field from common names; ``overrides`` win over guesses."""
    overrides = dict(overrides or {})
    _check_override_columns(overrides, columns)
    columns = [c for c in columns if c not in (SOURCE_FILE, SOURCE_ROW)]
    by_norm: dict[str, list[str]] = {}
    for column in columns:
        by_norm.setdefault(norm_name(column), []).append(column)

    def matches(fld: str) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for candidate in _CANDIDATES[fld]:
            found.extend((candidate, col) for col in by_norm.get(candidate, []))
        if fld == "email":
            # last resort: any column with "email" in its name ("Work Email", "billingEmail")
            taken = {col for _, col in found}
            found.extend(
                (norm, col)
                for norm, cols in by_norm.items()
                if "email" in norm and not any(flag in norm for flag in _NOT_AN_ADDRESS)
                for col in cols
                if col not in taken
            )
        return found

    guesses = {fld: matches(fld) for fld in _CANDIDATES}
    if kind is None:
        name_norms = {n for n, _ in guesses["name"]}
        time_norms = {n for n, _ in guesses["timestamp"]}
        if {"name", "timestamp"} & set(overrides):
            kind, reason = "events", "--map gives a name or timestamp column"
        elif name_norms & _STRONG_NAME and time_norms:
            kind, reason = "events", "found an event-name and a timestamp column"
        elif name_norms and time_norms & _STRONG_TIME:
            kind, reason = "events", "found a name and a timestamp column"
        else:
            kind, reason = "contacts", "no event-name + timestamp column pair"
    else:
        reason = "given with --kind"
    allowed = EVENT_FIELDS if kind == "events" else CONTACT_FIELDS
    stray = sorted(set(overrides) - set(allowed))
    if stray:
        msg = f"--map {stray[0]}=…: {kind} have no field {stray[0]!r}; fields: {', '.join(allowed)}"
        raise InputError(msg)

    chosen: dict[str, str] = {}
    how: dict[str, str] = {}
    ambiguous: dict[str, tuple[str, ...]] = {}
    used: set[str] = set(overrides.values())
    for fld in allowed:
        if fld in overrides:
            chosen[fld] = overrides[fld]
            how[fld] = "from --map"
            continue
        options = [col for _, col in guesses[fld] if col not in used]
        if options:
            chosen[fld] = options[0]
            used.add(options[0])
            how[fld] = "detected"
            if len(options) > 1:
                ambiguous[fld] = tuple(options[1:])
    # A column that already holds the properties (struct or JSON text) is spread into
    # the top level rather than nested as {"properties": {...}}.
    nested = tuple(c for c in columns if norm_name(c) in _PROPERTY_COLUMNS and c not in used)
    connector = Connector(
        name="auto",
        kind=kind,
        description="detected from column names",
        fields={fld: (col,) for fld, col in chosen.items()},
        spread=nested,
        json_columns=nested,
        required=("name", "timestamp") if kind == "events" else ("email",),
    )
    return Detection(connector, kind, reason, chosen, how, ambiguous)


def with_overrides(connector: Connector, overrides: Mapping[str, str]) -> Connector:
    """The connector with ``--map`` overrides replacing its field references."""
    if not overrides:
        return connector
    stray = sorted(set(overrides) - set(connector.field_names))
    if stray:
        msg = (
            f"--map {stray[0]}=…: {connector.kind} have no field {stray[0]!r}; "
            f"fields: {', '.join(connector.field_names)}"
        )
        raise InputError(msg)
    fields = dict(connector.fields)
    fields.update({fld: (col,) for fld, col in overrides.items()})
    return dataclasses.replace(
        connector, fields=fields, required=tuple({*connector.required, *overrides})
    )


def resolve_connector(
    columns: Sequence[str],
    *,
    connector: str | Path | None = None,
    kind: Kind | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Detection:
    """What the CLI does: a named/file connector plus ``--map``, else auto-detection."""
    if connector is None:
        return detect_connector(columns, kind=kind, overrides=overrides)
    loaded = load_connector(connector)
    if kind is not None and kind != loaded.kind:
        msg = f"connector {loaded.name!r} reads {loaded.kind}, but --kind {kind} was given"
        raise InputError(msg)
    overrides = dict(overrides or {})
    _check_override_columns(overrides, columns)
    final = with_overrides(loaded, overrides)
    chosen: dict[str, str] = {}
    how: dict[str, str] = {}
    for fld, refs in final.fields.items():
        present = [r for r in refs if top_column(r, columns) is not None]
        if present:
            chosen[fld] = present[0]
            how[fld] = "from --map" if fld in overrides else f"connector {final.name}"
    return Detection(final, final.kind, f"connector {final.name}", chosen, how)
