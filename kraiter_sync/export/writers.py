"""Writing a stream's files: Parquet, CSV or NDJSON, one file at a time, as a stream.

:class:`FileWriter` writes one output file from Arrow tables as they come (Parquet row
groups, CSV or NDJSON lines), so a file of any size is written with the memory of one
row group. Every file is written in a hidden staging directory and only moved into the
stream's folder once the state journal records it (``folder``), so a reader never sees
a half-written file.

CSV cells that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab,
CR) get a leading apostrophe (OWASP CSV-injection guidance, ``csvsafe``) unless
``raw_csv``. CSV and NDJSON write timestamps as the API's ISO 8601 ``…sssZ`` text.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Literal

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from kraiter_sync.files import neutralise_frame

__all__ = [
    "EXTENSIONS",
    "FORMATS",
    "NULL_PARTITION",
    "ROW_GROUP_ROWS",
    "FileWriter",
    "Format",
    "concat_frames",
    "conform",
    "empty_frame",
    "prepare_text_frame",
    "sync_files",
]

Format = Literal["parquet", "csv", "ndjson"]
FORMATS: tuple[Format, ...] = ("parquet", "csv", "ndjson")
EXTENSIONS: Mapping[Format, str] = {"parquet": "parquet", "csv": "csv", "ndjson": "ndjson"}
ISO_MS = "%Y-%m-%dT%H:%M:%S%.3fZ"
#: The directory name for rows whose partition time is null (Hive's convention).
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
#: Rows per Parquet row group (at most; a small partition is one smaller group).
ROW_GROUP_ROWS = 131_072


def empty_frame(schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=dict(schema))


def prepare_text_frame(frame: pl.DataFrame, *, neutralise: bool) -> pl.DataFrame:
    """CSV / NDJSON: timestamps as the API's ISO 8601 ``…sssZ`` strings."""
    out = frame.with_columns(
        pl.col(name).dt.strftime(ISO_MS).alias(name)
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.Datetime)
    )
    return neutralise_frame(out) if neutralise else out


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns, in order (missing ones all null): the
    flattened property columns of one chunk need not be those of another."""
    if table.schema.remove_metadata().equals(schema):
        return table
    names = set(table.schema.names)
    columns = [
        (
            table.column(f.name).cast(f.type)
            if f.name in names and table.schema.field(f.name).type != f.type
            else table.column(f.name)
            if f.name in names
            else pa.nulls(len(table), f.type)
        )
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


class FileWriter:
    """One output file, written from Arrow tables as they come; :meth:`close` syncs it
    to disk and returns (rows, bytes)."""

    def __init__(self, path: Path, fmt: Format, schema: pa.Schema, *, raw_csv: bool) -> None:
        self.path = path
        self.fmt = fmt
        self.schema = schema
        self.raw_csv = raw_csv
        self.rows = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] = path.open("wb")
        self._parquet: pq.ParquetWriter | None = None
        if fmt == "parquet":
            self._parquet = pq.ParquetWriter(
                self._fh, schema, compression="zstd", write_statistics=True
            )
        self._header = fmt == "csv"

    def write(self, table: pa.Table) -> None:
        table = conform(table, self.schema)
        self.rows += table.num_rows
        if self._parquet is not None:
            if table.num_rows:
                self._parquet.write_table(table, row_group_size=ROW_GROUP_ROWS)
            return
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)  # noqa: S101 - from_arrow of a Table
        if self.fmt == "csv":
            text = prepare_text_frame(frame, neutralise=not self.raw_csv)
            if text.height or self._header:
                text.write_csv(self._fh, include_header=self._header)
            self._header = False
        elif frame.height:
            prepare_text_frame(frame, neutralise=False).write_ndjson(self._fh)

    def close(self, *, sync: bool = True) -> tuple[int, int]:
        """Finish the file; ``sync=False`` leaves the fsync to the caller (``sync_files``
        syncs many files at once)."""
        if self._header:  # a CSV with no rows still carries its header
            self.write(self.schema.empty_table())
        if self._parquet is not None:
            self._parquet.close()
        self._fh.flush()
        if sync:
            os.fsync(self._fh.fileno())
        self._fh.close()
        return self.rows, self.path.stat().st_size

    def discard(self) -> None:
        """Close after a failure; the caller removes the file."""
        try:
            if self._parquet is not None:
                self._parquet.close()
        finally:
            self._fh.close()


def _sync_one(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_files(paths: Sequence[Path], *, threads: int = 16) -> None:
    """fsync ``paths``, several at once: a run that touched hundreds of partitions waits
    for the disk once, not once per file (84 files: 0.74 s one by one on a shared disk)."""
    if len(paths) <= 1:
        for path in paths:
            _sync_one(path)
        return
    with ThreadPoolExecutor(max_workers=min(threads, len(paths))) as pool:
        list(pool.map(_sync_one, paths))


def concat_frames(frames: list[pl.DataFrame], schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """One frame of a stream's chunks (an empty frame of ``schema`` when there are none)."""
    if not frames:
        return empty_frame(schema)
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
