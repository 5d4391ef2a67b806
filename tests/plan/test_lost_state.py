"""The lost-state sample and when a ledger must prove itself (pure parts, real SQLite)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from kraiter_sync.plan.lost_state import (
    CHECKED_STREAM,
    REBUILD_STREAM,
    SAMPLE_HEAD,
    SAMPLE_SPREAD,
    needs_check,
    read_sample,
    record_checked,
    sample_positions,
)
from kraiter_sync.state.ledger import Ledger

T = "http://127.0.0.1:1#abc123"


@given(total=st.integers(0, 5_000_000), seed=st.integers(0, 2**32))
def test_the_sample_takes_the_head_and_one_row_of_each_slice(total: int, seed: int) -> None:
    picks = sample_positions(total, rng=random.Random(seed))
    size = SAMPLE_HEAD + SAMPLE_SPREAD
    if total <= size:
        assert picks == list(range(total))
        return
    assert len(picks) == len(set(picks)) == size
    assert picks[:SAMPLE_HEAD] == list(range(SAMPLE_HEAD))
    rest = total - SAMPLE_HEAD
    for i, pick in enumerate(picks[SAMPLE_HEAD:]):
        # slice i of the rest: [head + rest*i/spread, head + rest*(i+1)/spread)
        assert SAMPLE_HEAD + rest * i // SAMPLE_SPREAD <= pick
        assert pick < SAMPLE_HEAD + rest * (i + 1) // SAMPLE_SPREAD


def test_a_stretch_of_two_slices_is_always_sampled() -> None:
    """Any run of sent events longer than two slices (5% of the input) holds a whole
    slice, so one of its rows is sampled whatever the draw."""
    total = 10_000
    stretch = 2 * (total - SAMPLE_HEAD) // SAMPLE_SPREAD + 1
    rng = random.Random(1)
    for start in range(SAMPLE_HEAD, total - stretch, 97):
        picks = sample_positions(total, rng=rng)
        assert any(start <= p < start + stretch for p in picks), start


def test_the_sample_is_read_from_every_part_of_the_spool(tmp_path: Path) -> None:
    heights = [3, 0, 5, 2]
    parts, n = [], 0
    for i, height in enumerate(heights):
        path = tmp_path / f"part-{i}.parquet"
        pl.DataFrame({"row": list(range(n, n + height))}, schema={"row": pl.Int64}).write_parquet(
            path
        )
        parts.append(path)
        n += height
    assert read_sample(parts, heights, [9, 0, 4, 2, 8])["row"].to_list() == [0, 2, 4, 8, 9]
    assert read_sample(parts, heights, []).height == 0


def test_when_a_ledger_must_prove_it_knows_the_target(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        assert needs_check(ledger, T) == "empty"
        ledger.mark_done("another target", [("k", "evt_1")])
        assert needs_check(ledger, T) == "empty"

        ledger.mark_done(T, [("k1", "evt_1")])
        assert needs_check(ledger, T, record=False) is None
        assert ledger.get_watermark(T, CHECKED_STREAM) is None
        assert needs_check(ledger, T) is None  # recorded: the count is not taken again
        assert json.loads(ledger.get_watermark(T, CHECKED_STREAM) or "")["how"] == "held-events"

        record_checked(ledger, T, "adopt", complete=False)
        assert needs_check(ledger, T) == "unfinished adopt"
        record_checked(ledger, T, "adopt")
        assert needs_check(ledger, T) is None

        ledger.set_watermark(T, REBUILD_STREAM, json.dumps({"cursor": "c", "complete": False}))
        assert needs_check(ledger, T) == "unfinished rebuild"
        ledger.set_watermark(T, REBUILD_STREAM, json.dumps({"cursor": "c", "complete": True}))
        assert needs_check(ledger, T) is None
