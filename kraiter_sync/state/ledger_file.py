"""The ledger's SQLite file: opened only when it is a ledger, created whole or not at all.

A ledger that is missing, empty or replaced must never pass for one that knows nothing
was sent (design.md §4: state is a cache of Kraiter's truth, and may be lost). So:

* a **new** ledger is built in a temporary file beside it (schema, WAL mode) and linked
  into place only when complete: no crash, full disk or concurrent opener ever leaves a
  zero-byte or schema-less ``ledger.db`` of ours behind;
* an **existing** file is opened only when it holds a kraiter-sync schema
  (``PRAGMA user_version`` ≥ 1): a zero-byte file, an SQLite database of something
  else, or a ``ledger.db`` copied without its ``-wal`` file (whose contents live in the
  WAL until a checkpoint) is refused with a :class:`~kraiter_sync.errors.StateError`,
  never taken for an empty ledger;
* every ``sqlite3`` error is translated here (:func:`translate`) into a ``StateError``
  naming the next step; a damaged ledger's leads to ``kraiter-sync state rebuild``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from kraiter_sync.errors import StateError

__all__ = ["REBUILD_ADVICE", "open_ledger_db", "translate"]

#: What to do once a ledger is gone: every message about a lost ledger ends with it.
REBUILD_ADVICE = (
    "rebuild it from what Kraiter holds with `kraiter-sync state rebuild`, or re-run the "
    "import with --rebuild (until then an import refuses to send events Kraiter already "
    "holds)"
)


def translate(exc: sqlite3.Error, path: Path) -> StateError:
    """The one sqlite3 → :class:`StateError` boundary, with the next step to take."""
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
        msg = (
            f"the ledger {path} is locked: is another kraiter-sync run using this state "
            "directory? Wait for it to finish, or use another --state-dir"
        )
    elif isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in text or "malformed" in text or "corrupt" in text
    ):
        msg = (
            f"the ledger {path} is damaged ({text}): what was sent can no longer be read "
            f"from it. Move it aside (mv {path} {path}.damaged), then {REBUILD_ADVICE}"
        )
    elif isinstance(exc, sqlite3.OperationalError) and (
        "readonly" in text or "unable to open" in text or "disk" in text
    ):
        msg = (
            f"cannot write the ledger {path} ({text}): check the state directory's "
            "permissions and free space"
        )
    else:
        msg = f"ledger error in {path}: {text}"
    return StateError(msg)


def _not_a_ledger(path: Path, what: str) -> StateError:
    msg = (
        f"{path} is {what}, not a kraiter-sync ledger: it cannot tell what was sent, and "
        f"is never taken for an empty one. If the ledger was copied without its "
        f"{path.name}-wal file, copy that back beside it; otherwise move it aside "
        f"(mv {path} {path}.unknown), then {REBUILD_ADVICE}"
    )
    return StateError(msg)


def _check_schema(db: sqlite3.Connection, path: Path) -> None:
    """An existing file must hold a kraiter-sync schema (checked before anything is
    written to it: a foreign file is left exactly as it was)."""
    if db.execute("PRAGMA user_version").fetchone()[0] != 0:
        return
    tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    what = "an SQLite database of something else" if tables else "an empty SQLite database"
    raise _not_a_ledger(path, what)


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=5.0, isolation_level=None)


def _use_wal(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")


def _create(path: Path, migrate: Callable[[sqlite3.Connection], None]) -> None:
    """Build the ledger in a temporary file beside ``path``, then link it into place
    (no-clobber: a ledger another process created meanwhile is kept)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
        leftover.unlink(missing_ok=True)
    try:
        db = _connect(tmp)
        try:
            _use_wal(db)
            migrate(db)
        finally:
            db.close()  # the last connection checkpoints the WAL into the file
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def open_ledger_db(path: Path, migrate: Callable[[sqlite3.Connection], None]) -> sqlite3.Connection:
    """A connection to the ledger at ``path``, created (by ``migrate``) when absent and
    migrated when older; a file that is not a ledger is refused (module docstring)."""
    try:
        if not path.exists():
            _create(path, migrate)
        elif path.is_file() and path.stat().st_size == 0:
            raise _not_a_ledger(path, "an empty file (0 bytes)")
        db = _connect(path)
    except sqlite3.Error as exc:
        raise translate(exc, path) from None
    except OSError as exc:
        msg = (
            f"cannot create the ledger {path} ({exc.strerror or exc}): check the state "
            "directory's permissions and free space"
        )
        raise StateError(msg) from None
    try:
        _check_schema(db, path)
        _use_wal(db)
        migrate(db)
    except sqlite3.Error as exc:
        db.close()
        raise translate(exc, path) from None
    except BaseException:
        db.close()
        raise
    return db
