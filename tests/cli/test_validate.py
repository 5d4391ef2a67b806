"""``kraiter-sync validate``: exit codes, rejects file, report, and clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from kraiter_sync.cli import main
from tests.helpers.paths import SAMPLE_DATA


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["validate", *args])
    return result.exit_code, result.stdout, result.stderr


def test_clean_input_exits_0(tmp_path: Path) -> None:
    src = tmp_path / "contacts.csv"
    src.write_text("email,plan\nada@example.com,pro\n Bob@Example.COM ,free\n")
    code, out, err = run(str(src), "--state-dir", str(tmp_path / "st"))
    assert code == 0, err
    assert "2 contacts rows read: 2 valid, 0 duplicates, 0 rejected" in out


def test_rejected_rows_exit_3_and_land_in_the_rejects_file_with_a_report(
    tmp_path: Path,
) -> None:
    rejects = tmp_path / "rejects.ndjson"
    report = tmp_path / "report.json"
    code, out, _err = run(
        str(SAMPLE_DATA / "contacts.csv"),
        str(SAMPLE_DATA / "events.parquet"),
        "--rejects",
        str(rejects),
        "--report",
        str(report),
        "--state-dir",
        str(tmp_path / "st"),
    )
    assert code == 3
    assert "1,506 contacts rows read" in out
    assert f"rejected rows: {rejects}" in out
    rows = pl.read_ndjson(rejects)
    assert rows.height == 3 + 5  # the deliberately bad rows of both samples
    assert set(rows["stage"]) == {"invalid"}
    assert {"email.invalid", "timestamp.future", "name.reserved"} <= set(rows["rule"])
    data = json.loads(report.read_text())
    assert data["contacts"]["rejected"] == 3
    assert data["events"]["rejected"] == 5
    assert data["events"]["rows_read"] == (
        data["events"]["valid"] + data["events"]["duplicates"] + data["events"]["rejected"]
    )


def test_missing_file_is_a_usage_error_without_traceback(tmp_path: Path) -> None:
    code, _out, err = run(str(tmp_path / "nope.csv"), "--state-dir", str(tmp_path / "st"))
    assert code == 2
    assert err.startswith("error: ")
    assert "nope.csv" in err
    assert "Traceback" not in err


def test_no_email_column_names_the_columns_and_the_fix(tmp_path: Path) -> None:
    src = tmp_path / "people.csv"
    src.write_text("name_of_person,plan\nAda,pro\n")
    code, _out, err = run(str(src), "--kind", "contacts", "--state-dir", str(tmp_path / "st"))
    assert code == 2
    assert "name_of_person" in err
    assert "--map email=" in err


def test_map_override_rescues_an_odd_column_name(tmp_path: Path) -> None:
    src = tmp_path / "people.csv"
    src.write_text("contact,plan\nada@example.com,pro\n")
    code, out, err = run(
        str(src),
        "--kind",
        "contacts",
        "--map",
        "email=contact",
        "--state-dir",
        str(tmp_path / "st"),
    )
    assert code == 0, err
    assert "1 valid" in out


def test_a_source_row_column_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "people.csv"
    src.write_text("email,source_row\nada@example.com,7\n")
    result = CliRunner().invoke(main, ["validate", str(src), "--state-dir", str(tmp_path / "st")])
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert result.stderr.splitlines()[-1] == (
        f"error: {src}: a column is named 'source_row', the name kraiter-sync gives each "
        "row's provenance (its file and row number); rename that column, e.g. to "
        "'original_row'"
    )


def test_duplicate_columns_are_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "people.csv"
    src.write_text("email,amount,amount\nada@example.com,1,2\n")
    code, out, err = run(str(src), "--state-dir", str(tmp_path / "st"))
    assert code == 2
    assert out == ""
    assert err.splitlines()[-1] == (
        f"error: {src}: the header names 'amount' twice (columns 2 and 3); give each "
        "column a name of its own"
    )


# -- when the rejects cannot be written ---------------------------------------------------


def _no_traceback(result: object) -> None:
    exception = getattr(result, "exception", None)
    assert exception is None or isinstance(exception, SystemExit), exception


def test_a_full_disk_under_the_rejects_file_is_a_clear_error(tmp_path: Path) -> None:
    """/dev/full answers every write with ENOSPC, whoever runs the test."""
    src = tmp_path / "people.csv"
    src.write_text("email\nada@example.com\nnot-an-email\n")
    link = tmp_path / "rejects.csv"
    link.symlink_to("/dev/full")
    result = CliRunner().invoke(
        main, ["validate", str(src), "--rejects", str(link), "--state-dir", str(tmp_path)]
    )
    assert result.exit_code == 1
    _no_traceback(result)
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        f"error: cannot write the rejects file {link}: No space left on device; free some "
        "space there, or pass --rejects PATH on another disk, and run again"
    )


@pytest.mark.parametrize("existing", [True, False], ids=["read-only-state", "new-state-on-ro"])
def test_validate_with_a_state_dir_it_cannot_write(tmp_path: Path, existing: bool) -> None:
    from tests.helpers.disk import read_only

    src = tmp_path / "people.csv"
    src.write_text("email\nada@example.com\n")
    with read_only(tmp_path, holding="state" if existing else None) as ro:
        state = ro / "state"
        result = CliRunner().invoke(main, ["validate", str(src), "--state-dir", str(state)])
    assert result.exit_code == 1
    _no_traceback(result)
    message = result.stderr.splitlines()[-1]
    assert message.startswith(f"error: cannot write the rejects file {state / 'rejects'}")
    reason = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
    assert f": {reason}; " in message
    assert message.endswith("pass --rejects PATH (or --state-dir) somewhere writable")


def test_a_report_that_cannot_be_written_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "people.csv"
    src.write_text("email\nada@example.com\n")
    (tmp_path / "taken").write_text("a file, not a folder")
    report = tmp_path / "taken" / "report.json"
    result = CliRunner().invoke(
        main, ["validate", str(src), "--report", str(report), "--state-dir", str(tmp_path)]
    )
    assert result.exit_code == 1
    _no_traceback(result)
    assert result.stderr.splitlines()[-1] == (
        f"error: cannot write the report {report}: File exists; pass --report PATH "
        "somewhere writable (the rejects file is complete)"
    )


def test_ragged_csv_rows_are_rejected_and_the_rest_kept(tmp_path: Path) -> None:
    """One record with an extra field refused the whole file, one with a missing field
    was read padded with nulls: both are reject rows with their line, the others valid."""
    src = tmp_path / "contacts.csv"
    src.write_text(
        "email,plan,city\nada@example.com,pro,Oslo\nbob@example.com,pro,Oslo,extra\n"
        "cy@example.com,free\ndi@example.com,free,\n"
    )
    rejects = tmp_path / "rejects.csv"
    code, out, err = run(str(src), "--rejects", str(rejects), "--state-dir", str(tmp_path / "s"))
    assert code == 3, err
    assert "Traceback" not in err
    assert "4 contacts rows read: 2 valid, 0 duplicates, 2 rejected" in out
    rows = pl.read_csv(rejects).select("source_row", "rule", "field", "message").rows()
    hint = "fix or quote that line (a delimiter inside a value needs quotes)"
    assert rows == [
        (2, "row.ragged", "row", f"line 3 has 4 fields but the header has 3; {hint}"),
        (3, "row.ragged", "row", f"line 4 has 2 fields but the header has 3; {hint}"),
    ]


@pytest.mark.parametrize(
    ("header", "kind", "rule"),
    [
        ("email,user_id", "contacts", "user_id.too_long"),
        ("email,contact_id,event,timestamp", "events", "contact_id.too_long"),
    ],
)
def test_an_id_over_255_characters_is_a_reject_row(
    tmp_path: Path, header: str, kind: str, rule: str
) -> None:
    """A 50 MiB contact or user id was accepted (and would have been sent)."""
    src = tmp_path / f"{kind}.csv"
    extra = ",e,2024-01-01T00:00:00Z" if kind == "events" else ""
    with src.open("w") as fh:
        fh.write(f"{header}\n")
        fh.write(f"ada@example.com,{'u' * 255}{extra}\n")
        fh.write(f"bob@example.com,{'u' * 256}{extra}\n")
        fh.write(f"cy@example.com,{'u' * (50 << 20)}{extra}\n")
    rejects = tmp_path / "rejects.csv"
    code, out, err = run(str(src), "--rejects", str(rejects), "--state-dir", str(tmp_path / "s"))
    assert code == 3, err
    assert f"3 {kind} rows read: 1 valid, 0 duplicates, 2 rejected" in out
    rows = pl.read_csv(rejects)
    assert rows.select("source_row", "rule").rows() == [(2, rule), (3, rule)]
    what = rule.split(".")[0].replace("_", " ")
    assert (
        rows["message"].to_list() == [f"the {what} is longer than the limit (255 characters)"] * 2
    )
    assert rejects.stat().st_size < 1 << 20  # (the 50 MiB id is not copied whole)
