"""The event keys of Kraiter's own events, as the importer would have computed them.

``kraiter-sync state rebuild`` reads every event Kraiter holds and marks its keys done,
so an import after a lost ledger skips what is already there. An event's key hashes its
identity, name, timestamp and properties (``validate.keys``); Kraiter gives back all
four, but not always in the one form the importer hashed, so each event gets every key
the importer may have given it:

* **identity**: ``c:<contactId>`` (rows imported by contact id) and ``e:<email>`` (rows
  imported by email, the usual case: Kraiter answers with the contact's id, mapped back
  to its email, normalised as the validator does, through a listing of the contacts;
  an unlinked link-later event carries its email itself);
* **timestamp**: Kraiter's, as ``timestamp_iso`` (UTC, milliseconds, ``Z``);
* **properties**: the canonical form (``canonical_json``: JSON text inputs, Kraiter
  exports, strings, integers, booleans); where they hold a float that polars writes its
  own way (``1e-5`` for ``1e-05``; typed columns of Parquet, SQL or CSV are encoded by
  polars), also that form; and where they hold text that typing would turn into a
  number or a boolean (``"12"``, ``"true"``: a CSV sent before values read as text were
  typed, key version 1), also the typed form, which an import of that CSV computes now.

A key that no input ever produces costs a ledger row and nothing else; a missing one
would send the event twice. Mixtures (one text value typed, another declared
``string``) are not enumerated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from kraiter_sync.plan.events import iso_ms
from kraiter_sync.plan.snapshot import normalise_keys
from kraiter_sync.validate.keys import canonical_value, event_keys
from kraiter_sync.validate.text_types import infer, json_values

__all__ = ["RemoteKeys", "contact_emails", "remote_event_keys"]

_FRAME_SCHEMA: dict[str, pl.DataType] = {
    "remote_id": pl.String(),
    "contact_id": pl.String(),
    "email": pl.String(),
    "name": pl.String(),
    "timestamp_iso": pl.String(),
    "properties": pl.String(),
}


def contact_emails(contacts: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """A listing page of contacts → ``contact_id``, ``email`` (normalised like an input's)."""
    ids = [str(c.get("id")) for c in contacts]
    emails = pl.Series("email", [c.get("email") for c in contacts], dtype=pl.String)
    return pl.DataFrame(
        {"contact_id": ids, "email": normalise_keys(emails).alias("email")},
        schema={"contact_id": pl.String, "email": pl.String},
    )


class RemoteKeys:
    """``(event_key, remote_id)`` pairs of a page of events, and what was left out."""

    def __init__(self, pairs: list[tuple[str, str]], events: int, system: int) -> None:
        self.pairs = pairs
        #: Events the importer could have sent (custom events with a name and timestamp).
        self.events = events
        #: Kraiter's own ``email.*`` events (and malformed ones): never imported.
        self.system = system


def _polars_texts(values: list[Any], dtype: pl.DataType) -> list[str | None]:
    """Each value's JSON text as polars writes it in an object."""
    if not values:
        return []
    return json_values(pl.Series("v", values, dtype=dtype)).to_list()


def _typed_texts(strings: list[str]) -> list[str | None]:
    """Per text value, the JSON text typing gives it (``"12"`` → ``12``), or None where it
    stays text (``validate.text_types.infer``: the rules a CSV value is typed by)."""
    if not strings:
        return []
    leaf = infer(pl.Series("v", strings, dtype=pl.String))
    if leaf is None:
        return [None] * len(strings)
    typed = [json_values(p) for p in leaf.parts if p.dtype != pl.String]
    if not typed:
        return [None] * len(strings)
    return pl.select(pl.coalesce([pl.lit(t) for t in typed])).to_series().to_list()


def _variants(events: list[dict[str, Any]]) -> list[list[str]]:
    """Per event, its properties in each form an import may have hashed (module docstring)."""
    floats = [v for e in events for v in e.values() if isinstance(v, float)]
    strings = [v for e in events for v in e.values() if isinstance(v, str)]
    # by repr: 0.0 and -0.0 are equal keys of a dict, and two texts
    float_text = dict(zip(map(repr, floats), _polars_texts(floats, pl.Float64()), strict=True))
    typed_text = dict(zip(strings, _typed_texts(strings), strict=True))
    out: list[list[str]] = []
    for props in events:
        items = sorted(props.items())
        plain = [(k, canonical_value(v)) for k, v in items]
        by_polars = [
            (k, float_text.get(repr(v)) or text) if isinstance(v, float) else (k, text)
            for (k, v), (_k, text) in zip(items, plain, strict=True)
        ]
        typed = [
            (k, typed_text.get(v) or text) if isinstance(v, str) else (k, text)
            for (k, v), (_k, text) in zip(items, by_polars, strict=True)
        ]
        forms: list[str] = []
        for pairs in (plain, by_polars, typed):
            body = ",".join(f"{json.dumps(k, ensure_ascii=False)}:{t}" for k, t in pairs)
            text = "{" + body + "}"
            if text not in forms:
                forms.append(text)
        out.append(forms)
    return out


def remote_event_keys(
    events: Sequence[Mapping[str, Any]], contacts: pl.DataFrame | None = None
) -> RemoteKeys:
    """Every key the importer may have given each of Kraiter's ``events`` (a page of the
    feed), paired with the event's id. ``contacts``: :func:`contact_emails` of the
    tenant's contacts (``contact_id`` → normalised ``email``)."""
    kept: list[Mapping[str, Any]] = []
    for e in events:
        name = e.get("name", e.get("event"))
        if isinstance(name, str) and not name.startswith("email.") and e.get("timestamp"):
            kept.append(e)
    system = len(events) - len(kept)
    if not kept:
        return RemoteKeys([], 0, system)
    props = [{k: v for k, v in (e.get("properties") or {}).items() if v is not None} for e in kept]
    forms = _variants(props)
    rows: dict[str, list[Any]] = {c: [] for c in _FRAME_SCHEMA}
    for event, texts in zip(kept, forms, strict=True):
        for text in texts:
            rows["remote_id"].append(str(event.get("id")))
            rows["contact_id"].append(event.get("contactId"))
            rows["email"].append(event.get("email"))
            rows["name"].append(event.get("name", event.get("event")))
            rows["timestamp_iso"].append(iso_ms(str(event.get("timestamp"))))
            rows["properties"].append(text)
    frame = pl.DataFrame(rows, schema=_FRAME_SCHEMA)
    linked = frame.filter(pl.col("contact_id").is_not_null())  # keyed c:<contact id>
    unlinked = frame.filter(pl.col("contact_id").is_null())  # link-later: their own email
    parts = [linked, unlinked.with_columns(normalise_keys(unlinked["email"]).alias("email"))]
    if contacts is not None and linked.height:  # keyed e:<the contact's email>
        mapped = linked.drop("email").join(
            contacts, on="contact_id", how="inner", maintain_order="left"
        )
        parts.append(
            mapped.with_columns(pl.lit(None, pl.String).alias("contact_id")).select(frame.columns)
        )
    keyed = pl.concat(parts)
    keys = event_keys(keyed)
    pairs = list(zip(keys.to_list(), keyed["remote_id"].to_list(), strict=True))
    return RemoteKeys(pairs, len(kept), system)
