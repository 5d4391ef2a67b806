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
``runner`` (runs, commits, recovery), ``run`` (the async entry points),
``options`` (options, result, progress), ``choices`` (stream names, ``--since``,
``--contacts``), ``public`` (the functions below).

Names load lazily: ``kraiter_sync.export.choices`` (what the CLI needs at start) does
not load polars.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kraiter_sync.export.options import ExportOptions, ExportResult, ProgressSink
    from kraiter_sync.export.public import (
        export,
        export_contacts,
        export_enrolments,
        export_events,
        export_memberships,
        export_scheduled,
        export_sends,
        export_timelines,
        export_to,
        read_stream,
    )
    from kraiter_sync.export.run import export_async, read_stream_async
    from kraiter_sync.export.streams import SCHEMAS, STREAMS, StreamSpec
    from kraiter_sync.export.writers import FORMATS, Format

_LAZY = {
    "FORMATS": "kraiter_sync.export.writers",
    "SCHEMAS": "kraiter_sync.export.streams",
    "STREAMS": "kraiter_sync.export.streams",
    "ExportOptions": "kraiter_sync.export.options",
    "ExportResult": "kraiter_sync.export.options",
    "Format": "kraiter_sync.export.writers",
    "ProgressSink": "kraiter_sync.export.options",
    "StreamSpec": "kraiter_sync.export.streams",
    "export": "kraiter_sync.export.public",
    "export_async": "kraiter_sync.export.run",
    "export_contacts": "kraiter_sync.export.public",
    "export_enrolments": "kraiter_sync.export.public",
    "export_events": "kraiter_sync.export.public",
    "export_memberships": "kraiter_sync.export.public",
    "export_scheduled": "kraiter_sync.export.public",
    "export_sends": "kraiter_sync.export.public",
    "export_timelines": "kraiter_sync.export.public",
    "export_to": "kraiter_sync.export.public",
    "read_stream": "kraiter_sync.export.public",
    "read_stream_async": "kraiter_sync.export.run",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'kraiter_sync.export' has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(module), name)


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
