"""The ``state rebuild`` verb: the ledger rebuilt from what Kraiter holds.

When a ledger is lost (a new ``--state-dir``, a damaged file moved aside, another
machine), an import would send everything again; this reads Kraiter instead:

1. every contact (``GET /api/contacts``, 100 a page): the id → email map events need
   (Kraiter answers an event sent by email with its contact's id), recorded in the
   contact cache too, so the next import makes no contact it does not have to;
2. the tenant-wide event feed (``GET /api/events``, 100 a page): each event's keys,
   computed exactly as the importer computes them (``plan.remote_keys``), are marked
   ``done`` with the event's id, one transaction a page.

Requests: ``ceil(contacts / 100) + ceil(events / 100)``, plus retries. Resumable: the
feed's position is a watermark (``state:rebuild``) written after each page's keys, so a
killed or interrupted rebuild (exit 4) continues where it stopped; a finished one keeps
its position, and running it again reads only the events added since (``--from-start``
reads everything again). Nothing is written to Kraiter.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import polars as pl

from kraiter_sync.config import Settings
from kraiter_sync.errors import EXIT_INCOMPLETE, EXIT_OK, status_for_exit
from kraiter_sync.logs import get_logger
from kraiter_sync.plan.lost_state import (
    REBUILD_STREAM,
    estimate_rebuild_requests,
    record_checked,
)
from kraiter_sync.plan.remote_keys import contact_emails, remote_event_keys
from kraiter_sync.state.store import StateStore
from kraiter_sync.upload.context import ClientFactory, RunOptions, locked_state, recorded_run
from kraiter_sync.upload.engine import Engine

__all__ = [
    "REBUILD_STREAM",
    "RebuildOptions",
    "RebuildProgress",
    "RebuildResult",
    "rebuild_ledger",
    "rebuild_locked",
    "rebuild_state",
]

log = get_logger("rebuild")
_PAGE = 100
_LOG_EVERY_S = 10.0


@dataclass(frozen=True)
class RebuildOptions:
    """What ``kraiter-sync state rebuild`` takes besides the target."""

    #: Read the whole feed again instead of resuming from the recorded position.
    from_start: bool = False
    concurrency: int = 1
    rate: float | None = None
    max_retries: int = 5

    @property
    def run_options(self) -> RunOptions:
        return RunOptions(
            concurrency=self.concurrency, rate=self.rate, max_retries=self.max_retries
        )


@dataclass(frozen=True)
class RebuildProgress:
    """Where a rebuild stands (no total: Kraiter has no count endpoint)."""

    stage: str  # "contacts" | "events"
    contacts: int
    events: int
    keys: int
    requests: int


@dataclass
class RebuildResult:
    """What a rebuild read and recorded, and what it cost."""

    run_id: int | None = None
    contacts_read: int = 0
    #: Custom events read (the ones an import could have sent).
    events_read: int = 0
    #: Kraiter's own ``email.*`` events read past (never imported).
    system_events: int = 0
    keys_marked: int = 0
    contact_pages: int = 0
    event_pages: int = 0
    #: HTTP requests, retries included.
    requests: int = 0
    resumed: bool = False
    complete: bool = False
    duration_s: float = 0.0

    @property
    def expected_requests(self) -> int:
        """ceil(contacts / 100) + ceil(events / 100): one page per 100 of each."""
        return estimate_rebuild_requests(self.events_read + self.system_events, self.contacts_read)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.complete else EXIT_INCOMPLETE

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["expected_requests"] = self.expected_requests
        out["exit_code"] = self.exit_code
        return out

    def to_json(self) -> dict[str, Any]:
        """The ``state rebuild --json`` document (docs/schemas/state-rebuild.schema.json)."""
        doc: dict[str, Any] = {
            "command": "state rebuild",
            "status": status_for_exit(self.exit_code),
        }
        return {**doc, **self.as_dict()}


class _Pager:
    """One list, page by page through the engine's retries, counting what it costs."""

    def __init__(self, engine: Engine, path_key: str) -> None:
        self.engine = engine
        self.path_key = path_key

    async def page(self, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        client = self.engine.client
        page = await self.engine.with_retry(
            functools.partial(client.get_page, self.path_key, cursor=cursor, limit=_PAGE)
        )
        return page.items, page.next_cursor


async def rebuild_ledger(
    engine: Engine,
    *,
    from_start: bool = False,
    on_progress: Callable[[RebuildProgress], None] | None = None,
) -> RebuildResult:
    """Rebuild the engine's target in its store from Kraiter (module docstring); stops
    between pages when the engine is asked to (``complete`` stays False)."""
    store, target = engine.store, engine.target
    result = RebuildResult()
    started = time.monotonic()
    before = engine.requests
    last_log = started

    def tell(stage: str) -> None:
        nonlocal last_log
        result.requests = engine.requests - before
        progress = RebuildProgress(
            stage, result.contacts_read, result.events_read, result.keys_marked, result.requests
        )
        if on_progress is not None:
            on_progress(progress)
        now = time.monotonic()
        if now - last_log >= _LOG_EVERY_S:
            last_log = now
            log.info(
                "rebuild: %s contacts, %s events read, %s keys recorded, %s requests",
                f"{progress.contacts:,}",
                f"{progress.events:,}",
                f"{progress.keys:,}",
                f"{progress.requests:,}",
            )

    contacts = await _read_contacts(engine, result, lambda: tell("contacts"))
    if contacts is not None:
        await _read_events(engine, contacts, result, from_start, lambda: tell("events"))
    result.requests = engine.requests - before
    result.duration_s = time.monotonic() - started
    if result.complete:
        record_checked(
            store,
            target,
            "rebuild",
            events=result.events_read,
            requests=result.requests,
        )
    return result


async def _read_contacts(
    engine: Engine, result: RebuildResult, tell: Callable[[], None]
) -> pl.DataFrame | None:
    """Every contact's id and normalised email (None: stopped before the end); each page
    is recorded in the contact cache (its properties unknown: the hash is left alone)."""
    pager = _Pager(engine, "contacts.list")
    frames: list[pl.DataFrame] = []
    cursor: str | None = None
    while True:
        if engine.stopping:
            return None
        items, cursor = await pager.page(cursor)
        result.contact_pages += 1
        result.contacts_read += len(items)
        frame = contact_emails(items)
        frames.append(frame)
        if frame.height:
            engine.store.put_contacts(
                engine.target,
                [(email, cid, None) for cid, email in frame.iter_rows() if email],
            )
        tell()
        if cursor is None:
            return pl.concat(frames).unique("contact_id", keep="last")


async def _read_events(
    engine: Engine,
    contacts: pl.DataFrame,
    result: RebuildResult,
    from_start: bool,
    tell: Callable[[], None],
) -> None:
    store, target = engine.store, engine.target
    saved = None if from_start else store.get_watermark(target, REBUILD_STREAM)
    cursor: str | None = json.loads(saved)["cursor"] if saved else None
    result.resumed = cursor is not None
    pager = _Pager(engine, "events.list")
    while not engine.stopping:
        items, after = await pager.page(cursor)
        result.event_pages += 1
        keys = remote_event_keys(items, contacts)
        if keys.pairs:
            store.mark_done(target, keys.pairs)
        result.events_read += keys.events
        result.system_events += keys.system
        result.keys_marked += len(keys.pairs)
        # the last page has no next cursor: keep the one it was asked with (read again
        # next time, and whatever was added after it)
        position = {"cursor": after or cursor, "complete": after is None}
        store.set_watermark(target, REBUILD_STREAM, json.dumps(position))
        tell()
        if after is None:
            result.complete = True
            return
        cursor = after


def rebuild_locked(
    store: StateStore,
    *,
    settings: Settings,
    options: RebuildOptions | None = None,
    client_factory: ClientFactory | None = None,
    on_progress: Callable[[RebuildProgress], None] | None = None,
) -> RebuildResult:
    """:func:`rebuild_state` for a caller that holds the state lock."""
    options = options or RebuildOptions()
    args = {"from_start": options.from_start}
    with recorded_run(
        store,
        settings,
        "state rebuild",
        args,
        options=options.run_options,
        client_factory=client_factory,
    ) as run:

        async def main() -> RebuildResult:
            async with run.engine(graceful_stop=True) as engine:
                return await rebuild_ledger(
                    engine, from_start=options.from_start, on_progress=on_progress
                )

        result = asyncio.run(main())
        result.run_id = run.run_id
        run.counts = result.as_dict()
        run.status = "ok" if result.complete else "incomplete"
        return result


def rebuild_state(
    settings: Settings,
    *,
    options: RebuildOptions | None = None,
    client_factory: ClientFactory | None = None,
    on_progress: Callable[[RebuildProgress], None] | None = None,
) -> RebuildResult:
    """``kraiter-sync state rebuild``: record in the ledger every event Kraiter holds for
    the target, so an import after a lost ledger sends nothing twice."""
    with locked_state(settings) as store:
        return rebuild_locked(
            store,
            settings=settings,
            options=options,
            client_factory=client_factory,
            on_progress=on_progress,
        )
