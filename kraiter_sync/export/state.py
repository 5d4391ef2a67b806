"""Export state: the watermark and the file journal of one (target, stream, output).

Stored as a small JSON document written atomically (``files.atomic_write``) under
``<state dir>/export/``, one file per target + stream + output directory: two output
directories of the same stream never share a watermark. The file holds a schema version,
the target identity (never the key), the committed watermark, the unfinished run (if
any), the renames not yet known to be done, and the manifest of the stream directory
(``files``: every file written, with its row count; ``claimed``: the directory was
taken, see ``output``). Version 1 (before manifests) is read and upgraded: its directory
counts as claimed, its part files are adopted.

Why not the ledger's watermarks table: the journal is saved from the chunk-writer
thread (a ``Ledger`` must not be shared between threads), and the ledger's
``state_lock`` covers the whole state directory, which would serialise every export
against every import. The document is small and self-contained, so it can still move
into the ledger as one value (``stream = "export:<stream>:<out>"``) unchanged.

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

STATE_VERSION = 2


def state_path(state_dir: Path, target: str, stream: str, out: Path) -> Path:
    """Where the state of (target, stream, output directory) lives."""
    digest = hashlib.sha256(f"{target}\n{out.resolve()}".encode()).hexdigest()[:16]
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
            data.update(version=STATE_VERSION, claimed=bool(data.get("watermark")))
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
