"""``export compact``: the small files of earlier runs rewritten into one per partition.

Each run adds one file per partition it touched, so a nightly export gathers many small
files. Compaction merges, in every partition, the manifest's files smaller than
:data:`TARGET_BYTES` (when there are two or more) into one file, streamed row group by
row group, in run order.

The swap is atomic for readers: a new partition directory is assembled beside the
stream's folder (the merged file, plus hard links to everything else the partition
holds: larger files, and files that are not kraiter-sync's), then exchanged with the
live one in a single ``renameat2(RENAME_EXCHANGE)`` (Linux). A reader lists either the
old files or the new ones, never both and never neither. Where the exchange is not
available (another OS or file system) the merged file is put in place first and the
small files deleted after it, so a reader may briefly see both (never neither); the log
says so. Every swap is journaled in the state document (``compact``) before it is made,
so a compaction killed at any point is finished or undone by the next export or
compaction of that stream.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from kraiter_sync.errors import StateError
from kraiter_sync.export.output import LocalFolder
from kraiter_sync.export.spill import part_name
from kraiter_sync.export.state import ExportState
from kraiter_sync.export.writers import FileWriter, Format
from kraiter_sync.logs import get_logger

__all__ = ["TARGET_BYTES", "CompactResult", "compact_folder", "finish_compaction"]

log = get_logger("export")

#: Files at least this large are left as they are (the layout's target file size).
TARGET_BYTES = 64 * 1024 * 1024
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@dataclass
class CompactResult:
    """What one compaction of one stream folder did."""

    folder: Path
    files_before: int = 0
    files_after: int = 0
    partitions: int = 0
    rows: int = 0
    seconds: float = 0.0
    #: Partitions left as they were, with the reason (e.g. they hold sub-folders).
    skipped: list[str] = field(default_factory=list)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2``); False where it is not available."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: not on this file system
        return False
    raise OSError(err, os.strerror(err), str(a))


def _batches(path: Path) -> Iterator[pa.Table]:
    """One file's rows, a row group (or a text file) at a time."""
    if path.suffix == ".parquet":
        reader = pq.ParquetFile(path)
        for group in range(reader.num_row_groups):
            yield reader.read_row_group(group)
        return
    yield from _text_tables(path)


def _schema(paths: list[Path]) -> pa.Schema:
    """The columns of all ``paths`` (flattened property columns vary by run), each with
    one type: a column that is all null in one file takes its type from another."""
    if paths[0].suffix == ".parquet":
        fields: dict[str, pa.Field] = {}
        for path in paths:
            for f in pq.read_schema(path).remove_metadata():
                if f.name not in fields or pa.types.is_null(fields[f.name].type):
                    fields[f.name] = f
        return pa.schema(list(fields.values()))
    empty = [next(_text_tables(path)).slice(0, 0) for path in paths]
    frames = [pl.from_arrow(t) for t in empty]
    merged = pl.concat([f for f in frames if isinstance(f, pl.DataFrame)], how="diagonal_relaxed")
    return merged.to_arrow().schema


def _text_tables(path: Path) -> Iterator[pa.Table]:
    if path.suffix == ".csv":
        yield pl.read_csv(path, infer_schema=False).to_arrow()
    elif path.stat().st_size:
        yield pl.read_ndjson(path).to_arrow()
    else:
        yield pa.table({})


def _merge(paths: list[Path], target: Path, fmt: Format) -> dict[str, int]:
    writer = FileWriter(target, fmt, _schema(paths), raw_csv=True)
    try:
        for path in paths:
            for table in _batches(path):
                writer.write(table)
    except BaseException:
        writer.discard()
        raise
    rows, size = writer.close()
    return {"rows": rows, "bytes": size}


