"""validate_events / validate_contacts: canonical frames, rejects, reports, duplicates."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kraiter_sync.state.rejects import RejectsWriter
from kraiter_sync.validate import (
    REJECT_SCHEMA,
    ChunkedValidation,
    SeenKeys,
    ValidationOptions,
    normalise_emails,
    validate_contacts,
    validate_events,
)
from kraiter_sync.validate.keys import hash_text

NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
OPTS = ValidationOptions(now=NOW)


def events(rows: list[dict[str, Any]], file: str = "events.csv") -> pl.DataFrame:
    base = {
        "email": None,
        "contact_id": None,
        "user_id": None,
        "name": "signup",
        "timestamp": "2024-01-01T00:00:00Z",
        "properties": None,
    }
    full = [{**base, **r, "source_file": file, "source_row": i + 1} for i, r in enumerate(rows)]
    return pl.DataFrame(
        full, schema_overrides={"contact_id": pl.String, "user_id": pl.String, "email": pl.String}
    )


def test_canonical_event_columns_and_values() -> None:
    mapped = events([{"email": " Ann@Example.com ", "properties": '{"b":2,"a":{"x":1}}'}])
    result = validate_events(mapped, options=OPTS)
    assert result.valid.columns == [
        "email",
        "contact_id",
        "name",
        "timestamp",
        "timestamp_iso",
        "properties",
        "event_key",
        "source_file",
        "source_row",
    ]
    row = result.valid.row(0, named=True)
    assert row["email"] == "ann@example.com"
    assert row["timestamp_iso"] == "2024-01-01T00:00:00.000Z"
    assert result.valid.schema["timestamp"] == pl.Datetime("us", "UTC")
    assert row["properties"] == '{"a.x":1,"b":2}'
    text = "\x1f".join(
        ["e:ann@example.com", "signup", "2024-01-01T00:00:00.000Z", '{"a.x":1,"b":2}']
    )
    assert row["event_key"] == hash_text(pl.Series([text]))["event_key"][0]


def test_hash_is_standard_xxh3_128() -> None:
    """Published XXH3-128 test vector (seed 0, empty input): anyone can recompute keys."""
    assert hash_text(pl.Series([""]))["event_key"][0] == "99aa06d3014798d86001c324468d497f"
    parts = hash_text(pl.Series(["", "abc"]))
    assert parts["hi"][0] == 0x99AA06D3014798D8
    assert parts["lo"][0] == 0x6001C324468D497F
    assert parts["event_key"][1] != parts["event_key"][0]
    assert len(parts["event_key"][1]) == 32


def test_event_key_is_a_pinned_value() -> None:
    """Fails if the key's definition or the hash implementation ever drifts."""
    mapped = events([{"email": "a@b.co", "name": "x", "properties": '{"k":"v"}'}])
    key = validate_events(mapped, options=OPTS).valid["event_key"][0]
    assert key == "6c36f04755a948f89439e11b9d0bcb31"


def test_contact_id_identity_and_missing_identity() -> None:
    mapped = events([{"contact_id": "c_1"}, {}, {"contact_id": "  ", "email": "x@y.io"}])
    result = validate_events(mapped, options=OPTS)
    assert result.valid["contact_id"].to_list() == ["c_1", None]
    assert result.rejects["rule"].to_list() == ["identity.missing"]
    assert result.rejects["source_row"].to_list() == [2]


def test_rejects_frame_shape_first_rule_and_original_values() -> None:
    mapped = events(
        [
            {"email": "bad", "name": "email.opened"},
            {"email": "a@b.co", "name": "email.opened"},
            {"email": "a@b.co", "timestamp": "yesterday"},
            {"email": "a@b.co", "properties": '{"password":"x"}'},
        ]
    )
    result = validate_events(mapped, options=OPTS)
    rej = result.rejects
    assert dict(rej.schema) == REJECT_SCHEMA
    assert rej.select("source_row", "field", "rule").rows() == [
        (1, "email", "email.invalid"),
        (2, "name", "name.reserved"),
        (3, "timestamp", "timestamp.unparseable"),
        (4, "properties", "properties.secret"),
    ]
    assert rej["stage"].unique().to_list() == ["invalid"]
    assert rej["email"][0] == "bad"
    assert rej["timestamp"][2] == "yesterday"
    assert all(rej["message"].is_not_null())
    assert result.report.by_rule == {
        "email.invalid": 1,
        "name.reserved": 1,
        "timestamp.unparseable": 1,
        "properties.secret": 1,
    }


