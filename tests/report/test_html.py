"""The run report's contents and its HTML, without a browser: what a record becomes,
escaping, masking, offline-ness, older runs, and the CLI around it."""

from __future__ import annotations

import builtins
import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

from kraiter_sync.cli import main
from kraiter_sync.errors import ConfigError
from kraiter_sync.report import build_report, render_html, write_run_report
from kraiter_sync.report.contents import mask_properties
from kraiter_sync.state.ledger import Ledger, RunRecord
from kraiter_sync.state.rejects import RejectsWriter
from kraiter_sync.validate import REJECT_SCHEMA

EVIL = '</script><script>alert("x")</script><b>&'
TARGET = "https://api.kraiter.com#0123456789abcdef"


def _rejects(path: Path, rows: list[dict[str, Any]]) -> dict[str, int]:
    with RejectsWriter(path) as writer:
        writer.write(pl.DataFrame(rows, schema=REJECT_SCHEMA))
    return writer.by_rule


def _reject(rule: str, row: int, **values: Any) -> dict[str, Any]:
    return {
        "source_file": values.pop("source_file", "events.csv"),
        "source_row": row,
        "field": rule.split(".")[0],
        "rule": rule,
        "message": values.pop("message", f"bad {rule}"),
        "stage": "rejected" if rule.startswith("api.") else "invalid",
        **values,
    }


def _record(**kw: Any) -> RunRecord:
    base: dict[str, Any] = {
        "id": 7,
        "command": "import",
        "target": TARGET,
        "args": {"paths": ["events.csv"]},
        "started_at": 1_780_000_000.0,
        "finished_at": 1_780_000_030.0,
        "status": "ok",
        "counts": {
            "events": {"read": 10, "sent": 6, "duplicates": 1, "invalid": 2, "rejected": 1},
            "requests": 9,
            "rate_limited": 1,
            "retries": 2,
            "exit_code": 3,
        },
        "details": None,
    }
    return RunRecord(**(base | kw))


def test_counts_group_as_the_chart_draws_them() -> None:
    report = build_report(_record())
    assert report.kinds["events"]["read"] == 10
    assert report.group_totals() == {
        "events": {"sent": 6, "duplicate": 1, "rejected": 3},
    }
    assert (report.host, report.tenant, report.exit_code) == (
        "api.kraiter.com",
        "0123456789abcdef",
        3,
    )
    assert (report.requests, report.rate_limited, report.retries) == (9, 1, 2)


def test_samples_come_from_the_rejects_file_masked_and_shortened(tmp_path: Path) -> None:
    path = tmp_path / "rejects.csv"
    long = "y" * 500
    rows = [
        _reject("properties.secret", i, properties=json.dumps({"api_token": f"tok-{i}", "n": i}))
        for i in range(1, 6)
    ] + [
        _reject("properties.card_number", 9, properties='{"card": "4111111111111111"}'),
        _reject("api.VALIDATION_ERROR", 10, email=long),
    ]
    by_rule = _rejects(path, rows)
    details = {"rejects": {"by_rule": by_rule, "file": str(path)}}
    report = build_report(_record(details=details), samples_per_rule=2)
    assert [(r.rule, r.count, r.stage) for r in report.rejects] == [
        ("properties.secret", 5, "invalid"),
        ("api.VALIDATION_ERROR", 1, "rejected"),
        ("properties.card_number", 1, "invalid"),
    ]
    secret = report.rejects[0]
    assert [s["source_row"] for s in secret.samples] == ["1", "2"]
    assert json.loads(secret.samples[0]["properties"]) == {"api_token": "***", "n": 1}
    assert json.loads(report.rejects[2].samples[0]["properties"]) == {"card": "***1111"}
    assert len(report.rejects[1].samples[0]["email"]) == 160
    assert report.rejects_note is None
    page = render_html(report)
    assert "tok-1" not in page
    assert "4111111111111111" not in page


def test_a_rejects_file_another_run_rewrote_gives_counts_without_samples(tmp_path: Path) -> None:
    path = tmp_path / "rejects.csv"
    recorded = _rejects(path, [_reject("email.invalid", 1, email="a@b")])
    _rejects(path, [_reject("email.invalid", 1), _reject("name.empty", 2)])  # a later run
    report = build_report(_record(details={"rejects": {"by_rule": recorded, "file": str(path)}}))
    assert [(r.rule, r.count, r.samples) for r in report.rejects] == [("email.invalid", 1, [])]
    assert report.rejects_note is not None
    assert "another run wrote to it" in report.rejects_note
    path.unlink()
    gone = build_report(_record(details={"rejects": {"by_rule": recorded, "file": str(path)}}))
    assert [(r.rule, r.count) for r in gone.rejects] == [("email.invalid", 1)]
    assert gone.rejects_note is not None
    assert "cannot be read" in gone.rejects_note


