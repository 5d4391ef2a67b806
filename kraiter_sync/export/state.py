"""Export state: the watermark, the run and the manifest of one (target, stream, output).

Stored as a small JSON document written atomically (``files.atomic_write``) under
``<state dir>/export/``, one file per target + stream (or window) + output: two outputs
of the same stream never share a watermark. The document holds a schema version, the
committed watermark, the unfinished run (its checkpoints and positions), the journal of
the last step that puts files in place (``swap``) or compacts them (``compact``), and
the manifest of the stream folder (``files``: every file, with its rows and bytes;
``claimed``: the folder was taken, see ``output``). A database target keeps its
watermark in the database, in the same transaction as the rows (``tables``); its
document here only carries the lock.

Older versions are read and upgraded: version 1 (before manifests) counts its folder as
claimed; version 2 (a file per chunk and partition) keeps its manifest and watermark,
and its unfinished run is started again from that watermark (an incremental run's
chunks were already in place; a full run's staging is discarded).

Why not the ledger's watermarks table: the document is saved from the chunk-writer
thread (a ``Ledger`` must not be shared between threads), and the ledger's
``state_lock`` covers the whole state directory, which would serialise every export
against every import. The document is small and self-contained, so it can still move
into another store as one value unchanged.

A lock file (``files.file_lock``) keeps two exports of the same stream and output from
running at once; the lock is released by the kernel when a process dies.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kraiter_sync.errors import StateError
from kraiter_sync.files import atomic_write, file_lock

__all__ = ["STATE_VERSION", "ExportState", "state_path"]

STATE_VERSION = 3


def state_path(state_dir: Path, target: str, stream: str, out: Path | str) -> Path:
    """Where the state of (target, stream, output) lives: ``out`` is the output
    directory, or a database target's identity (its URL without the password)."""
    where = out if isinstance(out, str) else str(out.resolve())
    digest = hashlib.sha256(f"{target}\n{where}".encode()).hexdigest()[:16]
    return state_dir / "export" / f"{stream}-{digest}.json"


class ExportState:
    """Load / save the JSON document; hold the lock while a run uses it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}

    def load(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self.data = {"version": STATE_VERSION}
            return self.data
        except OSError as exc:
            msg = f"cannot read export state {self.path}: {exc.strerror}"
            raise StateError(msg) from None
        try:
            data = json.loads(text)
        except ValueError:
            msg = f"export state {self.path} is damaged; delete it and re-run with --full"
            raise StateError(msg) from None
        if isinstance(data, dict) and data.get("version") == 1:
            # written before manifests: it has exported into its directory already
            data.update(version=2, claimed=bool(data.get("watermark")), adopt=True)
        if isinstance(data, dict) and data.get("version") == 2:
            # a file per chunk: its run is started again from the committed watermark
            data.update(version=STATE_VERSION, run=None)
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            msg = (
                f"export state {self.path} has an unknown version; delete it and re-run with --full"
            )
            raise StateError(msg)
        self.data = data
        return data

    def save(self) -> None:
        """Atomically replace the document (a reader sees the old or the new one)."""
        payload = json.dumps(self.data, indent=1, sort_keys=True).encode()
        try:
            atomic_write(self.path, payload)
        except OSError as exc:
            msg = f"cannot write export state {self.path}: {exc.strerror}"
            raise StateError(msg) from None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive lock for one run; LockHeldError (exit 5) when another run has it."""
        lock_path = self.path.with_suffix(".lock")
        with file_lock(
            lock_path,
            busy=lambda _holder: (
                "another export of this stream to this directory is running "
                f"(lock {lock_path}); wait for it to finish"
            ),
            unusable=lambda exc: (
                f"cannot use the state directory {self.path.parent}: {exc.strerror}"
            ),
        ):
            yield