def test_name_rules_and_case_never_changed() -> None:
    mapped = events(
        [
            {"email": "a@b.co", "name": n}
            for n in ["Signed Up", "  ", "x" * 256, "bad\x07", "signed_up", "Signed_Up"]
        ]
    )
    result = validate_events(mapped, options=OPTS)
    assert sorted(result.valid["name"].to_list()) == ["Signed Up", "Signed_Up", "signed_up"]
    assert result.rejects["rule"].to_list() == ["name.empty", "name.too_long", "name.control_chars"]
    warnings = result.report.all_warnings()
    assert any("Signed Up, Signed_Up, signed_up" in w for w in warnings)


def test_name_policy_and_rename_map() -> None:
    options = ValidationOptions(
        now=NOW, name_policy="snake_case", rename={"Signed Up": "signed_up"}
    )
    mapped = events(
        [{"email": "a@b.co", "name": n} for n in ["Signed Up", "OrderPlaced", "page.view"]]
    )
    result = validate_events(mapped, options=options)
    assert result.valid["name"].to_list() == ["signed_up"]
    assert result.rejects["rule"].to_list() == ["name.policy", "name.policy"]
    dotted = ValidationOptions(now=NOW, name_policy="dot.case")
    assert (
        validate_events(
            events([{"email": "a@b.co", "name": "page.view"}]), options=dotted
        ).report.valid
        == 1
    )


def test_duplicates_within_and_across_chunks() -> None:
    rows = [{"email": "A@b.co"}, {"email": "a@b.co"}, {"email": "a@b.co", "name": "other"}]
    seen = SeenKeys()
    first = validate_events(events(rows), options=OPTS, seen=seen)
    assert (first.report.valid, first.report.duplicates) == (2, 1)
    second = validate_events(events(rows, file="part2.csv"), options=OPTS, seen=seen)
    assert (second.report.valid, second.report.duplicates) == (0, 3)
    # same properties, different key order and source type: same event
    a = validate_events(
        events([{"email": "a@b.co", "properties": '{"x":1,"y":"z"}'}]), options=OPTS
    )
    b = validate_events(
        events([{"email": "a@b.co", "properties": {"y": "z", "x": 1}}]), options=OPTS
    )
    assert a.valid["event_key"].to_list() == b.valid["event_key"].to_list()


def test_seen_keys_many_runs() -> None:
    seen = SeenKeys()
    keys = [hashlib.sha256(str(i).encode()).hexdigest()[:32] for i in range(1000)]
    for start in range(0, 1000, 37):
        chunk = pl.Series(keys[start : start + 37])
        assert not seen.contains(chunk).any()
        seen.add(chunk)
    assert seen.contains(pl.Series(keys)).all()
    assert seen.count == 1000
    assert not seen.contains(pl.Series(["0" * 32])).any()


@settings(max_examples=150, deadline=None)
@given(
    batches=st.lists(
        st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=30), max_size=5
    )
)
def test_seen_keys_mark_first_occurrences_in_order(batches: list[list[tuple[int, int]]]) -> None:
    """Small halves make many keys share their top half (the tie path), and (0, 0) is a
    key like any other."""
    seen = SeenKeys()
    remembered: set[tuple[int, int]] = set()
    for batch in batches:
        expected = []
        for key in batch:
            expected.append(key not in remembered)
            remembered.add(key)
        hi = pl.Series([k[0] for k in batch], dtype=pl.UInt64)
        lo = pl.Series([k[1] for k in batch], dtype=pl.UInt64)
        assert seen.mark(hi, lo).to_list() == expected
        assert seen.contains(SeenKeys.sorted_halves(hi, lo)).all()
    assert seen.count == len(remembered)


def test_seen_keys_across_many_chunks() -> None:
    """300,000 structured keys in chunks of 50,000 (runs merge on the way), then the
    first 1,000 again: only those are repeats."""
    keys = pl.int_range(0, 300_000, eager=True).cast(pl.UInt64)
    hi, lo = (
        pl.concat([keys * 7919, (keys * 7919).head(1000)]),
        pl.concat([keys % 5, (keys % 5).head(1000)]),
    )
    seen = SeenKeys()
    first = pl.concat(
        [seen.mark(hi.slice(i, 50_000), lo.slice(i, 50_000)) for i in range(0, len(hi), 50_000)]
    )
    assert first.head(300_000).all()
    assert not first.tail(1000).any()
    assert seen.count == 300_000


def test_contacts_merge_last_row_wins_per_property() -> None:
    mapped = pl.DataFrame(
        {
            "email": ["Ann@x.io", "bob@x.io", "ann@x.io ", "nope"],
            "user_id": ["u1", None, None, None],
            "properties": ['{"plan":"free","city":"Oslo"}', "{}", '{"plan":"pro"}', "{}"],
            "source_file": ["c.csv"] * 4,
            "source_row": [1, 2, 3, 4],
        }
    )
    result = validate_contacts(mapped, options=OPTS)
    assert result.report.to_dict()["valid"] == 2
    assert (result.report.duplicates, result.report.rejected) == (1, 1)
    ann = result.valid.filter(pl.col("email") == "ann@x.io").row(0, named=True)
    assert ann["properties"] == '{"city":"Oslo","plan":"pro"}'
    assert ann["user_id"] == "u1"
    assert ann["source_row"] == 3
    assert result.rejects["rule"].to_list() == ["email.invalid"]


