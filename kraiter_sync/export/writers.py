"""Writing one chunk of a stream as files: Parquet, CSV or NDJSON, hive-partitioned by date.

Every file is first written under a hidden temporary name (``.part-….tmp``, which
DuckDB, polars and Spark all skip) and only renamed to its final name once the state
journal records it (see ``runner``), so a reader never sees a half-written file and a
killed run never leaves one that a later run would write again.

CSV cells that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab,
CR) get a leading apostrophe (OWASP CSV-injection guidance, ``csvsafe``) unless
``raw_csv``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl

from kraiter_sync.files import neutralise_frame

__all__ = [
    "FORMATS",
    "Format",
    "PendingFile",
    "concat_frames",
    "empty_frame",
    "prepare_text_frame",
    "write_chunk",
]

Format = Literal["parquet", "csv", "ndjson"]
FORMATS: tuple[Format, ...] = ("parquet", "csv", "ndjson")
EXTENSIONS: Mapping[Format, str] = {"parquet": "parquet", "csv": "csv", "ndjson": "ndjson"}
TMP_PREFIX = ".part-"
TMP_SUFFIX = ".tmp"
ISO_MS = "%Y-%m-%dT%H:%M:%S%.3fZ"


@dataclass(frozen=True)
class PendingFile:
    """A file written under its temporary name, waiting to be renamed to ``final``."""

    tmp: Path
    final: Path
    rows: int


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


def _write(frame: pl.DataFrame, path: Path, fmt: Format, *, raw_csv: bool) -> None:
    if fmt == "parquet":
        frame.write_parquet(path, compression="zstd", statistics=True)
    elif fmt == "csv":
        prepare_text_frame(frame, neutralise=not raw_csv).write_csv(path)
    else:
        prepare_text_frame(frame, neutralise=False).write_ndjson(path)


#: The directory name for rows whose partition time is null (Hive's convention).
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
_KEY = "__date"


def write_chunk(
    frame: pl.DataFrame,
    directory: Path,
    *,
    fmt: Format,
    stem: str,
    partition: str | None = None,
    raw_csv: bool = False,
    write_empty: bool = False,
) -> list[PendingFile]:
    """Write ``frame`` under temporary names in ``directory``; returns what to rename.

    With ``partition`` the rows are split by the UTC date of that column into
    ``date=YYYY-MM-DD/`` directories (the date itself is only in the directory name,
    as Hive readers expect). An empty frame writes nothing unless ``write_empty`` (a
    snapshot keeps its schema on disk).
    """
    ext = EXTENSIONS[fmt]
    if frame.height == 0 and (not write_empty or partition is not None):
        return []
    if partition is not None:
        return _write_partitioned(
            frame, directory, fmt=fmt, stem=stem, partition=partition, raw_csv=raw_csv
        )
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"part-{stem}.{ext}"
    tmp = directory / f"{TMP_PREFIX}{stem}.{ext}{TMP_SUFFIX}"
    _write(frame, tmp, fmt, raw_csv=raw_csv)
    return [PendingFile(tmp, final, frame.height)]


def _write_partitioned(
    frame: pl.DataFrame, directory: Path, *, fmt: Format, stem: str, partition: str, raw_csv: bool
) -> list[PendingFile]:
    """One file per date, all written by one polars partitioned sink (multithreaded)."""
    ext = EXTENSIONS[fmt]
    name = f"{TMP_PREFIX}{stem}.{ext}{TMP_SUFFIX}"
    keyed = frame.with_columns(
        pl.col(partition).dt.strftime("%Y-%m-%d").fill_null(NULL_PARTITION).alias(_KEY)
    )
    counts = keyed.group_by(_KEY).len().sort(_KEY).rows()
    if fmt != "parquet":
        keyed = prepare_text_frame(keyed, neutralise=fmt == "csv" and not raw_csv)
    target = pl.PartitionBy(
        directory,
        key=_KEY,
        include_key=False,
        file_path_provider=lambda args: f"date={args.partition_keys[_KEY][0]}/{name}",
    )
    lazy = keyed.lazy()
    if fmt == "parquet":
        lazy.sink_parquet(target, compression="zstd", statistics=True, mkdir=True)
    elif fmt == "csv":
        lazy.sink_csv(target, mkdir=True)
    else:
        lazy.sink_ndjson(target, mkdir=True)
    return [
        PendingFile(
            directory / f"date={day}" / name, directory / f"date={day}" / f"part-{stem}.{ext}", rows
        )
        for day, rows in counts
    ]


def concat_frames(frames: list[pl.DataFrame], schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """One frame of a stream's chunks (an empty frame of ``schema`` when there are none)."""
    if not frames:
        return empty_frame(schema)
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
