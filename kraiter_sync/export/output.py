"""A stream's output directory (``<out>/<stream>/``): kraiter-sync touches only what it wrote.

The *manifest* is the ``files`` entry of the export state document (``state.py``): every
file an export of this (target, stream, output) wrote, by path relative to the stream
directory, with its row count (``{"rows": n}``). It is saved in the same atomic write as
the journal that makes a chunk's files visible, so it never misses a file that exists.
It lives in the state directory, not beside the files: any other file in the directory
would break ``pl.scan_parquet(dir, hive_partitioning=True)`` and Spark-style readers.

Before a run writes anything the directory is *surveyed*:

* a symbolic link (the stream directory itself, or anything in it) and a file where the
  directory belongs are refused: nothing is written or deleted through a link;
* files in the manifest are ours; part files named as this tool names them
  (``part-<run id>-<chunk>.<format>``, also under ``date=…/``) are ours too and are
  *adopted* into the manifest with their row count, so an export whose state was lost, or
  made before manifests existed, is still replaced rather than duplicated;
* anything else is the user's: a directory holding such files that this state has not
  claimed yet is refused unless ``--overwrite``, and even then those files are never
  replaced or deleted.

A full run (``--full``, ``--since``, every snapshot) writes into a staging directory and
then :func:`replace_files` deletes the manifest's files and moves the new ones in, one by
one; it is journaled first and idempotent, so a run killed half-way is finished by the
next one.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from kraiter_sync.errors import UsageError

__all__ = [
    "PART_NAME",
    "TMP_NAME",
    "Survey",
    "check_directory",
    "count_rows",
    "refusal",
    "replace_files",
    "survey",
]

_RUN_CHUNK = r"\d{8}T\d{6}Z-[0-9a-f]{6}-\d{5}"
#: A part file as the writers name it (``writers.write_chunk``).
PART_NAME = re.compile(rf"^part-{_RUN_CHUNK}\.(parquet|csv|ndjson)$")
#: A part file under its temporary name, before the journal makes it visible.
TMP_NAME = re.compile(rf"^\.part-{_RUN_CHUNK}\.(parquet|csv|ndjson)\.tmp$")
#: A partition directory as the writers name it.
PARTITION_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2}|__HIVE_DEFAULT_PARTITION__)$")

Manifest = dict[str, dict[str, Any]]


def _link_error(path: Path) -> UsageError:
    return UsageError(
        f"{path} is a symbolic link: kraiter-sync does not write or delete through links; "
        "replace it with a real directory, or choose another --out"
    )


def check_directory(directory: Path, stream: str) -> None:
    """The stream directory must be a real directory, or not exist yet."""
    if directory.is_symlink():
        raise _link_error(directory)
    if directory.exists() and not directory.is_dir():
        msg = (
            f"{directory} is a file, where the {stream} export needs a directory; move it "
            "away or choose another --out"
        )
        raise UsageError(msg)


def count_rows(path: Path) -> int:
    """Rows in one part file (to adopt a file written before the manifest knew it)."""
    suffix = path.suffix
    if suffix == ".parquet":
        return int(pl.scan_parquet(path).select(pl.len()).collect().item())
    if suffix == ".csv":
        return int(pl.scan_csv(path, infer_schema=False).select(pl.len()).collect().item())
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


class Survey:
    """What a stream directory holds: files adopted into the manifest, and the user's."""

    def __init__(self) -> None:
        self.adopted: Manifest = {}
        self.foreign: list[str] = []


def survey(directory: Path, manifest: Mapping[str, Any]) -> Survey:
    """Walk ``directory`` (not following links): see the module docstring."""
    found = Survey()
    if not directory.is_dir():
        return found
    for root, dirs, files in os.walk(directory):
        here = Path(root)
        for name in dirs:
            if (here / name).is_symlink():
                raise _link_error(here / name)
        for name in sorted(files):
            path = here / name
            if path.is_symlink():
                raise _link_error(path)
            rel = path.relative_to(directory).as_posix()
            if rel in manifest or TMP_NAME.match(name):
                continue
            if PART_NAME.match(name) and all(
                PARTITION_DIR.match(part) for part in Path(rel).parts[:-1]
            ):
                found.adopted[rel] = {"rows": count_rows(path)}
            else:
                found.foreign.append(rel)
        if here != directory and not dirs and not files and not PARTITION_DIR.match(here.name):
            found.foreign.append(here.relative_to(directory).as_posix() + "/")
    found.foreign.sort()
    return found


def refusal(directory: Path, foreign: list[str]) -> UsageError:
    """Why a directory holding the user's files is not exported into without --overwrite."""
    shown = ", ".join(foreign[:3])
    more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
    noun = "file" if len(foreign) == 1 else "files"
    msg = (
        f"refusing to export into {directory}: it holds {len(foreign)} {noun} kraiter-sync "
        f"did not write ({shown}{more}). Choose another --out, or pass --overwrite to export "
        "there anyway: kraiter-sync only ever replaces or deletes the files it wrote"
    )
    return UsageError(msg)


def _prune(directory: Path, start: Path) -> None:
    """Remove ``start`` and its parents below ``directory`` while they are empty."""
    current = start
    while current != directory and directory in current.parents:
        try:
            current.rmdir()
        except OSError:  # not empty (or gone): stop
            return
        current = current.parent


def replace_files(
    directory: Path, staging: Path, new: Mapping[str, Any], old: Iterable[str]
) -> None:
    """Delete the ``old`` files (the manifest's) and move the ``new`` ones in from
    ``staging``; anything else in ``directory`` stays. Safe to run again after a kill.

    A file is deleted only if it is named as this tool names part files and lies inside
    ``directory``: a damaged or edited manifest cannot make it delete anything else."""
    emptied: set[Path] = set()
    for rel in old:
        if rel in new or ".." in Path(rel).parts or Path(rel).is_absolute():
            continue
        path = directory / rel
        if PART_NAME.match(path.name) and path.is_file() and not path.is_symlink():
            path.unlink()
            emptied.add(path.parent)
    for rel in new:
        source = staging / rel
        if source.is_file():
            target = directory / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            source.replace(target)
    for parent in sorted(emptied, key=lambda p: len(p.parts), reverse=True):
        _prune(directory, parent)
    if staging.exists():
        shutil.rmtree(staging)
