"""Reading input files: CSV/TSV, Parquet, NDJSON/JSON, Avro and Arrow IPC, in chunks;
SQL queries and object storage as chunk sources of the same shape.

Every row read gets two columns that follow it to the rejects file and the report:
``source_file`` (the path as the user gave it, or the resolved part of a directory or
glob) and ``source_row`` (the 1-based data row within that file, header excluded).

Modules: ``files`` (paths, globs, directories, hive pairs → :class:`Source`),
``formats`` (detection, decompression, re-encoding, header checks), ``reading``
(chunks, provenance columns, the one error boundary for polars/pyarrow/OS/codec errors),
``objects`` and ``objectstore/`` (``s3://``, ``gs://``, ``az://``, ``abfss://``,
``https://``), ``sql`` (:class:`~kraiter_sync.sources.sql.SqlSource`).

Naming follows polars: ``scan_source`` is lazy, ``read_source`` is eager, and
``iter_chunks`` streams ``pl.DataFrame`` chunks. The source is positional, every other
argument keyword-only.
"""

from __future__ import annotations

from kraiter_sync.sources.files import Source, iter_chunks, open_source, read_source, scan_source
from kraiter_sync.sources.formats import DEFAULT_CHUNK_SIZE, FORMATS, SourceFile

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "FORMATS",
    "Source",
    "SourceFile",
    "iter_chunks",
    "open_source",
    "read_source",
    "scan_source",
]
