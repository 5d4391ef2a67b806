"""Export: Kraiter → polars frames → Parquet / CSV / NDJSON files.

Two ways in, over the same readers:

* **frames** — ``export_events(client)``, ``export_contacts(client)``, … (one per
  stream, :func:`read_stream` for any) return the whole stream as one polars frame
  with the stream's documented schema. For notebooks and modest sizes.
* **files** — :func:`export_to` (and :func:`export_async`) write a stream chunk by
  chunk into ``<out>/<stream>/``, never holding more than one chunk, incrementally
  (a watermark per target, stream and output directory) and resumably.

Modules: ``paging`` (resumable positions, the one fetch path with retries),
``streams`` (stream specs, schemas, row → frame conversion), ``writers`` (formats,
partitions, CSV neutralisation), ``state`` (the JSON state document and its lock),
``output`` (the stream directory: the manifest, what is ours, replacing only that),
``runner`` (runs, commits, recovery).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import polars as pl

from kraiter_sync.api.client import KraiterClient, SyncKraiterClient
from kraiter_sync.export.runner import (
    ExportOptions,
    ExportResult,
    ProgressSink,
    export_async,
    read_stream_async,
)
from kraiter_sync.export.streams import SCHEMAS, STREAMS, StreamSpec
from kraiter_sync.export.writers import FORMATS, Format
from kraiter_sync.state.ledger import Ledger, check_tenant

if TYPE_CHECKING:
    from kraiter_sync.api.client import RequestObserver
    from kraiter_sync.config import Settings

__all__ = [
    "FORMATS",
    "SCHEMAS",
    "STREAMS",
    "ExportOptions",
    "ExportResult",
    "Format",
    "ProgressSink",
    "StreamSpec",
    "export",
    "export_async",
    "export_contacts",
    "export_enrolments",
    "export_events",
    "export_memberships",
    "export_scheduled",
    "export_sends",
    "export_timelines",
    "export_to",
    "read_stream",
    "read_stream_async",
]

T = TypeVar("T")
AnyClient = KraiterClient | SyncKraiterClient


def _run(client: AnyClient, make: Any) -> Any:
    """Run ``make(async_client)`` to completion from synchronous code."""
    if isinstance(client, SyncKraiterClient):
        # The facade owns a private loop in a thread; run on it (same package).
        coro: Coroutine[Any, Any, Any] = make(client._client)
        return client._run(coro)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make(client))
    msg = "an event loop is running here: await read_stream_async / export_async instead"
    raise RuntimeError(msg)


def read_stream(client: AnyClient, stream: str, **options: Any) -> pl.DataFrame:
    """The whole ``stream`` as one frame; ``options`` are :class:`ExportOptions` fields."""
    opts = ExportOptions(**options)
    result: pl.DataFrame = _run(client, lambda c: read_stream_async(c, stream, options=opts))
    return result


def export_contacts(client: AnyClient, **options: Any) -> pl.DataFrame:
    """Every contact (schema ``SCHEMAS["contacts"]``)."""
    return read_stream(client, "contacts", **options)


def export_events(client: AnyClient, **options: Any) -> pl.DataFrame:
    """The tenant-wide event feed, system events included unless ``custom_only=True``."""
    return read_stream(client, "events", **options)


def export_timelines(client: AnyClient, **options: Any) -> pl.DataFrame:
    """Every contact's timeline (or those in ``contacts=(id_or_email, ...)``)."""
    return read_stream(client, "timelines", **options)


def export_sends(client: AnyClient, **options: Any) -> pl.DataFrame:
    return read_stream(client, "sends", **options)


def export_scheduled(client: AnyClient, **options: Any) -> pl.DataFrame:
    return read_stream(client, "scheduled", **options)


def export_enrolments(client: AnyClient, **options: Any) -> pl.DataFrame:
    """Each contact's sequence enrolments, one row per (contact, sequence)."""
    return read_stream(client, "enrolments", **options)


def export_memberships(client: AnyClient, **options: Any) -> pl.DataFrame:
    """Each contact's segment memberships, one row per (contact, segment)."""
    return read_stream(client, "memberships", **options)


def export_to(
    client: AnyClient,
    stream: str,
    out: str | os.PathLike[str],
    *,
    state_dir: str | os.PathLike[str],
    target: str,
    **options: Any,
) -> ExportResult:
    """Write ``stream`` into ``<out>/<stream>/`` (see :func:`export_async`)."""
    opts = ExportOptions(**options)
    result: ExportResult = _run(
        client,
        lambda c: export_async(c, stream, out, state_dir=state_dir, target=target, options=opts),
    )
    return result


def export(
    settings: Settings,
    stream: str,
    out: str | os.PathLike[str],
    *,
    options: ExportOptions | None = None,
    observer: RequestObserver | None = None,
    progress: ProgressSink | None = None,
) -> ExportResult:
    """The ``kraiter-sync export`` command as a function: resolved settings in, files out.

    The watermark is keyed by ``settings.target`` (never the key) and kept in
    ``settings.state_dir``; ``observer`` is the rate controller shared by every request.
    A ``--tenant`` name must be used with the key it was first used with
    (``ledger.check_tenant``): another account's export would continue this one's.
    """
    if settings.tenant is not None and not settings.local:
        with Ledger(settings.ledger_path) as ledger:
            check_tenant(ledger, settings)

    async def run() -> ExportResult:
        async with KraiterClient.from_settings(settings, observer=observer) as client:
            return await export_async(
                client,
                stream,
                out,
                state_dir=settings.state_dir,
                target=settings.target,
                options=options,
                progress=progress,
            )

    return asyncio.run(run())
