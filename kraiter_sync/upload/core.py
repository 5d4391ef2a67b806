"""What every engine operation shares: one client, one rate budget, one retry policy, one
state store, one stop switch, one bounded worker pool, one set of counters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.api.pool import worker_pool
from kraiter_sync.api.retry import RetryPolicy, call_with_retry
from kraiter_sync.state.store import StateStore
from kraiter_sync.upload.rows import Outcome, RejectSink

if TYPE_CHECKING:
    from kraiter_sync.api.ratelimit import RateController

__all__ = ["EngineCore", "EngineOptions", "EngineStats", "Snapshot"]

T = TypeVar("T")


@dataclass(frozen=True)
class EngineOptions:
    """Knobs of the engine; the CLI's --concurrency and --max-retries land here."""

    concurrency: int = 16
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Keys marked inflight per ledger transaction (also the done/rejected flush size).
    batch_size: int = 500
    #: Sends whose outcome is unknown (answer lost, timeout, 5xx) wait, inflight, to be
    #: checked together once per (contact, name) late in the run; past this many the
    #: waiting ones are checked before more is sent (it bounds what the engine holds).
    unchecked_limit: int = 20_000


@dataclass
class EngineStats:
    """Counters for the summary and the progress display."""

    events_sent: int = 0
    events_verified: int = 0  # ambiguous outcomes found already applied in Kraiter
    events_rejected: int = 0
    events_failed: int = 0  # out of retries; left for the next run
    contacts_created: int = 0
    contacts_updated: int = 0
    contacts_unchanged: int = 0
    contacts_deleted: int = 0
    contacts_rejected: int = 0
    contacts_failed: int = 0
    retries: int = 0
    verifications: int = 0


@dataclass(frozen=True)
class Snapshot:
    """Where a run stands, for a progress display (``cli.progress``)."""

    done: int
    total: int
    retries: int
    rate_limited: int
    #: Requests/s the rate controller currently allows (None: unpaced).
    rate_budget: float | None
    #: Requests made so far.
    requests: int = 0
    #: This run's part of the tenant's limit (0-1) when runs share it (None: not shared).
    share: float | None = None

    @classmethod
    def of(cls, stats: EngineStats, *, total: int, controller: RateController | None) -> Snapshot:
        """Records settled by the engine so far, of ``total`` (restore, applying a plan)."""
        done = (
            stats.contacts_created
            + stats.contacts_updated
            + stats.contacts_unchanged
            + stats.contacts_deleted
            + stats.contacts_rejected
            + stats.contacts_failed
            + stats.events_sent
            + stats.events_verified
            + stats.events_rejected
            + stats.events_failed
        )
        rate = controller.stats() if controller is not None else None
        return cls(
            done=done,
            total=total,
            retries=stats.retries,
            rate_limited=rate.rate_limited if rate else 0,
            rate_budget=rate.rate if rate else None,
            requests=rate.requests if rate else 0,
        )


class EngineCore:
    """The shared parts; :class:`~kraiter_sync.upload.engine.Engine` adds the operations."""

    def __init__(
        self,
        client: KraiterClient,
        store: StateStore,
        *,
        target: str,
        run_id: int | None,
        options: EngineOptions | None = None,
        controller: RateController | None = None,
        on_rejected: RejectSink | None = None,
        on_progress: Callable[[EngineStats], None] | None = None,
        on_retry: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.target = target
        self.run_id = run_id
        self.options = options or EngineOptions()
        #: The client's rate controller (None when the client was built without one).
        self.controller = controller
        self.stats = EngineStats()
        self._on_rejected = on_rejected
        self._on_progress = on_progress
        self._on_retry = on_retry
        self._stop = asyncio.Event()

    @property
    def requests(self) -> int:
        """HTTP requests the client has issued so far, retries included (0 when it was
        built without a rate controller, which counts them)."""
        return self.controller.stats().requests if self.controller is not None else 0

    # -- stopping ------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop issuing new requests; in-flight ones finish and are recorded."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self.should_stop()

    def should_stop(self) -> bool:
        """Whether a stop was requested (a method: the answer changes while awaiting)."""
        return self._stop.is_set()

    # -- shared plumbing -----------------------------------------------------------------

    @asynccontextmanager
    async def pool(
        self, handle: Callable[[T], Awaitable[None]]
    ) -> AsyncIterator[Callable[[T], Awaitable[None]]]:
        """The bounded worker pool (``api.pool``); a handler's bug stops the engine."""
        async with worker_pool(
            handle, concurrency=self.options.concurrency, on_error=self.request_stop
        ) as put:
            yield put

    async def feed(self, items: Sequence[T], handle: Callable[[T], Awaitable[None]]) -> None:
        """Hand ``items`` to the pool until done or asked to stop."""
        async with self.pool(handle) as put:
            for item in items:
                if self.stopping:
                    break
                await put(item)

    async def with_retry(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run one call under the engine's retry policy, counting retries (and telling
        ``on_retry`` of each: the run's request timeline)."""

        def count(exc: BaseException, _attempt: int) -> None:
            self.note_retry(exc)

        return await call_with_retry(attempt, self.options.retry, before_retry=count)

    def note_retry(self, exc: BaseException) -> None:
        """Count one request sent again after ``exc`` (also a send again after a check)."""
        self.stats.retries += 1
        if self._on_retry is not None:
            self._on_retry(exc)

    def rejected(self, outcomes: Sequence[Outcome[Any]]) -> None:
        """Hand records Kraiter refused to the run's reject sink."""
        if outcomes and self._on_rejected is not None:
            self._on_rejected(outcomes)

    def progress(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self.stats)
