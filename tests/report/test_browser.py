"""The HTML run report in a real headless Chromium: a real import over real HTTP (with
429s, 5xx and rejects), the report it writes, and what the browser shows of it.

Locally without Chromium these tests skip; in CI (``CI=true``) they fail instead
(``.ci/chromium.sh`` installs Chromium).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

from kraiter_sync.cli import main
from kraiter_sync.config import key_fingerprint
from kraiter_sync.emulator import EmulatorConfig, serve_in_thread
from tests.helpers.browser import chromium_or_skip, load_page
from tests.helpers.imports import BAD_ROWS, write_events

KEY = "kr_report_browser_secret_0123456789"

#: What the page shows, read in the browser after the charts rendered.
READ_PAGE = """JSON.stringify({
  svgs: Object.fromEntries(["counts-chart", "requests-chart"].map(
    id => [id, document.querySelectorAll("#" + id + " .main-svg").length])),
  nodes: [...document.querySelectorAll("#counts-chart .node-label")].map(e => e.textContent),
  title: [...document.querySelectorAll("#requests-chart .gtitle")].map(e => e.textContent),
  traces: [...document.querySelectorAll("#requests-chart .legendtext")].map(e => e.textContent),
  cells: [...document.querySelectorAll("#counts-table td[data-outcome]")].map(
    e => [e.dataset.kind, e.dataset.outcome, e.textContent]),
  totals: [...document.querySelectorAll("#request-totals [data-total]")].map(
    e => [e.dataset.total, e.textContent]),
  rules: [...document.querySelectorAll("#rejects-table td[data-rule]")].map(
    e => [e.dataset.rule, e.textContent]),
  meta: Object.fromEntries([...document.querySelectorAll("#run-meta dd")].map(
    e => [e.id, e.textContent])),
  text: document.body.innerText,
})"""
CHARTS_READY = (
    "document.querySelectorAll('#counts-chart .main-svg').length > 0 && "
    "document.querySelectorAll('#requests-chart .main-svg').length > 0 && "
    "document.querySelectorAll('#counts-chart .node-label').length > 0"
)


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def _inputs(tmp_path: Path) -> list[Path]:
    events = tmp_path / "events.parquet"
    write_events(events, rows=160, contacts=25, seed=19)  # + BAD_ROWS invalid, 1 duplicate
    secrets = tmp_path / "secrets.csv"
    secrets.write_text(
        "email,event,timestamp,password,card\n"
        "s1@example.com,signed_up,2024-02-01T00:00:00Z,hunter2-do-not-show,\n"
        "s2@example.com,signed_up,2024-02-01T00:00:01Z,,4111 1111 1111 1111\n"
    )
    return [events, secrets]


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_or_skip()


def test_the_report_of_a_real_import_shows_its_json_figures_in_chromium(
    tmp_path: Path, chromium: str
) -> None:
    state = tmp_path / "state"
    report = tmp_path / "run report <1>.html"
    # Headers hidden and a small bucket: the controller learns the limit from 429s;
    # 5xx answers make the engine retry.
    config = EmulatorConfig(
        db_path=str(tmp_path / "kraiter.db"),
        rate_limit=80,
        burst=5,
        hide_rate_headers=True,
        fail_rate=0.06,
        seed=3,
    )
    runner = CliRunner()
    with serve_in_thread(config) as url:
        args = [
            "import",
            *map(str, _inputs(tmp_path)),
            "--json",
            "--report",
            str(report),
            "--max-retries",
            "12",
            "--base-url",
            url,
            "--api-key",
            KEY,
            "--state-dir",
            str(state),
        ]
        done = runner.invoke(main, args)
    assert done.exit_code == 3, done.output  # finished, with the deliberately bad rows
    summary: dict[str, Any] = json.loads(done.stdout)
    assert f"report: {report}" in done.stderr
    ev = summary["events"]
    assert ev["invalid"] == BAD_ROWS + 2  # + the password and card rows
    assert summary["rate_limited"] > 0, summary  # the faults really happened
    assert summary["retries"] > 0, summary
    shown = runner.invoke(
        main, ["runs", "show", str(summary["run_id"]), "--json", "--state-dir", str(state)]
    )
    assert shown.exit_code == 0, shown.output
    record = json.loads(shown.stdout)["run"]
    assert record["counts"]["events"] == ev  # the run's JSON is the import's JSON

    page = load_page(chromium, report, ready=CHARTS_READY, expression=READ_PAGE)
    assert page.errors == []
    assert page.requests == [report.resolve().as_uri()]  # nothing fetched: works offline
    seen = json.loads(page.value)

    assert seen["svgs"]["counts-chart"] > 0
    assert seen["svgs"]["requests-chart"] > 0
    # the Sankey's nodes: rows read → groups, with the run's numbers
    nodes = dict(label.rsplit(": ", 1) for label in seen["nodes"])
    assert {k: _number(v) for k, v in nodes.items()} == {
        "events read": ev["read"],
        "sent": ev["sent"] + ev["verified"],
        "duplicate": ev["duplicates"],
        "rejected": ev["invalid"] + ev["rejected"],
    }
    # the table: every non-zero outcome of the JSON, exactly
    cells = {(kind, outcome): _number(text) for kind, outcome, text in seen["cells"]}
    expected = {("events", k): v for k, v in ev.items() if v} | {("events", "read"): ev["read"]}
    assert cells == expected
    # requests over time: the chart's own totals (from the timeline) are the run's counts
    (title,) = seen["title"]
    numbers = [_number(n) for n in re.findall(r"[\d,]+(?= (?:requests|answered|retries))", title)]
    assert numbers == [summary["requests"], summary["rate_limited"], summary["retries"]]
    assert {"429 answers/s", "retries/s", "5xx/s", "2xx/s"} <= set(seen["traces"])
    totals = {key: _number(text) for key, text in seen["totals"]}
    assert totals == {
        "requests": summary["requests"],
        "rate_limited": summary["rate_limited"],
        "retries": summary["retries"],
    }
    # rejects by rule: the rejects file's rules and counts, secrets masked
    rejects = pl.read_csv(summary["rejects_path"], infer_schema=False)
    by_rule = dict(rejects.group_by("rule").len().iter_rows())
    assert {rule: _number(n) for rule, n in seen["rules"]} == by_rule
    assert "properties.secret" in by_rule
    assert "properties.card_number" in by_rule
    # the rejects file masks refused values itself (key, length, keyed hash): the page
    # shows them as the file does, and never the value
    assert "hunter2-do-not-show" not in rejects["properties"].str.join("").item()
    assert "[masked: 19 characters" in rejects["properties"].str.join("").item()
    assert "hunter2-do-not-show" not in seen["text"]
    assert "4111 1111 1111 1111" not in seen["text"]
    assert "[masked: 19 characters" in seen["text"]  # as the rejects file holds it
    # the header: which run, which tenant (a fingerprint), never the key
    assert seen["meta"]["meta-run-id"] == str(summary["run_id"])
    assert seen["meta"]["meta-exit-code"] == "3"
    assert seen["meta"]["meta-tenant"] == key_fingerprint(KEY)
    assert KEY not in report.read_text()


def test_the_browser_check_catches_script_errors(tmp_path: Path, chromium: str) -> None:
    """The helper's error capture really sees failures (so 'no errors' above means it)."""
    page_file = tmp_path / "broken.html"
    page_file.write_text(
        "<!DOCTYPE html><html><body><p id=ok>ok</p>"
        "<script>console.error('bad thing')</script>"
        "<script>throw new Error('boom')</script></body></html>"
    )
    page = load_page(chromium, page_file, ready="document.getElementById('ok')", expression="1 + 1")
    assert page.value == 2
    assert any("boom" in e for e in page.errors), page.errors
    assert any("bad thing" in e for e in page.errors), page.errors
