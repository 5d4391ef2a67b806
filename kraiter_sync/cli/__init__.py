"""The ``kraiter-sync`` command line: thin click commands over the library.

Each command parses its options, calls the library function of the same verb, and
renders the result. Every failure goes through one funnel (:class:`_Group.invoke`):
a :class:`~kraiter_sync.errors.KraiterSyncError` becomes one line on stderr and its
exit code, never a traceback.

Exit codes: 0 success; 1 failed; 2 usage or configuration error; 3 finished with
rejected rows; 4 incomplete (interrupted or out of retries; re-running resumes); 5 busy
(another run holds the state lock; nothing was started).
"""

from __future__ import annotations

from kraiter_sync.cli import (  # noqa: F401  (each module registers its commands)
    emulator,
    export,
    importing,
    migrate,
    rebuild,
    reconcile,
    restore,
    retry,
    runs,
    state,
    sync,
    validate,
)
from kraiter_sync.cli.app import main

__all__ = ["main"]
