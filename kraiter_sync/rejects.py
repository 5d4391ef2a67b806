"""The rejects file: every rejected row with its rule, written incrementally chunk by chunk.

The format follows the extension: ``.csv`` (spreadsheet formulas neutralised),
``.parquet`` or ``.ndjson``/``.jsonl``. Memory stays at one chunk whatever the input size.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import polars as pl
import pyarrow.parquet as pq

from kraiter_sync.csvsafe import neutralise_frame
from kraiter_sync.errors import InputError, StateError, is_disk_full, os_reason

__all__ = ["RejectsWriter"]

_FORMATS = {".csv": "csv", ".parquet": "parquet", ".ndjson": "ndjson", ".jsonl": "ndjson"}


class RejectsWriter:
    """Append rejects frames to one file; use as a context manager.

    Entering creates the file at once, so a folder that cannot be written stops a run
    before it reads anything; every failure to write (read-only, full disk) is a
    StateError naming the file and what to do.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        fmt = _FORMATS.get(self.path.suffix.lower())
        if fmt is None:
            msg = f"rejects file {self.path} must end in .csv, .parquet or .ndjson"
            raise InputError(msg)
        self.format = fmt
        self.rows = 0
        #: Rows written per rule code (what a run's report lists).
        self.by_rule: dict[str, int] = {}
        self._file: IO[bytes] | None = None
        self._parquet: Any = None
        self._header_written = False

    def _failed(self, exc: BaseException) -> StateError:
        reason = os_reason(exc)
        if is_disk_full(exc):
            hint = "free some space there, or pass --rejects PATH on another disk, and run again"
        else:
            hint = "pass --rejects PATH (or --state-dir) somewhere writable"
        return StateError(f"cannot write the rejects file {self.path}: {reason}; {hint}")

    def open(self) -> None:
        """Create the file now (``__enter__`` does): fail before any row is read."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.format == "parquet":
                self.path.open("wb").close()  # the writer opens it again with the schema
            elif self._file is None:
                self._file = self.path.open("wb")
        except OSError as exc:
            raise self._failed(exc) from exc

    def write(self, rejects: pl.DataFrame) -> None:
        """Append one chunk of rejects (any height, including 0)."""
        try:
            self._write(rejects)
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise self._failed(exc) from exc

    def _write(self, rejects: pl.DataFrame) -> None:
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
        if rejects.height and "rule" in rejects.columns:
            for rule, n in rejects["rule"].fill_null("").value_counts().iter_rows():
                self.by_rule[rule] = self.by_rule.get(rule, 0) + n

    def close(self) -> None:
        """Flush and close; an input without rejects still leaves a valid (empty) file."""
        try:
            try:
                if self._parquet is None and (self._file is None or not self._header_written):
                    from kraiter_sync.validate.engine import REJECT_SCHEMA

                    self._write(pl.DataFrame(schema=REJECT_SCHEMA))
            finally:
                parquet, self._parquet = self._parquet, None
                handle, self._file = self._file, None
                try:
                    if parquet is not None:
                        parquet.close()
                finally:
                    if handle is not None:
                        handle.close()
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise self._failed(exc) from exc

    def __enter__(self) -> RejectsWriter:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        with contextlib.suppress(StateError):  # the run's own failure is the one to report
            self.close()
