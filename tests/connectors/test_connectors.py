"""connectors: auto-detection, overrides, apply() and the mapped-frame contract."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from kraiter_sync.cli import main
from kraiter_sync.connectors import (
    Connector,
    KeyValue,
    apply,
    detect_connector,
    list_presets,
    load_connector,
    mapped_schema,
    parse_overrides,
    preset_dirs,
    resolve_connector,
)
from kraiter_sync.errors import InputError
from kraiter_sync.sources import read_source
from kraiter_sync.validate import ValidationOptions, validate_events

REPO = Path(__file__).resolve().parent.parent.parent

# ---- auto-detection table --------------------------------------------------------------


@pytest.mark.parametrize(
    ("columns", "kind", "chosen"),
    [
        (["email", "first_name"], "contacts", {"email": "email"}),
        (["E-Mail", "Plan"], "contacts", {"email": "E-Mail"}),
        (["Email Address", "First Name"], "contacts", {"email": "Email Address"}),
        (["user_email", "userId"], "contacts", {"email": "user_email", "user_id": "userId"}),
        (["EMAIL", "external_id"], "contacts", {"email": "EMAIL", "user_id": "external_id"}),
        # a person's name and a signup date are not an event
        (["email", "name", "created_at"], "contacts", {"email": "email"}),
        (
            ["email", "event", "occurred_at"],
            "events",
            {"email": "email", "name": "event", "timestamp": "occurred_at"},
        ),
        (
            ["Email", "Event Name", "Event Time"],
            "events",
            {"email": "Email", "name": "Event Name", "timestamp": "Event Time"},
        ),
        (
            ["contact_id", "event_type", "ts"],
            "events",
            {"contact_id": "contact_id", "name": "event_type", "timestamp": "ts"},
        ),
        (
            ["email", "name", "timestamp", "properties"],
            "events",
            {"email": "email", "name": "name", "timestamp": "timestamp"},
        ),
        (
            ["email", "event", "created_at", "time"],
            "events",
            {"email": "email", "name": "event", "timestamp": "time"},
        ),
    ],
)
def test_detection_table(columns: list[str], kind: str, chosen: dict[str, str]) -> None:
    detection = detect_connector(columns)
    assert detection.kind == kind
    assert dict(detection.chosen) == chosen


def test_detection_reports_ambiguity_and_reason() -> None:
    detection = detect_connector(["Email", "Work Email", "event", "timestamp"])
    assert detection.chosen["email"] == "Email"
    lines = detection.lines()
    assert lines[0] == "kind: events (found an event-name and a timestamp column)"
    assert "email: 'Email' (detected; also matched 'Work Email')" in lines


def test_overrides_win_and_are_reported() -> None:
    detection = detect_connector(
        ["Email", "Work Email", "event", "timestamp"], overrides={"email": "Work Email"}
    )
    assert detection.chosen["email"] == "Work Email"
    assert "email: 'Work Email' (from --map)" in detection.lines()


def test_override_names_unknown_column() -> None:
    with pytest.raises(InputError) as info:
        detect_connector(["email", "plan"], overrides={"email": "mail"})
    assert (
        str(info.value) == "--map email=mail: no column 'mail'; available columns: 'email', 'plan'"
    )


def test_override_makes_it_events() -> None:
    detection = detect_connector(
        ["email", "what", "when"], overrides={"name": "what", "timestamp": "when"}
    )
    assert detection.kind == "events"


def test_override_field_for_wrong_kind() -> None:
    with pytest.raises(InputError, match="contacts have no field 'name'"):
        detect_connector(["email", "what"], kind="contacts", overrides={"name": "what"})


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        (["email=Email Address"], {"email": "Email Address"}),
        (["timestamp=ts", "name=a=b"], {"timestamp": "ts", "name": "a=b"}),
    ],
)
def test_parse_overrides(pairs: list[str], expected: dict[str, str]) -> None:
    assert parse_overrides(pairs) == expected


@pytest.mark.parametrize(
    ("pair", "needle"), [("email", "expected FIELD=COLUMN"), ("mail=x", "unknown field 'mail'")]
)
def test_parse_overrides_errors(pair: str, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        parse_overrides([pair])


# ---- apply -----------------------------------------------------------------------------


def _events_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "Email": ["a@x.io", "b@x.io"],
            "event": ["Signed Up", "Paid"],
            "ts": ["2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z"],
            "plan": ["pro", "free"],
            "source_file": ["f.csv", "f.csv"],
            "source_row": [1, 2],
        }
    )


def test_apply_auto_events_exact_schema() -> None:
    frame = _events_frame()
    detection = detect_connector(frame.columns)
    mapped = apply(detection.connector, frame)
    assert mapped.columns == mapped_schema("events")
    assert mapped.columns == [
        "email", "contact_id", "user_id", "name", "timestamp", "properties",
        "source_file", "source_row",
    ]  # fmt: skip
    assert mapped["email"].to_list() == ["a@x.io", "b@x.io"]
    assert mapped["contact_id"].to_list() == [None, None]
    assert mapped["properties"].to_list() == [{"plan": "pro"}, {"plan": "free"}]
    assert mapped["source_row"].dtype == pl.Int64
    assert mapped["source_file"].to_list() == ["f.csv", "f.csv"]


def test_apply_is_lazy_on_lazyframes() -> None:
    frame = _events_frame()
    connector = detect_connector(frame.columns).connector
    lazy = apply(connector, frame.lazy())
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().equals(apply(connector, frame))


def test_apply_contacts_schema_and_rest_properties() -> None:
    frame = pl.DataFrame({"Email Address": ["a@x.io"], "First Name": ["Ann"], "uid": ["7"]})
    connector = detect_connector(frame.columns).connector
    mapped = apply(connector, frame)
    assert mapped.columns == ["email", "user_id", "properties", "source_file", "source_row"]
    assert mapped["user_id"].to_list() == ["7"]
    assert mapped["properties"].to_list() == [{"First Name": "Ann"}]
    assert mapped["source_row"].to_list() == [1]  # frames without provenance get 1..n


def test_missing_email_lists_columns_and_next_steps() -> None:
    frame = pl.DataFrame({"mail_addr": ["a@x.io"], "plan": ["pro"]})
    with pytest.raises(InputError) as info:
        apply(detect_connector(frame.columns).connector, frame)
    message = str(info.value)
    assert message.startswith("no email column: auto-detection looked for a column for it.")
    assert "Available columns: 'mail_addr', 'plan'" in message
    assert "--map email=COLUMN" in message
    assert "--connector" in message


def test_events_need_an_identity() -> None:
    frame = pl.DataFrame({"event": ["x"], "ts": ["2025-01-01T00:00:00Z"]})
    with pytest.raises(InputError, match="no email column"):
        apply(detect_connector(frame.columns).connector, frame)


def test_preset_missing_column_names_the_connector() -> None:
    frame = pl.DataFrame({"email": ["a@x.io"]})
    with pytest.raises(InputError, match="connector 'mailchimp' looked for column 'Email Address'"):
        apply(load_connector("mailchimp"), frame)


def test_struct_paths_json_spread_renames_and_epoch_units() -> None:
    connector = Connector(
        name="t",
        kind="events",
        fields={
            "email": ("props.$email", "props.email"),
            "name": ("event",),
            "timestamp": ("props.time",),
        },
        timestamp_unit="ms",
        properties=("props",),
        spread=("props",),
        json_columns=("props",),
        renames={"Old": "new_name"},
    )
    frame = pl.DataFrame(
        {
            "event": ["Old", "Other"],
            "props": [
                '{"$email": "a@x.io", "time": 1735689600000, "plan": "pro"}',
                '{"email": "b@x.io", "time": 1735689601000, "plan": null}',
            ],
        }
    )
    mapped = apply(connector, frame)
    assert mapped["email"].to_list() == ["a@x.io", "b@x.io"]
    assert mapped["name"].to_list() == ["new_name", "Other"]
    assert mapped["timestamp"].to_list() == [
        datetime(2025, 1, 1, tzinfo=UTC),
        datetime(2025, 1, 1, 0, 0, 1, tzinfo=UTC),
    ]
    # the fields used for email and time are not repeated as properties
    assert mapped["properties"].to_list() == [{"plan": "pro"}, {"plan": None}]


@pytest.mark.parametrize(
    "preset", ["mixpanel", "amplitude", "kraiter_export", "kraiter_rejects_events"]
)
@pytest.mark.parametrize(
    ("value", "neighbours"),
    [("true", ["1", "2"]), ("1", ["1.5", "2.5"]), ("2", ['"x"']), ('"1"', ["1"])],
)
def test_a_json_column_value_gets_the_same_key_whatever_its_chunk(
    preset: str, value: str, neighbours: list[str]
) -> None:
    """JSON columns were decoded with one type guessed per chunk: ``true`` became ``1``
    next to integers, ``1`` became ``1.0`` next to floats, so the same event got another
    key in another chunk (or another run) and was sent twice."""
    connector = load_connector(preset)
    column = connector.json_columns[0]
    sample = read_source(REPO / "sample_data" / str(connector.sample))
    columns = next(  # a row of the preset's sample that is valid as it is
        one
        for one in sample.iter_slices(1)
        if validate_events(apply(connector, one), options=ValidationOptions()).valid.height
    )
    first = columns[column][0]
    base = json.loads(first) if isinstance(first, str) else dict(first or {})

    def key_of_first(values: list[str]) -> tuple[str, str]:
        texts = [json.dumps({**base, "v": json.loads(v)}, default=str) for v in values]
        frame = pl.concat([columns] * len(values)).with_columns(pl.Series(column, texts))
        result = validate_events(apply(connector, frame), options=ValidationOptions())
        row = result.valid.row(0, named=True)
        return row["properties"], row["event_key"]

    alone = key_of_first([value])
    assert json.loads(alone[0])["v"] == json.loads(value)
    assert key_of_first([value, *neighbours]) == alone


def test_timestamp_format_keeps_unparsed_values_for_the_validator() -> None:
    connector = Connector(
        name="t",
        kind="events",
        fields={"email": ("e",), "name": ("n",), "timestamp": ("t",)},
        timestamp_format="%d/%m/%Y %H:%M",
        timezone="Europe/Berlin",
    )
    frame = pl.DataFrame({"e": ["a@x.io"] * 2, "n": ["x"] * 2, "t": ["31/01/2025 10:30", "soon"]})
    assert apply(connector, frame)["timestamp"].to_list() == [
        "2025-01-31T10:30:00.000000+01:00",
        "soon",
    ]


def test_naive_datetimes_take_the_connector_zone() -> None:
    connector = Connector(
        name="t",
        kind="events",
        fields={"email": ("e",), "name": ("n",), "timestamp": ("t",)},
        timezone="America/New_York",
    )
    frame = pl.DataFrame({"e": ["a@x.io"], "n": ["x"], "t": [datetime(2025, 6, 1, 12, 0)]})
    got = apply(connector, frame)["timestamp"]
    assert got.dtype == pl.Datetime("us", "America/New_York")
    assert got.dt.convert_time_zone("UTC").to_list() == [datetime(2025, 6, 1, 16, 0, tzinfo=UTC)]


def test_key_value_lists_pick_the_used_slot() -> None:
    value = pl.Struct(
        {"string_value": pl.String, "int_value": pl.Int64, "double_value": pl.Float64}
    )
    entry = pl.Struct({"key": pl.String, "value": value})

    def kv(key: str, s: str | None = None, i: int | None = None, d: float | None = None) -> dict:
        return {"key": key, "value": {"string_value": s, "int_value": i, "double_value": d}}

    frame = pl.DataFrame(
        {"params": [[kv("page", s="/"), kv("value", i=3)], [kv("value", d=2.5)], []]},
        schema={"params": pl.List(entry)},
    )
    connector = Connector(
        name="kv",
        kind="contacts",
        fields={"email": ("params.page",)},
        properties=("params",),
        spread=("params",),
        key_values=(KeyValue("params"),),
    )
    mapped = apply(connector, frame)
    assert mapped["email"].to_list() == ["/", None, None]
    assert mapped["properties"].to_list() == [{"value": 3.0}, {"value": 2.5}, {"value": None}]


# ---- loading ---------------------------------------------------------------------------


def test_load_connector_from_file(tmp_path: Path) -> None:
    path = tmp_path / "crm.toml"
    path.write_text(
        'kind = "contacts"\ndescription = "our CRM"\n[fields]\nemail = "Mail"\n'
        '[properties]\ncolumns = ["Plan"]\n',
        encoding="utf-8",
    )
    connector = load_connector(str(path))
    assert (connector.name, connector.kind, connector.properties) == ("crm", "contacts", ("Plan",))
    mapped = apply(connector, pl.DataFrame({"Mail": ["a@x.io"], "Plan": ["pro"], "Junk": [1]}))
    assert mapped["properties"].to_list() == [{"Plan": "pro"}]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('kind = "people"\n', "`kind` must be"),
        ('kind = "events"\n[fields]\nmail = "x"\n', "unknown field(s) ['mail']"),
        ('kind = "events"\n[timestamp]\nunit = "days"\n', "[timestamp].unit must be one of"),
        ("kind = \n", "not valid TOML"),
    ],
)
def test_bad_connector_files(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_connector(path)
    assert needle in str(info.value)
    assert "bad.toml" in str(info.value)


def test_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(InputError, match=r"unknown connector 'salesforce'; presets: amplitude, "):
        load_connector("salesforce")


def test_resolve_connector_with_preset_and_map() -> None:
    columns = ["Email", "Work Email", "Record ID"]
    detection = resolve_connector(columns, connector="hubspot", overrides={"email": "Work Email"})
    assert detection.connector.fields["email"] == ("Work Email",)
    assert detection.how["email"] == "from --map"
    with pytest.raises(InputError, match="reads contacts, but --kind events"):
        resolve_connector(columns, connector="hubspot", kind="events")


def test_presets_found_through_importlib_resources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulates the wheel layout: <package>/presets/*.toml inside an installed package."""
    pkg = tmp_path / "site" / "fakepkg"
    (pkg / "presets").mkdir(parents=True)
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "presets" / "acme.toml").write_text(
        'kind = "contacts"\ndescription = "installed"\n[fields]\nemail = "E"\n', encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    try:
        assert preset_dirs("fakepkg") == [pkg / "presets"]
        assert [p.name for p in list_presets(package="fakepkg")] == ["acme"]
        assert load_connector("acme", package="fakepkg").description == "installed"
    finally:
        sys.modules.pop("fakepkg", None)


def test_checkout_presets_found() -> None:
    dirs = preset_dirs()
    assert dirs
    assert dirs[-1].name == "connectors"
    assert (dirs[-1] / "ga4.toml").is_file()


# ---- CLI -------------------------------------------------------------------------------


def test_cli_lists_presets() -> None:
    result = CliRunner().invoke(main, ["connectors"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "DESCRIPTION"]
    names = [line.split()[0] for line in lines[1:]]
    assert names == [p.name for p in list_presets()]
    assert any(line.split()[:2] == ["ga4", "events"] for line in lines)


def test_cli_show_and_unknown() -> None:
    runner = CliRunner()
    shown = runner.invoke(main, ["connectors", "--show", "mixpanel"])
    assert shown.exit_code == 0
    assert "timestamp = properties.time" in shown.stdout
    assert "unit = 's'" in shown.stdout
    missing = runner.invoke(main, ["connectors", "--show", "nope"])
    assert missing.exit_code == 2
    assert missing.stderr.startswith("error: unknown connector 'nope'; presets:")