def test_an_older_run_without_details_still_renders(tmp_path: Path) -> None:
    path = tmp_path / "rejects.parquet"
    _rejects(path, [_reject("email.invalid", 1), _reject("email.invalid", 2)])
    record = _record(counts=_record().counts | {"rejects_path": str(path)})
    report = build_report(record)
    assert [(r.rule, r.count, len(r.samples)) for r in report.rejects] == [("email.invalid", 2, 2)]
    assert (
        report.rejects_note == "counted from the rejects file (this run recorded no counts by rule)"
    )
    page = render_html(report)
    assert "No request timeline was recorded for this run" in page
    assert 'id="counts-chart"' in page


def test_everything_from_data_is_escaped(tmp_path: Path) -> None:
    path = tmp_path / "rejects.ndjson"
    rows = [_reject(f"api.{EVIL}", 1, source_file=EVIL, message=EVIL, email=EVIL)]
    by_rule = _rejects(path, rows)
    record = _record(
        command=f"sync:{EVIL}",
        args={"paths": [EVIL], "connector": EVIL},
        details={"rejects": {"by_rule": by_rule, "file": str(path)}},
    )
    page = render_html(build_report(record))
    assert EVIL not in page
    assert '<script>alert("x")' not in page
    # what the page itself writes: one inline plotly.js and one script per chart, no more
    scripts = re.findall(r"<script[^>]*>", page)
    assert len(scripts) == 2  # plotly.js, the Sankey
    assert "&lt;/script&gt;&lt;script&gt;alert" in page  # shown as text


def test_the_page_needs_no_network() -> None:
    page = render_html(build_report(_record()))
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)
    assert "Plotly.newPlot" in page
    assert 4_000_000 < len(page.encode()) < 6_000_000  # plotly.js is inlined once


def test_other_runs_get_a_bar_of_their_counts(tmp_path: Path) -> None:
    record = _record(
        command="restore", counts={"restored": 4, "existing": 1, "failed": 0, "exit_code": 0}
    )
    report = build_report(record)
    assert report.kinds == {}
    assert report.other_counts == {"restored": 4.0, "existing": 1.0, "failed": 0.0}
    page = render_html(report)
    assert 'data-count="restored">4<' in page


