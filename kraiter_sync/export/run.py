"""The export entry points over an async client: files or a table (:func:`export_async`),
one frame (:func:`read_stream_async`); and the ones that need no client:
:func:`replace_notice` (what ``--replace`` deletes) and :func:`compact_output`."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.errors import ConfigError, StateError, UsageError
from kraiter_sync.export.bucket import parse_output
from kraiter_sync.export.choices import is_database_url, window_label
from kraiter_sync.export.compaction import CompactResult, compact_folder
from kraiter_sync.export.database import Database
from kraiter_sync.export.folder import FolderSink, new_run_id, replacement_notice
from kraiter_sync.export.options import Clock, ExportOptions, ExportResult, ProgressSink
from kraiter_sync.export.output import Folder, LocalFolder
from kraiter_sync.export.paging import Fetcher
from kraiter_sync.export.runner import MemorySink, Runner
from kraiter_sync.export.state import PREFIX, ExportState, state_name
from kraiter_sync.export.streams import STREAMS, StreamSpec, stream_spec
from kraiter_sync.export.tables import TableSink, table_notice
from kraiter_sync.export.writers import empty_frame
from kraiter_sync.logs import get_logger
from kraiter_sync.state.local import StateFiles
from kraiter_sync.state.store import SharedFiles
from kraiter_sync.urls import is_object_url

__all__ = ["compact_output", "export_async", "read_stream_async", "replace_notice"]

log = get_logger("export")

Out = str | os.PathLike[str]


def _label(spec: StreamSpec, options: ExportOptions) -> tuple[str, str | None]:
    """The folder (and state) name of a stream or of one of its windows."""
    window = window_label(options.since, options.until)
    return (spec.name if window is None else f"{spec.name}-{window}"), window


def _table_key(db: Database, options: ExportOptions) -> str:
    return f"{db.display}#{options.table_prefix}"


async def export_async(
    client: KraiterClient,
    stream: str,
    out: Out,
    *,
    state_dir: str | os.PathLike[str],
    target: str,
    options: ExportOptions | None = None,
    clock: Clock = time.monotonic,
    sleep: Callable[[float], Any] = asyncio.sleep,
    progress: ProgressSink | None = None,
    store: SharedFiles | None = None,
) -> ExportResult:
    """Export ``stream`` into ``<out>/<stream>/`` (or a window's own folder) or, when
    ``out`` is a ``duckdb://`` / ``postgresql://`` URL, into the table
    ``<prefix><stream>``, incrementally and resumably.

    ``target`` is the tenant identity (``Settings.target``) keying the watermark;
    ``state_dir`` holds the state document and its lock, or ``store`` (``state.backend``'s
    ``open_shared_files``: e.g. a PostgreSQL state store) when given. Raises
    IncompleteError (exit 4) when a request still fails after the retries: re-running
    resumes.
    """
    spec = stream_spec(stream)
    options = options or ExportOptions()
    _check_contacts(spec, options)
    label, window = _label(spec, options)
    fetcher = Fetcher(client, attempts=options.retries, sleep=sleep, on_retry=_log_retry)
    files = store if store is not None else StateFiles(Path(state_dir))
    if is_database_url(out):
        db = Database(str(out))
        key = _table_key(db, options)
        state = ExportState.in_store(files, target, label, key)
        with state.locked(), db:
            result = ExportResult(spec.name, None, db.dialect, "incremental", window=window)
            table = TableSink(spec, options, db=db, target=target, result=result, window=window)
            runner = Runner(client, spec, options, fetcher, table, clock=clock, progress=progress)
            return await runner.execute()
    if is_object_url(out):
        where = parse_output(str(out), options.storage)
        state = ExportState.in_store(files, target, label, where.display)
        with state.locked():
            bucket = where.folder(label, Path(state_dir), target)
            result = ExportResult(
                spec.name,
                None,
                options.format,
                "incremental",
                manifest=state.label,
                window=window,
                url=bucket.display,
            )
            sink = FolderSink(
                spec, options, folder=bucket, state=state, result=result, window=window
            )
            runner = Runner(client, spec, options, fetcher, sink, clock=clock, progress=progress)
            return await runner.execute()
    out_path = Path(out)
    state = ExportState.in_store(files, target, label, out_path)
    with state.locked():
        try:
            out_path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"cannot create --out {out_path}: {exc.strerror}"
            raise ConfigError(msg) from None
        folder = LocalFolder(out_path / label, label)
        result = ExportResult(
            spec.name,
            folder.path,
            options.format,
            "incremental",
            manifest=state.label,
            window=window,
        )
        sink = FolderSink(spec, options, folder=folder, state=state, result=result, window=window)
        runner = Runner(client, spec, options, fetcher, sink, clock=clock, progress=progress)
        return await runner.execute()


def replace_notice(
    stream: str,
    out: Out,
    *,
    state_dir: str | os.PathLike[str],
    target: str,
    options: ExportOptions | None = None,
    store: SharedFiles | None = None,
) -> str | None:
    """What ``--replace`` will delete, in words, before anything is done (None: nothing
    yet). The CLI shows it and asks for confirmation on a terminal."""
    spec = stream_spec(stream)
    options = options or ExportOptions()
    label, _window = _label(spec, options)
    if is_database_url(out):
        with Database(str(out)) as db:
            return table_notice(db, spec, options)
    files = store if store is not None else StateFiles(Path(state_dir))
    folder: Folder
    if is_object_url(out):
        where = parse_output(str(out), options.storage)
        state = ExportState.in_store(files, target, label, where.display)
        folder = where.folder(label, Path(state_dir), target)
    else:
        out_path = Path(out)
        state = ExportState.in_store(files, target, label, out_path)
        folder = LocalFolder(out_path / label, label)
    return replacement_notice(state, folder)


def compact_output(
    out: Out,
    *,
    state_dir: str | os.PathLike[str],
    target: str,
    streams: Sequence[str] = (),
    store: SharedFiles | None = None,
) -> list[CompactResult]:
    """``export compact``: every stream folder (windows included) that exports of
    ``target`` wrote under ``out``, or only those of ``streams``."""
    if is_database_url(out):
        msg = "export compact works on exported files (--out DIR); a table needs no compaction"
        raise UsageError(msg)
    if is_object_url(out):
        shown = parse_output(str(out)).display
        msg = (
            f"export compact works on a local --out DIR only, not on {shown}: "
            "compact a local export before copying it, or leave the bucket's small files "
            "(readers handle them; a full export with --replace rewrites them as one file "
            "per partition)"
        )
        raise UsageError(msg)
    out_path = Path(out)
    wanted = set(streams) or set(STREAMS)
    results: list[CompactResult] = []
    files = store if store is not None else StateFiles(Path(state_dir))
    for name in files.list_blobs(PREFIX):
        if not name.endswith(".json"):
            continue
        try:
            data = json.loads(files.read_blob(name) or b"")
        except ValueError:
            continue
        if not isinstance(data, dict) or data.get("stream") not in wanted:
            continue
        stream, window = data["stream"], data.get("window")
        label = stream if not window else f"{stream}-{window}"
        if name != state_name(target, label, out_path):
            continue  # another target's, or another output's
        state = ExportState.in_store(files, target, label, out_path)
        with state.locked():
            state.load()
            folder = LocalFolder(out_path / label, label)
            folder.check()
            results.append(compact_folder(folder, state, run_id=new_run_id()))
            state.save()
    if not results:
        msg = (
            f"nothing to compact in {out_path}: no export of this target into it is recorded "
            f"in {files.display} (export there first, with the same state)"
        )
        raise StateError(msg)
    return results


def _check_contacts(spec: StreamSpec, options: ExportOptions) -> None:
    if options.contacts is not None and spec.source == "feed":
        msg = (
            "--contacts applies to the per-contact streams (timelines, enrolments, "
            f"memberships), not to {spec.name}"
        )
        raise UsageError(msg)


def _log_retry(exc: BaseException, attempt: int) -> None:
    log.info("retry %d after: %s", attempt, exc)


async def read_stream_async(
    client: KraiterClient,
    stream: str,
    *,
    options: ExportOptions | None = None,
    sleep: Callable[[float], Any] = asyncio.sleep,
) -> pl.DataFrame:
    """The whole stream as one frame (no files, no watermark): for notebooks and tests."""
    spec = stream_spec(stream)
    _check_contacts(spec, options or ExportOptions())
    options = replace(options or ExportOptions(), chunk_rows=10**12, commit_seconds=float("inf"))
    fetcher = Fetcher(client, attempts=options.retries, sleep=sleep, on_retry=_log_retry)
    sink = MemorySink(options, ExportResult(spec.name, None, "frame", "snapshot"))
    await Runner(client, spec, options, fetcher, sink, clock=time.monotonic).execute()
    frames = sink.frames or [empty_frame(spec.schema)]
    return pl.concat(frames, how="diagonal_relaxed")
