"""The rejects file: refused secrets and card numbers masked, huge values cut, placeholders
refused when they come back, and the --allow-* switches that let values through."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from kraiter_sync.cli import main
from kraiter_sync.validate import ValidationOptions, validate_contacts, validate_events
from kraiter_sync.validate.originals import REJECT_VALUE_LIMIT

VISA = "4111 1111 1111 1111"
MASK = re.compile(r"^\[masked: (\d+) characters, hash [0-9a-f]{12}\]$")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["validate", *args])
    return result.exit_code, result.stdout, result.stderr


def _csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_refused_secrets_and_cards_never_reach_the_rejects_file(tmp_path: Path) -> None:
    src = _csv(
        tmp_path / "events.csv",
        "email,event,timestamp,note,password,api_key\n"
        f"ada@example.com,signed_up,2024-01-01T00:00:00Z,card {VISA},hunter2,\n"
        "not-an-email,signed_up,2024-01-01T00:00:00Z,hi,swordfish,kr_live_abc\n",
    )
    for suffix in ("csv", "ndjson", "parquet"):
        rejects = tmp_path / f"rejects.{suffix}"
        code, _out, err = run(str(src), "--rejects", str(rejects), "--state-dir", str(tmp_path))
        assert code == 3, err
        raw = rejects.read_bytes()
        for secret in (b"4111", b"hunter2", b"swordfish", b"kr_live_abc"):
            assert secret not in raw, (suffix, secret)
    rows = pl.read_csv(tmp_path / "rejects.csv").sort("source_row")
    assert rows["rule"].to_list() == ["properties.card_number", "email.invalid"]
    first = json.loads(rows["properties"][0])
    assert first["note"].startswith("card [masked: 19 characters, hash ")
    assert MASK.match(first["password"])
    assert MASK.match(first["password"]).group(1) == "7"  # type: ignore[union-attr]
    # a row rejected for its email still hides its secrets (and shows the rest)
    second = json.loads(rows["properties"][1])
    assert second["note"] == "hi"
    assert MASK.match(second["password"])
    assert MASK.match(second["api_key"])


def test_equal_values_show_equal_hashes_within_a_run() -> None:
    mapped = pl.DataFrame(
        {
            "email": ["bad1", "bad2", "bad3"],
            "name": ["e"] * 3,
            "timestamp": ["2024-01-01T00:00:00Z"] * 3,
            "properties": [{"token": "same"}, {"token": "same"}, {"token": "other"}],
        }
    )
    shown = [json.loads(p)["token"] for p in validate_events(mapped).rejects["properties"]]
    assert shown[0] == shown[1] != shown[2]


def test_masking_covers_json_text_numbers_and_lists() -> None:
    mapped = pl.DataFrame(
        {
            "email": ["bad"] * 3,
            "properties": [
                json.dumps({"cardnum": 4111111111111111, "pin_token": 1234, "ok": 5}),
                json.dumps({"tags": [f"x {VISA}"], "n": None}),
                '{"password": "hunter2", not json',
            ],
        }
    )
    rejects = validate_contacts(mapped).rejects["properties"].to_list()
    first = json.loads(rejects[0])
    assert MASK.match(first["cardnum"])
    assert MASK.match(first["pin_token"])
    assert first["ok"] == 5
    assert VISA not in rejects[1]
    assert "hunter2" not in rejects[2]
    assert rejects[2].startswith('{"password": "[masked: 9 characters')  # its quotes count


def test_struct_numbers_keep_their_type_unless_masked() -> None:
    mapped = pl.DataFrame(
        {
            "email": ["bad", "bad"],
            "name": ["e", "e"],
            "timestamp": ["2024-01-01T00:00:00Z"] * 2,
            "properties": [{"n": 4111111111111111, "m": 2.5}, {"n": 7, "m": None}],
        }
    )
    shown = [json.loads(p) for p in validate_events(mapped).rejects["properties"]]
    assert MASK.match(shown[0]["n"])
    assert shown[0]["m"] == 2.5
    assert shown[1] == {"n": 7, "m": None}


def test_allowed_values_are_not_masked() -> None:
    mapped = pl.DataFrame(
        {
            "email": ["bad"],
            "name": ["e"],
            "timestamp": ["2024-01-01T00:00:00Z"],
            "properties": [{"password": "hunter2", "note": VISA}],
        }
    )
    allow = ValidationOptions(allow_secret_keys=True, allow_card_numbers=True)
    shown = json.loads(validate_events(mapped, options=allow).rejects["properties"][0])
    assert shown == {"password": "hunter2", "note": VISA}


def test_long_values_are_cut_with_their_full_length(tmp_path: Path) -> None:
    long_note = "n" * 50_000
    long_name = "e" * 3_000
    src = _csv(
        tmp_path / "events.csv",
        "email,event,timestamp,note\n"
        f"ada@example.com,{long_name},2024-01-01T00:00:00Z,{long_note}\n"
        f"bob@example.com,signed_up,2024-01-01T00:00:00Z,{long_note}\n",
    )
    rejects = tmp_path / "rejects.csv"
    code, _out, err = run(str(src), "--rejects", str(rejects), "--state-dir", str(tmp_path))
    assert code == 3, err
    rows = pl.read_csv(rejects).sort("source_row")
    assert rows["rule"].to_list() == ["name.too_long", "properties.value_too_long"]
    assert rows["name"][0] == "e" * REJECT_VALUE_LIMIT + "…[cut: 3000 characters in all]"
    note = json.loads(rows["properties"][1])["note"]
    assert note == "n" * REJECT_VALUE_LIMIT + "…[cut: 50000 characters in all]"
    assert rejects.stat().st_size < 10_000


def test_a_card_number_across_the_cut_is_masked_whole() -> None:
    text = "x" * (REJECT_VALUE_LIMIT - 5) + f" {VISA} " + "y" * 20_000
    mapped = pl.DataFrame({"email": ["bad"], "properties": [{"note": text}]})
    shown = json.loads(validate_contacts(mapped).rejects["properties"][0])["note"]
    assert "4111" not in shown
    assert "[masked: 19 characters" in shown
    assert shown.endswith(f"…[cut: {len(text)} characters in all]")


@pytest.mark.parametrize(
    "value",
    [
        "[masked: 19 characters, hash 0123456789ab]",
        "n" * 1000 + "…[cut: 20000 characters in all]",
        "[binary: 2 bytes, hash 0123456789ab]",
    ],
)
def test_placeholders_read_back_from_a_rejects_file_are_refused(value: str) -> None:
    for props in ({"note": value}, json.dumps({"note": value})):
        mapped = pl.DataFrame({"email": ["ada@example.com"], "properties": [props]})
        assert validate_contacts(mapped).rejects["rule"].to_list() == ["properties.placeholder"]


def test_a_rejects_file_imported_back_is_refused_not_sent(tmp_path: Path) -> None:
    src = _csv(
        tmp_path / "events.csv",
        f"email,event,timestamp,note\nbad,signed_up,2024-01-01T00:00:00Z,card {VISA}\n",
    )
    first = tmp_path / "first.csv"
    run(str(src), "--rejects", str(first), "--state-dir", str(tmp_path))
    fixed = (
        pl.read_csv(first)
        .with_columns(
            pl.lit("ada@example.com").alias("email"),
        )
        .rename({"source_file": "original_file", "source_row": "original_row"})
    )
    again = tmp_path / "fixed.csv"
    fixed.write_csv(again)
    second = tmp_path / "second.csv"
    code, out, err = run(
        str(again),
        "--connector",
        "kraiter_rejects_events",
        "--rejects",
        str(second),
        "--state-dir",
        str(tmp_path),
    )
    assert code == 3, err
    assert "0 valid" in out
    assert pl.read_csv(second)["rule"].to_list() == ["properties.placeholder"]


@pytest.mark.parametrize(
    ("flag", "value", "rule"),
    [
        ("--allow-card-numbers", f"card {VISA}", "properties.card_number"),
        ("--allow-secret-keys", "hunter2", "properties.secret"),
    ],
)
def test_the_switches_are_flags_of_validate(
    tmp_path: Path, flag: str, value: str, rule: str
) -> None:
    column = "password" if "secret" in flag else "note"
    src = _csv(
        tmp_path / "events.csv",
        f"email,event,timestamp,{column}\nada@example.com,e,2024-01-01T00:00:00Z,{value}\n",
    )
    code, out, err = run(str(src), "--state-dir", str(tmp_path))
    assert code == 3, err
    assert rule in out
    code, out, err = run(str(src), flag, "--state-dir", str(tmp_path))
    assert code == 0, err
    assert "1 valid" in out


def test_the_switches_are_connector_keys(tmp_path: Path) -> None:
    src = _csv(
        tmp_path / "events.csv",
        f"email,event,timestamp,note\nada@mail.test,e,2024-01-01T00:00:00Z,card {VISA}\n",
    )
    connector = tmp_path / "mine.toml"
    connector.write_text(
        'name = "mine"\nkind = "events"\n[fields]\nemail = "email"\nname = "event"\n'
        'timestamp = "timestamp"\n[validation]\nallow_card_numbers = true\n'
        "allow_special_use_domains = true\n"
    )
    code, out, err = run(str(src), "--connector", str(connector), "--state-dir", str(tmp_path))
    assert code == 0, err
    assert "1 valid" in out
    connector.write_text(connector.read_text() + "allow_everything = true\n")
    code, _out, err = run(str(src), "--connector", str(connector), "--state-dir", str(tmp_path))
    assert code == 2
    assert "unknown [validation] key(s) ['allow_everything']" in err


def test_the_switches_are_documented_in_help_and_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for command in ("validate", "import", "reconcile", "retry"):
        text = CliRunner().invoke(main, [command, "--help"]).stdout
        for flag in ("--allow-card-numbers", "--allow-secret-keys", "--allow-special-use-domains"):
            assert flag in text, (command, flag)
            assert flag in readme, flag
    from kraiter_sync.config.file import JOB_KEYS
    from kraiter_sync.connectors import VALIDATION_SWITCHES

    assert set(VALIDATION_SWITCHES) <= set(ValidationOptions.__dataclass_fields__)
    assert set(VALIDATION_SWITCHES) <= set(JOB_KEYS)
    assert "[validation]" in readme
