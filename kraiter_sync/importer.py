"""``import``: files → validated frames → plan against the ledger → upload → report.

Two passes keep memory flat and make the safety checks possible before anything is
sent:

1. **Validate** every input in chunks. Invalid rows go to the rejects file; valid
   events are spooled to Parquet parts in the state directory; the event names and
   contact emails seen are collected.
2. **Send.** Contacts first (created or patched; unchanged ones skipped by hash).
   Then, for events: the sequence-trigger guard, one upsert per contact the events
   refer to that the ledger does not know yet, verification of keys a killed run left
   ``inflight``, and finally the spool, chunk by chunk, minus the keys the ledger has
   already seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from kraiter_sync.client import KraiterClient
from kraiter_sync.config import Settings
from kraiter_sync.errors import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_REJECTED,
    GuardError,
)
from kraiter_sync.ledger import Ledger, state_lock
from kraiter_sync.logs import get_logger
from kraiter_sync.ratelimit import RateController
from kraiter_sync.retry import RetryPolicy
from kraiter_sync.upload import (
    ContactRow,
    Engine,
    EngineOptions,
    EngineStats,
    EventRow,
    Outcome,
    rows_of_events,
)

__all__ = ["ImportOptions", "ImportResult", "import_"]

log = get_logger("import")
Kind = Literal["events", "contacts"]


@dataclass(frozen=True)
class ImportOptions:
    """Everything ``kraiter-sync import`` takes besides the paths and the target."""

    kind: Kind | None = None
    connector: str | None = None
    mapping: dict[str, str] = field(default_factory=dict)
    timezone: str = "UTC"
    rejects: Path | None = None
    dry_run: bool = False
    concurrency: int = 16
    rate: float | None = None
    max_retries: int = 5
    allow_triggers: bool = False
    chunk_size: int = 100_000


@dataclass
class KindCounts:
    """What happened to every row of one kind (the row-accounting invariant holds)."""

    read: int = 0
    valid: int = 0
    duplicates: int = 0
    invalid: int = 0
    already: int = 0  # done in an earlier run
    previously_rejected: int = 0
    sent: int = 0  # created (events) or created/updated (contacts) in this run
    verified: int = 0  # ambiguous outcomes found already applied
    unchanged: int = 0
    rejected: int = 0  # refused by Kraiter
    failed: int = 0  # out of retries: re-run to resume
    pending: int = 0  # not attempted (interrupted or dry run)


@dataclass
class ImportResult:
    run_id: int
    events: KindCounts = field(default_factory=KindCounts)
    contacts: KindCounts = field(default_factory=KindCounts)
    rejects_path: Path | None = None
    duration_s: float = 0.0
    requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    interrupted: bool = False
    dry_run: bool = False

    @property
    def exit_code(self) -> int:
        incomplete = self.interrupted or any(
            c.failed or (c.pending and not self.dry_run) for c in (self.events, self.contacts)
        )
        if incomplete:
            return EXIT_INCOMPLETE
        if any(c.invalid or c.rejected for c in (self.events, self.contacts)):
            return EXIT_REJECTED
        return EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rejects_path"] = str(self.rejects_path) if self.rejects_path else None
        out["exit_code"] = self.exit_code
        return out


def _hash_contact(row: ContactRow) -> str:
    return hashlib.sha256(f"{row.user_id}\x1f{row.properties}".encode()).hexdigest()[:24]
