"""Export: Kraiter → polars frames → Parquet / CSV / NDJSON files, or DuckDB / PostgreSQL.

Three ways in, over the same readers:

* **frames** — ``export_events(client)``, ``export_contacts(client)``, … (one per
  stream, :func:`read_stream` for any) return the whole stream as one polars frame
  with the stream's documented schema. For notebooks and modest sizes.
* **files** — :func:`export_to` (and :func:`export_async`) write a stream into
  ``<out>/<stream>/``, one file per date partition per run, incrementally (a watermark
  per target, stream and output) and resumably; :func:`compact` merges earlier runs'
  small files.
* **tables** — the same functions with a ``duckdb://`` or ``postgresql://`` URL upsert
  into ``kraiter_<stream>``, the cursor committed with the rows.

Modules: ``paging`` (resumable positions, the one fetch path with retries),
``reading`` (feeds, and per-contact streams several contacts at once), ``streams``
(stream specs, schemas, row → frame conversion, ``email_unicode``), ``runner`` (a run:
buffering, checkpoints into a sink), ``folder`` (a file export's run: checkpoints,
then one file per partition put in place), ``spill`` (checkpoint files and the files
built from them), ``writers`` (formats, streamed writers, CSV neutralisation),
``output`` (the stream folder: the writer seam, the manifest, verification),
``state`` (the JSON state document and its lock), ``compaction`` (``export compact``),
``database`` and ``tables`` (database targets), ``run`` (the entry points),
``options`` (options, result, progress), ``choices`` (stream names, windows,
destinations, ``--contacts``), ``public`` (the functions below).

Names load lazily: ``kraiter_sync.export.choices`` (what the CLI needs at start) does
not load polars.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kraiter_sync.export.compaction import CompactResult
    from kraiter_sync.export.options import ExportOptions, ExportResult, ProgressSink
    from kraiter_sync.export.public import (
        compact,
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
        replacement,
    )
    from kraiter_sync.export.run import export_async, read_stream_async
    from kraiter_sync.export.streams import SCHEMAS, STREAMS, StreamSpec
    from kraiter_sync.export.writers import FORMATS, Format

_LAZY = {
    "CompactResult": "kraiter_sync.export.compaction",
    "compact": "kraiter_sync.export.public",
    "replacement": "kraiter_sync.export.public",
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
    "CompactResult",
    "ExportOptions",
    "ExportResult",
    "Format",
    "ProgressSink",
    "StreamSpec",
    "compact",
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
    "replacement",
]
