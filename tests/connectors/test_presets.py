"""The standard battery, run for every connector preset (like meltano/sdk's test factory).

Each preset ships a sample in sample_data/ built from the vendor's documented export
schema. The battery checks that the preset loads by name, reads its sample through
sources, and maps it onto exactly the mapped-frame schema of docs/internals.md with
every row kept. ``expected_rejects`` (the validator's job) is checked to be documented
here and asserted against validate.py once it lands.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from kraiter_sync.connectors import (
    Connector,
    apply,
    detect_connector,
    list_presets,
    load_connector,
    mapped_schema,
)
from kraiter_sync.sources import iter_chunks, read_source

REPO = Path(__file__).resolve().parent.parent.parent
PRESETS = list_presets()
EXPECTED_NAMES = {
    "segment_tracks",
    "segment_identifies",
    "ga4",
    "mixpanel",
    "amplitude",
    "mailchimp",
    "hubspot",
    "klaviyo",
    "customerio",
}


def test_every_documented_preset_exists() -> None:
    assert {p.name for p in PRESETS} >= EXPECTED_NAMES


@pytest.fixture(params=PRESETS, ids=[p.name for p in PRESETS])
def preset(request: pytest.FixtureRequest) -> Connector:
    connector: Connector = request.param
    return connector


def _sample(preset: Connector) -> Path:
    assert preset.sample, f"{preset.name} has no sample"
    return REPO / "sample_data" / preset.sample


def test_loads_by_name(preset: Connector) -> None:
    assert load_connector(preset.name) == preset
    assert preset.description
    assert preset.kind in ("events", "contacts")
    assert preset.expected_rows is not None
    assert preset.expected_rejects is not None
    assert 0 < preset.expected_rejects < preset.expected_rows


def test_sample_maps_to_the_exact_mapped_schema(preset: Connector) -> None:
    frame = read_source(_sample(preset))
    assert frame.height == preset.expected_rows
    mapped = apply(preset, frame)
    assert mapped.columns == mapped_schema(preset.kind)
    assert mapped.height == preset.expected_rows
    assert mapped["email"].dtype == pl.String
    assert mapped["source_file"].dtype == pl.String
    assert mapped["source_row"].dtype == pl.Int64
    assert mapped["source_row"].min() == 1
    assert isinstance(mapped["properties"].dtype, pl.Struct)
    # every row has an email (possibly a bad one) except deliberately anonymous rows
    assert mapped["email"].null_count() <= preset.expected_rejects
    if preset.kind == "events":
        assert mapped["name"].dtype == pl.String
        assert mapped["name"].null_count() == 0
        assert mapped["timestamp"].null_count() == 0
        if "user_id" in preset.fields:  # kraiter-sync's own formats carry no user id
            assert mapped["user_id"].null_count() == 0


def test_sample_maps_lazily_and_in_chunks_the_same(preset: Connector) -> None:
    eager = apply(preset, read_source(_sample(preset)))
    chunks = [apply(preset, c) for c in iter_chunks(_sample(preset), chunk_size=5)]
    rows = pl.concat([c.select("source_file", "source_row", "email") for c in chunks])
    assert rows.equals(eager.select("source_file", "source_row", "email"))


def test_sample_properties_are_not_the_mapped_fields(preset: Connector) -> None:
    """Columns used for a field are not copied into properties (no PII duplication)."""
    mapped = apply(preset, read_source(_sample(preset)))
    props = mapped["properties"].dtype
    assert isinstance(props, pl.Struct)
    names = {f.name for f in props.fields}
    for refs in preset.fields.values():
        for ref in refs:
            assert ref not in names
    assert "email" not in names
    assert "$email" not in names


def test_expected_rejects_match_validator(preset: Connector) -> None:
    validate = pytest.importorskip("kraiter_sync.validate")
    mapped = apply(preset, read_source(_sample(preset)))
    fn = validate.validate_events if preset.kind == "events" else validate.validate_contacts
    result = fn(mapped)
    rejects = result[1] if isinstance(result, tuple) else result.rejects
    rejected_rows = rejects.select("source_file", "source_row").unique().height
    assert rejected_rows == preset.expected_rejects


# ---- the main job's inputs ----------------------------------------------------------------


def test_main_sample_contacts_detected_and_mapped() -> None:
    frame = read_source(REPO / "sample_data" / "contacts.csv")
    detection = detect_connector(frame.columns)
    assert detection.kind == "contacts"
    assert dict(detection.chosen) == {"email": "email", "user_id": "user_id"}
    mapped = apply(detection.connector, frame)
    assert 1000 <= mapped.height <= 2000
    props = mapped["properties"].dtype
    assert isinstance(props, pl.Struct)
    assert {f.name for f in props.fields} == {
        "first_name", "last_name", "plan", "country", "signup_date",
    }  # fmt: skip
    emails = mapped["email"].to_list()
    assert "Carol King <carol.king@example.org>" in emails  # valid once unwrapped
    assert "admin@localhost" in emails  # dotless: to be rejected
    lowered = [e.lower() for e in emails]
    assert len(lowered) - len(set(lowered)) == 1  # one duplicate differing only by case


def test_main_sample_events_reference_the_contacts() -> None:
    contacts = read_source(REPO / "sample_data" / "contacts.csv")
    events = read_source(REPO / "sample_data" / "events.parquet")
    detection = detect_connector(events.columns)
    assert detection.kind == "events"
    mapped = apply(detection.connector, events)
    assert 2000 <= mapped.height <= 10_000
    assert mapped["timestamp"].dtype == pl.Datetime("us", "UTC")
    props = mapped["properties"].dtype
    assert isinstance(props, pl.Struct)
    assert "page" in {f.name for f in props.fields}  # nested struct kept for the validator
    known = set(contacts["email"].to_list())
    strangers = set(mapped["email"].to_list()) - known
    assert strangers == {"not-an-email", "ghost.user@example.com"}
    names = set(mapped["name"].to_list())
    assert {
        "signed_up",
        "viewed_pricing",
        "started_trial",
        "upgraded_plan",
        "invoice_paid",
    } <= names
    assert {"email.opened", "  "} <= names
    span = mapped["timestamp"].max() - mapped["timestamp"].min()  # type: ignore[operator]
    assert span.days > 365 * 2  # two years of history plus the deliberate future rows
