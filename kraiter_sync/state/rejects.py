"""The rejects file: every rejected row with its rule, written incrementally chunk by chunk.

The format follows the extension: ``.csv`` (spreadsheet formulas neutralised),
``.parquet`` or ``.ndjson``/``.jsonl``. Memory stays at one chunk whatever the input size.

:func:`reject_row` builds the one row shape for a record Kraiter refused (the validator
builds its rejects as frames); :func:`read_rejects` reads a rejects file back (``retry``).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import polars as pl
import pyarrow.parquet as pq

from kraiter_sync.errors import InputError, StateError, is_disk_full, os_reason
from kraiter_sync.files import neutralise_frame, undo_neutralise_expr
from kraiter_sync.frames import REJECT_SCHEMA

__all__ = [
    "DuplicatesWriter",
    "RejectsWriter",
    "duplicates_path",
    "read_rejects",
    "reject_row",
    "rejects_frame",
    "reuse_identical",
]

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
        self._closed = False

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
        """Flush and close (once; later calls do nothing); an input without rejects still
        leaves a valid (empty) file."""
        if self._closed:
            return
        self._closed = True
        try:
            try:
                if self._parquet is None and (self._file is None or not self._header_written):
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


def reject_row(
    *,
    source_file: str | None,
    source_row: int | None,
    rule: str,
    message: str | None,
    field: str = "api",
    email: str | None = None,
    contact_id: str | None = None,
    name: str | None = None,
    timestamp: str | None = None,
    properties: str | None = None,
) -> dict[str, object]:
    """One row of the rejects frame for a record Kraiter refused (stage ``rejected``:
    ``retry`` sends these again once their cause is fixed)."""
    return {
        "source_file": source_file,
        "source_row": source_row,
        "field": field,
        "rule": rule,
        "message": message,
        "stage": "rejected",
        "email": email,
        "contact_id": contact_id,
        "name": name,
        "timestamp": timestamp,
        "properties": properties,
    }


def rejects_frame(rows: Iterable[Mapping[str, object]]) -> pl.DataFrame:
    """Rows built by :func:`reject_row` as a frame of :data:`~kraiter_sync.frames.REJECT_SCHEMA`."""
    return pl.DataFrame([dict(r) for r in rows], schema=REJECT_SCHEMA)


def read_rejects(path: Path, data: bytes | None = None) -> pl.DataFrame:
    """A rejects file back as a frame (CSV formula neutralisation undone); ``data`` holds
    its bytes when it came from object storage."""
    suffix = path.suffix.lower()
    source: Path | io.BytesIO = path if data is None else io.BytesIO(data)
    try:
        if suffix == ".parquet":
            frame = pl.read_parquet(source)
        elif suffix in (".ndjson", ".jsonl"):
            frame = pl.read_ndjson(source, schema=REJECT_SCHEMA)
        elif suffix == ".csv":
            frame = pl.read_csv(source, infer_schema=False).with_columns(
                undo_neutralise_expr(pl.col(pl.String))
            )
        else:
            msg = f"{path}: a rejects file ends in .csv, .parquet or .ndjson"
            raise InputError(msg)
    except (OSError, pl.exceptions.PolarsError) as exc:
        msg = f"cannot read the rejects file {path}: {exc}"
        raise InputError(msg) from None
    missing = {"stage", "email", "name", "timestamp", "properties"} - set(frame.columns)
    if missing:
        msg = (
            f"{path} is not a kraiter-sync rejects file (no column {sorted(missing)[0]!r}); "
            "pass the file that `import` named at the end of its summary"
        )
        raise InputError(msg)
    return frame


def reuse_identical(path: Path, pattern: str) -> Path:
    """An earlier file in ``path``'s folder matching ``pattern`` (a glob) that holds
    exactly the same bytes, with ``path`` removed; else ``path``. A re-run over an
    unchanged input then points at the rejects file it already wrote instead of adding
    another copy of the same rows."""
    import hashlib

    try:
        size = path.stat().st_size
        same_size = [
            p
            for p in sorted(path.parent.glob(pattern))
            if p != path and p.is_file() and p.stat().st_size == size
        ]
        if not same_size:
            return path
        digest = hashlib.sha256(path.read_bytes()).digest()
        for earlier in same_size:
            if hashlib.sha256(earlier.read_bytes()).digest() == digest:
                path.unlink()
                return earlier
    except OSError:
        return path  # (the new file is complete: keeping it loses nothing)
    return path


def duplicates_path(rejects_path: Path) -> Path:
    """Where the duplicates listing of a run goes: beside its rejects file."""
    return rejects_path.with_name(f"{rejects_path.stem}.duplicates.csv")


class DuplicatesWriter:
    """The rows dropped or merged as duplicates, with the row each went into
    (``validate.DUPLICATE_SCHEMA``), appended to a CSV file made at the first one: a
    run without duplicates leaves no file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows = 0
        self._file: IO[bytes] | None = None

    @property
    def written(self) -> Path | None:
        """The file, when it holds a row."""
        return self.path if self.rows else None

    def write(self, frame: pl.DataFrame) -> None:
        if not frame.height:
            return
        try:
            header = self._file is None
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("wb")
            neutralise_frame(frame).write_csv(self._file, include_header=header)
        except OSError as exc:
            msg = (
                f"cannot write the duplicates file {self.path}: {os_reason(exc)}; pass "
                "--rejects PATH (the duplicates file goes beside it) somewhere writable"
            )
            raise StateError(msg) from exc
        self.rows += frame.height

    def close(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            handle.close()

    def __enter__(self) -> DuplicatesWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
