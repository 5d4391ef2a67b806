"""The export entry points over an async client: files (:func:`export_async`) or one
frame (:func:`read_stream_async`)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.errors import (
    ConfigError,
    UsageError,
)
from kraiter_sync.export.options import Clock, ExportOptions, ExportResult, ProgressSink
from kraiter_sync.export.paging import Fetcher
from kraiter_sync.export.runner import Runner
from kraiter_sync.export.state import ExportState
from kraiter_sync.export.streams import (
    StreamSpec,
    stream_spec,
)
from kraiter_sync.export.writers import (
    empty_frame,
)
from kraiter_sync.logs import get_logger
from kraiter_sync.state.local import StateFiles
from kraiter_sync.state.store import SharedFiles

__all__ = ["export_async", "read_stream_async"]

log = get_logger("export")


async def export_async(
    client: KraiterClient,
    stream: str,
    out: str | os.PathLike[str],
    *,
    state_dir: str | os.PathLike[str],
    target: str,
    options: ExportOptions | None = None,
    clock: Clock = time.monotonic,
    sleep: Callable[[float], Any] = asyncio.sleep,
    progress: ProgressSink | None = None,
    store: SharedFiles | None = None,
) -> ExportResult:
    """Export ``stream`` into ``<out>/<stream>/`` incrementally and resumably.

    ``target`` is the tenant identity (``Settings.target``) keying the watermark;
    ``state_dir`` holds the state document, or ``store`` (``state.backend``'s
    ``open_shared_files``: e.g. a PostgreSQL state store) when given. Raises
    IncompleteError (exit 4) when a request still fails after the retries: re-running
    resumes.
    """
    spec = stream_spec(stream)
    options = options or ExportOptions()
    _check_contacts(spec, options)
    out_path = Path(out)
    files = store if store is not None else StateFiles(Path(state_dir))
    state = ExportState.in_store(files, target, spec.name, out_path)
    fetcher = Fetcher(client, attempts=options.retries, sleep=sleep, on_retry=_log_retry)
    with state.locked():
        try:
            out_path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"cannot create --out {out_path}: {exc.strerror}"
            raise ConfigError(msg) from None
        run = Runner(
            client,
            spec,
            options,
            fetcher,
            out=out_path,
            state=state,
            clock=clock,
            progress=progress,
        )
        return await run.execute()


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
    run = Runner(client, spec, options, fetcher, out=None, state=None, clock=time.monotonic)
    await run.execute()
    frames = [f for f in run.frames if f.height] or [empty_frame(spec.schema)]
    return pl.concat(frames, how="diagonal_relaxed")
