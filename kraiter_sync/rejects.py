"""The rejects file: every rejected row with its rule, written incrementally chunk by chunk.

The format follows the extension: ``.csv`` (spreadsheet formulas neutralised),
``.parquet`` or ``.ndjson``/``.jsonl``. Memory stays at one chunk whatever the input size.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import IO, Any

import polars as pl
import pyarrow.parquet as pq

from kraiter_sync.csvsafe import neutralise_frame
from kraiter_sync.errors import InputError

__all__ = ["RejectsWriter"]

_FORMATS = {".csv": "csv", ".parquet": "parquet", ".ndjson": "ndjson", ".jsonl": "ndjson"}


class RejectsWriter:
    """Append rejects frames to one file; use as a context manager."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        fmt = _FORMATS.get(self.path.suffix.lower())
        if fmt is None:
            msg = f"rejects file {self.path} must end in .csv, .parquet or .ndjson"
            raise InputError(msg)
        self.format = fmt
        self.rows = 0
        self._file: IO[bytes] | None = None
        self._parquet: Any = None
        self._header_written = False

    def write(self, rejects: pl.DataFrame) -> None:
        """Append one chunk of rejects (any height, including 0)."""
        if self.format == "parquet":
            table = rejects.to_arrow()
            if self._parquet is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._parquet = pq.ParquetWriter(str(self.path), table.schema)
            self._parquet.write_table(table)
        else:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("wb")
            if self.format == "csv":
                safe = neutralise_frame(rejects)
                safe.write_csv(self._file, include_header=not self._header_written)
                self._header_written = True
            elif rejects.height:
                rejects.write_ndjson(self._file)
        self.rows += rejects.height

    def close(self) -> None:
        """Flush and close; an input without rejects still leaves a valid (empty) file."""
        if self._parquet is None and self._file is None:
            from kraiter_sync.validate.engine import REJECT_SCHEMA

            self.write(pl.DataFrame(schema=REJECT_SCHEMA))
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> RejectsWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
