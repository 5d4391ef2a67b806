"""Running one export: read steps, buffer rows, checkpoint them into a sink.

A run reads its stream (``reading``) into a buffer and *commits* it every
``chunk_rows`` rows (or ``commit_seconds``): the sink makes the chunk's rows and the
positions they were read up to durable together (a checkpoint file and the state
document, or one database transaction). When the stream is read to its end the sink
*finishes* the run (files built and put in place, a snapshot's vanished rows deleted).
Whatever kills the process, the next run starts exactly after the last commit.

Sinks (``folder.FolderSink``, ``tables.TableSink``, :class:`MemorySink`) decide where a
run starts (:class:`Start`): a new run, an interrupted one resumed, or a full export
because the output no longer matches its state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Protocol

import polars as pl

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.errors import IncompleteError, KraiterSyncError
from kraiter_sync.export.options import (
    Clock,
    ExportOptions,
    ExportResult,
    Progress,
    ProgressSink,
    log_progress,
)
from kraiter_sync.export.paging import ContactDirectory, Fetcher, Position
from kraiter_sync.export.reading import UNCHANGED, Step, contact_steps, feed_steps
from kraiter_sync.export.streams import StreamSpec, shape_rows
from kraiter_sync.export.writers import concat_frames
from kraiter_sync.logs import get_logger

__all__ = ["CONVERT_ROWS", "MemorySink", "Runner", "Sink", "Start", "begin_run"]


log = get_logger("export")

#: Rows converted to a frame at a time: large enough that polars' per-call cost
#: vanishes, small enough that the conversion overlaps with fetching the next pages.
CONVERT_ROWS = 1_000

Item = dict[str, Any]


@dataclass
class Start:
    """Where a run starts reading, as its sink decided."""

    #: The run's options (an interrupted run is finished with those it started with).
    options: ExportOptions
    #: ``{"pos": position}`` or ``{"contacts": {id: position}}``; None: from the start.
    watermark: dict[str, Any] | None = None
    #: The position over the contacts of a per-contact stream.
    driver: Any = None


def begin_run(
    result: ExportResult,
    spec: StreamSpec,
    run: dict[str, Any],
    *,
    name: str,
    resumed: bool,
    window: str | None,
) -> None:
    """What a sink tells about the run it starts: resumed (logged), and its mode."""
    if resumed:
        result.resumed = True
        log.warning(
            "resuming the interrupted %s export started %s (%s rows so far)",
            name,
            run["id"].split("-")[0],
            f"{run.get('rows', 0):,}",
        )
    if not spec.incremental:
        result.mode = "snapshot"
    elif window is not None:
        result.mode = "window"
    else:
        result.mode = "full" if run["full"] else "incremental"


class Sink(Protocol):
    """Where a run's rows go (see the module docstring)."""

    result: ExportResult

    def start(self) -> Start: ...

    def commit(self, frame: pl.DataFrame, watermark: dict[str, Any], driver: Any) -> None:
        """(worker thread) Make ``frame`` and the positions after it durable together."""

    def finish(self) -> None:
        """The stream was read to its end: complete the run."""

    def stop(self) -> None:
        """The run stops early (out of retries) after its last commit."""


class MemorySink:
    """Frames in memory, nothing remembered (``read_stream``)."""

    def __init__(self, options: ExportOptions, result: ExportResult) -> None:
        self.options = options
        self.result = result
        self.frames: list[pl.DataFrame] = []

    def start(self) -> Start:
        return Start(self.options)

    def commit(self, frame: pl.DataFrame, watermark: dict[str, Any], driver: Any) -> None:
        if frame.height:
            self.frames.append(frame)

    def finish(self) -> None:
        self.result.rows_total = self.result.rows

    def stop(self) -> None:
        return None