def test_chunked_run_merges_reports_and_writes_rejects(tmp_path: Path) -> None:
    rows = [
        {
            "email": f"u{i % 7}@x.io",
            "name": "n" if i % 5 else "",
            "timestamp": f"2024-01-{1 + i % 28:02d}",
        }
        for i in range(60)
    ]
    mapped = events(rows)
    out = tmp_path / "rejects.csv"
    with RejectsWriter(out) as writer:
        run = ChunkedValidation(kind="events", options=OPTS, on_rejects=writer.write)
        valid = pl.concat(list(run.run(mapped.iter_slices(16))))
    report = run.report
    assert report.rows_read == 60
    assert report.balanced
    assert report.rejected == 12
    assert report.by_rule == {"name.empty": 12}
    assert valid.height == report.valid
    assert valid["event_key"].is_unique().all()
    assert report.timezone_assumed == "UTC"
    assert report.naive_timestamps == 60
    written = pl.read_csv(out)
    assert written.height == 12
    assert written["rule"].unique().to_list() == ["name.empty"]


@pytest.mark.parametrize("suffix", [".parquet", ".ndjson", ".csv"])
def test_rejects_writer_formats_and_formula_neutralising(tmp_path: Path, suffix: str) -> None:
    mapped = events([{"email": "=HYPERLINK(1)"}, {"email": "@bad"}])
    rejects = validate_events(mapped, options=OPTS).rejects
    path = tmp_path / f"r{suffix}"
    with RejectsWriter(path) as writer:
        writer.write(rejects)
        writer.write(rejects)
    back = {".parquet": pl.read_parquet, ".ndjson": pl.read_ndjson, ".csv": pl.read_csv}[suffix](
        path
    )
    assert back.height == 4
    if suffix == ".csv":
        assert back["email"].to_list()[:2] == ["'=HYPERLINK(1)", "'@bad"]
    else:
        assert back["email"].to_list()[:2] == ["=HYPERLINK(1)", "@bad"]


def test_rejects_writer_empty_file_still_valid(tmp_path: Path) -> None:
    path = tmp_path / "none.parquet"
    with RejectsWriter(path):
        pass
    assert pl.read_parquet(path).columns == list(REJECT_SCHEMA)


# --- property tests --------------------------------------------------------------------

_emailish = st.text(
    alphabet=st.sampled_from(list('abcAB.@-_+ \u00a0<>:"()[]1éü')), min_size=0, max_size=20
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.none(), _emailish, st.emails()), min_size=1, max_size=20))
def test_email_normalisation_is_idempotent(values: list[str | None]) -> None:
    for smtp in (False, True):
        once = normalise_emails(pl.Series(values, dtype=pl.String), allow_smtputf8=smtp)
        ok = once.filter(pl.col("rule").is_null())["email"]
        twice = normalise_emails(ok, allow_smtputf8=smtp)
        assert twice["rule"].null_count() == len(ok)
        assert twice["email"].to_list() == ok.to_list()


_ts = st.one_of(
    st.none(),
    st.sampled_from(
        ["2024-01-01T00:00:00Z", "2024-01-01", "bad", "2999-01-01T00:00:00Z", "1714557600"]
    ),
)
_props = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(["a", "b", "token", "n"]),
        st.one_of(st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=3)),
        max_size=3,
    ).map(json.dumps),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "email": st.one_of(
                    st.none(), st.sampled_from(["a@b.co", "A@B.CO", "bad", "ü@x.de"])
                ),
                "contact_id": st.one_of(st.none(), st.sampled_from(["c1", ""])),
                "name": st.one_of(st.none(), st.sampled_from(["x", "X", "email.sent", ""])),
                "timestamp": _ts,
                "properties": _props,
            }
        ),
        max_size=40,
    ),
    st.integers(1, 7),
)
def test_row_accounting_invariant_events(rows: list[dict[str, Any]], chunk: int) -> None:
    mapped = events(rows) if rows else events([]).clear()
    run = ChunkedValidation(kind="events", options=OPTS)
    valid = list(run.run(mapped.iter_slices(chunk)))
    report = run.report
    assert report.rows_read == len(rows)
    assert report.balanced
    assert sum(v.height for v in valid) == report.valid
    assert sum(report.by_rule.values()) == report.rejected
    if valid:
        assert pl.concat(valid)["event_key"].is_unique().all()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from(["a@b.co", "A@b.co", "c@d.io", "bad", ""]), max_size=30),
    st.integers(1, 5),
)
def test_row_accounting_invariant_contacts(emails: list[str], chunk: int) -> None:
    mapped = pl.DataFrame(
        {
            "email": emails,
            "user_id": [None] * len(emails),
            "properties": ["{}"] * len(emails),
            "source_file": ["c.csv"] * len(emails),
            "source_row": list(range(1, len(emails) + 1)),
        },
        schema_overrides={"email": pl.String, "user_id": pl.String, "properties": pl.String},
    )
    run = ChunkedValidation(kind="contacts", options=OPTS)
    valid = pl.concat(
        [
            pl.DataFrame(schema={"email": pl.String}),
            *[v.select("email") for v in run.run(mapped.iter_slices(chunk))],
        ]
    )
    assert run.report.balanced
    assert run.report.rows_read == len(emails)
    assert valid.height == run.report.valid
    assert valid["email"].is_unique().all()


