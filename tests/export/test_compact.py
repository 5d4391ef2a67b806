"""``export compact``: many runs' small files become one per partition, rows unchanged,
and a compaction killed at any point is finished or undone by the next run."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kraiter_sync.errors import StateError
from kraiter_sync.export import compaction as compact_module
from kraiter_sync.export.run import compact_output
from tests.export.test_resume import Killed, _assert_exact, _run, _with_client
from tests.helpers.exports import add_events, new_app, read_output, seed


def _parts(folder: Path) -> dict[str, int]:
    """Partition directory → files in it."""
    counts: dict[str, int] = {}
    for path in folder.rglob("part-*"):
        key = path.parent.relative_to(folder).as_posix()
        counts[key] = counts.get(key, 0) + 1
    return counts


def _many_runs(tmp_path: Path, fmt: str, runs: int = 4) -> Any:
    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=30)))
    asyncio.run(_run(app, tmp_path, "events", format=fmt))
    for i in range(1, runs):
        asyncio.run(_with_client(app, lambda c, i=i: add_events(c, 9, start=1000 * i)))
        asyncio.run(_run(app, tmp_path, "events", format=fmt))
    return app


def _compact(tmp_path: Path) -> Any:
    return compact_output(tmp_path / "out", state_dir=tmp_path / "state", target="test")


@pytest.mark.parametrize("fmt", ["parquet", "csv", "ndjson"])
def test_compact_leaves_one_file_per_partition_with_the_same_rows(tmp_path: Path, fmt: str) -> None:
    app = _many_runs(tmp_path, fmt)
    folder = tmp_path / "out" / "events"
    before = read_output(folder, fmt)
    parts = _parts(folder)
    assert max(parts.values()) == 4  # one file per partition per run
    (result,) = _compact(tmp_path)
    assert result.files_before == sum(parts.values())
    assert set(_parts(folder).values()) == {1}
    assert result.files_after == len(parts)
    assert result.partitions == sum(1 for n in parts.values() if n > 1)
    rewritten = sum(read_output(folder / d, fmt).height for d, n in parts.items() if n > 1)
    assert result.rows == rewritten > 0
    after = read_output(folder, fmt)
    assert after.sort("id").equals(before.sort("id"))
    # the manifest matches the folder: the next run appends, it does not start over
    asyncio.run(_with_client(app, lambda c: add_events(c, 2, start=9000)))
    nxt = asyncio.run(_run(app, tmp_path, "events", format=fmt))
    assert (nxt.mode, nxt.rows, nxt.reason) == ("incremental", 2, None)
    _assert_exact(tmp_path, app, "events", fmt)
    app.close()


def test_compact_never_touches_files_kraiter_sync_did_not_write(tmp_path: Path) -> None:
    app = _many_runs(tmp_path, "parquet", runs=2)
    mine = tmp_path / "out" / "events" / "date=2025-03-01" / "notes.txt"
    mine.write_text("mine")
    _compact(tmp_path)
    assert mine.read_text() == "mine"
    _assert_exact(tmp_path, app, "events")
    app.close()


@pytest.mark.parametrize("where", ["before_swap", "after_swap"])
def test_a_killed_compaction_is_finished_or_undone_by_the_next_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    app = _many_runs(tmp_path, "parquet", runs=3)
    folder = tmp_path / "out" / "events"
    before = read_output(folder, "parquet")
    real = compact_module._exchange

    def dying(a: Path, b: Path) -> bool:
        if where == "after_swap":
            real(a, b)
        raise Killed

    monkeypatch.setattr(compact_module, "_exchange", dying)
    with pytest.raises(Killed):
        _compact(tmp_path)
    monkeypatch.setattr(compact_module, "_exchange", real)
    again = asyncio.run(_run(app, tmp_path, "events"))
    assert again.reason is None  # the state matched the folder once recovered
    assert read_output(folder, "parquet").sort("id").equals(before.sort("id"))
    assert not list((tmp_path / "out").glob(".events.*"))
    _assert_exact(tmp_path, app, "events")
    app.close()


def test_compact_without_a_recorded_export_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="nothing to compact"):
        _compact(tmp_path)
