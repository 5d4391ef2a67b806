"""Event keys of a fixed corpus, pinned: ledgers written by earlier versions must stay valid.

A ledger remembers events by ``event_key``; if the key of an event ever changed, a re-run
would send it again. The corpus below goes through the public validation path
(``validate_events``) and its canonical columns (``email``, ``contact_id``, ``name``,
``timestamp_iso``, ``properties``, ``event_key``) must equal the values recorded in
``tests/data/event_key_pin.ndjson``. It covers what feeds the key: ASCII and IDNA
emails, contact ids, unicode, long and odd names, every accepted timestamp form (ISO
strings of every shape, epoch strings and numbers of every unit, naive and aware
datetimes, dates), and properties of every value kind, as structs and as JSON text.

The expected values were recorded by the validator as it was when it also had a
compiled (C) fast path, and were checked equal on both of its paths. Regenerate only
when the key is meant to change (it never should):
``python tests/validate/test_event_key_pin.py --record``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from kraiter_sync.validate import ValidationOptions, validate_events
from tests.helpers.key_corpus import corpus

PINNED = Path(__file__).resolve().parent.parent / "data" / "event_key_pin.ndjson"
COLUMNS = ["email", "contact_id", "name", "timestamp_iso", "properties", "event_key"]


def canonical(name: str, frame: pl.DataFrame, options: ValidationOptions) -> list[dict[str, Any]]:
    result = validate_events(frame, options=options)
    # every row of the corpus is meant to be valid: a reject would drop it from the pin
    assert result.rejects.height == 0, result.rejects.select("source_row", "rule").rows()
    return [
        {"group": name, "source_row": row["source_row"], **{c: row[c] for c in COLUMNS}}
        for row in result.valid.iter_rows(named=True)
    ]


def compute() -> list[dict[str, Any]]:
    return [row for name, (frame, opts) in corpus().items() for row in canonical(name, frame, opts)]


def _pinned() -> list[dict[str, Any]]:
    lines = PINNED.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line]


def test_corpus_keys_equal_the_recorded_ones() -> None:
    expected = _pinned()
    actual = compute()
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert got == want


def test_corpus_covers_what_feeds_the_key() -> None:
    """The pin protects only what the corpus holds: keep it varied."""
    rows = _pinned()
    # the key is a function of the canonical parts (the same event read in another form
    # gets the same key) and tells different events apart
    keys_by_parts: dict[tuple[str, ...], set[str]] = {}
    for r in rows:
        identity = f"c:{r['contact_id']}" if r["contact_id"] else f"e:{r['email']}"
        parts = (identity, r["name"], r["timestamp_iso"], r["properties"])
        keys_by_parts.setdefault(parts, set()).add(r["event_key"])
    assert all(len(keys) == 1 for keys in keys_by_parts.values())
    assert len({r["event_key"] for r in rows}) == len(keys_by_parts) > len(rows) // 2
    identities = {"contact" if r["contact_id"] else "email" for r in rows}
    assert identities == {"contact", "email"}
    assert any(r["email"] and "xn--" in r["email"] for r in rows)  # IDNA
    assert any(r["email"] and not r["email"].isascii() for r in rows)  # SMTPUTF8
    assert any(len(r["name"]) == 255 for r in rows)
    assert any(r["properties"] == "{}" for r in rows)
    for needle in ("-0.0", "1e+300", "0.1", "true", "false", "\u043a\u043b\u044e\u0447", "utm."):
        assert any(needle in r["properties"] for r in rows), needle
    groups = {r["group"] for r in rows}
    assert groups == set(corpus())


def record() -> None:
    rows = compute()
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    PINNED.write_text(text, encoding="utf-8")
    print(f"{len(rows)} rows -> {PINNED}")


if __name__ == "__main__":
    if "--record" in sys.argv:
        record()
    else:
        pytest.main([__file__, "-q"])
