"""One canonical form decides "this is already in Kraiter": types count (1, 1.0, true, "1").

Every place that decides an event or a contact property is already there (the engine's
check after an ambiguous failure, recovery of inflight keys, reconcile's event and
contact diffs) compares the canonical JSON of ``validate.keys.canonical_json``, the form
the event key hashes.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from kraiter_sync.config import resolve_settings
from kraiter_sync.emulator import EmulatorConfig, serve_in_thread
from kraiter_sync.plan.contacts import diff_contacts
from kraiter_sync.plan.events import _local_frame, diff_events, remote_events_frame
from kraiter_sync.plan.snapshot import remote_frame
from kraiter_sync.upload.engine import EventRow, event_matches
from kraiter_sync.validate.keys import canonical_json
from kraiter_sync.verbs.importer import ImportOptions, import_
from tests.helpers.imports import stored_events

KEY = "kr_identity_test_secret_abcdef"
START = datetime(2024, 3, 1, tzinfo=UTC)


def _events(path: Path, value: Any, rows: int) -> None:
    """``rows`` events whose only property is ``v = value`` (same contacts, names, times)."""
    frame = pl.DataFrame(
        {
            "email": [f"user{i % 25}@example.com" for i in range(rows)],
            "event": ["scored"] * rows,
            "timestamp": [START + timedelta(minutes=i) for i in range(rows)],
            "props": [{"v": value}] * rows,
        }
    )
    frame.write_parquet(path)


def test_an_event_differing_only_in_type_is_not_taken_for_one_already_sent(
    tmp_path: Path,
) -> None:
    """The issue's reproduction: ``{"v": 1}`` then ``{"v": true}`` through a Kraiter that
    fails 5 % of requests and drops 5 % of answers. Every ambiguous failure of the second
    import looks for its event; a type-blind comparison found the first import's event
    instead, marked the key done, and that event was never sent (exit 0 all the same)."""
    ones, trues = tmp_path / "ones.parquet", tmp_path / "trues.parquet"
    _events(ones, 1, 1000)
    _events(trues, True, 1000)
    db = tmp_path / "kraiter.db"
    config = EmulatorConfig(db_path=str(db), fail_rate=0.05, drop_rate=0.05, seed=13)
    with serve_in_thread(config) as url:
        settings_ = resolve_settings(api_key=KEY, base_url=url, state_dir=tmp_path / "st", env={})
        options = ImportOptions(concurrency=16, max_retries=12)
        first = import_([ones], settings=settings_, options=options)
        second = import_([trues], settings=settings_, options=options)
        again = import_([trues], settings=settings_, options=options)
    assert first.exit_code == 0, first.as_dict()
    assert second.exit_code == 0, second.as_dict()
    assert second.retries > 0  # the faults really happened
    stored = stored_events(db, KEY)
    # by JSON text: as Counter keys, 1 and True would be one key
    texts = Counter(props for (_e, _n, _t, props), n in stored.items() for _ in range(n))
    assert texts == {'{"v": 1}': 1000, '{"v": true}': 1000}
    assert second.events.sent + second.events.verified == 1000
    assert again.events.already == 1000
    assert again.events.sent == 0


def _row(properties: str) -> EventRow:
    return EventRow(
        key="k",
        contact_id="cnt_1",
        name="scored",
        timestamp="2024-03-01T00:00:00.000Z",
        properties=properties,
        source_file="f",
        source_row=1,
    )


def _remote(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "evt_1",
        "name": "scored",
        "contactId": "cnt_1",
        "timestamp": "2024-03-01T00:00:00.000Z",
        "properties": properties,
    }


#: Groups of values that look alike (to Python's ``==``: 1 == 1.0 == True) or print alike.
_LOOKALIKES: list[list[Any]] = [
    [0, 0.0, -0.0, False, "0", "false"],
    [1, 1.0, True, "1", "1.0", "true"],
    [12.5, "12.5", 12.50000000000001],
    [2**53, float(2**53), 2**53 + 1, "9007199254740992"],
]
_VALUES = st.one_of(
    st.sampled_from([v for group in _LOOKALIKES for v in group]),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)
_KEYS = st.sampled_from(["a", "b", "v", "ключ"])
_PROPS = st.dictionaries(_KEYS, _VALUES, max_size=3)


@st.composite
def _pairs(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two property sets, the second often a look-alike of the first (a value swapped for
    one of its group, a key dropped) so that near misses are common."""
    mine = draw(_PROPS)
    if draw(st.booleans()):
        return mine, draw(_PROPS)
    theirs = {}
    for key, value in mine.items():
        group = next(
            (g for g in _LOOKALIKES if any(_same_typed({"x": value}, {"x": v}) for v in g)), [value]
        )
        if draw(st.integers(0, 5)):  # usually kept, sometimes dropped
            theirs[key] = draw(st.sampled_from(group))
    return mine, theirs


