"""CSV records with more or fewer fields than the header, found per block.

polars refuses a whole block for one record with too many fields and fills a record
with too few with nulls, silently. A block that may hold either (polars refused it, or
its last column has nulls: a short record leaves it null) is read again with the
standard library's ``csv`` reader, only to count each record's fields; a record whose
count differs from the header's becomes a row of nulls with its problem
(``frames.SOURCE_PROBLEM``, rule ``row.ragged``), and the other rows keep exactly the
values polars read (their event keys do not depend on a neighbour). A blank line is
no record of fields (it stays the row of nulls polars reads) and is not ragged.
"""

from __future__ import annotations

import contextlib
import csv
import io
import sys
from collections.abc import Iterator

import polars as pl

from kraiter_sync.frames import SOURCE_PROBLEM, problem_column

__all__ = ["mark_ragged", "may_be_ragged"]


def may_be_ragged(frame: pl.DataFrame) -> bool:
    """Whether a block polars read may hold a record with too few fields."""
    return frame.width > 1 and frame[frame.columns[-1]].null_count() > 0


@contextlib.contextmanager
def _no_field_limit() -> Iterator[None]:
    """The ``csv`` module refuses fields over 128 KiB by default; counting needs none."""
    old = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _ragged_records(
    data: bytes, separator: str, width: int
) -> tuple[int, dict[int, tuple[int, int]]]:
    """How many records follow the header in ``data`` (a header line, then records), and
    the ragged ones: record index → (line within ``data``, fields)."""
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="replace", newline="")
    found: dict[int, tuple[int, int]] = {}
    count = 0
    with _no_field_limit():
        reader = csv.reader(text, delimiter=separator)
        next(reader, None)
        line = reader.line_num
        for count, row in enumerate(reader, start=1):
            if row and len(row) != width:
                found[count - 1] = (line + 1, len(row))
            line = reader.line_num
    return count, found


def mark_ragged(
    frame: pl.DataFrame,
    data: bytes,
    separator: str,
    lines_before: int,
    refused: Exception | None = None,
) -> pl.DataFrame:
    """``frame`` (polars' reading of ``data``, ragged records truncated or padded) with
    each ragged record's values nulled and its problem added. ``lines_before``: the lines
    of the file before ``data``'s first record, the header not counted (``data`` starts
    with the header). When the
    ``csv`` reader and polars do not agree on the records, ``refused`` is raised (or the
    frame returned as polars read it)."""
    if SOURCE_PROBLEM in frame.columns:  # (a column of that name is refused later)
        return frame
    count, ragged = _ragged_records(data, separator, frame.width)
    if count != frame.height:
        if refused is not None:
            raise refused
        return frame
    if not ragged:
        return frame
    problems = {
        index: (
            "row.ragged",
            f"line {lines_before + line} has {fields} field{'s' * (fields != 1)} but the header "
            f"has {frame.width}; "
            "fix or quote that line (a delimiter inside a value needs quotes)",
        )
        for index, (line, fields) in ragged.items()
    }
    bad = pl.Series([False] * frame.height)
    bad[list(problems)] = True
    blanked = frame.select(
        pl.when(~pl.lit(bad)).then(pl.col(name)).alias(name) for name in frame.columns
    )
    return blanked.with_columns(problem_column(frame.height, problems))
