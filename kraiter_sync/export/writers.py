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

from kraiter_sync.csvsafe import neutralise_frame

__all__ = [
    "FORMATS",
    "Format",
    "PendingFile",
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
    ``date=YYYY-MM-DD/`` directories (the column stays in the file too). An empty frame
    writes nothing unless ``write_empty`` (a snapshot keeps its schema on disk).
    """
    ext = EXTENSIONS[fmt]
    groups: list[tuple[Path, pl.DataFrame]]
    if frame.height == 0:
        if not write_empty or partition is not None:
            return []
        groups = [(directory, frame)]
    elif partition is None:
        groups = [(directory, frame)]
    else:
        keyed = frame.with_columns(
            pl.col(partition).dt.strftime("%Y-%m-%d").fill_null("unknown").alias("__date")
        )
        groups = [
            (directory / f"date={key[0]}", part.drop("__date"))
            for key, part in sorted(
                keyed.partition_by("__date", as_dict=True, maintain_order=True).items(),
                key=lambda kv: str(kv[0][0]),
            )
        ]
    pending: list[PendingFile] = []
    for folder, part in groups:
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"part-{stem}.{ext}"
        tmp = folder / f"{TMP_PREFIX}{stem}.{ext}{TMP_SUFFIX}"
        _write(part, tmp, fmt, raw_csv=raw_csv)
        pending.append(PendingFile(tmp, final, part.height))
    return pending
