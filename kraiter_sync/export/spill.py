"""Checkpoints of a run, and the files built from them: one file per partition per run.

A run reads its stream in chunks. Each chunk is a *checkpoint*: an Arrow IPC file
(lz4) in the run's hidden staging directory, its rows sorted by partition (stably, so
each partition keeps the feed's order) and written as one record batch per partition,
with the partition → batches index in the file's schema metadata. Checkpoints are
written under a temporary name, synced, then renamed; the state records each one with
its position, so a killed run resumes from its last checkpoint.

When the run has read everything, :func:`build_files` writes the output: one file per
partition (``date=YYYY-MM-DD/part-<run>-00000.parquet``, or ``part-<run>-00000.parquet``
for a stream without partitions), however many checkpoints and partitions the run had.
Partitions are built in groups of at most :data:`MAX_OPEN` open writers; each reads
only its own record batches from every checkpoint, and buffers are flushed as Parquet
row groups past :data:`ROW_GROUP_ROWS` rows or :data:`BUFFER_BYTES` in all, so memory
stays flat whatever the number of partitions or rows.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from kraiter_sync.export.writers import (
    EXTENSIONS,
    NULL_PARTITION,
    ROW_GROUP_ROWS,
    FileWriter,
    Format,
    conform,
    sync_files,
)

__all__ = [
    "BUFFER_BYTES",
    "MAX_OPEN",
    "build_files",
    "chunk_index",
    "part_name",
    "partition_dir",
    "spill_chunk",
]

_INDEX_KEY = b"kraiter-sync.partitions"
_KEY = "__partition"
#: Output files open at once while building (one per partition of a group).
MAX_OPEN = 128
#: Rows buffered in all while building, in bytes, before the largest buffer is written.
BUFFER_BYTES = 64 * 1024 * 1024


def partition_dir(key: str) -> str:
    """The directory of a partition key (``""``: the stream's folder itself)."""
    return f"date={key}" if key else ""


def part_name(stem: str, fmt: Format, index: int = 0) -> str:
    """A file as kraiter-sync names it: ``part-<run id>-<index>.<format>``."""
    return f"part-{stem}-{index:05d}.{EXTENSIONS[fmt]}"


def _keys(frame: pl.DataFrame, partition: str | None) -> pl.Expr:
    if partition is None:
        return pl.lit("").alias(_KEY)
    return pl.col(partition).dt.strftime("%Y-%m-%d").fill_null(NULL_PARTITION).alias(_KEY)


def _sync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system syncs directories
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def spill_chunk(frame: pl.DataFrame, path: Path, *, partition: str | None) -> dict[str, Any]:
    """Write one checkpoint (see the module docstring); returns its manifest entry
    ``{"name", "rows", "bytes"}``. Durable when it returns."""
    keyed = frame.with_columns(_keys(frame, partition)).sort(_KEY, maintain_order=True)
    counts = keyed.group_by(_KEY, maintain_order=True).len().rows()
    table = keyed.drop(_KEY).to_arrow()
    slices: list[pa.RecordBatch] = []
    index: dict[str, list[int]] = {}
    offset = 0
    for key, rows in counts:
        batches = table.slice(offset, rows).combine_chunks().to_batches()
        index[key] = [len(slices), len(slices) + len(batches), rows]
        slices.extend(batches)
        offset += rows
    schema = table.schema.with_metadata({_INDEX_KEY: json.dumps(index).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    with tmp.open("wb") as fh:
        with pa.ipc.new_file(fh, schema, options=options) as writer:
            for batch in slices:
                writer.write_batch(batch)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    _sync_dir(path.parent)
    return {"name": path.name, "rows": frame.height, "bytes": path.stat().st_size}


def chunk_index(path: Path) -> tuple[pa.Schema, dict[str, list[int]]]:
    """A checkpoint's schema (without the index) and its partition → [first batch, end
    batch, rows] index."""
    with pa.OSFile(str(path)) as src:
        schema = pa.ipc.open_file(src).schema
    raw = (schema.metadata or {}).get(_INDEX_KEY, b"{}")
    index: dict[str, list[int]] = json.loads(raw)
    return schema.remove_metadata(), index


def _union(schemas: Iterable[pa.Schema]) -> pa.Schema:
    fields: dict[str, pa.Field] = {}
    for schema in schemas:
        for f in schema:
            fields.setdefault(f.name, f)
    return pa.schema(list(fields.values()))


class _Group:
    """The open writers and buffers of one group of partitions."""

    def __init__(
        self, dest: Path, fmt: Format, stem: str, schema: pa.Schema, *, raw_csv: bool
    ) -> None:
        self.dest, self.fmt, self.stem, self.schema, self.raw_csv = dest, fmt, stem, schema, raw_csv
        self.writers: dict[str, FileWriter] = {}
        self.buffers: dict[str, list[pa.RecordBatch]] = {}
        self.rows: dict[str, int] = {}
        self.nbytes: dict[str, int] = {}

    def rel(self, key: str) -> str:
        directory = partition_dir(key)
        name = part_name(self.stem, self.fmt)
        return f"{directory}/{name}" if directory else name

    def add(self, key: str, batch: pa.RecordBatch) -> None:
        self.buffers.setdefault(key, []).append(batch)
        self.rows[key] = self.rows.get(key, 0) + batch.num_rows
        self.nbytes[key] = self.nbytes.get(key, 0) + batch.nbytes
        if self.rows[key] >= ROW_GROUP_ROWS:
            self.flush(key)
        while sum(self.nbytes.values()) > BUFFER_BYTES:
            self.flush(max(self.nbytes, key=self.nbytes.__getitem__))

    def writer(self, key: str) -> FileWriter:
        if key not in self.writers:
            path = self.dest / self.rel(key)
            self.writers[key] = FileWriter(path, self.fmt, self.schema, raw_csv=self.raw_csv)
        return self.writers[key]

    def flush(self, key: str) -> None:
        batches = self.buffers.pop(key, [])
        self.rows.pop(key, None)
        self.nbytes.pop(key, None)
        if batches:
            tables = [conform(pa.Table.from_batches([b]), self.schema) for b in batches]
            self.writer(key).write(pa.concat_tables(tables))

    def close(self, keys: Iterable[str]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for key in keys:
            self.flush(key)
            rows, size = self.writer(key).close(sync=False)
            out[self.rel(key)] = {"rows": rows, "bytes": size}
        sync_files([self.dest / rel for rel in out])
        self.writers.clear()
        return out

    def discard(self) -> None:
        for writer in self.writers.values():
            with contextlib.suppress(Exception):
                writer.discard()


def build_files(
    chunks: Sequence[Path],
    dest: Path,
    *,
    fmt: Format,
    stem: str,
    raw_csv: bool = False,
    empty_schema: pa.Schema | None = None,
) -> dict[str, dict[str, int]]:
    """Write one file per partition of ``chunks`` under ``dest``; returns the manifest
    entries ``{relative path: {"rows", "bytes"}}``. With no rows at all, one empty file
    with ``empty_schema`` is written when it is given (a snapshot keeps its schema)."""
    indexes: list[dict[str, list[int]]] = []
    schemas: list[pa.Schema] = []
    for path in chunks:
        schema, index = chunk_index(path)
        schemas.append(schema)
        indexes.append(index)
    keys = sorted({key for index in indexes for key, span in index.items() if span[2]})
    if not keys:
        if empty_schema is None:
            return {}
        group = _Group(dest, fmt, stem, _union([empty_schema, *schemas]), raw_csv=raw_csv)
        group.writer("")
        return group.close([""])
    schema = _union(schemas)
    out: dict[str, dict[str, int]] = {}
    for start in range(0, len(keys), MAX_OPEN):
        wanted = keys[start : start + MAX_OPEN]
        group = _Group(dest, fmt, stem, schema, raw_csv=raw_csv)
        try:
            for path, index in zip(chunks, indexes, strict=True):
                present = [k for k in wanted if k in index]
                if not present:
                    continue
                with pa.OSFile(str(path)) as src:
                    reader = pa.ipc.open_file(src)
                    for key in present:
                        first, end, _rows = index[key]
                        for number in range(first, end):
                            group.add(key, reader.get_batch(number))
            out.update(group.close(wanted))
        except BaseException:
            group.discard()
            raise
    return out
