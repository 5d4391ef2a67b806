"""Object storage (S3 and S3-compatible, GCS, Azure Blob / ADLS, https) as inputs.

Warehouse exports land in buckets: BigQuery ``EXPORT DATA`` in ``gs://``, Snowflake
``COPY INTO @stage`` parts (``data_0_0_0.csv.gz``), Redshift ``UNLOAD`` with its
manifest, Databricks in ``abfss://``. This package lets every path argument and every
sync job's ``source`` be such a URL, read in a stream (never downloaded whole first).

Modules:

- ``urls``: which strings are object URLs, their parts, and the redaction of query
  strings (signed URLs, SAS tokens) from anything shown or stored.
- ``stores``: :class:`StorageOptions` (the ``[storage]`` table: endpoint, profile,
  region, never a secret) and :class:`Bucket`, one bucket or container behind
  ``obstore``: list, head, get (streamed or by range), atomic put. Credentials come
  only from each cloud's standard chain. Every foreign error becomes an
  :class:`~kraiter_sync.errors.InputError` here (``translate_error``).
- ``listing``: a URL → the objects it names (one object, a prefix, a glob, a Redshift
  manifest), with hive partition pairs.
- ``readers``: file-like views of one object for the format readers in ``sources``: a
  sequential stream (bounded range GETs, one ahead) and a seekable reader (range GETs,
  for Parquet footers and column chunks),
  both pinned to the listed ETag and checked against the listed size.
- ``changes``: what a sync job saw last time (key, size, ETag or last-modified), so a
  re-run reads only new or changed objects.

The library (``obstore``) is an optional extra: ``pip install "kraiter-sync[cloud]"``;
without it an object URL is a clear error naming that command.
"""

from __future__ import annotations

from kraiter_sync.sources.objectstore.changes import SeenObjects
from kraiter_sync.sources.objectstore.listing import ObjectInfo, expand, read_manifest, read_object
from kraiter_sync.sources.objectstore.readers import ObjectPath
from kraiter_sync.sources.objectstore.stores import (
    Bucket,
    StorageOptions,
    open_bucket,
    translate_error,
)
from kraiter_sync.urls import ObjectUrl, is_object_url, parse_url, redact

__all__ = [
    "Bucket",
    "ObjectInfo",
    "ObjectPath",
    "ObjectUrl",
    "SeenObjects",
    "StorageOptions",
    "expand",
    "is_object_url",
    "open_bucket",
    "parse_url",
    "read_manifest",
    "read_object",
    "redact",
    "translate_error",
]
