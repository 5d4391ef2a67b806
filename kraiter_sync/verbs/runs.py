"""The ``runs`` verb: the history of runs recorded in a state directory."""

from __future__ import annotations

from pathlib import Path

from kraiter_sync.state.ledger import Ledger
from kraiter_sync.state.runs import RunRecord

__all__ = ["runs"]


def runs(state_dir: Path | str, *, limit: int = 20) -> list[RunRecord]:
    """The latest runs, most recent first; a run whose process died without finishing is
    marked ``killed`` (it said ``running`` forever). No ledger yet: no runs."""
    path = Path(state_dir) / "ledger.db"
    if not path.exists():
        return []
    with Ledger(path) as ledger:
        ledger.mark_killed_runs()
        return ledger.list_runs(limit=limit)
