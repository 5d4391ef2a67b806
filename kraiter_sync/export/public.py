"""The export functions the library offers: frames (``read_stream``, ``export_<stream>``)
and files (``export``, ``export_to``); ``kraiter_sync.export`` re-exports them."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import polars as pl

from kraiter_sync.api.blocking import SyncKraiterClient
from kraiter_sync.api.client import KraiterClient
from kraiter_sync.export.compaction import CompactResult
from kraiter_sync.export.options import ExportOptions, ExportResult, ProgressSink
from kraiter_sync.export.run import compact_output, export_async, read_stream_async, replace_notice
from kraiter_sync.state.backend import open_shared_files
from kraiter_sync.upload.context import (
    ClientFactory,
    RunOptions,
    check_tenant_binding,
    connect,
    terminate_as_interrupt,
)

if TYPE_CHECKING:
    from kraiter_sync.config import Settings

__all__ = [
    "compact",
    "export",
    "export_contacts",
    "export_enrolments",
    "export_events",
    "export_memberships",
    "export_scheduled",
    "export_sends",
    "export_timelines",
    "export_to",
    "read_stream",
    "replacement",
]

T = TypeVar("T")
AnyClient: TypeAlias = KraiterClient | SyncKraiterClient


def _run(client: AnyClient, make: Any) -> Any:
    """Run ``make(async_client)`` to completion from synchronous code."""
    if isinstance(client, SyncKraiterClient):
        return client.call(make)  # the facade's own loop, in its thread
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
    stream: str,
    out: str | os.PathLike[str],
    *,
    settings: Settings,
    options: ExportOptions | None = None,
    progress: ProgressSink | None = None,
    client_factory: ClientFactory | None = None,
) -> ExportResult:
    """The ``kraiter-sync export`` command as a function: settings in, files (``out`` a
    directory) or a table (``out`` a ``duckdb://`` / ``postgresql://`` URL) out.

    The run comes from the run context like every verb's: a rate-controlled client
    (``options.rate`` is the ceiling) and, with a ``--tenant`` name, the check that the
    key is the one that name was first used with (another account's export would
    continue this one's). The watermark is keyed by ``settings.target`` (never the key)
    and kept in the state store (``settings.state_dir``, or ``settings.state_url``).
    SIGTERM interrupts like Ctrl-C: exit 4, resumable.
    """
    opts = options or ExportOptions()
    check_tenant_binding(settings)
    # Per-contact streams have up to options.concurrency (<= 64) requests in flight;
    # the rate controller paces them all.
    run_options = RunOptions(concurrency=64, rate=opts.rate, max_retries=opts.retries)

    with open_shared_files(settings) as files:

        async def run() -> ExportResult:
            async with connect(settings, run_options, client_factory=client_factory) as conn:
                return await export_async(
                    conn.client,
                    stream,
                    out,
                    state_dir=settings.state_dir,
                    target=settings.target,
                    options=opts,
                    progress=progress,
                    store=files,
                )

        with terminate_as_interrupt():
            return asyncio.run(run())


def replacement(
    stream: str,
    out: str | os.PathLike[str],
    *,
    settings: Settings,
    options: ExportOptions | None = None,
) -> str | None:
    """What ``export(..., options=ExportOptions(replace=True))`` would delete, in words
    (None: nothing): the CLI asks for confirmation with it."""
    with open_shared_files(settings) as files:
        return replace_notice(
            stream,
            out,
            state_dir=settings.state_dir,
            target=settings.target,
            options=options,
            store=files,
        )


def compact(
    out: str | os.PathLike[str], *, settings: Settings, streams: tuple[str, ...] = ()
) -> list[CompactResult]:
    """``kraiter-sync export compact``: merge the small files earlier runs left in each
    partition of ``out`` into one (atomically for readers); see ``export.compact``."""
    with open_shared_files(settings) as files:
        return compact_output(
            out,
            state_dir=settings.state_dir,
            target=settings.target,
            streams=streams,
            store=files,
        )
