"""The ``runs`` verb: the history of runs recorded in a state store."""

from __future__ import annotations

from pathlib import Path

from kraiter_sync.state.backend import open_state
from kraiter_sync.state.runs import RunRecord

__all__ = ["runs"]


def runs(state_dir: Path | str, *, limit: int = 20, state: str | None = None) -> list[RunRecord]:
    """The latest runs, most recent first; a run whose process died without finishing is
    marked ``killed`` (it said ``running`` forever). ``state``: a state URL (PostgreSQL)
    instead of the state directory's ledger. No ledger yet: no runs."""
    if state is None and not (Path(state_dir) / "ledger.db").exists():
        return []
    with open_state(state_dir, state) as store:
        store.mark_killed_runs()
        return store.list_runs(limit=limit)
