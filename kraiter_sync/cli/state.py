"""``kraiter-sync state``: the commands about the state store itself (one module each)."""

from __future__ import annotations

from kraiter_sync.cli.app import main


@main.group("state")
def state_group() -> None:
    """The state every run keeps: the ledger, runs, watermarks, caches, export state and
    locks (SQLite files in --state-dir, or a shared PostgreSQL store with --state).

    \b
    Commands:
      migrate   copy the SQLite state of --state-dir into PostgreSQL
      rebuild   rebuild the ledger from what Kraiter holds (after a lost state directory)
    """
