"""Run reports: what one recorded run did, as data and as a static HTML page.

Modules:

* ``kraiter_sync.api.timeline`` (re-exported here) — :class:`Timeline`, the bounded
  per-second request counters a run fills while it sends (through
  :class:`TimelineObserver` around the rate controller, and the engine's retry hook; the
  run context attaches it to every run) and stores with its run record.
* ``contents`` — a run record (and its rejects file) → :class:`RunReport`: pure data.
* ``html`` — :class:`RunReport` → one self-contained page (plotly.js inlined, no network),
  written atomically. plotly is the extra ``kraiter-sync[report]``.

:func:`show_run` and :func:`write_run_report` are the library side of
``kraiter-sync runs show N [--html PATH]`` and ``import --report PATH``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from kraiter_sync.api.timeline import Timeline, TimelineObserver, record_requests

if TYPE_CHECKING:
    from kraiter_sync.report.contents import RunReport
    from kraiter_sync.state.runs import RunRecord

__all__ = [
    "RunReport",
    "Timeline",
    "TimelineObserver",
    "build_report",
    "record_requests",
    "render_html",
    "show_run",
    "write_run_report",
]


def show_run(state_dir: str | Path, run_id: int, *, state: str | None = None) -> RunRecord:
    """Run ``run_id`` of the state directory (or of the state URL ``state``), with its
    details (InputError if unknown)."""
    from kraiter_sync.errors import InputError
    from kraiter_sync.state.backend import open_state

    if state is None and not (Path(state_dir) / "ledger.db").exists():
        msg = f"no runs are recorded in {state_dir}: pass the --state-dir the run used"
        raise InputError(msg)
    with open_state(state_dir, state) as store:
        store.mark_killed_runs()  # a run whose process died still says "running"
        record = store.get_run(run_id)
        where = store.display
    if record is None:
        msg = f"there is no run {run_id} in {where}: `kraiter-sync runs` lists them"
        raise InputError(msg)
    return record


def build_report(record: RunRecord, *, samples_per_rule: int = 3) -> RunReport:
    """See :func:`kraiter_sync.report.contents.build_report`."""
    from kraiter_sync.report.contents import build_report as build

    return build(record, samples_per_rule=samples_per_rule)


def render_html(report: RunReport) -> str:
    """See :func:`kraiter_sync.report.html.render_html`."""
    from kraiter_sync.report.html import render_html as render

    return render(report)


def write_run_report(
    state_dir: str | Path, run_id: int, path: str | Path, *, state: str | None = None
) -> Path:
    """Write the HTML report of run ``run_id`` to ``path``; returns the path."""
    from kraiter_sync.report.html import require_plotly, write_html

    require_plotly()
    return write_html(build_report(show_run(state_dir, run_id, state=state)), path)


def __getattr__(name: str) -> object:
    if name == "RunReport":
        from kraiter_sync.report.contents import RunReport

        return RunReport
    msg = f"module 'kraiter_sync.report' has no attribute {name!r}"
    raise AttributeError(msg)