def test_a_missing_plotly_is_a_clear_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_import = builtins.__import__

    def no_plotly(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "plotly" or name.startswith("plotly."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_plotly)
    with pytest.raises(ConfigError, match=re.escape('pip install "kraiter-sync[report]"')):
        render_html(build_report(_record()))


def _state_with_run(tmp_path: Path) -> tuple[Path, int]:
    state = tmp_path / "state"
    with Ledger(state / "ledger.db") as ledger:
        run_id = ledger.start_run("import", TARGET, {"paths": ["x.csv"]})
        ledger.finish_run(
            run_id,
            "ok",
            _record().counts,
            details={
                "timeline": {
                    "started_at": 1.0,
                    "bucket_seconds": 1.0,
                    "series": {"requests": [3, 6], "2xx": [3, 5], "429": [0, 1]},
                }
            },
        )
    return state, run_id


def test_runs_show_prints_one_run_and_writes_its_report(tmp_path: Path) -> None:
    state, run_id = _state_with_run(tmp_path)
    runner = CliRunner()
    shown = runner.invoke(main, ["runs", "show", str(run_id), "--state-dir", str(state)])
    assert shown.exit_code == 0, shown.output
    # recorded "ok" by an older version, but it exited 3: shown as what it was
    assert shown.stdout.startswith(
        f"run {run_id}: import (rejected-rows, exit 3)\ntarget: {TARGET}\n"
    )
    as_json = runner.invoke(
        main, ["runs", "show", str(run_id), "--json", "--state-dir", str(state)]
    )
    record = json.loads(as_json.stdout)["run"]
    assert record["details"]["timeline"]["series"]["requests"] == [3, 6]
    listing = runner.invoke(main, ["runs", "--json", "--state-dir", str(state)])
    assert "details" not in json.loads(listing.stdout)["runs"][0]  # not in the listing
    out = tmp_path / "run.html"
    html = runner.invoke(
        main, ["runs", "show", str(run_id), "--html", str(out), "--state-dir", str(state)]
    )
    assert html.exit_code == 0, html.output
    assert html.stderr == f"report: {out}\n"
    assert "9 requests, 1 answered 429, 0 retries" in out.read_text()


def test_runs_show_of_an_unknown_run_says_where_to_look(tmp_path: Path) -> None:
    state, _run_id = _state_with_run(tmp_path)
    runner = CliRunner()
    missing = runner.invoke(main, ["runs", "show", "99", "--state-dir", str(state)])
    assert missing.exit_code == 2
    assert missing.stderr == (
        f"error: there is no run 99 in {state}: `kraiter-sync runs` lists them\n"
    )
    empty = runner.invoke(main, ["runs", "show", "1", "--state-dir", str(tmp_path / "none")])
    assert empty.exit_code == 2
    assert "no runs are recorded in" in empty.stderr
    assert not (tmp_path / "none").exists()


def test_import_report_without_plotly_stops_before_sending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kraiter_sync.report import html

    def missing() -> None:
        raise ConfigError(
            f"the HTML report needs plotly, which is not installed: {html.INSTALL_HINT}"
        )

    monkeypatch.setattr(html, "require_plotly", missing)
    src = tmp_path / "events.csv"
    src.write_text("email,event,timestamp\na@example.com,x,2024-01-01T00:00:00Z\n")
    state = tmp_path / "state"
    result = CliRunner().invoke(
        main, ["import", str(src), "--report", str(tmp_path / "r.html"), "--state-dir", str(state)]
    )
    assert result.exit_code == 2
    assert result.stderr == (
        "error: the HTML report needs plotly, which is not installed: "
        'pip install "kraiter-sync[report]"\n'
    )
    assert not (state / "ledger.db").exists()  # no run was started


def test_write_run_report_is_the_library_form(tmp_path: Path) -> None:
    state, run_id = _state_with_run(tmp_path)
    out = write_run_report(state, run_id, tmp_path / "deep" / "r.html")
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert not list(out.parent.glob(".*.tmp"))


def test_masking_reaches_nested_values_and_leaves_the_rest() -> None:
    text = json.dumps(
        {
            "user": {"Password": "pw", "name": "Ann"},
            "cards": ["4111-1111-1111-1111", "12"],
            "ok": True,
            "n": 4111111111111111,
        }
    )
    assert json.loads(mask_properties(text)) == {
        "user": {"Password": "***", "name": "Ann"},
        "cards": ["***1111", "12"],
        "ok": True,
        "n": "***1111",
    }
    assert mask_properties("not json {") == "not json {"
    assert mask_properties('["a"]') == '["a"]'


def test_a_reconcile_apply_run_has_a_timeline_and_a_report(tmp_path: Path) -> None:
    state = tmp_path / "state"
    csv = tmp_path / "c.csv"
    csv.write_text("email,plan\na@example.com,pro\nb@example.com,free\n")
    runner = CliRunner()
    env = {"KRAITER_SYNC_STATE_DIR": str(state)}
    applied = runner.invoke(main, ["reconcile", str(csv), "--apply"], env=env)
    assert applied.exit_code == 0, applied.stderr
    with Ledger(state / "ledger.db") as ledger:
        (listed,) = ledger.list_runs()
        run = ledger.get_run(listed.id)
    assert run is not None
    assert run.details is not None
    series = run.details["timeline"]["series"]
    assert sum(series["requests"]) == sum(series["2xx"]) + sum(series.get("4xx", [])) >= 3
    out = tmp_path / "reconcile.html"
    shown = runner.invoke(main, ["runs", "show", str(run.id), "--html", str(out)], env=env)
    assert shown.exit_code == 0, shown.stderr
    page = out.read_text()
    assert 'data-count="created">2<' in page
    assert f"{sum(series['requests']):,} requests, 0 answered 429" in page


def test_a_dry_run_shows_what_it_would_send() -> None:
    counts = {"events": {"read": 5, "pending": 4, "invalid": 1}, "dry_run": True, "exit_code": 3}
    report = build_report(_record(status="dry-run", counts=counts))
    page = render_html(report)
    assert "would send: 4" in page
    assert "would send <small>(not sent)</small>" in page
    assert 'data-outcome="pending">4<' in page
    assert 'id="meta-status">dry-run<' in page