def _small_groups(manifest: dict[str, Any]) -> dict[str, list[str]]:
    """Partition directory → the manifest's small files in it, when two or more."""
    groups: dict[str, list[str]] = {}
    for rel, entry in manifest.items():
        if int(entry.get("bytes", 0)) < TARGET_BYTES:
            parent = Path(rel).parent.as_posix()
            groups.setdefault("" if parent == "." else parent, []).append(rel)
    return {d: sorted(files) for d, files in sorted(groups.items()) if len(files) >= 2}


def finish_compaction(folder: LocalFolder, data: dict[str, Any]) -> None:
    """Finish (the merged file is live) or undo (it is not) a journaled compaction."""
    job = data.get("compact")
    if not job:
        return
    live = folder.path / job["dir"] if job["dir"] else folder.path
    if (live / Path(job["new"]).name).is_file():
        for rel in job["removed"]:
            folder.delete(rel)  # gone already after an exchange
        files = data.setdefault("files", {})
        for rel in job["removed"]:
            files.pop(rel, None)
        files[job["new"]] = job["entry"]
    shutil.rmtree(job["staging"], ignore_errors=True)
    data["compact"] = None


class _Skipped(Exception):
    """A partition compaction leaves as it is (the message says why)."""


def _compact_one(
    folder: LocalFolder, state: ExportState, rel_dir: str, small: list[str], run_id: str
) -> dict[str, int]:
    """Merge one partition's small files and swap them in; the merged file's entry."""
    data = state.data
    live = folder.path / rel_dir if rel_dir else folder.path
    if any(p.is_dir() for p in live.iterdir()):
        msg = f"{live} holds folders"
        raise _Skipped(msg)
    fmt: Format = Path(small[0]).suffix.lstrip(".")  # type: ignore[assignment]
    if any(Path(rel).suffix != Path(small[0]).suffix for rel in small):
        msg = f"{live} holds files of several formats"
        raise _Skipped(msg)
    staging = folder.staging(f"compact-{run_id}")
    shutil.rmtree(staging, ignore_errors=True)
    name = part_name(run_id, fmt)
    fresh = staging / (Path(rel_dir).name or folder.label)
    entry = _merge([folder.path / rel for rel in small], fresh / name, fmt)
    linked = True
    gone = {Path(rel).name for rel in small}
    for path in live.iterdir():
        if path.name not in gone:
            try:
                os.link(path, fresh / path.name)
            except OSError:
                linked = False
                break
    new_rel = f"{rel_dir}/{name}" if rel_dir else name
    data["compact"] = {
        "dir": rel_dir,
        "new": new_rel,
        "entry": entry,
        "removed": small,
        "staging": str(staging),
    }
    state.save()
    if not (linked and _exchange(live, fresh)):
        log.warning(
            "%s: the file system cannot swap folders atomically; the merged file is put "
            "in place before the small ones are deleted (a reader may see both briefly)",
            live,
        )
        folder.put(new_rel, fresh / name)
    finish_compaction(folder, data)
    state.save()
    return entry


def compact_folder(folder: LocalFolder, state: ExportState, *, run_id: str) -> CompactResult:
    """Compact one stream folder whose state is loaded and locked by the caller."""
    started = time.monotonic()
    data = state.data
    result = CompactResult(folder.path)
    if data.get("run"):
        log.info("%s: an interrupted export is pending; its files are not touched", folder.path)
    finish_compaction(folder, data)
    manifest = data.get("files") or {}
    result.files_before = len(manifest)
    try:
        for rel_dir, small in _small_groups(manifest).items():
            try:
                entry = _compact_one(folder, state, rel_dir, small, run_id)
            except _Skipped as skipped:
                result.skipped.append(str(skipped))
                continue
            result.partitions += 1
            result.rows += entry["rows"]
    except OSError as exc:
        with contextlib.suppress(StateError):
            state.save()
        msg = (
            f"cannot compact {folder.path}: {exc.strerror or exc}; check the free space and "
            "permissions, then run export compact again (nothing was lost)"
        )
        raise StateError(msg) from None
    result.files_after = len(data.get("files") or {})
    result.seconds = time.monotonic() - started
    return result
