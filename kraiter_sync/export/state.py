"""Export state: the watermark, the run and the manifest of one (target, stream, output).

Stored as a small JSON document, one per target + stream (or window) + output: two
outputs of the same stream never share a watermark. It lives in the state store's blobs
(``state.store.Blobs``): a file under ``<state dir>/export/`` written atomically
(``files.atomic_write``), or a row of the PostgreSQL store, under the same name. The
document holds a schema version, the committed watermark, the unfinished run (its
checkpoints and positions), the journal of the last step that puts files in place
(``swap``) or compacts them (``compact``), and the manifest of the stream folder
(``files``: every file, with its rows and bytes; ``claimed``: the folder was taken, see
``output``). A database target keeps its watermark in the database, in the same
transaction as the rows (``tables``); its document here only carries the lock.

Older versions are read and upgraded: version 1 (before manifests) counts its folder as
claimed; version 2 (a file per chunk and partition) keeps its manifest and watermark,
and its unfinished run is started again from that watermark (an incremental run's
chunks were already in place; a full run's staging is discarded).

Why not the ledger's watermarks table: the document is saved from the checkpoint-writer
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

STATE_VERSION = 3
#: The blob names of export states start with this.
PREFIX = "export/"


def state_name(target: str, stream: str, out: Path | str) -> str:
    """The blob name of the state of (target, stream or window label, output): ``out``
    is the output directory, or a database target's identity (its URL without the
    password)."""
    where = out if isinstance(out, str) else str(out.resolve())
    digest = hashlib.sha256(f"{target}\n{where}".encode()).hexdigest()[:16]
    return f"{PREFIX}{stream}-{digest}.json"


def state_path(state_dir: Path, target: str, stream: str, out: Path | str) -> Path:
    """Where that state lives in a state directory."""
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
        #: Where the document is, safe to print (a file path, or the store and name).
        self.label = self.files.blob_label(self.name)
        self.data: dict[str, Any] = {}

    @classmethod
    def in_store(cls, files: SharedFiles, target: str, stream: str, out: Path | str) -> ExportState:
        """The state of (target, stream, output) in ``files``."""
        return cls(Path(state_name(target, stream, out)), files=files)

    def load(self) -> dict[str, Any]:
        raw = self.files.read_blob(self.name)
        if raw is None:
            self.data = {"version": STATE_VERSION}
            return self.data
        try:
            data = json.loads(raw.decode("utf-8"))
        except ValueError:
            msg = f"export state {self.label} is damaged; delete it and re-run with --replace"
            raise StateError(msg) from None
        if isinstance(data, dict) and data.get("version") == 1:
            # written before manifests: it has exported into its directory already
            data.update(version=2, claimed=bool(data.get("watermark")), adopt=True)
        if isinstance(data, dict) and data.get("version") == 2:
            # a file per chunk: its run is started again from the committed watermark
            data.update(version=STATE_VERSION, run=None)
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            msg = (
                f"export state {self.label} has an unknown version; delete it and re-run with "
                "--replace"
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
