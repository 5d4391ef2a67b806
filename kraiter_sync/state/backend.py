"""Which state store a run uses: today the SQLite ledger in the state directory.

The one place that picks a backend; a second one (PostgreSQL, shared by several
machines) is chosen here from the settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kraiter_sync.state.ledger import Ledger

if TYPE_CHECKING:
    from kraiter_sync.config import Settings

__all__ = ["open_store"]


def open_store(settings: Settings) -> Ledger:
    """The state store for ``settings`` (close it, or use it as a context manager)."""
    return Ledger(settings.ledger_path)
