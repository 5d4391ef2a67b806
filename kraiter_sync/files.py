"""Files the tool writes: atomic replacement, advisory locks, spreadsheet-safe CSV cells.

* :func:`atomic_write` — write beside, ``fsync``, then rename over the target: a reader
  (or a killed run) sees the old file or the new one, never half of one. Every state
  document, plan, tombstone, report and cache file goes through it.
* :func:`file_lock` — an exclusive ``flock`` held for a block; the kernel releases it
  when the holder dies, so a killed run's lock is taken over without stale-lock guessing.
* Formula neutralisation (CSV injection, OWASP): a cell that begins with ``=``, ``+``,
  ``-``, ``@``, a tab or a carriage return is run as a formula by Excel, LibreOffice and
  Google Sheets. Every CSV file kraiter-sync writes (rejects, exports) passes its string
  columns through :func:`neutralise_expr`, which prefixes such cells with ``'`` (the
  spreadsheet convention for "this is text"); :func:`undo_neutralise_expr` reverses it
  when the tool reads its own CSV back (``retry``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl

from kraiter_sync.errors import LockHeldError, StateError

__all__ = [
    "FORMULA_PREFIXES",
    "atomic_write",
    "file_lock",
    "neutralise",
    "neutralise_expr",
    "neutralise_frame",
    "undo_neutralise_expr",
]

#: Characters that make a spreadsheet evaluate a cell.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

_PATTERN = r"^[=+\-@\t\r]"
_UNDO = r"^'([=+\-@\t\r])"


def atomic_write(
    path: str | os.PathLike[str],
    content: bytes | str | Callable[[Path], object],
    *,
    fsync: bool = True,
) -> Path:
    """Replace ``path`` with ``content`` atomically; returns the path.

    ``content`` is the bytes (or text, UTF-8) to write, or a function that writes the
    temporary file it is given (e.g. ``frame.write_parquet``). The temporary file is
    ``.<name>.tmp`` beside the target; with ``fsync`` it reaches the disk before the
    rename, so a crash cannot leave an empty file under the final name. Parents are
    created. OSError propagates (callers name the file and the next step).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        if callable(content):
            content(tmp)
            if fsync:
                with tmp.open("rb+") as fh:
                    os.fsync(fh.fileno())
        else:
            data = content.encode() if isinstance(content, str) else content
            with tmp.open("wb") as out:
                out.write(data)
                out.flush()
                if fsync:
                    os.fsync(out.fileno())
        tmp.replace(target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return target


@contextlib.contextmanager
def file_lock(
    path: str | os.PathLike[str],
    *,
    busy: Callable[[str], str],
    unusable: Callable[[OSError], str],
    record_pid: bool = False,
) -> Iterator[Path]:
    """Hold an exclusive, non-blocking ``flock`` on ``path`` (created) for the block.

    Another holder (another process, or another open of the file in this process) makes
    it raise :class:`~kraiter_sync.errors.LockHeldError` with ``busy(holder)``, where
    ``holder`` is what the holder wrote into the file (its pid with ``record_pid``, else
    ""). A lock file that cannot be created raises StateError with ``unusable(exc)``.
    """
    lock_path = Path(path)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StateError(unusable(exc)) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            raise LockHeldError(busy(holder)) from None
        if record_pid:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield lock_path
        finally:
            if record_pid:
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def neutralise(value: str) -> str:
    """Prefix ``'`` to a single cell value that a spreadsheet would evaluate."""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def neutralise_expr(expr: pl.Expr) -> pl.Expr:
    """The vectorised form of :func:`neutralise` for a Utf8 expression (nulls stay null)."""
    return pl.when(expr.str.contains(_PATTERN)).then(pl.lit("'") + expr).otherwise(expr)


def undo_neutralise_expr(expr: pl.Expr) -> pl.Expr:
    """The inverse of :func:`neutralise_expr`, for CSV files this tool wrote itself."""
    return expr.str.replace(_UNDO, "${1}")


def neutralise_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Neutralise every Utf8 column of ``frame``; other columns are left as they are."""
    return frame.with_columns(
        neutralise_expr(pl.col(name)).alias(name)
        for name, dtype in frame.schema.items()
        if dtype == pl.String
    )