class Runner:
    """One export run (or a resumed one) of one stream into one sink."""

    def __init__(
        self,
        client: KraiterClient,
        spec: StreamSpec,
        options: ExportOptions,
        fetcher: Fetcher,
        sink: Sink,
        *,
        clock: Clock,
        progress: ProgressSink | None = None,
    ) -> None:
        self.client = client
        self.spec = spec
        self.options = options
        self.fetcher = fetcher
        self.sink = sink
        self.clock = clock
        self.result = sink.result
        self.buffer: list[Item] = []  # items not converted yet
        self.converted: list[pl.DataFrame] = []  # frames of this chunk, not committed yet
        self.buffered = 0  # rows in buffer + converted
        self._converting: asyncio.Future[pl.DataFrame] | None = None
        self._committing: asyncio.Future[None] | None = None
        self._saved_marks: tuple[Any, Any] | None = None
        self.directory_of_contacts = ContactDirectory(fetcher, limit=options.page_size)
        self.last_commit = clock()
        self.progress = Progress(spec.name, fetcher, clock, progress or log_progress)
        # working positions (saved with each commit)
        self.pos = Position()
        self.contact_pos: dict[str, Position] = {}
        self.driver: Any = None

    # ---- buffering and commits --------------------------------------------------------

    async def _resolve(self, items: Sequence[Item]) -> None:
        if self.spec.needs_emails:
            wanted = set(map(dict.get, items, repeat("contactId")))
            wanted.difference_update(self.directory_of_contacts.emails)
            wanted.discard(None)
            if wanted:
                await self.directory_of_contacts.resolve(wanted)

    def _frame_sync(self, items: Sequence[Item]) -> pl.DataFrame:
        directory = self.directory_of_contacts if self.spec.needs_emails else None
        opts = self.options
        return shape_rows(self.spec, opts, items, directory, opts.since, opts.until)

    def _due(self) -> bool:
        return (
            self.buffered >= self.options.chunk_rows
            or self.clock() - self.last_commit >= self.options.commit_seconds
        )

    async def _add(self, items: list[Item]) -> None:
        """Buffer rows; every CONVERT_ROWS, convert them while the next pages come in."""
        self.buffer.extend(items)
        self.buffered += len(items)
        if len(self.buffer) >= CONVERT_ROWS:
            await self._convert()

    async def _convert(self) -> None:
        """Start converting the buffer in the background (one conversion at a time)."""
        if not self.buffer:
            return
        # Emails first: if that fails, the rows stay buffered (nothing is dropped).
        await self._resolve(self.buffer)
        items, self.buffer = self.buffer, []
        if self._converting is not None:
            self.converted.append(await self._converting)
        self._converting = asyncio.ensure_future(asyncio.to_thread(self._frame_sync, items))

    async def _converted(self) -> list[pl.DataFrame]:
        await self._convert()
        if self._converting is not None:
            task, self._converting = self._converting, None
            self.converted.append(await task)
        frames, self.converted = self.converted, []
        return frames

    async def _maybe_commit(self) -> None:
        self.progress.tick(self.result.rows + self.buffered)
        if self._due():
            await self._commit()

    def _watermark_json(self) -> dict[str, Any]:
        if self.spec.source == "contact_pages":
            return {"contacts": {cid: p.to_json() for cid, p in self.contact_pos.items()}}
        return {"pos": self.pos.to_json()}

    async def _commit(self, *, final: bool = False) -> None:
        """Hand the buffered rows and the positions after them to the sink.

        The sink writes in a worker thread while fetching goes on; the next commit (and
        the end of the run) waits for it first, so chunks land in order.
        """
        frames = await self._converted()
        self.buffered = 0
        self.last_commit = self.clock()
        await self._settle_commit()
        marks = (self._watermark_json(), self.driver)
        if not any(f.height for f in frames) and marks == self._saved_marks:
            return  # nothing new to write or to remember
        self._saved_marks = marks
        frame = concat_frames(frames, self.spec.schema)
        self._committing = asyncio.ensure_future(asyncio.to_thread(self._write, frame, marks))
        if final:
            await self._settle_commit()

    def _write(self, frame: pl.DataFrame, marks: tuple[Any, Any]) -> None:
        watermark, driver = marks
        self.sink.commit(frame, watermark, driver)
        self.result.rows += frame.height

    async def _settle_commit(self) -> None:
        if self._committing is not None:
            task, self._committing = self._committing, None
            await task

    async def _settle(self) -> None:
        """After a failure: let background work finish (its journal stays consistent)."""
        for name in ("_converting", "_committing"):
            task = getattr(self, name)
            setattr(self, name, None)
            if task is not None:
                with contextlib.suppress(Exception):
                    await task

    # ---- reading ----------------------------------------------------------------------

    def _apply(self, step: Step) -> None:
        if step.position is not None:
            if step.contact is None:
                self.pos = step.position
            elif self.spec.source == "contact_pages":
                self.contact_pos[step.contact] = step.position
        if step.driver is not UNCHANGED:
            self.driver = step.driver

    async def _read(self) -> None:
        opts = self.options
        if self.spec.source == "feed":
            steps = feed_steps(self.fetcher, self.spec, self.pos, page_size=opts.page_size)
        else:
            steps = contact_steps(
                self.fetcher,
                self.client,
                self.spec,
                listed=opts.contacts,
                driver=self.driver,
                positions=dict(self.contact_pos),
                page_size=opts.page_size,
                concurrency=opts.concurrency,
                not_found=self.result.contacts_not_found,
            )
        async for step in steps:
            if step.items:
                await self._add(step.items)
            self._apply(step)
            await self._maybe_commit()

    def _begin(self) -> None:
        start = self.sink.start()
        self.options = start.options
        watermark = start.watermark or {}
        if self.spec.source == "contact_pages":
            self.contact_pos = {
                cid: Position.from_json(p) for cid, p in (watermark.get("contacts") or {}).items()
            }
        else:
            self.pos = Position.from_json(watermark.get("pos"))
        self.driver = start.driver

    async def execute(self) -> ExportResult:
        started = self.clock()
        self._begin()
        try:
            await self._read()
        except KraiterSyncError as exc:
            if not exc.retriable:
                await self._settle()
                raise
            # Out of retries: keep what was read, then stop resumably (exit 4).
            try:
                await self._commit(final=True)
                self.sink.stop()
            except KraiterSyncError:
                await self._settle()  # those rows are read again by the next run
            msg = (
                f"export of {self.spec.name} stopped after {self.result.rows:,} rows: {exc}; "
                "re-run the same command to resume"
            )
            raise IncompleteError(msg) from exc
        except BaseException:
            await self._settle()
            raise
        await self._commit(final=True)
        self.sink.finish()
        self.progress.tick(self.result.rows, force=True)
        self.result.requests = self.fetcher.requests
        self.result.retries = self.fetcher.retries
        self.result.seconds = self.clock() - started
        return self.result
