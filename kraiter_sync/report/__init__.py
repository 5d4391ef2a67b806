"""Run reports: what one recorded run did.

Modules:

* ``timeline`` — :class:`Timeline`, the bounded per-second request counters a run fills
  while it sends (through :class:`TimelineObserver` around the rate controller, and the
  engine's retry hook) and stores with its run record. Standard library only.
"""

from __future__ import annotations

from kraiter_sync.report.timeline import Timeline, TimelineObserver, record_requests

__all__ = ["Timeline", "TimelineObserver", "record_requests"]
