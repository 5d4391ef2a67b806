"""Running one export: read pages, commit chunks of files, advance the watermark.

A run reads its stream page by page into a buffer and *commits* it every
``chunk_rows`` rows (or ``commit_seconds``): the chunk's files are written under
temporary names, the state document records the renames and the new position in one
atomic write, then the files are renamed. Whatever kills the process, the next run
first finishes recorded renames and deletes unrecorded temporary files, so each row is
in the output exactly once and the watermark never runs ahead of the files.

Incremental runs append new part files to ``<out>/<stream>/``. Full runs (``--full``,
``--since``, and every run of a snapshot stream) build a hidden staging directory next
to it and, at the end, replace the files the manifest lists with the new ones (also
journaled), so readers see the old output until the new one is complete. Only files
this tool wrote are ever replaced or deleted (``output``). An interrupted run is resumed
by the next invocation, whatever its flags.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path
from typing import Any

import polars as pl

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.errors import (
    IncompleteError,
    KraiterSyncError,
    NotFoundError,
    StateError,
    UsageError,
)
from kraiter_sync.export.options import (
    Clock,
    ExportOptions,
    ExportResult,
    Progress,
    ProgressSink,
    log_progress,
)
from kraiter_sync.export.output import (
    TMP_NAME,
    check_directory,
    refusal,
    replace_files,
    survey,
)
from kraiter_sync.export.paging import (
    ContactDirectory,
    Fetcher,
    Position,
    contact_list,
    iter_contacts,
    pages,
)
from kraiter_sync.export.state import ExportState
from kraiter_sync.export.streams import (
    StreamSpec,
    shape_rows,
)
from kraiter_sync.export.writers import (
    PendingFile,
    concat_frames,
    write_chunk,
)
from kraiter_sync.logs import get_logger

__all__ = ["CONVERT_ROWS", "Runner"]


log = get_logger("export")


#: Rows converted to a frame at a time: large enough that polars' per-call cost
#: vanishes, small enough that the conversion overlaps with fetching the next pages.
CONVERT_ROWS = 1_000


Item = dict[str, Any]


def _now_id() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


class Runner:
    """One export run (or a resumed one) of one stream."""

    def __init__(
        self,
        client: KraiterClient,
        spec: StreamSpec,
        options: ExportOptions,
        fetcher: Fetcher,
        *,
        out: Path | None,
        state: ExportState | None,
        clock: Clock,
        progress: ProgressSink | None = None,
    ) -> None:
        self.client = client
        self.spec = spec
        self.options = options
        self.fetcher = fetcher
        self.out = out
        self.state = state
        self.clock = clock
        self.directory = out / spec.name if out is not None else None
        self.buffer: list[Item] = []  # items not converted yet
        self.converted: list[pl.DataFrame] = []  # frames of this chunk, not written yet
        self.buffered = 0  # rows in buffer + converted
        self.frames: list[pl.DataFrame] = []  # in-memory sink (no output directory)
        self._converting: asyncio.Future[pl.DataFrame] | None = None
        self._committing: asyncio.Future[None] | None = None
        self._saved_marks: tuple[Any, Any] | None = None
        self.directory_of_contacts = ContactDirectory(fetcher, limit=options.page_size)
        self.last_commit = clock()
        self.progress = Progress(spec.name, fetcher, clock, progress or log_progress)
        self.result = ExportResult(
            spec.name,
            self.directory,
            options.format,
            "incremental" if spec.incremental else "snapshot",
        )
        self.data: dict[str, Any] = {}
        self.run: dict[str, Any] = {}
        # working positions (serialised into the state at each commit)
        self.pos = Position()
        self.contact_pos: dict[str, Position] = {}
        self.driver: Any = None
        self.since = options.since
        self.full = True

    # ---- state, recovery ---------------------------------------------------------------

    @property
    def _state(self) -> ExportState:
        if self.state is None:  # pragma: no cover - only file runs reach the state code
            msg = "no state: this run writes no files"
            raise RuntimeError(msg)
        return self.state

    @property
    def _dir(self) -> Path:
        if self.directory is None:  # pragma: no cover - as above
            msg = "no output directory: this run writes no files"
            raise RuntimeError(msg)
        return self.directory

    def _claim_output(self) -> None:
        """Survey the stream directory before anything is written (see ``output``)."""
        data = self.data
        check_directory(self._dir, self.spec.name)
        files = data.setdefault("files", {})
        found = survey(self._dir, files)
        if found.foreign and not data.get("claimed"):
            if not self.options.overwrite:
                raise refusal(self._dir, found.foreign)
            log.warning(
                "exporting into %s beside %d file(s) kraiter-sync did not write; they are "
                "left as they are",
                self._dir,
                len(found.foreign),
            )
        if found.adopted or not data.get("claimed"):
            files.update(found.adopted)
            data["claimed"] = True
            self._state.save()

    def _start(self) -> None:
        data = self._state.load()
        self.data = data
        self._recover()
        self._claim_output()
        run = data.get("run")
        opts = self.options
        if run:
            self.result.resumed = True
            log.warning(
                "resuming the interrupted %s export started %s (%s rows so far)",
                self.spec.name,
                run["id"].split("-")[0],
                f"{run.get('rows', 0):,}",
            )
            stored = run.get("options") or {}
            if stored and stored != opts.layout(with_contacts=True):
                log.warning(
                    "the interrupted run is finished with the options it started with (%s); "
                    "re-run afterwards for the new ones",
                    ", ".join(f"{k}={v}" for k, v in stored.items() if k != "contacts"),
                )
                contacts = stored.get("contacts")
                opts = self.options = replace(
                    opts,
                    format=stored["format"],
                    custom_only=stored["custom_only"],
                    flatten_properties=stored["flatten_properties"],
                    raw_csv=stored["raw_csv"],
                    contacts=tuple(contacts) if contacts is not None else None,
                )
                self.result.format = opts.format
        else:
            has_output = self._dir.exists()
            watermark = data.get("watermark")
            full = opts.full or opts.since is not None or not self.spec.incremental
            if not full and watermark and not has_output:
                log.warning(
                    "%s is missing although an earlier export wrote it: exporting everything",
                    self.directory,
                )
                full = True
            if not full and not watermark and data.get("files"):
                log.warning(
                    "%s holds an earlier export this state does not know the end of: "
                    "exporting everything and replacing its files",
                    self.directory,
                )
                full = True
            layout = data.get("layout")
            if not full and watermark and layout and layout != opts.layout():
                differs = ", ".join(
                    f"{k}={layout.get(k)}" for k, v in opts.layout().items() if layout.get(k) != v
                )
                msg = (
                    f"{self.directory} was exported with {differs}; appending with other "
                    "options would mix layouts: pass --full to replace it, or choose another "
                    "--out"
                )
                raise UsageError(msg)
            run_id = _now_id()
            run = {
                "id": run_id,
                "full": full,
                "since": opts.since.isoformat() if opts.since else None,
                "seq": 0,
                "rows": 0,
                "staging": str(self._staging(run_id)) if full else None,
                "options": opts.layout(with_contacts=True),
                "watermark": None,
                "driver": None,
            }
            data.update(
                stream=self.spec.name,
                out=str(self._dir.parent.resolve()),
                run=run,
            )
            self._state.save()
        self.run = run
        self.full = bool(run["full"])
        self.since = datetime.fromisoformat(run["since"]) if run.get("since") else None
        if self.full:
            Path(run["staging"]).mkdir(parents=True, exist_ok=True)
        if self.spec.incremental:
            self.result.mode = "full" if self.full else "incremental"
        holder = run if self.full else data
        wm = holder.get("watermark") or {}
        if self.spec.source == "contact_pages":
            self.contact_pos = {
                cid: Position.from_json(p) for cid, p in (wm.get("contacts") or {}).items()
            }
        else:
            self.pos = Position.from_json(wm.get("pos"))
        self.driver = run.get("driver")
        self._clean_strays()

    def _staging(self, run_id: str) -> Path:
        return self._dir.parent / f".{self.spec.name}.staging-{run_id}"

    def _recover(self) -> None:
        """Finish recorded renames and a recorded swap (a killed run's last steps)."""
        changed = False
        for tmp, final in self.data.get("pending") or []:
            if Path(tmp).exists():
                Path(tmp).replace(final)
            changed = True
        self.data["pending"] = []
        if self.data.get("swap"):
            self._finish_swap()
            changed = True
        if changed:
            self._state.save()

    def _clean_strays(self) -> None:
        """Delete temporary files no journal entry refers to, and abandoned staging."""
        staging = Path(self.run["staging"]) if self.run.get("staging") else None
        for root in (self.directory, staging):
            if root is not None and root.exists():
                for tmp in root.rglob(".part-*.tmp"):
                    if TMP_NAME.match(tmp.name) and not tmp.is_symlink():
                        tmp.unlink()
        parent = self._dir.parent
        if parent.exists():
            for other in parent.glob(f".{self.spec.name}.staging-*"):
                if other != staging:
                    shutil.rmtree(other, ignore_errors=True)
            for old in parent.glob(f".{self.spec.name}.old-*"):
                shutil.rmtree(old, ignore_errors=True)

    def _finish_swap(self) -> None:
        """Replace the manifest's files with the staged ones (journaled in ``swap``)."""
        swap = self.data["swap"]
        staging = Path(swap["staging"])
        if "files" not in swap:  # journaled by a version that swapped whole directories
            old = Path(swap["old"])
            if old.exists() and not self._dir.exists():
                old.rename(self._dir)  # undo its half-done swap, then replace file by file
            swap = {
                "staging": str(staging),
                "files": survey(staging, {}).adopted,
                "remove": [*(self.data.get("files") or {}), *survey(self._dir, {}).adopted],
            }
        replace_files(self._dir, staging, swap["files"], swap["remove"])
        self.data["files"] = dict(swap["files"])
        self.data["swap"] = None

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
        return shape_rows(self.spec, self.options, items, directory, self.since)

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
        """Write the buffered rows as one chunk (files + journal + renames).

        The chunk is written in a worker thread while fetching goes on; the next commit
        (and the end of the run) waits for it first, so chunks land in order. The
        positions saved with a chunk are the ones its rows were read up to.
        """
        frames = await self._converted()
        self.buffered = 0
        self.last_commit = self.clock()
        await self._settle_commit()
        if self.state is None or self.directory is None:
            frame = concat_frames(frames, self.spec.schema)
            self.frames.append(frame)
            self.result.rows += frame.height
            return
        run = self.run
        marks = (self._watermark_json(), self.driver)
        if (
            not any(f.height for f in frames)
            and marks == self._saved_marks
            and not (final and self.full and run["rows"] == 0)
        ):
            return  # nothing new to write or to remember
        self._saved_marks = marks
        stem = f"{run['id']}-{run['seq']:05d}"
        run["seq"] += 1
        task = asyncio.ensure_future(
            asyncio.to_thread(self._write_chunk, frames, stem, marks, final=final)
        )
        self._committing = task
        if final:
            await self._settle_commit()

    async def _settle_commit(self) -> None:
        if self._committing is not None:
            task, self._committing = self._committing, None
            await task

    def _write_chunk(
        self, frames: list[pl.DataFrame], stem: str, marks: tuple[Any, Any], *, final: bool
    ) -> None:
        """(worker thread) files under temporary names → journal + position → renames."""
        frame = concat_frames(frames, self.spec.schema)
        run = self.run
        target = Path(run["staging"]) if self.full else self._dir
        write_empty = final and self.full and run["rows"] == 0 and frame.height == 0
        try:
            pending: list[PendingFile] = write_chunk(
                frame,
                target,
                fmt=self.options.format,
                stem=stem,
                partition=self.spec.partition,
                raw_csv=self.options.raw_csv,
                write_empty=write_empty,
            )
        except (OSError, pl.exceptions.PolarsError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            msg = (
                f"cannot write the {self.spec.name} files under {target}: {reason}; check "
                "the free space and permissions of --out, then re-run to resume"
            )
            raise StateError(msg) from None
        watermark, driver = marks
        self.data["pending"] = [[str(p.tmp), str(p.final)] for p in pending]
        # the manifest learns the files in the same write that makes them visible
        manifest = run.setdefault("files", {}) if self.full else self.data.setdefault("files", {})
        for p in pending:
            manifest[p.final.relative_to(target).as_posix()] = {"rows": p.rows}
        run["rows"] += frame.height
        run["driver"] = driver
        (run if self.full else self.data)["watermark"] = watermark
        if not self.full:
            self.data["layout"] = self.options.layout()
        self._state.save()
        for p in pending:
            p.tmp.replace(p.final)
            self.result.files.append(p.final)
        self.result.rows += frame.height

    async def _settle(self) -> None:
        """After a failure: let background work finish (its journal stays consistent)."""
        for name in ("_converting", "_committing"):
            task = getattr(self, name)
            setattr(self, name, None)
            if task is not None:
                with contextlib.suppress(Exception):
                    await task

    def _finish(self) -> None:
        data, run = self.data, self.run
        if self.full:
            data["swap"] = {
                "staging": run["staging"],
                "files": run.get("files") or {},
                "remove": sorted(data.get("files") or {}),
            }
            data["watermark"] = run.get("watermark") if self.spec.incremental else None
            data["layout"] = self.options.layout()
        data["run"] = None
        data["pending"] = []
        data["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        self._state.save()
        if self.full:
            self._finish_swap()
            self._state.save()
            # Files now live under the stream directory, not the staging one.
            staging = Path(run["staging"])
            self.result.files = [
                self._dir / f.relative_to(staging) if f.is_relative_to(staging) else f
                for f in self.result.files
            ]

    # ---- reading ----------------------------------------------------------------------

    async def _read_feed(self) -> None:
        spec = self.spec
        async for page in pages(
            self.fetcher, spec.route, self.pos, key=spec.key, limit=self.options.page_size
        ):
            await self._add(page.items)
            self.pos = page.after
            await self._maybe_commit()

    async def _read_per_contact(self) -> None:
        spec = self.spec
        contacts = iter_contacts(
            self.fetcher,
            self.client,
            self.options.contacts,
            self.driver,
            page_size=self.options.page_size,
            not_found=self.result.contacts_not_found,
        )
        async for contact, before, after in contacts:
            cid, email = contact["id"], contact.get("email")
            if spec.source == "contact_pages":
                start = self.contact_pos.get(cid, Position())
                async for page in pages(
                    self.fetcher,
                    spec.route,
                    start,
                    key=spec.key,
                    limit=self.options.page_size,
                    path_params={"id": cid},
                ):
                    for item in page.items:
                        item["contactId"] = cid
                        item["email"] = email
                        item["userId"] = contact.get("userId")
                    await self._add(page.items)
                    self.contact_pos[cid] = page.after
                    self.driver = before
                    await self._maybe_commit()
                self.driver = after
            else:
                try:
                    rows = await self.fetcher.call(
                        functools.partial(contact_list, self.client, self.spec.name, cid)
                    )
                except NotFoundError:  # deleted since it was listed
                    rows = []
                for item in rows:
                    item["contactId"] = cid
                    item["email"] = email
                    item["userId"] = contact.get("userId")
                await self._add(rows)
                self.driver = after
                await self._maybe_commit()

    async def execute(self) -> ExportResult:
        started = self.clock()
        if self.state is not None:
            self._start()
        elif self.spec.source == "contact_pages" or self.spec.source == "feed":
            self.full = True
        try:
            if self.spec.source == "feed":
                await self._read_feed()
            else:
                await self._read_per_contact()
        except KraiterSyncError as exc:
            if not exc.retriable or self.state is None:
                await self._settle()
                raise
            # Out of retries: keep what was read, then stop resumably (exit 4).
            try:
                await self._commit()
                await self._settle_commit()
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
        if self.state is not None:
            self._finish()
        self.progress.tick(self.result.rows, force=True)
        self.result.requests = self.fetcher.requests
        self.result.retries = self.fetcher.retries
        self.result.seconds = self.clock() - started
        return self.result
