"""``kraiter-sync state``: the commands about the state store itself (one module each)."""

from __future__ import annotations

from kraiter_sync.cli.app import main


@main.group("state")
def state_group() -> None:
    """Look after the state (the ledger of what was sent to Kraiter).

    \b
    Commands:
      rebuild   rebuild the ledger from what Kraiter holds (after a lost state directory)
    """
