"""Export state: the watermark and the file journal of one (target, stream, output).

Stored as a small JSON document, one per target + stream + output directory (two output
directories of the same stream never share a watermark), in the state store's blobs
(``state.store.Blobs``): a file under ``<state dir>/export/`` written atomically
(``files.atomic_write``), or a row of the PostgreSQL store, under the same name.
The document holds a schema version, the target identity (never the key), the
committed watermark, the unfinished run (if any), the renames not yet known to be done,
and the manifest of the stream directory (``files``: every file written, with its row
count; ``claimed``: the directory was taken, see ``output``). Version 1 (before
manifests) is read and upgraded: its directory counts as claimed, its part files are
adopted.

Why not the ledger's watermarks table: the journal is saved from the chunk-writer
thread (a ``Ledger`` must not be shared between threads; blobs may be), and the run lock
covers the whole target, which would serialise every export against every import.

A lock of its own (the store's ``lock``: a lock file, or a PostgreSQL advisory lock)
keeps two exports of the same stream and output from running at once, on one machine
or several; it is released when its holder dies.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kraiter_sync.errors import StateError
from kraiter_sync.state.local import StateFiles
from kraiter_sync.state.store import SharedFiles

__all__ = ["STATE_VERSION", "ExportState", "state_name", "state_path"]

STATE_VERSION = 2


def state_name(target: str, stream: str, out: Path) -> str:
    """The blob name of the state of (target, stream, output directory)."""
    digest = hashlib.sha256(f"{target}\n{out.resolve()}".encode()).hexdigest()[:16]
    return f"export/{stream}-{digest}.json"


def state_path(state_dir: Path, target: str, stream: str, out: Path) -> Path:
    """Where the state of (target, stream, output directory) lives in a state directory."""
    return state_dir / state_name(target, stream, out)


class ExportState:
    """Load / save the JSON document; hold the lock while a run uses it.

    ``ExportState(path)`` keeps it in the state directory ``path`` is in (see
    :func:`state_path`); :meth:`in_store` in any state store.
    """

    def __init__(self, path: Path, *, files: SharedFiles | None = None) -> None:
        self.path = path
        self.files: SharedFiles = files or StateFiles(path.parent.parent)
        self.name = f"{path.parent.name}/{path.name}"
        self.label = self.files.blob_label(self.name)
        self.data: dict[str, Any] = {}

    @classmethod
    def in_store(cls, files: SharedFiles, target: str, stream: str, out: Path) -> ExportState:
        """The state of (target, stream, output directory) in ``files``."""
        return cls(Path(state_name(target, stream, out)), files=files)

    def load(self) -> dict[str, Any]:
        raw = self.files.read_blob(self.name)
        if raw is None:
            self.data = {"version": STATE_VERSION}
            return self.data
        try:
            data = json.loads(raw.decode("utf-8"))
        except ValueError:
            msg = f"export state {self.label} is damaged; delete it and re-run with --full"
            raise StateError(msg) from None
        if isinstance(data, dict) and data.get("version") == 1:
            # written before manifests: it has exported into its directory already
            data.update(version=STATE_VERSION, claimed=bool(data.get("watermark")))
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            msg = (
                f"export state {self.label} has an unknown version; delete it and re-run with "
                "--full"
            )
            raise StateError(msg)
        self.data = data
        return data

    def save(self) -> None:
        """Atomically replace the document (a reader sees the old or the new one)."""
        payload = json.dumps(self.data, indent=1, sort_keys=True).encode()
        self.files.write_blob(self.name, payload)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive lock for one run; LockHeldError (exit 5) when another run has it."""
        name = self.name.removesuffix(".json") + ".lock"
        label = self.files.blob_label(name)
        with self.files.lock(
            name,
            busy=lambda holder: (
                "another export of this stream to this directory is running "
                f"(lock {label}{', held by ' + holder if holder else ''}); wait for it to "
                "finish"
            ),
        ):
            yield