def _same_typed(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The oracle, written without the canonical form: same keys, and per key the same
    JSON type and the same value (``repr`` tells -0.0 from 0.0 and 1 from 1.0)."""
    return a.keys() == b.keys() and all(
        type(a[k]) is type(b[k]) and repr(a[k]) == repr(b[k]) for k in a
    )


@settings(max_examples=500, deadline=None)
@given(_pairs())
def test_already_there_holds_only_when_the_canonical_forms_are_equal(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    mine, theirs = pair
    row = _row(canonical_json(mine))
    found = event_matches(row, _remote(theirs))
    assert found == (canonical_json(mine) == canonical_json(theirs))
    assert found == _same_typed(mine, theirs)


@settings(max_examples=200, deadline=None)
@given(_PROPS)
def test_the_canonical_form_is_a_fixed_point(props: dict[str, Any]) -> None:
    text = canonical_json(props)
    assert canonical_json(text) == text
    assert canonical_json(json.loads(text)) == text
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in json.loads(text).values())


def test_reconcile_events_tells_types_apart() -> None:
    """A local ``{"v": 1.0}`` (a float column) is missing when Kraiter only has ``{"v": 1}``,
    and ``{"v": true}`` when it has ``{"v": 1}``: the event diff no longer folds them."""
    local = pl.DataFrame(
        {
            "email": ["a@example.com"] * 3,
            "contact_id": [None, None, None],
            "name": ["scored"] * 3,
            "timestamp_iso": ["2024-03-01T00:00:00.000Z"] * 3,
            "properties": ['{"v":1.0}', '{"v":true}', '{"v":1}'],
            "event_key": ["k1", "k2", "k3"],
            "source_file": ["f"] * 3,
            "source_row": [1, 2, 3],
        },
        schema_overrides={"contact_id": pl.String},
    )
    remote = remote_events_frame(
        {"a@example.com": [_remote({"v": 1}) | {"id": "evt_9"}]},
    )
    counts, missing = diff_events(_local_frame(local), remote)
    assert sorted(missing["properties_json"].to_list()) == ['{"v":1.0}', '{"v":true}']
    assert counts.row(0, named=True)["missing"] == 2


def test_contact_diff_tells_types_apart() -> None:
    """``30`` in Kraiter vs ``30.0`` locally, ``1`` vs ``true``, ``"1"`` vs ``1``: updates."""
    local = pl.DataFrame(
        {
            "email": ["a@example.com", "b@example.com", "c@example.com", "d@example.com"],
            "user_id": [None] * 4,
            "properties": ['{"age":30.0}', '{"vip":true}', '{"n":1}', '{"age":30}'],
            "source_file": ["f"] * 4,
            "source_row": [1, 2, 3, 4],
        },
        schema_overrides={"user_id": pl.String},
    )
    remote = remote_frame(
        [
            {"id": "cnt_a", "email": "a@example.com", "properties": {"age": 30}},
            {"id": "cnt_b", "email": "b@example.com", "properties": {"vip": 1}},
            {"id": "cnt_c", "email": "c@example.com", "properties": {"n": "1"}},
            {"id": "cnt_d", "email": "d@example.com", "properties": {"age": 30}},
        ]
    )
    plan = diff_contacts(local, remote)
    actions = dict(plan.rows.select("email", "action").iter_rows())
    assert actions == {
        "a@example.com": "update",
        "b@example.com": "update",
        "c@example.com": "update",
        "d@example.com": "unchanged",
    }
    patches = dict(plan.of("update").select("email", "properties").iter_rows())
    assert patches == {
        "a@example.com": '{"age":30.0}',
        "b@example.com": '{"vip":true}',
        "c@example.com": '{"n":1}',
    }


def test_the_validators_properties_are_already_canonical() -> None:
    """The keys hash the validator's ``properties``, which are ``canonical_json``'s
    output for every value kind of the pinned corpus (structs and JSON text). (Floats
    between 1e-9 and 1e-4 are the exception polars writes its own way: comparisons
    canonicalise both sides, see the next test.)"""
    pinned = Path(__file__).resolve().parent.parent / "data" / "event_key_pin.ndjson"
    texts = {json.loads(line)["properties"] for line in pinned.read_text().splitlines() if line}
    assert len(texts) > 40
    assert {t for t in texts if canonical_json(t) != t} == set()


def test_small_floats_written_two_ways_are_the_same_value() -> None:
    """polars writes 1e-05 as ``1e-5`` (Parquet and SQL floats), Python and Kraiter's JSON
    as ``1e-05``: one canonical form, so the event is found, not missing, not changed."""
    parquet_text = (
        pl.DataFrame({"p": [{"v": 1e-5, "w": 2.5e-7}]})
        .select(pl.col("p").struct.json_encode())
        .item()
    )
    assert parquet_text != json.dumps({"v": 1e-5, "w": 2.5e-7}, separators=(",", ":"))
    remote_props = {"v": 1e-05, "w": 2.5e-07}
    assert event_matches(_row(parquet_text), _remote(remote_props))
    local = pl.DataFrame(
        {
            "email": ["a@example.com"],
            "contact_id": [None],
            "name": ["scored"],
            "timestamp_iso": ["2024-03-01T00:00:00.000Z"],
            "properties": [parquet_text],
            "event_key": ["k1"],
            "source_file": ["f"],
            "source_row": [1],
        },
        schema_overrides={"contact_id": pl.String},
    )
    remote = remote_events_frame({"a@example.com": [_remote(remote_props)]})
    _counts, missing = diff_events(_local_frame(local), remote)
    assert missing.height == 0
    contacts = pl.DataFrame(
        {
            "email": ["a@example.com"],
            "user_id": [None],
            "properties": [parquet_text],
            "source_file": ["f"],
            "source_row": [1],
        },
        schema_overrides={"user_id": pl.String},
    )
    kraiter = remote_frame([{"id": "cnt_a", "email": "a@example.com", "properties": remote_props}])
    assert diff_contacts(contacts, kraiter).counts()["unchanged"] == 1
    kraiter = remote_frame([{"id": "cnt_a", "email": "a@example.com", "properties": {"v": -1e-5}}])
    assert diff_contacts(contacts, kraiter).counts()["update"] == 1
