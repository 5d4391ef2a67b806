"""sync's source-row cache: which rows ChangedRows passes on (pure polars, no I/O)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl

from kraiter_sync.config.file import parse_sync_config
from kraiter_sync.state.rowcache import KnownRows, RowCache
from kraiter_sync.sync.changes import ChangedRows


class Chunks:
    """A chunk source over fixed frames (what ChangedRows wraps)."""

    def __init__(self, *frames: pl.DataFrame) -> None:
        self.frames = frames
        self.chunk_size = 1_000

    def iter_chunks(self, *, chunk_size: int | None = None) -> Iterator[pl.DataFrame]:
        yield from self.frames


def rows(file: str, emails: list[str], first: int = 1) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "email": emails,
            "source_file": [file] * len(emails),
            "source_row": list(range(first, first + len(emails))),
        }
    )


def last_night(*frames: pl.DataFrame) -> KnownRows:
    seen = ChangedRows(Chunks(*frames), None)  # type: ignore[arg-type]
    assert sum(f.height for f in seen.iter_chunks()) == sum(f.height for f in frames)
    return KnownRows.from_rows(seen.rows())


def passed(known: KnownRows, *frames: pl.DataFrame) -> tuple[list[str], ChangedRows]:
    changed = ChangedRows(Chunks(*frames), known)  # type: ignore[arg-type]
    out = [e for f in changed.iter_chunks() for e in f["email"]]
    return out, changed


def test_only_changed_and_appended_rows_pass_and_the_rest_count_in_place() -> None:
    emails = [f"u{i}@x.io" for i in range(10)]
    known = last_night(rows("a.csv", emails))
    same, changed = passed(known, rows("a.csv", emails))
    assert same == []
    assert changed.same_as_before
    edited = [*emails[:3], "edited@x.io", *emails[4:], "new1@x.io", "new2@x.io"]
    out, changed = passed(known, rows("a.csv", edited))
    assert out == ["edited@x.io", "new1@x.io", "new2@x.io"]
    assert (changed.skipped, changed.in_place) == (9, 9)
    assert not changed.same_as_before


def test_a_gap_in_last_nights_rows_is_a_changed_row() -> None:
    """Rows 1-3 and 6-8 last night (e.g. 4 and 5 rejected): 4 and 5 pass tonight."""
    emails = [f"u{i}@x.io" for i in range(8)]
    full = rows("a.csv", emails)
    known = last_night(full.filter(~pl.col("source_row").is_in([4, 5])))
    out, _ = passed(known, full)
    assert out == ["u3@x.io", "u4@x.io"]


def test_moved_rows_are_found_by_content_and_other_files_by_their_own_rows() -> None:
    emails = [f"u{i}@x.io" for i in range(300)]
    known = last_night(rows("a.csv", emails), rows("b.csv", ["b1@x.io", "b2@x.io"]))
    reordered = rows("a.csv", ["top@x.io", *reversed(emails)])
    out, changed = passed(known, reordered, rows("b.csv", ["b1@x.io", "b2-edited@x.io"]))
    assert out == ["top@x.io", "b2-edited@x.io"]
    assert changed.skipped == 301


def test_the_row_cache_file_round_trips_gaps_and_files_and_ignores_damage(
    tmp_path: Path,
) -> None:
    job = parse_sync_config(
        '[jobs.c]\nsource = "*.csv"\nkind = "contacts"\n', tmp_path / "kraiter-sync.toml"
    ).jobs[0]
    cache = RowCache(tmp_path / "state", job, "target")
    assert cache.load() is None  # none yet
    a = rows("a.csv", [f"a{i}@x.io" for i in range(6)])
    b = rows("b.csv", ["b1@x.io", "b2@x.io"])
    seen = ChangedRows(Chunks(b, a), None)  # type: ignore[arg-type]
    list(seen.iter_chunks())
    rejected = pl.DataFrame({"source_file": ["a.csv"], "source_row": [3]})
    cache.save(seen.rows(excluding=rejected))
    known = cache.load()
    assert known is not None
    assert known.rows == 7
    assert set(known.by_file) == {"a.csv", "b.csv"}
    assert known.by_file["a.csv"].null_count() == 1  # row 3: passed on again tonight
    out, changed = passed(known, a, b)
    assert out == ["a2@x.io"]
    assert changed.in_place == 7
    cache.store.write_blob(cache.name, b"not parquet")
    assert cache.load() is None
