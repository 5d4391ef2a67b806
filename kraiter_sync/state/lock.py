"""The state directory and its lock: one run at a time per state directory."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from kraiter_sync.errors import StateError
from kraiter_sync.files import file_lock

__all__ = ["ensure_state_dir", "state_lock"]


def ensure_state_dir(state_dir: Path | str) -> Path:
    """Create the state directory (and its parents); a StateError saying what to do when
    it cannot be (read-only mount, no permission, a file in the way)."""
    directory = Path(state_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = (
            f"cannot create the state directory {directory}: {exc.strerror or exc}; pass "
            "--state-dir (or set KRAITER_SYNC_STATE_DIR) with a folder you can write"
        )
        raise StateError(msg) from exc
    return directory


@contextlib.contextmanager
def state_lock(state_dir: Path | str) -> Iterator[Path]:
    """Hold the state directory's lock (``<state>/lock``) for the duration.

    ``fcntl.flock`` is released by the kernel when the holder dies, so a lock left by
    a killed run is taken over without any stale-lock guessing. The holder's pid is
    written into the file so a refused run can name it.

    Not re-entrant: a run takes it once (``upload.context.locked_state``); ``sync`` holds
    it around all its jobs and runs each through the verbs' lock-free inner functions.
    """
    directory = Path(state_dir)
    ensure_state_dir(directory)
    with file_lock(
        directory / "lock",
        record_pid=True,
        busy=lambda holder: (
            f"another kraiter-sync run (pid {holder or 'unknown'}) is using the state "
            f"directory {directory}; wait for it to finish, or use another --state-dir"
        ),
        unusable=lambda exc: (
            f"cannot create the lock in {directory}: {exc.strerror}; the state directory "
            "must be writable: pass --state-dir (or set KRAITER_SYNC_STATE_DIR) with a "
            "folder you can write"
        ),
    ) as lock:
        yield lock
