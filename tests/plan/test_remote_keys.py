"""The keys ``state rebuild`` computes from Kraiter's events are the importer's keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from kraiter_sync.plan.remote_keys import contact_emails, remote_event_keys
from kraiter_sync.validate import ValidationOptions, validate_events

PINNED = Path(__file__).resolve().parent.parent / "data" / "event_key_pin.ndjson"


def _as_kraiter_returns(row: dict[str, Any], contact_id: str, n: int) -> dict[str, Any]:
    """An event as Kraiter's feed gives it back: its properties parsed from what was sent."""
    return {
        "id": f"evt_{n}",
        "name": row["name"],
        "contactId": contact_id,
        "properties": json.loads(row["properties"]),
        "timestamp": row["timestamp_iso"],
        "createdAt": "2025-01-01T00:00:00.000Z",
    }


def test_every_pinned_key_is_found_from_the_event_kraiter_holds() -> None:
    """The pinned corpus covers every form that feeds a key (emails, contact ids,
    timestamps of every shape, properties as structs and as JSON text)."""
    rows = [json.loads(line) for line in PINNED.read_text().splitlines()]
    contacts = []
    events = []
    for n, row in enumerate(rows):
        if row["contact_id"] is not None:  # imported by contact id: keyed by it
            events.append(_as_kraiter_returns(row, row["contact_id"], n))
        else:  # imported by email: Kraiter answers with the contact's id
            contacts.append({"id": f"cnt_{n}", "email": row["email"].upper()})
            events.append(_as_kraiter_returns(row, f"cnt_{n}", n))
    keys = remote_event_keys(events, contact_emails(contacts))
    found = {k for k, _id in keys.pairs}
    missing = [(r["group"], r["source_row"]) for r in rows if r["event_key"] not in found]
    assert missing == []
    assert keys.events == len(rows)
    pairs = set(keys.pairs)  # (groups share some events: a key may pair with two ids)
    assert all((r["event_key"], f"evt_{n}") in pairs for n, r in enumerate(rows))


def _validated(frame: pl.DataFrame, **options: Any) -> dict[str, Any]:
    result = validate_events(frame, options=ValidationOptions(**options))
    assert result.rejects.height == 0
    return result.valid.row(0, named=True)


def test_floats_polars_writes_its_own_way_and_text_sent_before_typing() -> None:
    """A Parquet float 1e-05 is hashed as polars writes it (0.00001); a CSV's "12" sent
    as text by an earlier version is hashed typed (12) by an import today."""
    base = {
        "email": ["ann@example.com"],
        "contact_id": [None],
        "user_id": [None],
        "name": ["paid"],
        "timestamp": ["2024-05-01T10:00:00Z"],
        "source_file": ["x"],
        "source_row": [1],
    }
    struct = _validated(
        pl.DataFrame({**base, "properties": [{"rate": 1e-05, "n": 1.5e-07}]}),
    )
    assert struct["properties"] != json.dumps({"n": 1.5e-07, "rate": 1e-05}, separators=(",", ":"))
    csv = _validated(
        pl.DataFrame({**base, "properties": [{"n": "12", "ok": "true", "zip": "02134"}]}),
        text_properties=frozenset({"n", "ok", "zip"}),
    )
    assert csv["properties"] == '{"n":12,"ok":true,"zip":"02134"}'
    contacts = contact_emails([{"id": "cnt_1", "email": "Ann@Example.com"}])
    held = [
        {  # what the Parquet import sent
            "id": "evt_1",
            "name": "paid",
            "contactId": "cnt_1",
            "properties": {"rate": 1e-05, "n": 1.5e-07},
            "timestamp": "2024-05-01T10:00:00.000Z",
        },
        {  # what a version before typing sent for the CSV row: its values as text
            "id": "evt_2",
            "name": "paid",
            "contactId": "cnt_1",
            "properties": {"n": "12", "ok": "true", "zip": "02134"},
            "timestamp": "2024-05-01T10:00:00.000Z",
        },
        {  # Kraiter's own events are never imported
            "id": "evt_3",
            "name": "email.sent",
            "contactId": "cnt_1",
            "properties": {},
            "timestamp": "2024-05-01T10:00:00.000Z",
        },
    ]
    keys = remote_event_keys(held, contacts)
    ids = dict(keys.pairs)
    assert ids[struct["event_key"]] == "evt_1"
    assert ids[csv["event_key"]] == "evt_2"
    assert (keys.events, keys.system) == (2, 1)


def test_an_unlinked_event_is_keyed_by_its_own_email() -> None:
    row = _validated(
        pl.DataFrame(
            {
                "email": ["later@example.com"],
                "contact_id": [None],
                "user_id": [None],
                "name": ["signup"],
                "timestamp": ["2024-05-01T10:00:00Z"],
                "properties": ['{"a": 1}'],
                "source_file": ["x"],
                "source_row": [1],
            }
        )
    )
    held = {
        "id": "evt_9",
        "name": "signup",
        "contactId": None,
        "email": "Later@Example.com",
        "properties": {"a": 1},
        "timestamp": "2024-05-01T10:00:00.000Z",
    }
    assert dict(remote_event_keys([held]).pairs) == {row["event_key"]: "evt_9"}
