"""The Dagster adapter with the real Dagster, in process, against the served emulator."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from kraiter_sync.emulator import EmulatorConfig, serve_in_thread
from tests.helpers.imports import BAD_ROWS, stored_events, write_events
from tests.helpers.integrations import docs_example, require

KEY = "kr_dagster_test_secret_abc"


def test_docs_example_materialises_with_the_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dg = require("dagster")
    monkeypatch.chdir(tmp_path)
    expected = write_events(tmp_path / "events.parquet", rows=40, contacts=8)
    db, state = tmp_path / "kraiter.db", tmp_path / "st"
    with serve_in_thread(EmulatorConfig(db_path=str(db))) as url:
        monkeypatch.setenv("KRAITER_API_KEY", KEY)
        monkeypatch.setenv("KRAITER_BASE_URL", url)
        monkeypatch.setenv("KRAITER_SYNC_STATE_DIR", str(state))
        example: dict[str, object] = {"__name__": "__main__"}
        exec(docs_example("dagster"), example)  # noqa: S102 (the docs' example, as copied)
        first = example["result"]
        again = dg.materialize(  # the same asset again: nothing is sent twice
            [example["kraiter_events"]], resources={"kraiter": example["kraiter"]}
        )
    assert first.success  # type: ignore[attr-defined]
    assert again.success
    meta = first.asset_materializations_for_node("kraiter_events")[0].metadata  # type: ignore[attr-defined]
    values = {k: getattr(v, "value", v) for k, v in meta.items()}
    assert values["dagster/row_count"] == 40 + 1 + BAD_ROWS  # write_events adds 1 duplicate
    assert (values["sent"], values["rejected"], values["duplicate"]) == (40, BAD_ROWS, 1)
    assert values["exit_code"] == 3  # rejects are reported, not raised
    assert pl.read_csv(values["rejects_path"]).height == BAD_ROWS
    meta2 = again.asset_materializations_for_node("kraiter_events")[0].metadata
    values2 = {k: getattr(v, "value", v) for k, v in meta2.items()}
    assert (values2["sent"], values2["skipped"]) == (0, 40)
    assert values2["kraiter/run_id"] == values["kraiter/run_id"] + 1
    assert stored_events(db, KEY) == Counter(expected)


def test_too_many_rejects_fail_and_an_incomplete_run_asks_for_a_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dg = require("dagster")
    from kraiter_sync.integrations.dagster import KraiterResource, kraiter_import_asset
    from kraiter_sync.verbs.importer import ImportOptions

    src = tmp_path / "events.parquet"
    write_events(src, rows=10, contacts=3)
    strict = kraiter_import_asset("strict", [str(src)], max_rejected=BAD_ROWS - 1)
    config = EmulatorConfig(db_path=str(tmp_path / "k.db"))
    with serve_in_thread(config) as url:
        kraiter = KraiterResource(api_key=KEY, base_url=url, state_dir=str(tmp_path / "st"))
        failed = dg.materialize([strict], resources={"kraiter": kraiter}, raise_on_error=False)
    assert not failed.success
    (failure,) = failed.get_step_failure_events()
    assert "TooManyRejectsError" in str(failure.step_failure_data.error), failure
    assert f"{BAD_ROWS} rows rejected, more than the {BAD_ROWS - 1} allowed" in str(
        failure.step_failure_data.error
    )

    broken = EmulatorConfig(db_path=str(tmp_path / "k2.db"), fail_rate=1.0, seed=2)
    options = ImportOptions(max_retries=0, allow_triggers=True)
    flaky = kraiter_import_asset("flaky", [str(src)], options=options, retries=1, retry_wait_s=0)
    with serve_in_thread(broken) as url:
        kraiter = KraiterResource(api_key=KEY, base_url=url, state_dir=str(tmp_path / "st2"))
        retried = dg.materialize([flaky], resources={"kraiter": kraiter}, raise_on_error=False)
    assert not retried.success
    kinds = [e.event_type_value for e in retried.all_events]
    # Kraiter failing from the first request (here the lost-state check: a fresh ledger)
    # is transient too: retried once, then failed.
    assert kinds.count("STEP_UP_FOR_RETRY") == 1, kinds
