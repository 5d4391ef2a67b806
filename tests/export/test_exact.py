"""Resume is exact: interrupted at random points, the output deleted or damaged, a re-run
holds exactly the rows of a clean full export."""

from __future__ import annotations

import asyncio
import random
import shutil
from pathlib import Path

import polars as pl
import pytest

from kraiter_sync.emulator import EmulatorApp
from kraiter_sync.export import ExportResult
from tests.export.test_resume import Failing, Killed, _run, _with_client
from tests.helpers.exports import add_events, new_app, read_output, seed

DAMAGE = ["out", "folder", "one_file", "truncated", "checkpoints", "none"]


def _damage(out: Path, stream: str, how: str, rng: random.Random) -> None:
    folder = out / stream
    files = sorted(folder.rglob("part-*")) if folder.exists() else []
    if how == "out":
        shutil.rmtree(out, ignore_errors=True)
    elif how == "folder":
        shutil.rmtree(folder, ignore_errors=True)
    elif how == "one_file" and files:
        rng.choice(files).unlink()
    elif how == "truncated" and files:
        victim = rng.choice(files)
        victim.write_bytes(victim.read_bytes()[:-7])
    elif how == "checkpoints":
        for staging in out.glob(f".{stream}.run-*"):
            shutil.rmtree(staging)


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort("id").select(sorted(frame.columns))


def _export(app: EmulatorApp, where: Path, stream: str, **kw: object) -> ExportResult:
    return asyncio.run(_run(app, where, stream, chunk_rows=7, page_size=5, **kw))


@pytest.mark.parametrize("stream", ["events", "timelines"])
@pytest.mark.parametrize("damage", DAMAGE)
def test_killed_then_damaged_output_is_exported_again_exactly(
    tmp_path: Path, stream: str, damage: str
) -> None:
    rng = random.Random(f"{stream}-{damage}")  # random points, reproducible
    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=60)))
    _export(app, tmp_path, stream)  # a complete first export
    asyncio.run(_with_client(app, lambda c: add_events(c, 45, start=2000)))
    kill_at = rng.randint(1, 8)
    with pytest.raises(Killed):
        _export(app, tmp_path, stream, wrap=lambda t: Failing(t, kill_at))
    _damage(tmp_path / "out", stream, damage, rng)
    again = _export(app, tmp_path, stream)
    if damage in ("out", "folder", "one_file", "truncated"):
        assert again.mode == "full"
        assert again.reason is not None
        assert "again in full" in again.reason
    clean = _export(app, tmp_path / "clean", stream)
    got = read_output(tmp_path / "out" / stream, "parquet")
    expected = read_output(tmp_path / "clean" / "out" / stream, "parquet")
    assert got.height == clean.rows_total == again.rows_total
    assert _sorted(got).equals(_sorted(expected))
    app.close()