def test_seen_keys_same_top_half_is_still_exact() -> None:
    """Keys sharing their first 64 bits must not be confused (the rare tie path)."""
    seen = SeenKeys()
    hi = "00000000000000ff"
    seen.add(pl.Series([hi + "0000000000000001", hi + "0000000000000003"]))
    seen.add(pl.Series([hi + "0000000000000005"]))
    probe = pl.Series([hi + f"{i:016x}" for i in range(7)])
    assert seen.contains(probe).to_list() == [False, True, False, True, False, True, False]


def test_validate_verb_writes_rejects_and_report(tmp_path: Path) -> None:
    from kraiter_sync.cli.render import validation_summary
    from kraiter_sync.inputs import InputOptions
    from kraiter_sync.verbs.validate import validate_inputs

    inputs = InputOptions(kind="events", validation=OPTS, chunk_size=2)
    source = tmp_path / "events.csv"
    source.write_text(
        "email,name,timestamp\n"
        + "".join(f"{e},signup,2024-01-01T00:00:00Z\n" for e in ("a@b.co", "nope", "a@b.co"))
    )
    result = validate_inputs(
        [source],
        options=inputs,
        rejects_path=tmp_path / "out" / "rejects.ndjson",
        report_path=tmp_path / "out" / "report.json",
    )
    (report,) = result.reports
    assert (report.valid, report.duplicates, report.rejected) == (1, 1, 1)
    assert result.exit_code == 3
    assert pl.read_ndjson(tmp_path / "out" / "rejects.ndjson")["source_row"].to_list() == [2]
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["by_rule"] == {"email.invalid": 1}
    assert saved["rows_read"] == 3
    text = validation_summary(report)
    assert "3 events rows read: 1 valid, 1 duplicates, 1 rejected" in text
    assert "email.invalid" in text
    clean = tmp_path / "clean.csv"
    clean.write_text("email,name,timestamp\na@b.co,signup,2024-01-01T00:00:00Z\n")
    assert validate_inputs([clean], options=inputs).exit_code == 0


def test_sorted_halves_keeps_equal_keys_adjacent_on_top_half_ties() -> None:
    hi = pl.Series([5, 5, 5, 1], dtype=pl.UInt64)
    lo = pl.Series([1, 2, 1, 9], dtype=pl.UInt64)
    q = SeenKeys.sorted_halves(hi, lo)
    assert q.select("hi", "lo", "pos").rows() == [(1, 9, 3), (5, 1, 0), (5, 1, 2), (5, 2, 1)]


def test_options_refuse_unknown_timezone_and_naive_clock() -> None:
    from kraiter_sync.errors import ConfigError

    with pytest.raises(ConfigError, match="IANA name"):
        ValidationOptions(timezone="Mars/Olympus")
    with pytest.raises(ConfigError, match="timezone-aware"):
        ValidationOptions(now=dt.datetime(2025, 1, 1))


def test_name_checks_follow_the_options() -> None:
    """A chunk's distinct names are checked once; the same names under other options
    (renames, length, policy) give their own answers."""
    from kraiter_sync.validate.names import check_names

    names = pl.Series(["Sign Up", "page_view", "Sign Up", None] * 10)
    plain = check_names(names, ValidationOptions())
    renamed = check_names(names, ValidationOptions(rename={"Sign Up": "signed_up"}))
    short = check_names(names, ValidationOptions(max_name_length=5))
    policed = check_names(names, ValidationOptions(name_policy="snake_case"))
    assert plain["name"].head(4).to_list() == ["Sign Up", "page_view", "Sign Up", None]
    assert plain["rule"].head(4).to_list() == [None, None, None, "name.empty"]
    assert renamed["name"].head(2).to_list() == ["signed_up", "page_view"]
    assert short["rule"].head(2).to_list() == ["name.too_long", "name.too_long"]
    assert policed["rule"].head(2).to_list() == ["name.policy", None]
    assert check_names(names, ValidationOptions()).equals(plain)
