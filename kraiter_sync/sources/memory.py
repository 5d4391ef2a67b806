"""Rows already in memory as an input: a polars DataFrame or an Arrow table / record batch.

``FrameSource(frame, display="dlt:events")`` is a :class:`kraiter_sync.inputs.ChunkSource`:
the integrations hand the rows a pipeline gives them (a dlt load batch) to ``import_``
without writing a file. ``source_file`` is ``display``; ``source_row`` counts from
``first_row + 1`` (the row's position in what the caller read), so the rejects file
points at the row as the caller knows it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import polars as pl

from kraiter_sync.errors import InputError
from kraiter_sync.frames import SOURCE_FILE, SOURCE_ROW
from kraiter_sync.sources.formats import DEFAULT_CHUNK_SIZE

__all__ = ["FrameSource"]


class FrameSource:
    """An in-memory frame read in chunks, with the provenance columns added."""

    def __init__(self, data: Any, *, display: str, first_row: int = 0) -> None:
        if isinstance(data, pl.DataFrame):
            frame = data
        else:  # an Arrow table or record batch (what dlt, DuckDB or ADBC hand over)
            converted = pl.from_arrow(data)
            if not isinstance(converted, pl.DataFrame):
                msg = f"{display}: expected a table of rows, got a single column"
                raise InputError(msg)
            frame = converted
        for name in (SOURCE_FILE, SOURCE_ROW):
            if name in frame.columns:
                msg = f"{display}: the column name {name!r} is reserved; rename that column"
                raise InputError(msg)
        self.frame = frame
        self.display = display
        self.first_row = first_row

    @property
    def schema(self) -> pl.Schema:
        return pl.Schema(
            [*self.frame.schema.items(), (SOURCE_FILE, pl.String()), (SOURCE_ROW, pl.Int64())]
        )

    def iter_chunks(self, *, chunk_size: int | None = None) -> Iterator[pl.DataFrame]:
        size = chunk_size or DEFAULT_CHUNK_SIZE
        for offset in range(0, self.frame.height, size):
            chunk = self.frame.slice(offset, size)
            first = self.first_row + offset + 1
            yield chunk.with_columns(
                pl.lit(self.display, dtype=pl.String).alias(SOURCE_FILE),
                pl.int_range(first, first + chunk.height, dtype=pl.Int64).alias(SOURCE_ROW),
            )

    def close(self) -> None:
        """Nothing to release: the frame belongs to the caller."""

    def __str__(self) -> str:
        return self.display
