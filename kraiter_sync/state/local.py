"""The default state store: SQLite and files in the state directory, on this machine.

* :class:`StateFiles` — blobs as files (``<state>/export/*.json``,
  ``<state>/sync/*.parquet``), each replaced atomically (``files.atomic_write``), and locks
  as ``flock`` files that the kernel releases when their holder dies.
* :class:`LocalStore` — the SQLite :class:`~kraiter_sync.state.ledger.Ledger`
  (``<state>/ledger.db``) with those files beside it: the whole
  :class:`~kraiter_sync.state.store.StateStore`.

The layout is the one earlier versions wrote, so nothing moves for today's users.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from kraiter_sync.errors import StateError, is_disk_full, os_reason
from kraiter_sync.files import atomic_write, file_lock
from kraiter_sync.state.ledger import Ledger
from kraiter_sync.state.lock import state_lock
from kraiter_sync.state.store import BusyMessage

__all__ = ["BLOB_AREAS", "LocalStore", "StateFiles"]

#: The folders of the state directory that hold blobs (what ``state migrate`` copies).
BLOB_AREAS = ("export/", "sync/")


class StateFiles:
    """Blobs and locks as files in one state directory (thread-safe: no connection)."""

    def __init__(self, state_dir: Path | str) -> None:
        self.directory = Path(state_dir)
        self.display = str(self.directory)

    def _path(self, name: str) -> Path:
        return self.directory / name

    def blob_label(self, name: str) -> str:
        return str(self._path(name))

    def read_blob(self, name: str) -> bytes | None:
        path = self._path(name)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            msg = f"cannot read the state file {path}: {os_reason(exc)}"
            raise StateError(msg) from None

    def write_blob(self, name: str, data: bytes) -> None:
        path = self._path(name)
        try:
            atomic_write(path, data)
        except OSError as exc:
            hint = (
                "free some space"
                if is_disk_full(exc)
                else "the state directory must be writable: pass --state-dir with a folder "
                "you can write"
            )
            msg = f"cannot write the state file {path}: {os_reason(exc)}; {hint}"
            raise StateError(msg) from None

    def _matching(self, prefix: str) -> Iterator[Path]:
        folder, _, start = prefix.rpartition("/")
        directory = self.directory / folder
        if not directory.is_dir():
            return
        for path in sorted(directory.iterdir()):
            name = path.name
            if (
                name.startswith(start)
                and not name.startswith(".")  # atomic_write's temporary files
                and not name.endswith(".lock")
                and path.is_file()
            ):
                yield path

    def list_blobs(self, prefix: str) -> list[str]:
        """Names of the blobs under ``prefix`` (e.g. ``"export/"``), sorted."""
        return [path.relative_to(self.directory).as_posix() for path in self._matching(prefix)]

    def delete_blobs(self, prefix: str, *, keep: str | None = None) -> int:
        removed = 0
        for path in self._matching(prefix):
            if keep is None or path != self._path(keep):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    @contextlib.contextmanager
    def lock(self, name: str, *, busy: BusyMessage) -> Iterator[None]:
        """``flock`` on ``<state>/<name>``; the holder's pid is written into it."""
        with file_lock(
            self._path(name),
            record_pid=True,
            busy=lambda pid: busy(f"pid {pid}" if pid else ""),
            unusable=lambda exc: (
                f"cannot use the state directory {self.directory}: {exc.strerror}; it must "
                "be writable: pass --state-dir (or set KRAITER_SYNC_STATE_DIR) with a folder "
                "you can write"
            ),
        ):
            yield

    @contextlib.contextmanager
    def run_lock(self, target: str) -> Iterator[None]:
        """One run at a time per state directory, whatever the target (``state_lock``)."""
        with state_lock(self.directory):
            yield

    def close(self) -> None:
        """Nothing to close: every call opens and closes its own file."""

    def __enter__(self) -> StateFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalStore(Ledger):
    """The SQLite ledger of a state directory, with its blobs and locks as files."""

    def __init__(self, state_dir: Path | str) -> None:
        self.files = StateFiles(state_dir)
        self.display = self.files.display
        super().__init__(self.files.directory / "ledger.db")

    def __enter__(self) -> LocalStore:
        return self

    def read_blob(self, name: str) -> bytes | None:
        return self.files.read_blob(name)

    def write_blob(self, name: str, data: bytes) -> None:
        self.files.write_blob(name, data)

    def delete_blobs(self, prefix: str, *, keep: str | None = None) -> int:
        return self.files.delete_blobs(prefix, keep=keep)

    def list_blobs(self, prefix: str) -> list[str]:
        return self.files.list_blobs(prefix)

    def blob_label(self, name: str) -> str:
        return self.files.blob_label(name)

    def lock(self, name: str, *, busy: BusyMessage) -> contextlib.AbstractContextManager[None]:
        return self.files.lock(name, busy=busy)

    def run_lock(self, target: str) -> contextlib.AbstractContextManager[None]:
        return self.files.run_lock(target)
