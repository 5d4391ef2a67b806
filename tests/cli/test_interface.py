"""One interface for every command: --json with a documented schema, errors as JSON,
heartbeats off a terminal, the target announced, one flag vocabulary, honest run
records, per-input mappings, --timestamp-format and --max-reject-ratio."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import polars as pl
import pytest
from click.testing import CliRunner, Result

from kraiter_sync.cli import main
from kraiter_sync.cli.progress import ProgressSink
from kraiter_sync.emulator import EmulatorConfig
from kraiter_sync.emulator.server import serve_in_thread
from tests.helpers.imports import write_events
from tests.helpers.paths import REPO_ROOT, SAMPLE_DATA
from tests.helpers.schemas import SCHEMAS, check_schema

KEY = "kr_interface_test_secret_77"


def run(state: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(
        main, list(args), env={"KRAITER_SYNC_STATE_DIR": str(state), **(env or {})}
    )


def one_json(result: Result) -> dict[str, Any]:
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout  # one document, nothing else on stdout
    doc = json.loads(lines[0])
    assert doc["exit_code"] == result.exit_code, (doc, result.stderr)
    return doc


def _commands() -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for name, command in main.commands.items():
        if not isinstance(command, click.Group) or command.params:  # (not a bare group)
            out.append((name,))
        if isinstance(command, click.Group):
            out.extend((name, sub) for sub in command.commands)
    return out


@pytest.mark.parametrize("words", _commands(), ids=" ".join)
def test_every_command_documents_json_and_has_a_schema(words: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*words, "--help"])
    assert result.exit_code == 0, result.output
    assert "--json" in result.output
    assert (SCHEMAS / f"{'-'.join(words)}.schema.json").is_file()


def test_every_command_speaks_json_with_its_schema(tmp_path: Path) -> None:
    state = tmp_path / "state"
    contacts = tmp_path / "c.csv"
    contacts.write_text("email,user_id\nr0@example.com,u0\nr1@example.com,u1\nbad-email,u2\n")

    validated = run(state, "validate", str(contacts), "--json")
    assert validated.exit_code == 3
    doc = one_json(validated)
    check_schema(doc, "validate")
    assert (doc["rows_read"], doc["valid"], doc["rejected"]) == (3, 2, 1)
    assert Path(doc["files"]["rejects"]).is_file()

    imported = run(state, "import", str(contacts), "--json")
    doc = one_json(imported)
    check_schema(doc, "import")
    assert (doc["contacts"]["sent"], doc["status"], doc["run_id"]) == (2, "rejected-rows", 1)

    # (the rejects file holds invalid rows only: nothing Kraiter refused, nothing to retry)
    retried = run(state, "retry", doc["files"]["rejects"], "--json")
    assert retried.exit_code == 2
    check_schema(one_json(retried), "error")

    keep = tmp_path / "keep.csv"
    keep.write_text("email,user_id\nr0@example.com,u0\n")
    plan = tmp_path / "plan.json"
    tomb = tmp_path / "tomb.json"
    reconciled = run(state, "reconcile", str(keep), "--json", "--plan-out", str(plan))
    doc = one_json(reconciled)
    check_schema(doc, "reconcile")
    assert doc["files"]["plan"] == str(plan)
    shown = run(state, "reconcile", "--plan", str(plan), "--json")
    check_schema(one_json(shown), "reconcile")
    mirrored = run(
        state,
        "reconcile",
        str(keep),
        "--mirror",
        "--max-delete-ratio",
        "0.6",
        "--apply",
        "--tombstone",
        str(tomb),
        "--json",
    )
    doc = one_json(mirrored)
    check_schema(doc, "reconcile")
    assert (doc["deleted"], doc["files"]["tombstone"]) == (1, str(tomb))

    restored = run(state, "restore", str(tomb), "--json")
    doc = one_json(restored)
    check_schema(doc, "restore")
    assert doc["restored"] == 1

    exported = run(state, "export", "contacts", "--out", str(tmp_path / "out"), "--json")
    doc = one_json(exported)
    check_schema(doc, "export")
    assert doc["rows"] == 2
    compacted = run(state, "export", "compact", "--out", str(tmp_path / "out"), "--json")
    doc = one_json(compacted)
    check_schema(doc, "export-compact")
    assert [f["files_after"] for f in doc["folders"]] == [1]

    rebuilt = run(state, "state", "rebuild", "--json")
    doc = one_json(rebuilt)
    check_schema(doc, "state-rebuild")
    assert (doc["contacts_read"], doc["complete"]) == (2, True)

    listed = run(state, "runs", "--json")
    doc = one_json(listed)
    check_schema(doc, "runs")
    assert [r["command"] for r in doc["runs"]][-1] == "import"
    show = run(state, "runs", "show", "1", "--json")
    check_schema(one_json(show), "runs-show")

    check_schema(one_json(run(state, "connectors", "--json")), "connectors")
    one = run(state, "connectors", "--show", "segment_tracks", "--json")
    check_schema(one_json(one), "connectors")

    config = tmp_path / "kraiter-sync.toml"
    config.write_text(f'[jobs.people]\nsource = "{keep}"\nkind = "contacts"\n')
    checked = run(state, "sync", "--check", "--config", str(config), "--json")
    check_schema(one_json(checked), "sync-check")
    synced = run(state, "sync", "--config", str(config), "--json")
    check_schema(one_json(synced), "sync")


def test_emulator_json_says_where_it_listens(tmp_path: Path, cli_env: dict[str, str]) -> None:
    cmd = [sys.executable, "-m", "kraiter_sync", "emulator", "--port", "0", "--json"]
    cmd += ["--db", str(tmp_path / "k.db")]
    with subprocess.Popen(cmd, env=cli_env, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            doc = json.loads(proc.stdout.readline())
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    check_schema(doc, "emulator")
    assert doc["base_url"].startswith("http://127.0.0.1:")


def test_errors_are_json_on_both_streams(tmp_path: Path) -> None:
    state = tmp_path / "state"
    missing = run(state, "validate", str(tmp_path / "nope.csv"), "--json", "--log-format", "json")
    assert missing.exit_code == 2
    doc = one_json(missing)
    check_schema(doc, "error")
    assert "nope.csv" in doc["error"]["message"]
    lines = [json.loads(line) for line in missing.stderr.splitlines()]
    assert [(r["level"], r["exit_code"]) for r in lines] == [("error", 2)]
    # an error click finds while parsing the options is JSON too
    usage = run(state, "import", "x.csv", "--concurrency", "0", "--log-format", "json", "--json")
    assert usage.exit_code == 2
    check_schema(one_json(usage), "error")
    assert json.loads(usage.stderr.splitlines()[0])["level"] == "error"
    # and so is one in a subcommand of a group that has options of its own
    shown = run(state, "runs", "show", "abc", "--json")
    assert shown.exit_code == 2
    doc = one_json(shown)
    check_schema(doc, "error")
    assert "'abc' is not a valid integer" in doc["error"]["message"]


def test_an_unexpected_exception_is_a_short_message_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kraiter_sync.verbs.validate as verb

    def broken(*args: Any, **kwargs: Any) -> Any:
        msg = "boom"
        raise RuntimeError(msg)

    monkeypatch.setattr(verb, "validate_inputs", broken)
    src = tmp_path / "c.csv"
    src.write_text("email\na@example.com\n")
    result = run(tmp_path / "state", "validate", str(src))
    assert result.exit_code == 1
    assert "unexpected RuntimeError: boom" in result.stderr
    assert "re-run with -v to see where" in result.stderr
    assert "Traceback" not in result.stderr
    verbose = run(tmp_path / "state", "validate", str(src), "-v")
    assert verbose.exit_code == 1
    assert "Traceback" in verbose.stderr
    assert "raise RuntimeError(msg)" in verbose.stderr
    logged = run(tmp_path / "state", "validate", str(src), "--log-format", "json")
    assert logged.exit_code == 1
    records = [json.loads(line) for line in logged.stderr.splitlines()]
    assert any("RuntimeError: boom" in r.get("exc", "") for r in records)


def test_long_verbs_write_heartbeats_off_a_terminal(tmp_path: Path) -> None:
    state = tmp_path / "state"
    src = tmp_path / "events.parquet"
    write_events(src, rows=300)
    beat = ["--heartbeat", "0.02"]
    for args in (
        ["validate", str(src)],
        ["import", str(src), "--concurrency", "2"],
        ["reconcile", "--kind", "events", str(src)],
        ["export", "events", "--out", str(tmp_path / "out")],
    ):
        result = run(state, *args, *beat)
        assert result.exit_code in (0, 3), (args, result.stderr)
        assert "progress (" in result.stderr, (args, result.stderr)
    as_json = run(state, "validate", str(src), *beat, "--log-format", "json")
    beats = [json.loads(x) for x in as_json.stderr.splitlines() if '"progress"' in x]
    assert beats
    assert beats[-1]["done"] == pl.read_parquet(src).height  # the last line: where it ended
    quiet = run(state, "validate", str(src), *beat, "-q")
    assert "progress" not in quiet.stderr


def test_a_job_faster_than_a_heartbeat_still_ends_with_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the timer never fires within an hour: these lines come from the end of each job
    with ProgressSink(mode="lines", heartbeat=3600) as sink:
        sink.validating()(42)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("progress (")
    assert "validating: 42 rows" in lines[0]
    with ProgressSink(mode="lines", heartbeat=3600):
        pass  # ended before reporting anything
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert "ended: 0 rows" in lines[0]
    with pytest.raises(RuntimeError), ProgressSink(mode="lines", heartbeat=3600):
        raise RuntimeError  # failed before reporting anything: its error is the last line
    assert capsys.readouterr().err == ""
    with ProgressSink(mode="off"):
        pass  # heartbeats off (-q, --heartbeat 0): nothing at the end either
    assert capsys.readouterr().err == ""


def test_export_progress_never_goes_backwards() -> None:
    sink = ProgressSink(mode="off")
    show = sink.exporting()
    seen = []
    for rows in (96_100, 85_600, 97_000):
        show(
            {
                "stream": "events",
                "rows": rows,
                "rows_per_s": 1.0,
                "requests": 1,
                "requests_per_s": 1.0,
                "retries": 0,
            }
        )
        assert sink._status is not None
        seen.append(sink._status.done)
    assert seen == [96_100, 96_100, 97_000]


def test_the_target_is_announced_without_the_key(tmp_path: Path) -> None:
    src = tmp_path / "events.parquet"
    write_events(src, rows=5)
    with serve_in_thread(EmulatorConfig(db_path=str(tmp_path / "k.db"))) as url:
        env = {"KRAITER_API_KEY": KEY, "KRAITER_BASE_URL": url}
        silent = run(tmp_path / "state", "import", str(src), env=env)
        assert silent.exit_code in (0, 3), silent.stderr  # (a few rows are bad on purpose)
        assert "target:" not in silent.stderr  # cron stays quiet on a good night
        loud = run(tmp_path / "state", "import", str(src), "-v", env=env)
        host = url.removeprefix("http://")
        assert f"target: {url} (key fingerprint " in loud.stderr
        assert KEY not in loud.stderr + loud.stdout
        logged = run(tmp_path / "state", "import", str(src), "--log-format", "json", env=env)
        target = [json.loads(x) for x in logged.stderr.splitlines() if "target" in x]
        assert target[0]["target"]["host"] == host
        assert KEY not in logged.stderr


def test_commands_that_do_not_talk_to_kraiter_take_no_api_key(tmp_path: Path) -> None:
    for words in (("emulator",), ("connectors",), ("validate",), ("runs",), ("runs", "show")):
        assert "--api-key" not in CliRunner().invoke(main, [*words, "--help"]).output
    old = run(tmp_path / "state", "connectors", "--api-key", KEY)
    assert old.exit_code == 0
    assert "--api-key is deprecated" in old.stderr
    assert KEY not in old.stderr + old.stdout
    assert "No KRAITER_API_KEY" not in old.stderr


def test_old_flag_spellings_still_work_with_a_warning(tmp_path: Path) -> None:
    state = tmp_path / "state"
    run(state, "import", str(SAMPLE_DATA / "contacts.csv"))
    new = run(state, "export", "contacts", "--out", str(tmp_path / "a"), "--chunk-size", "100")
    assert new.exit_code == 0, new.stderr
    assert "deprecated" not in new.stderr
    old = run(state, "export", "contacts", "--out", str(tmp_path / "b"), "--chunk-rows", "100")
    assert old.exit_code == 0, old.stderr
    assert "--chunk-rows is deprecated" in old.stderr
    assert "use --chunk-size instead" in old.stderr
    assert "--chunk-rows" not in CliRunner().invoke(main, ["export", "--help"]).output
    for words in (("import",), ("retry",), ("reconcile",), ("restore",)):
        help_text = CliRunner().invoke(main, [*words, "--help"]).output
        assert "--concurrency" in help_text, words
        assert "--max-retries" in help_text, words


def test_runs_show_the_real_exit_code_and_a_summary_in_words(tmp_path: Path) -> None:
    state = tmp_path / "state"
    imported = run(state, "import", str(SAMPLE_DATA / "contacts.csv"))
    assert imported.exit_code == 3
    table = run(state, "runs")
    row = table.stdout.splitlines()[1]
    assert "rejected-rows" in row
    assert "   3 " in row
    assert "contacts 1,506 read:" in row
    assert "{" not in row  # words, not truncated JSON


def test_a_reconcile_that_exits_3_is_recorded_with_exit_3(tmp_path: Path) -> None:
    state = tmp_path / "state"
    src = tmp_path / "events.csv"
    src.write_text(
        "email,event,timestamp\n"
        "ann@example.com,login,2026-01-01T10:00:00Z\n"
        "ann@example.com,login,not a time\n"
    )
    applied = run(state, "reconcile", "--kind", "events", str(src), "--apply")
    assert applied.exit_code == 3, applied.stderr
    doc = one_json(run(state, "runs", "--json"))
    assert [(r["status"], r["exit_code"]) for r in doc["runs"]] == [("rejected-rows", 3)]


def test_each_input_takes_its_own_mapping(tmp_path: Path) -> None:
    state = tmp_path / "state"
    plain = tmp_path / "plain.csv"
    plain.write_text("email,plan\ne@example.com,pro\n")
    work = tmp_path / "work.csv"
    work.write_text("Work Email,plan\nc@example.com,pro\nd@example.com,free\n")
    shared = run(state, "validate", str(plain), str(work), "--map", "email=Work Email")
    assert shared.exit_code == 2
    assert f"--input {plain} --map FIELD=COLUMN" in shared.stderr
    own = run(state, "validate", str(plain), "--input", str(work), "--map", "email=Work Email")
    assert own.exit_code == 0, own.stderr
    assert "3 contacts rows read: 3 valid" in own.stdout
    twice = run(state, "validate", "--input", str(work), "--map", "email=x", "--kind", "x")
    assert twice.exit_code == 2
    assert "--kind must be events or contacts" in twice.stderr


def test_timestamp_format_and_the_reject_ratio_stop(tmp_path: Path) -> None:
    state = tmp_path / "state"
    src = tmp_path / "ts.csv"
    src.write_text(
        "email,event,timestamp\n"
        "a@example.com,login,01/02/2025 10:00\n"
        "b@example.com,login,02/02/2025 11:30\n"
    )
    iso = run(state, "validate", str(src), "--json")
    report = one_json(iso)["kinds"]["events"]
    assert report["by_rule"] == {"timestamp.unparseable": 2}
    assert any("none of its 2 timestamps could be read" in w for w in report["warnings"])
    assert "give their format with --timestamp-format" in run(state, "import", str(src)).stderr
    given = run(state, "validate", str(src), "--timestamp-format", "%d/%m/%Y %H:%M", "--json")
    assert (one_json(given)["valid"], given.exit_code) == (2, 0)
    per_input = run(state, "validate", "--input", str(src), "--timestamp-format", "%d/%m/%Y %H:%M")
    assert per_input.exit_code == 0, per_input.stderr
    stopped = run(state, "import", str(src), "--max-reject-ratio", "0.05", "--json")
    assert stopped.exit_code == 3
    doc = one_json(stopped)
    assert doc["events"]["sent"] == 0
    assert "2 of 2 rows (100.0%) are invalid" in doc["stopped"]
    assert "nothing was sent" in stopped.stderr
    assert doc["requests"] == 0


def test_reconcile_plan_alone_shows_the_saved_plan(tmp_path: Path) -> None:
    state = tmp_path / "state"
    src = tmp_path / "c.csv"
    src.write_text("email,user_id\nann@example.com,u1\n")
    plan = tmp_path / "plan.json"
    first = run(state, "reconcile", str(src), "--plan-out", str(plan))
    assert first.exit_code == 0, first.stderr
    shown = run(state, "reconcile", "--plan", str(plan))
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout.startswith("plan: 1 to create, 0 to update")
    assert f"carry it out with --plan {plan} --apply" in shown.stdout


def test_docs_name_only_connectors_that_exist() -> None:
    import re

    from kraiter_sync.connectors import list_presets

    names = {p.name for p in list_presets()}
    texts = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    used = set()
    for path in texts:
        text = path.read_text()
        used |= set(re.findall(r'connector = "([a-z0-9_]+)"', text))
        used |= set(re.findall(r"--connector ([a-z0-9_]+)", text))
    assert used, "the docs name no connector"
    assert used <= names, used - names


def test_import_verbose_reports_the_mapping_as_the_readme_says(tmp_path: Path) -> None:
    assert "reported with `-v`" in (REPO_ROOT / "README.md").read_text()
    src = tmp_path / "c.csv"
    src.write_text("Email Address,plan\nann@example.com,pro\n")
    result = run(tmp_path / "state", "import", str(src), "-v")
    assert result.exit_code == 0, result.stderr
    assert f"{src}: email: 'Email Address' (detected)" in result.stderr


def test_mirror_says_why_it_listed_every_contact(tmp_path: Path) -> None:
    state = tmp_path / "state"
    src = tmp_path / "c.csv"
    src.write_text("email,user_id\nann@example.com,u1\n")
    assert run(state, "import", str(src)).exit_code == 0
    result = run(state, "reconcile", str(src), "--mirror")
    assert result.exit_code == 0, result.stderr
    assert "--mirror needs every contact in Kraiter, so all were listed" in result.stderr
    assert "--remote listing" not in result.stderr


def test_the_readme_library_example_runs_and_counts_the_invalid_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import re

    readme = (REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    assert len(blocks) == 1
    for name in [n for n in __import__("os").environ if n.startswith("KRAITER")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    write_events(tmp_path / "events.parquet", rows=100)
    exec(compile(blocks[0], "README.md", "exec"), {})  # noqa: S102 (the docs' own example)
    sent, invalid, rejected, code = map(int, capsys.readouterr().out.split())
    assert (sent, rejected) == (100, 0)  # the 100 good rows; the helper adds bad ones
    assert invalid > 0
    assert code == 3


def test_a_rerun_over_the_same_input_does_not_pile_up_rejects_files(tmp_path: Path) -> None:
    state = tmp_path / "state"
    src = tmp_path / "c.csv"
    src.write_text("email\nann@example.com\nnot-an-email\n")
    first = one_json(run(state, "import", str(src), "--json"))
    again = one_json(run(state, "import", str(src), "--json"))
    assert (first["run_id"], again["run_id"]) == (1, 2)
    assert (
        again["files"]["rejects"]
        == first["files"]["rejects"]
        == str(state / "rejects" / "run-1.csv")
    )
    assert sorted(p.name for p in (state / "rejects").iterdir()) == ["run-1.csv"]
    # the run record and its report point at the file that is there
    shown = one_json(run(state, "runs", "show", "2", "--json"))
    assert shown["run"]["details"]["rejects"]["file"] == str(state / "rejects" / "run-1.csv")
    # other content: its own file
    src.write_text("email\nann@example.com\nstill-not-an-email\n")
    third = one_json(run(state, "import", str(src), "--json"))
    assert third["files"]["rejects"] == str(state / "rejects" / "run-3.csv")
    assert "still-not-an-email" in Path(third["files"]["rejects"]).read_text()
    checked = [one_json(run(state, "validate", str(src), "--json")) for _ in range(2)]
    assert checked[0]["files"]["rejects"] == checked[1]["files"]["rejects"]
    assert len(list((state / "rejects").glob("validate-*.csv"))) == 1


def test_an_error_before_the_common_options_are_set_up_still_reaches_stderr(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    assert run(state, "connectors").exit_code == 0  # logging set up for that stderr
    config = tmp_path / "kraiter-sync.toml"
    config.write_text("[storage.s3]\nsecret_access_key = 'x'\n")
    src = tmp_path / "c.csv"
    src.write_text("email\na@example.com\n")
    result = run(state, "validate", str(src), "--config", str(config))
    assert result.exit_code == 2
    assert "secret_access_key is not allowed" in result.stderr
    as_json = run(state, "validate", str(src), "--config", str(config), "--log-format", "json")
    assert json.loads(as_json.stderr.splitlines()[0])["exit_code"] == 2


def test_duplicates_are_listed_beside_the_rejects_with_the_row_kept(tmp_path: Path) -> None:
    import csv

    state = tmp_path / "state"
    contacts = tmp_path / "c.csv"
    contacts.write_text("email,plan\na@example.com,pro\nb@example.com,free\nA@example.com,gold\n")
    more = tmp_path / "more.csv"
    more.write_text("email,plan\nb@example.com,team\n")
    events = tmp_path / "e.csv"
    events.write_text(
        "email,event,timestamp\n"
        "a@example.com,login,2025-01-01T10:00:00Z\n"
        "a@example.com,login,2025-01-01T10:00:00Z\n"
        "b@example.com,login,2025-01-01T10:00:00Z\n"
    )
    checked = one_json(run(state, "validate", str(contacts), str(more), str(events), "--json"))
    listed = Path(checked["files"]["duplicates"])
    assert listed.parent == Path(checked["files"]["rejects"]).parent
    rows = [
        (r["kind"], r["source_file"], r["source_row"], r["kept_file"], r["kept_row"])
        for r in csv.DictReader(listed.read_text().splitlines())
    ]
    assert sorted(rows) == [
        ("contacts", str(contacts), "1", str(contacts), "3"),  # a@ merged into A@ (last)
        ("contacts", str(contacts), "2", str(more), "1"),  # across inputs
        ("events", str(events), "2", str(events), "1"),  # the first is kept
    ]
    imported = one_json(run(state, "import", str(contacts), str(more), str(events), "--json"))
    assert Path(imported["files"]["duplicates"]).read_text() == listed.read_text()
    clean = tmp_path / "clean.csv"
    clean.write_text("email\nz@example.com\n")
    assert one_json(run(state, "import", str(clean), "--json"))["files"]["duplicates"] is None
