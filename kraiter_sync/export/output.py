"""A stream's output folder (``<out>/<stream>/``): kraiter-sync touches only what it wrote.

:class:`LocalFolder` is the one place where an export lists, puts and deletes files:
files are built elsewhere (a hidden staging directory beside the folder) and *put*
into place whole by an atomic rename, and only files named as kraiter-sync names them
are ever deleted. An object-store destination implements the same few methods
(``walk``, ``put``, ``delete``, ``staging``) over ``Bucket.list`` / ``Bucket.put``:
``export.bucket.BucketFolder``; both are a :class:`Folder`.

The *manifest* is the ``files`` entry of the export state document (``state.py``): every
file an export of this (target, stream, output) wrote, by path relative to the stream
folder, with its row count and size (``{"rows": n, "bytes": b}``). It is saved in the
same atomic write as the journal that puts a run's files in place, so it never misses a
file that exists. It lives in the state directory, not beside the files: any other file
in the folder would break ``pl.scan_parquet(dir, hive_partitioning=True)``.

Before a run writes anything the folder is *surveyed* and *verified*:

* a symbolic link (the folder itself, or anything in it) and a file where the folder
  belongs are refused: nothing is written or deleted through a link;
* files in the manifest must exist with the size they were written with
  (:func:`verify`); a missing or changed file means the output no longer holds what the
  state says, and the stream is exported again in full;
* part files named as this tool names them (``part-<run id>-<n>.<format>``, also under
  ``date=…/``) but missing from the manifest are *adopted* with their row count (an
  export whose state was lost is then replaced rather than duplicated);
* anything else is the user's: a folder holding such files that this state has not
  claimed yet is refused unless ``--overwrite``, and even then those files are never
  replaced or deleted.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from kraiter_sync.errors import UsageError

__all__ = [
    "PART_NAME",
    "TMP_NAME",
    "Folder",
    "LocalFolder",
    "Manifest",
    "Survey",
    "count_rows",
    "refusal",
    "replace_files",
    "survey",
    "verify",
]

_RUN_CHUNK = r"\d{8}T\d{6}Z-[0-9a-f]{6}-\d{5}"
#: A part file as kraiter-sync names it (``spill.part_name``).
PART_NAME = re.compile(rf"^part-{_RUN_CHUNK}\.(parquet|csv|ndjson)$")
#: A part file under its temporary name (written by versions that built files in place).
TMP_NAME = re.compile(rf"^\.part-{_RUN_CHUNK}\.(parquet|csv|ndjson)\.tmp$")
#: A partition directory as the writers name it.
PARTITION_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2}|__HIVE_DEFAULT_PARTITION__)$")

Manifest = dict[str, dict[str, Any]]


def _link_error(path: Path) -> UsageError:
    return UsageError(
        f"{path} is a symbolic link: kraiter-sync does not write or delete through links; "
        "replace it with a real directory, or choose another --out"
    )


def _safe_rel(rel: str) -> bool:
    parts = Path(rel).parts
    return bool(parts) and ".." not in parts and not Path(rel).is_absolute()


class Folder(Protocol):
    """What an export needs of a stream's folder: :class:`LocalFolder`, or a bucket
    prefix (``export.bucket.BucketFolder``). Files are always built in a local
    ``staging`` directory and then ``put`` whole."""

    #: What the folder holds, for messages (``events``, ``events-since-2026-11-01``).
    label: str

    @property
    def display(self) -> str:
        """Where the folder is, safe to print and to store (a path, or a URL)."""

    @property
    def out_display(self) -> str:
        """Where ``--out`` is (the folder's parent), as the state document records it."""

    def check(self) -> None: ...
    def exists(self) -> bool: ...
    def walk(self) -> tuple[dict[str, int], list[str]]: ...
    def size(self, rel: str) -> int | None: ...
    def rows(self, rel: str) -> int: ...
    def put(self, rel: str, source: Path) -> None: ...
    def delete(self, rel: str) -> bool: ...
    def staging(self, name: str) -> Path: ...
    def stagings(self) -> list[Path]: ...
    def clean_temporary(self) -> None: ...


class LocalFolder:
    """A stream's folder on the local file system (see the module docstring)."""

    def __init__(self, path: Path, label: str) -> None:
        self.path = path
        #: What the folder holds, for messages (``events``, ``events-since-2026-11-01``).
        self.label = label

    @property
    def display(self) -> str:
        return str(self.path)

    @property
    def out_display(self) -> str:
        return str(self.path.parent.resolve())

    def rows(self, rel: str) -> int:
        return count_rows(self.path / rel)

    def clean_temporary(self) -> None:
        """Delete the temporary part files older versions built in place."""
        if self.exists():
            for tmp in self.path.rglob(".part-*.tmp"):
                if TMP_NAME.match(tmp.name) and not tmp.is_symlink():
                    tmp.unlink()

    def check(self) -> None:
        """The folder must be a real directory, or not exist yet."""
        if self.path.is_symlink():
            raise _link_error(self.path)
        if self.path.exists() and not self.path.is_dir():
            msg = (
                f"{self.path} is a file, where the {self.label} export needs a directory; "
                "move it away or choose another --out"
            )
            raise UsageError(msg)

    def exists(self) -> bool:
        return self.path.is_dir()

    def walk(self) -> tuple[dict[str, int], list[str]]:
        """Every file (relative path → size) and every empty directory that is not a
        partition; links are refused, not followed."""
        files: dict[str, int] = {}
        empty: list[str] = []
        if not self.path.is_dir():
            return files, empty
        for root, dirs, names in os.walk(self.path):
            here = Path(root)
            for name in dirs:
                if (here / name).is_symlink():
                    raise _link_error(here / name)
            for name in names:
                path = here / name
                if path.is_symlink():
                    raise _link_error(path)
                files[path.relative_to(self.path).as_posix()] = path.stat().st_size
            if here != self.path and not dirs and not names and not PARTITION_DIR.match(here.name):
                empty.append(here.relative_to(self.path).as_posix() + "/")
        return files, empty

    def size(self, rel: str) -> int | None:
        path = self.path / rel
        try:
            return path.stat().st_size if path.is_file() and not path.is_symlink() else None
        except OSError:
            return None

    def put(self, rel: str, source: Path) -> None:
        """Move a finished file into place (atomic: a reader sees it whole or not at all)."""
        target = self.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        source.replace(target)

    def delete(self, rel: str) -> bool:
        """Delete one of kraiter-sync's part files; anything else is never touched."""
        if not _safe_rel(rel):
            return False
        path = self.path / rel
        if PART_NAME.match(path.name) and path.is_file() and not path.is_symlink():
            path.unlink()
            self._prune(path.parent)
            return True
        return False

    def _prune(self, start: Path) -> None:
        """Remove ``start`` and its parents below the folder while they are empty."""
        current = start
        while current != self.path and self.path in current.parents:
            try:
                current.rmdir()
            except OSError:  # not empty (or gone): stop
                return
            current = current.parent

    def staging(self, name: str) -> Path:
        """A hidden work directory beside the folder (same file system: renames are
        atomic): ``<out>/.<label>.<name>``."""
        return self.path.parent / f".{self.label}.{name}"

    def stagings(self) -> list[Path]:
        """Every work directory of this folder (and of older versions: ``.staging-``,
        ``.old-``)."""
        parent = self.path.parent
        if not parent.is_dir():
            return []
        return sorted(p for p in parent.glob(f".{self.label}.*") if p.is_dir())


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
    """What a stream folder holds beyond its manifest: files adopted, and the user's."""

    def __init__(self) -> None:
        self.adopted: Manifest = {}
        self.foreign: list[str] = []


def _ours(rel: str) -> bool:
    path = Path(rel)
    return bool(PART_NAME.match(path.name)) and all(
        PARTITION_DIR.match(part) for part in path.parts[:-1]
    )


def survey(folder: Folder, manifest: Mapping[str, Any]) -> Survey:
    """Walk the folder (not following links): see the module docstring."""
    found = Survey()
    files, empty = folder.walk()
    for rel, size in sorted(files.items()):
        if rel in manifest or TMP_NAME.match(Path(rel).name):
            continue
        if _ours(rel):
            found.adopted[rel] = {"rows": folder.rows(rel), "bytes": size}
        else:
            found.foreign.append(rel)
    found.foreign = sorted([*found.foreign, *empty])
    return found


def _listed(paths: list[str], limit: int = 3) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def verify(folder: Folder, manifest: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Why the folder does not hold what the manifest lists (None when it does): every
    file must exist, with the size it was written with."""
    missing: list[str] = []
    changed: list[str] = []
    for rel, entry in sorted(manifest.items()):
        size = folder.size(rel) if _safe_rel(rel) else None
        if size is None:
            missing.append(rel)
        elif "bytes" in entry and size != entry["bytes"]:
            changed.append(rel)
    problems = []
    if missing:
        problems.append(f"{len(missing)} of {len(manifest)} files are missing ({_listed(missing)})")
    if changed:
        problems.append(f"{len(changed)} changed size since they were written ({_listed(changed)})")
    if not problems:
        return None
    return f"{folder.display} does not hold what the last export wrote: " + "; ".join(problems)


def refusal(directory: str, foreign: list[str]) -> UsageError:
    """Why a directory holding the user's files is not exported into without --overwrite."""
    noun = "file" if len(foreign) == 1 else "files"
    msg = (
        f"refusing to export into {directory}: it holds {len(foreign)} {noun} kraiter-sync "
        f"did not write ({_listed(foreign)}). Choose another --out, or pass --overwrite to "
        "export there anyway: kraiter-sync only ever replaces or deletes the files it wrote"
    )
    return UsageError(msg)


def replace_files(folder: Folder, staging: Path, new: Mapping[str, Any], old: Iterable[str]) -> int:
    """Put the ``new`` files (built under ``staging``) in place and delete the ``old`` ones
    (the manifest's, when a run replaces the output); anything else in the folder stays.
    Safe to run again after a kill (a file already moved is not in ``staging`` any more).
    Returns the number of files deleted."""
    for rel in new:
        source = staging / rel
        if _safe_rel(rel) and source.is_file():
            folder.put(rel, source)
    deleted = sum(1 for rel in old if rel not in new and folder.delete(rel))
    if staging.exists():
        shutil.rmtree(staging)
    return deleted
