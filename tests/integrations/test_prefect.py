"""The Prefect task with the real Prefect: a flow in process (a temporary Prefect API),
against the served emulator; the artifact is read back from Prefect."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from kraiter_sync.emulator import EmulatorConfig, create_app, serve_in_thread
from tests.helpers.imports import BAD_ROWS, stored_events, write_events
from tests.helpers.integrations import docs_example, require

KEY = "kr_prefect_test_secret_abc"


@pytest.mark.slow
# Prefect's temporary API server leaves a client socket to the garbage collector.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_docs_example_flow_publishes_the_counts_and_retries_only_incomplete_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require("prefect")
    from prefect import flow
    from prefect.artifacts import Artifact
    from prefect.blocks.system import Secret
    from prefect.testing.utilities import prefect_test_harness

    from kraiter_sync.errors import KraiterSyncError, TooManyRejectsError
    from kraiter_sync.integrations.prefect import kraiter_import
    from kraiter_sync.integrations.runs import is_transient
    from kraiter_sync.verbs.importer import ImportOptions

    monkeypatch.chdir(tmp_path)
    expected = write_events(tmp_path / "events.parquet", rows=30, contacts=6)
    db, state = tmp_path / "kraiter.db", tmp_path / "st"
    with (
        prefect_test_harness(server_startup_timeout=120),
        serve_in_thread(EmulatorConfig(db_path=str(db))) as url,
    ):
        monkeypatch.setenv("KRAITER_API_KEY", KEY)
        monkeypatch.setenv("KRAITER_BASE_URL", url)
        monkeypatch.setenv("KRAITER_SYNC_STATE_DIR", str(state))
        example: dict[str, object] = {"__name__": "docs_example"}
        exec(docs_example("prefect"), example)  # noqa: S102 (the docs' example, as copied)
        counts = example["nightly_kraiter_sync"]()  # type: ignore[operator]
        artifact = Artifact.get("kraiter-import")
        assert artifact is not None
        table = json.loads(str(artifact.data))
        assert f"kraiter-sync run {counts['run_id']}: 30 sent, {BAD_ROWS} rejected" in str(
            artifact.description
        )

        # The key from a Secret block, not the environment; too many rejects fail, once.
        monkeypatch.delenv("KRAITER_API_KEY")
        Secret(value=KEY).save("kraiter-api-key")
        attempts: list[int] = []

        @flow
        def strict() -> None:
            kraiter_import.with_options(
                retry_delay_seconds=0, on_failure=[lambda *_: attempts.append(1)]
            )(["events.parquet"], max_rejected=0, api_key_block="kraiter-api-key")

        with pytest.raises(TooManyRejectsError):
            strict()
        assert len(attempts) == 1  # not retried: the rows need fixing
        again = Artifact.get("kraiter-import")
        assert again is not None
        assert "30 sent" not in str(again.description)  # the second run sent nothing new

        app = create_app(EmulatorConfig(db_path=str(tmp_path / "k2.db"), seed=3))
        runs: list[int] = []
        with serve_in_thread(app=app) as url:
            monkeypatch.setenv("KRAITER_API_KEY", KEY)
            state2 = str(tmp_path / "st2")

            @flow
            def healthy() -> dict[str, object]:
                return kraiter_import(["events.parquet"], base_url=url, state_dir=state2)  # type: ignore[no-any-return]

            first = healthy()
            assert first["sent"] == 30
            write_events(tmp_path / "events.parquet", rows=12, contacts=3, seed=99)
            app.faults.fail_rate = 1.0  # every request fails from now on

            @flow
            def flaky() -> None:
                kraiter_import.with_options(
                    retries=2,
                    retry_delay_seconds=0,
                    on_running=[lambda *_: runs.append(1)],
                )(
                    ["events.parquet"],
                    base_url=url,
                    state_dir=str(tmp_path / "st2"),
                    options=ImportOptions(max_retries=0, allow_triggers=True),
                )

            # The first try ends incomplete (every event failed); the retries first verify
            # the events it left in flight, and fail doing so: transient all the way.
            with pytest.raises(KraiterSyncError) as last:
                flaky()
            assert is_transient(last.value), repr(last.value)
        app.close()
    assert len(runs) == 3  # the first try and 2 retries

    assert counts["sent"] == 30
    assert (counts["rejected"], counts["duplicate"], counts["row_count"]) == (BAD_ROWS, 1, 34)
    total = next(row for row in table if row["kind"] == "total")
    assert (total["read"], total["sent"], total["rejected"], total["duplicate"]) == (
        34,
        30,
        BAD_ROWS,
        1,
    )
    events = next(row for row in table if row["kind"] == "events")
    assert events["sent"] == 30
    assert stored_events(db, KEY) == Counter(expected)
