"""What every adapter shares (integrations.runs, sources.memory): no orchestrator needed."""

from __future__ import annotations

import polars as pl
import pytest

from kraiter_sync.errors import (
    IncompleteError,
    InputError,
    LockHeldError,
    ServerError,
    TooManyRejectsError,
    UsageError,
)
from kraiter_sync.integrations.runs import (
    check_parameter_state,
    check_result,
    is_transient,
    summary,
)
from kraiter_sync.sources.memory import FrameSource
from kraiter_sync.verbs.importer import ImportResult, KindCounts


def _result(**events: int) -> ImportResult:
    return ImportResult(run_id=7, events=KindCounts(**events), contacts=KindCounts(read=2, sent=2))


def test_summary_counts_every_row_once() -> None:
    counts = summary(
        _result(read=10, sent=3, verified=1, already=2, duplicates=1, invalid=2, rejected=1)
    )
    assert (counts["row_count"], counts["sent"], counts["skipped"]) == (12, 6, 2)
    assert (counts["duplicate"], counts["rejected"], counts["run_id"]) == (1, 3, 7)
    assert counts["exit_code"] == 3


def test_rejects_are_reported_unless_over_the_limit_and_incomplete_runs_raise() -> None:
    rejected = _result(read=5, sent=3, invalid=2)
    assert check_result(rejected) is rejected
    assert check_result(rejected, max_rejected=2) is rejected
    with pytest.raises(TooManyRejectsError, match="2 rows rejected, more than the 1 allowed"):
        check_result(rejected, max_rejected=1)
    with pytest.raises(IncompleteError, match=r"run 7 did not finish \(2 failed, 1 pending\)"):
        check_result(_result(read=5, sent=2, failed=2, pending=1))


def test_transient_failures_are_what_the_cli_exits_4_or_5_for() -> None:
    assert is_transient(IncompleteError("x"))
    assert is_transient(ServerError("down", method="GET", path="/api/events", status=503))
    assert is_transient(LockHeldError("held"))
    assert not is_transient(TooManyRejectsError("x"))
    assert not is_transient(InputError("x"))
    assert not is_transient(ValueError("x"))


def test_a_state_url_with_a_password_is_refused_as_a_task_parameter() -> None:
    assert check_parameter_state("postgresql://k@db/kraiter") == "postgresql://k@db/kraiter"
    assert check_parameter_state(None) is None
    with pytest.raises(UsageError) as refused:
        check_parameter_state("postgresql://k:hunter2@db/kraiter")
    assert "hunter2" not in str(refused.value)
    assert "PGPASSWORD" in str(refused.value)


def test_frame_source_adds_provenance_and_refuses_its_reserved_names() -> None:
    source = FrameSource(pl.DataFrame({"a": [1, 2, 3]}), display="dlt:t@1", first_row=10)
    (first, second) = source.iter_chunks(chunk_size=2)
    assert first["source_row"].to_list() == [11, 12]
    assert second["source_row"].to_list() == [13]
    assert set(first["source_file"]) == {"dlt:t@1"}
    assert source.schema.names() == ["a", "source_file", "source_row"]
    with pytest.raises(InputError, match="'source_row' is reserved"):
        FrameSource(pl.DataFrame({"source_row": [1]}), display="x")
