"""Objects as sources: what ``sources`` does differently for an object URL.

``sources`` calls in here at three places (imported there when first needed, as this
module builds on ``sources``' own helpers):

- ``_expand``: an object URL → :func:`expand_objects`, one ``SourceFile`` path (an
  :class:`~kraiter_sync.sources.objectstore.ObjectPath`) per object, with its hive pairs;
- ``Source._prepare``: compressed or re-encoded text and Avro → :func:`object_stream`,
  decompressed and decoded as it streams, where a local file gets a temporary copy;
- ``Source._scan_one``: a Parquet or Arrow IPC object's schema → :func:`schema_frame`,
  from its footer.

Everything else (format detection, CSV blocks, NDJSON lines, Parquet batches, error
messages) is ``sources``' own code reading ``ObjectPath.open()`` like a file.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import io
import zlib
from pathlib import Path
from typing import IO, Any, cast

import polars as pl

from kraiter_sync.errors import InputError
from kraiter_sync.sources.formats import (
    COPY_BLOCK,
    Format,
    SourceFile,
    bad_line,
    decode_error,
    open_decompressed,
)
from kraiter_sync.sources.objectstore import expand, open_bucket, parse_url
from kraiter_sync.sources.objectstore.readers import ObjectPath
from kraiter_sync.sources.objectstore.stores import StorageOptions

__all__ = ["expand_objects", "object_stream", "schema_frame"]


def expand_objects(
    text: str, storage: StorageOptions | None
) -> list[tuple[Path, str, tuple[tuple[str, str], ...]]]:
    """(path, display, hive pairs) of each object ``text`` names, like ``sources._expand``."""
    out: list[tuple[Path, str, tuple[tuple[str, str], ...]]] = []
    for found in expand(text, storage):
        bucket = open_bucket(parse_url(found.info.url), storage)
        path = ObjectPath.of(bucket, found.info, expected_size=found.expected_size)
        out.append((path, found.info.url, found.hive))
    return out


def object_stream(sf: SourceFile, encoding: str | None) -> Path:
    """The object decompressed (and, given an encoding, decoded to UTF-8 without a BOM)
    as it streams: what a local file gets from a temporary copy, without the copy."""
    assert isinstance(sf.path, ObjectPath)  # noqa: S101 - only objects come here
    if sf.compression is None and encoding in (None, "utf-8", "utf-8-sig"):
        return sf.path

    def opener() -> IO[bytes]:
        stack = contextlib.ExitStack()
        raw = stack.enter_context(open_decompressed(sf.path, sf.compression, sf.display))
        return cast(IO[bytes], _TextStream(raw, encoding, sf, stack))

    return sf.path.derive(opener)


class _TextStream(io.RawIOBase):
    """A decompressed (and, with an encoding, UTF-8 re-encoded) view of a stream that
    reports a truncated or corrupt stream as the InputError a local file gets."""

    def __init__(
        self, raw: IO[bytes], encoding: str | None, sf: SourceFile, stack: contextlib.ExitStack
    ) -> None:
        self._raw = raw
        self._sf = sf
        self._stack = stack
        self._encoding = encoding
        self._decoder = codecs.getincrementaldecoder(encoding)() if encoding else None
        self._first = True
        self._buf = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def _block(self) -> bytes:
        sf = self._sf
        try:
            return self._raw.read(COPY_BLOCK)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            msg = (
                f"{sf.display}: the {sf.compression} stream is truncated or corrupt ({exc}); "
                "download or export the file again"
            )
            raise InputError(msg) from exc
        except InputError:
            raise
        except Exception as exc:
            if type(exc).__name__ == "ZstdError":
                msg = f"{sf.display}: the zstd stream is corrupt ({exc}); export the file again"
                raise InputError(msg) from exc
            raise

    def readinto(self, buffer: Any) -> int:
        while not self._buf and not self._eof:
            block = self._block()
            self._eof = not block
            if self._decoder is None:
                self._buf = block
                continue
            try:
                text = self._decoder.decode(block, final=self._eof)
            except UnicodeDecodeError as exc:
                encoding = self._encoding or "utf-8"
                line = bad_line(self._sf.path, self._sf.compression, self._sf.display, encoding)
                raise decode_error(self._sf.display, line, encoding, exc) from exc
            if self._first and text:
                text = text.removeprefix("\ufeff")
                self._first = False
            self._buf = text.encode("utf-8")
        n = min(len(buffer), len(self._buf))
        buffer[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        self._stack.close()
        super().close()


def schema_frame(path: ObjectPath, fmt: Format) -> pl.LazyFrame:
    """An empty frame with the columns of a Parquet or Arrow IPC object (from its footer)."""
    import pyarrow.ipc as ipc  # type: ignore[import-untyped, unused-ignore]
    import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

    with path.open_random() as fh:
        schema = pq.ParquetFile(fh).schema_arrow if fmt == "parquet" else ipc.open_file(fh).schema
    return cast(pl.DataFrame, pl.from_arrow(schema.empty_table())).lazy()
