"""Reading input files: CSV/TSV, Parquet, NDJSON/JSON, Avro and Arrow IPC, in chunks.

Every row read gets two columns that follow it to the rejects file and the report:
``source_file`` (the path as the user gave it, or the resolved part of a directory or
glob) and ``source_row`` (the 1-based data row within that file, header excluded).

Why files are *prepared* first: polars scans plain CSV, NDJSON, Parquet and IPC lazily
and in bounded memory, but not compressed text, other encodings, JSON arrays or Avro.
Those are streamed once, in fixed-size pieces, into a temporary file polars can scan
(UTF-8 CSV, NDJSON or Parquet). Memory then stays flat whatever the input size; the
cost is one sequential copy on disk. Each file is scanned on its own so ``source_row``
restarts at 1 per file, which is what a user opening that file expects.

Object URLs (``s3://``, ``gs://``, ``az://``, ``abfss://``, ``https://``) expand to
objects through :mod:`kraiter_sync.objectstore` and are read as they stream: no copy,
not even of compressed or re-encoded text (:mod:`kraiter_sync.objectsources` holds what
differs for them).

Naming follows polars: ``scan_source`` is lazy, ``read_source`` is eager, and
``iter_chunks`` streams ``pl.DataFrame`` chunks. The source is positional, every other
argument keyword-only.

This module is the one boundary where polars, pyarrow, OS and codec errors become
:class:`~kraiter_sync.errors.InputError` naming the file and what to do.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import functools
import glob as globlib
import gzip
import io
import json
import shutil
import tempfile
import urllib.parse
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, NamedTuple, cast

import polars as pl

from kraiter_sync.errors import InputError
from kraiter_sync.logs import get_logger
from kraiter_sync.objectstore.readers import ObjectPath
from kraiter_sync.objectstore.urls import is_object_url

if TYPE_CHECKING:
    from kraiter_sync.objectstore.stores import StorageOptions

__all__ = [
    "FORMATS",
    "Source",
    "SourceFile",
    "iter_chunks",
    "open_source",
    "read_source",
    "scan_source",
]

Format = Literal["csv", "tsv", "parquet", "ndjson", "json", "avro", "ipc"]
FORMATS: tuple[str, ...] = ("csv", "tsv", "parquet", "ndjson", "json", "avro", "ipc")
Compression = Literal["gzip", "zstd"]

SOURCE_FILE = "source_file"
SOURCE_ROW = "source_row"
DEFAULT_CHUNK_SIZE = 100_000

_COPY_BLOCK = 1 << 20
_SAMPLE_BYTES = 4 << 20  # head of a converted file used to infer its schema
_SAMPLE_ITEMS = 20_000  # JSON array elements / Avro records for the same
_SNIFF_BYTES = 64 * 1024
_DELIMITERS = (",", "\t", ";", "|")
_GLOB_CHARS = frozenset("*?[")

_EXTENSIONS: dict[str, Format] = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "json",
    ".avro": "avro",
    ".arrow": "ipc",
    ".feather": "ipc",
    ".ipc": "ipc",
}
_COMPRESSED_EXTENSIONS: dict[str, Compression] = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

log = get_logger("sources")


class _Prepared(NamedTuple):
    """A file as polars reads it: its (possibly converted) path, format, CSV separator and
    CSV line end (``\\n`` also reads ``\\r\\n``; ``\\r`` for old Mac files)."""

    path: Path
    format: Format
    separator: str
    eol: str = "\n"


@dataclass(frozen=True)
class SourceFile:
    """One physical input file and how to read it."""

    path: Path
    display: str
    format: Format
    compression: Compression | None = None
    hive: tuple[tuple[str, str], ...] = ()


# --------------------------------------------------------------------------------------
# path expansion and format detection
# --------------------------------------------------------------------------------------


def _is_data_file(path: Path) -> bool:
    """Skip warehouse markers (``_SUCCESS``, ``.crc``, hidden files) in directories."""
    name = path.name
    return path.is_file() and not name.startswith((".", "_")) and not name.endswith(".crc")


def _hive_pairs(path: Path, root: Path) -> tuple[tuple[str, str], ...]:
    try:
        parts = path.relative_to(root).parts[:-1]
    except ValueError:
        return ()
    pairs = []
    for part in parts:
        key, sep, value = part.partition("=")
        if sep and key:
            pairs.append((key, urllib.parse.unquote(value)))
    return tuple(pairs)


def _glob_root(pattern: str) -> Path:
    parts = []
    for part in Path(pattern).parts:
        if _GLOB_CHARS & set(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path()


def _expand(
    raw: str | Path, storage: StorageOptions | None = None
) -> list[tuple[Path, str, tuple[tuple[str, str], ...]]]:
    text = str(raw)
    if is_object_url(text):
        from kraiter_sync.objectsources import expand_objects

        return expand_objects(text, storage)
    path = Path(text)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if _is_data_file(p))
        if not files:
            msg = f"{text}: the directory holds no data files; point at the files to read"
            raise InputError(msg)
        return [(p, str(p), _hive_pairs(p, path)) for p in files]
    if path.exists():
        if not path.is_file():
            msg = f"{text}: not a regular file"
            raise InputError(msg)
        return [(path, text, ())]
    if _GLOB_CHARS & set(text):
        root = _glob_root(text)
        matches = sorted(Path(m) for m in globlib.glob(text, recursive=True))  # noqa: PTH207
        files = [m for m in matches if _is_data_file(m)]
        if not files:
            msg = f"{text}: no file matches this pattern; check the path and quoting"
            raise InputError(msg)
        return [(m, str(m), _hive_pairs(m, root)) for m in files]
    msg = f"{text}: no such file; check the path (relative paths start in {Path.cwd()})"
    raise InputError(msg)


def _sniff_compression(path: Path, head: bytes) -> Compression | None:
    suffix = path.suffix.lower()
    if suffix in _COMPRESSED_EXTENSIONS:
        return _COMPRESSED_EXTENSIONS[suffix]
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return None


def _format_from_magic(head: bytes) -> Format:
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"ARROW1"):
        return "ipc"
    if head.startswith(b"Obj\x01"):
        return "avro"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"["):
        return "json"
    if stripped.startswith(b"{"):
        return "ndjson"
    return "csv"


def _detect(path: Path, display: str, forced: Format | None) -> tuple[Format, Compression | None]:
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        msg = f"{display}: cannot be opened ({exc.strerror}); check its permissions"
        raise InputError(msg) from exc
    if not head:
        msg = f"{display}: the file is empty (0 bytes); check that the export finished writing it"
        raise InputError(msg)
    compression = _sniff_compression(path, head)
    if forced is not None:
        return forced, compression
    stem = path.with_suffix("") if path.suffix.lower() in _COMPRESSED_EXTENSIONS else path
    fmt = _EXTENSIONS.get(stem.suffix.lower())
    if fmt is None:
        if compression is not None:
            with _open_decompressed(path, compression, display) as fh:
                head = fh.read(16)
        fmt = _format_from_magic(head)
    return fmt, compression


def _resolve(
    paths: Sequence[str | Path] | str | Path,
    forced: Format | None,
    storage: StorageOptions | None = None,
) -> list[SourceFile]:
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    if not items:
        msg = "no input given; pass one or more files, directories or globs"
        raise InputError(msg)
    out: list[SourceFile] = []
    for item in items:
        for path, display, hive in _expand(item, storage):
            fmt, compression = _detect(path, display, forced)
            out.append(SourceFile(path, display, fmt, compression, hive))
    return out


# --------------------------------------------------------------------------------------
# streaming preparation: decompress, transcode, convert
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _open_decompressed(
    path: Path, compression: Compression | None, display: str
) -> Iterator[IO[bytes]]:
    try:
        if compression == "gzip":
            with path.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                yield cast(IO[bytes], gz)
        elif compression == "zstd":
            import zstandard

            with path.open("rb") as raw:
                yield cast(IO[bytes], _ZstdReader(raw, zstandard.ZstdDecompressor()))
        else:
            with path.open("rb") as fh:
                yield fh
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        msg = (
            f"{display}: the {compression} stream is truncated or corrupt ({exc}); "
            "download or export the file again"
        )
        raise InputError(msg) from exc
    except Exception as exc:
        if compression == "zstd" and type(exc).__name__ == "ZstdError":
            msg = f"{display}: the zstd stream is corrupt ({exc}); export the file again"
            raise InputError(msg) from exc
        raise


class _ZstdReader(io.RawIOBase):
    """Streaming zstd decompression that notices a truncated last frame.

    ``zstandard``'s ``stream_reader`` returns a short read, not an error, when the
    input stops mid-frame; a truncated export would then look complete (or empty).
    """

    def __init__(self, raw: IO[bytes], decompressor: Any) -> None:
        self._raw = raw
        self._dctx = decompressor
        self._obj = decompressor.decompressobj()
        self._buf = b""
        self._eof = False
        self._in_frame = False

    def readable(self) -> bool:
        return True

    def _fill(self, want: int) -> None:
        while len(self._buf) < want and not self._eof:
            block = self._raw.read(_COPY_BLOCK)
            if not block:
                self._eof = True
                if self._in_frame:
                    msg = "the zstd stream ends mid-frame"
                    raise EOFError(msg)
                break
            out = self._obj.decompress(block)
            self._in_frame = True
            while self._obj.eof:
                # a new frame may follow (zstd files may concatenate frames)
                rest = self._obj.unused_data
                self._obj = self._dctx.decompressobj()
                self._in_frame = bool(rest)
                if not rest:
                    break
                out += self._obj.decompress(rest)
            self._buf += out

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            self._fill(1 << 62)
            data, self._buf = self._buf, b""
            return data
        self._fill(size)
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _normal_encoding(encoding: str) -> str:
    try:
        name = codecs.lookup(encoding).name
    except LookupError as exc:
        msg = (
            f"unknown encoding {encoding!r}; use a Python codec name such as utf-8, latin-1, cp1252"
        )
        raise InputError(msg) from exc
    return name


def _bad_line(path: Path, compression: Compression | None, display: str, encoding: str) -> int:
    """Find the 1-based physical line holding the first undecodable bytes (error path only)."""
    decoder_name = "utf-8" if encoding in ("utf-8", "utf-8-sig") else encoding
    with _open_decompressed(path, compression, display) as fh:
        for number, line in enumerate(fh, start=1):
            try:
                line.decode(decoder_name)
            except UnicodeDecodeError:
                return number
    return 0


def _decode_error(
    display: str, line: int, encoding: str, exc: Exception | None = None
) -> InputError:
    where = f" on line {line}" if line else ""
    hint = (
        "pass --encoding (e.g. latin-1, cp1252, utf-16) with the file's real encoding"
        if encoding in ("utf-8", "utf-8-sig")
        else "check --encoding: the bytes do not match it"
    )
    msg = f"{display}: bytes that are not valid {encoding}{where}; {hint}"
    return InputError(msg)


def _transcode_text(sf: SourceFile, encoding: str, target: Path, limit: int | None = None) -> None:
    """Stream (decompress and) decode to UTF-8 without a BOM, in fixed-size pieces.

    With ``limit``, stop after about that many bytes, at a line end (a schema sample).
    """
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    first = True
    written = 0
    with _open_decompressed(sf.path, sf.compression, sf.display) as src, target.open("wb") as dst:
        while True:
            block = src.read(_COPY_BLOCK)
            try:
                text = decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                line = _bad_line(sf.path, sf.compression, sf.display, encoding)
                raise _decode_error(sf.display, line, encoding, exc) from exc
            if first and text:
                text = text.removeprefix("\ufeff")
                first = False
            data = text.encode("utf-8")
            if limit is not None and written + len(data) >= limit:
                cut = max(data.rfind(b"\n"), data.rfind(b"\r"))  # LF, CRLF or CR
                if cut >= 0:
                    dst.write(data[: cut + 1])
                    break
            dst.write(data)
            written += len(data)
            if not block:
                break


def _decompress(sf: SourceFile, target: Path) -> None:
    with _open_decompressed(sf.path, sf.compression, sf.display) as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, _COPY_BLOCK)


def _iter_json_array(fh: IO[str], display: str) -> Iterator[Any]:
    """Yield the elements of a top-level JSON array without holding the whole array."""
    decoder = json.JSONDecoder()
    buf = ""
    pos = 0
    started = False
    eof = False
    while True:
        while pos < len(buf) and buf[pos] in " \t\r\n,":
            pos += 1
        if not started:
            if pos < len(buf):
                if buf[pos] != "[":
                    msg = (
                        f"{display}: expected a JSON array ('[' first); "
                        "for one object per line name the file .ndjson"
                    )
                    raise InputError(msg)
                started = True
                pos += 1
                continue
        elif pos < len(buf) and buf[pos] == "]":
            return
        elif pos < len(buf):
            try:
                value, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                if not eof:
                    value, end = None, -1
                else:
                    line = buf.count("\n", 0, exc.pos) + 1
                    msg = f"{display}: invalid JSON near element line {line}: {exc.msg}"
                    raise InputError(msg) from exc
            if end >= 0 and (end < len(buf) or eof):
                yield value
                pos = end
                continue
        if eof:
            if started:
                msg = f"{display}: the JSON array is not closed (file truncated?); export it again"
                raise InputError(msg)
            return
        chunk = fh.read(_COPY_BLOCK)
        if not chunk:
            eof = True
        buf = buf[pos:] + chunk
        pos = 0


def _json_array_to_ndjson(
    sf: SourceFile, encoding: str, target: Path, limit: int | None = None
) -> None:
    with (
        _open_decompressed(sf.path, sf.compression, sf.display) as raw,
        io.TextIOWrapper(raw, encoding=encoding) as fh,
        target.open("w", encoding="utf-8") as dst,
    ):
        try:
            for count, item in enumerate(_iter_json_array(fh, sf.display)):
                if limit is not None and count >= limit:
                    break
                if not isinstance(item, dict):
                    msg = f"{sf.display}: array elements must be JSON objects (one per row)"
                    raise InputError(msg)
                dst.write(json.dumps(item, ensure_ascii=False))
                dst.write("\n")
        except UnicodeDecodeError as exc:
            raise _decode_error(sf.display, 0, encoding, exc) from exc


def _avro_frames(
    fh: IO[bytes], display: str, chunk_size: int, limit: int | None = None
) -> Iterator[pl.DataFrame]:
    """Avro records as frames of ``chunk_size`` rows; the first frame fixes the schema."""
    import fastavro

    try:
        reader = fastavro.reader(fh)
    except InputError:
        raise
    except Exception as exc:
        msg = f"{display}: not a readable Avro container file ({exc})"
        raise InputError(msg) from exc
    schema: pl.Schema | None = None
    batch: list[dict[str, Any]] = []

    def flush() -> pl.DataFrame:
        nonlocal schema
        if schema is None:
            frame = pl.from_dicts(batch, infer_schema_length=None)
            schema = frame.schema
        else:
            frame = pl.from_dicts(batch, schema=schema, strict=False)
        batch.clear()
        return frame

    try:
        for count, record in enumerate(reader):
            if limit is not None and count >= limit:
                break
            if not isinstance(record, dict):
                msg = f"{display}: Avro records must be records (objects), not {record!r}"
                raise InputError(msg)
            batch.append(record)
            if len(batch) >= chunk_size:
                yield flush()
        if batch:
            yield flush()
    except (EOFError, ValueError, StopIteration) as exc:
        msg = f"{display}: the Avro file is truncated or corrupt ({exc}); export it again"
        raise InputError(msg) from exc


def _avro_to_parquet(
    sf: SourceFile, target: Path, chunk_size: int, limit: int | None = None
) -> None:
    import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

    with _open_decompressed(sf.path, sf.compression, sf.display) as fh:
        writer: pq.ParquetWriter | None = None
        try:
            for frame in _avro_frames(fh, sf.display, chunk_size, limit):
                table = frame.to_arrow()
                if writer is None:
                    writer = pq.ParquetWriter(str(target), table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            pl.DataFrame().write_parquet(target)


# --------------------------------------------------------------------------------------
# CSV specifics
# --------------------------------------------------------------------------------------


def _detect_delimiter(sample: str, display: str) -> str:
    lines = [ln for ln in sample.splitlines()[:50] if ln.strip()]
    if not lines:
        msg = f"{display}: the file has no header line; a header naming the columns is required"
        raise InputError(msg)
    try:
        dialect = csv.Sniffer().sniff("\n".join(lines[:20]), delimiters="".join(_DELIMITERS))
    except csv.Error:
        counts = {d: lines[0].count(d) for d in _DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","
    return dialect.delimiter


def _line_end(head: bytes) -> str:
    """``\\r`` for a file whose lines end in a bare CR (Excel for Mac before 2011), else
    ``\\n`` (which also reads ``\\r\\n``): polars reads either line end, not both."""
    if b"\r" in head and b"\r\n" not in head and head.count(b"\r") > head.count(b"\n"):
        return "\r"
    return "\n"


def _listing(numbers: Sequence[int]) -> str:
    text = [str(n) for n in numbers]
    return text[0] if len(text) == 1 else f"{', '.join(text[:-1])} and {text[-1]}"


def _check_duplicates(header: list[str], display: str) -> None:
    """Two columns with one name would reach Kraiter under names polars makes up."""
    positions: dict[str, list[int]] = {}
    for number, name in enumerate(header, start=1):
        if name.strip():  # blank names (trailing delimiters) are not names
            positions.setdefault(name, []).append(number)
    for name, numbers in positions.items():
        if len(numbers) > 1:
            times = "twice" if len(numbers) == 2 else f"{len(numbers)} times"
            msg = (
                f"{display}: the header names {name!r} {times} (columns {_listing(numbers)}); "
                "give each column a name of its own"
            )
            raise InputError(msg)


def _check_names(names: Sequence[str], sf: SourceFile) -> None:
    """A file's own columns must not take the provenance names, nor its directory keys."""
    for name in names:
        if name in (SOURCE_FILE, SOURCE_ROW):
            suggestion = name.replace("source", "original")
            msg = (
                f"{sf.display}: a column is named {name!r}, the name kraiter-sync gives each "
                "row's provenance (its file and row number); rename that column, e.g. to "
                f"{suggestion!r}"
            )
            raise InputError(msg)
    for key, value in sf.hive:
        if key in names:
            msg = (
                f"{sf.display}: the column {key!r} is also a directory name above the file "
                f"({key}={value}); rename the column or the directory"
            )
            raise InputError(msg)


def _check_header(header: list[str], display: str) -> None:
    looks_like_data = [h for h in header if "@" in h and "." in h.split("@")[-1]]
    if looks_like_data:
        msg = (
            f"{display}: the first line looks like data ({looks_like_data[0]!r}), not a header; "
            "add a header line naming the columns"
        )
        raise InputError(msg)
    if not any(h.strip() for h in header):
        msg = f"{display}: the header line is blank; a header naming the columns is required"
        raise InputError(msg)
    _check_duplicates(header, display)


def _ragged_line(path: Path, separator: str) -> tuple[int, int, int] | None:
    """(line, expected, found) of the first row whose field count differs from the header."""
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter=separator)
        header = next(reader, None)
        if header is None:
            return None
        for row in reader:
            if row and len(row) != len(header):
                return reader.line_num, len(header), len(row)
    return None


# --------------------------------------------------------------------------------------
# the Source
# --------------------------------------------------------------------------------------


@dataclass
class Source:
    """A set of input files read as one input, with a unified schema and chunked reading.

    Use as a context manager (or call :meth:`close`) so temporary copies of compressed,
    transcoded or converted files are removed.
    """

    files: list[SourceFile]
    encoding: str = "utf-8"
    separator: str | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    infer_schema_length: int = 10_000
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)
    _prepared: dict[int, _Prepared] = field(default_factory=dict, repr=False)
    _schema: pl.Schema | None = field(default=None, repr=False)
    _text_columns: frozenset[str] = field(default=frozenset(), repr=False)

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the temporary copies made while reading."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        self._prepared.clear()

    # -- preparation -------------------------------------------------------------------

    def _tmpdir(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="kraiter-sync-")
        return Path(self._tmp.name)

    def _prepare(self, index: int, *, sample: bool = False) -> _Prepared:
        """Path polars can scan, its format, and the CSV separator and line end.

        ``sample=True`` converts only the head of a file that needs converting (enough
        for its schema) into a throwaway copy, so computing the schema of a 40-part
        gzipped unload does not decompress all 40 parts to disk at once.
        """
        if index in self._prepared:
            return self._prepared[index]
        sf = self.files[index]
        encoding = _normal_encoding(self.encoding)
        fmt: Format = sf.format
        path = sf.path
        separator = ""
        eol = "\n"
        target = self._tmpdir() / (f"sample-{index}" if sample else f"{index}")
        limit = _SAMPLE_BYTES if sample else None
        items = _SAMPLE_ITEMS if sample else None
        remote = isinstance(path, ObjectPath)
        if remote:
            from kraiter_sync.objectsources import object_stream
        if fmt in ("csv", "tsv"):
            if remote and not sample:
                path = object_stream(sf, encoding)
            elif sf.compression is not None or encoding not in ("utf-8", "utf-8-sig") or remote:
                path = target.with_suffix(".csv")
                _transcode_text(sf, encoding, path, limit)
            separator = self.separator or ("\t" if fmt == "tsv" else "")
            with path.open("rb") as fh:
                sample_bytes = fh.read(_SNIFF_BYTES)
            if not sample_bytes.strip():
                msg = (
                    f"{sf.display}: the file is empty; a header line naming the columns is required"
                )
                raise InputError(msg)
            eol = _line_end(sample_bytes)
            head_text = sample_bytes.decode("utf-8", errors="ignore").removeprefix("\ufeff")
            if not separator:
                separator = _detect_delimiter(head_text, sf.display)
            header_line = head_text.splitlines()[0] if head_text else ""
            _check_header(next(csv.reader([header_line], delimiter=separator), []), sf.display)
            fmt = "csv"
        elif fmt in ("ndjson", "json"):
            head = b""
            with _open_decompressed(sf.path, sf.compression, sf.display) as fh:
                head = fh.read(_SNIFF_BYTES)
            if not head.strip():
                msg = f"{sf.display}: the file is empty; expected JSON objects"
                raise InputError(msg)
            if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
                path = target.with_suffix(".ndjson")
                _json_array_to_ndjson(sf, encoding, path, items)
            elif remote and not sample:
                path = object_stream(sf, encoding)
            elif sf.compression is not None or encoding not in ("utf-8", "utf-8-sig") or remote:
                path = target.with_suffix(".ndjson")
                _transcode_text(sf, encoding, path, limit)
            fmt = "ndjson"
        elif fmt == "avro" and remote and not sample:
            path = object_stream(sf, None)  # streamed record batches (_read_batches)
        elif fmt == "avro":
            path = target.with_suffix(".parquet")
            _avro_to_parquet(sf, path, self.chunk_size, items)
            fmt = "parquet"
        elif sf.compression is not None:
            path = target.with_suffix("." + fmt)
            _decompress(sf, path)
        prepared = _Prepared(path, fmt, separator, eol)
        if not sample:
            self._prepared[index] = prepared
        return prepared

    def _release(self, index: int, path: Path) -> None:
        """Delete a temporary copy as soon as it has been read (originals are untouched)."""
        if self._tmp is not None and path.parent == Path(self._tmp.name):
            path.unlink(missing_ok=True)
            if self._prepared.get(index, (None,))[0] == path:
                del self._prepared[index]

    def _scan_one(self, index: int, *, sample: bool = False) -> pl.LazyFrame:
        sf = self.files[index]
        with _translated(sf, functools.partial(self._prepared.get, index)):
            path, fmt, separator, eol = self._prepare(index, sample=sample)
            if fmt == "csv":
                lf = pl.scan_csv(
                    path,
                    separator=separator,
                    eol_char=eol,
                    infer_schema=False,
                    has_header=True,
                    raise_if_empty=True,
                    encoding="utf8",
                    glob=False,
                )
            elif fmt == "ndjson":
                lf = pl.scan_ndjson(path, infer_schema_length=self.infer_schema_length)
            elif isinstance(path, ObjectPath):
                from kraiter_sync.objectsources import schema_frame

                lf = schema_frame(path, fmt)
            elif fmt == "parquet":
                lf = pl.scan_parquet(path, glob=False, hive_partitioning=False)
            else:
                lf = pl.scan_ipc(path, glob=False, hive_partitioning=False)
            _check_names(lf.collect_schema().names(), sf)
        hive = [pl.lit(v, dtype=pl.String).alias(k) for k, v in sf.hive]
        return lf.with_row_index(SOURCE_ROW, offset=1).with_columns(
            *hive,
            pl.col(SOURCE_ROW).cast(pl.Int64),
            pl.lit(sf.display, dtype=pl.String).alias(SOURCE_FILE),
        )

    # -- schema --------------------------------------------------------------------------

    @property
    def schema(self) -> pl.Schema:
        """Unified schema of all files (columns in first-seen order, types relaxed)."""
        if self._schema is None:
            empties = []
            text: set[str] = set()
            for index in range(len(self.files)):
                schema = self._scan_one(index, sample=True).collect_schema()
                _check_nesting(schema, self.files[index])
                empties.append(pl.DataFrame(schema=schema))
                sf = self.files[index]
                if sf.format in ("csv", "tsv"):
                    hive = {k for k, _v in sf.hive}
                    text.update(n for n in schema.names() if n not in hive)
                for leftover in self._tmpdir().glob(f"sample-{index}.*"):
                    leftover.unlink()
            unified = pl.concat(empties, how="diagonal_relaxed").schema
            names = [n for n in unified if n not in (SOURCE_FILE, SOURCE_ROW)]
            self._schema = pl.Schema(
                [(n, unified[n]) for n in names]
                + [(SOURCE_FILE, pl.String()), (SOURCE_ROW, pl.Int64())]
            )
            self._text_columns = frozenset(text - {SOURCE_FILE, SOURCE_ROW})
        return self._schema

    @property
    def text_columns(self) -> frozenset[str]:
        """Columns read as text from CSV / TSV files (not hive ``key=value`` directory
        names): their values get typed (``validate.text_types``)."""
        self.schema  # noqa: B018  (computed with the schema)
        return self._text_columns

    def _align(self, lf: pl.LazyFrame) -> pl.LazyFrame:
        target = self.schema
        have = lf.collect_schema()
        exprs = [
            (pl.col(n).cast(t) if n in have else pl.lit(None, dtype=t)).alias(n)
            for n, t in target.items()
        ]
        return lf.select(exprs)

    # -- reading -------------------------------------------------------------------------

    def scan(self) -> pl.LazyFrame:
        """All files as one lazy frame (valid while this Source is open)."""
        if any(isinstance(sf.path, ObjectPath) for sf in self.files):
            msg = (
                f"{self.files[0].display}: object-storage inputs are read in chunks "
                "(iter_chunks, read), not as one lazy frame"
            )
            raise InputError(msg)
        frames = [self._align(self._scan_one(i)) for i in range(len(self.files))]
        return pl.concat(frames, how="vertical")

    def iter_chunks(self, *, chunk_size: int | None = None) -> Iterator[pl.DataFrame]:
        """Stream the rows as DataFrames of at most ``chunk_size`` rows, file by file.

        Memory is bounded by one chunk (plus one Parquet row group / CSV block): the
        readers below pull from the file only when the consumer asks for the next
        chunk. polars' own ``collect_batches`` / ``sink_batches`` run ahead of a slow
        consumer and buffer the whole result, so they are not used here.
        """
        size = chunk_size or self.chunk_size
        if size < 1:
            msg = f"chunk size must be at least 1, not {size}"
            raise InputError(msg)
        target = self.schema
        total = 0
        header_only = False
        for index, sf in enumerate(self.files):
            with _translated(sf, functools.partial(self._prepared.get, index)):
                prepared = self._prepare(index)
                row = 0
                for raw in _read_batches(prepared, size):
                    if not raw.height:
                        continue
                    _check_names(raw.columns, sf)  # NDJSON keys past the schema sample
                    for piece in _split(raw, size):
                        yield _finish(piece, sf, row, target)
                        row += piece.height
                if not row and prepared.format == "csv":
                    _check_nothing_after_header(prepared, sf)
                    header_only = True
            total += row
            self._release(index, prepared.path)
        if not total:
            first = self.files[0].display if self.files else "the input"
            more = f" and {len(self.files) - 1} more file(s)" if len(self.files) > 1 else ""
            what = "only a header line" if header_only else "the files hold none"
            log.warning("%s%s: no rows (%s)", first, more, what)

    def read(self) -> pl.DataFrame:
        """Everything at once (only for inputs that fit in memory)."""
        chunks = list(self.iter_chunks())
        if not chunks:
            return pl.DataFrame(schema=self.schema)
        return pl.concat(chunks, how="vertical")


def _check_nothing_after_header(prepared: _Prepared, sf: SourceFile) -> None:
    """A CSV that read as no rows must hold nothing after its header line: bytes there that
    yielded no row (line ends or quoting not understood) would be silently lost."""
    with prepared.path.open("rb") as fh:
        head = fh.read(_SNIFF_BYTES)
        cut = min((i for i in (head.find(b"\n"), head.find(b"\r")) if i >= 0), default=-1)
        block = head[cut + 1 :] if cut >= 0 else b""
        while not block.strip() and block:  # blank so far: look further, a block at a time
            block = fh.read(_COPY_BLOCK)
        if not block.strip():
            return
    size = prepared.path.stat().st_size - (cut + 1)
    msg = (
        f"{sf.display}: no row could be read, though {size:,} bytes follow the header "
        "line; check the line endings (LF, CRLF or CR) and the quoting (a quote opened in "
        "the header and never closed swallows the whole file)"
    )
    raise InputError(msg)


def _read_batches(prepared: _Prepared, size: int) -> Iterator[pl.DataFrame]:
    """Pull-based readers: each next() reads only what the next chunk needs."""
    import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

    path, fmt = prepared.path, prepared.format

    if fmt == "parquet":
        import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

        # pre_buffer=False: pre-buffering whole row groups made RSS grow with file size
        parquet = pq.ParquetFile(_arrow_file(path), pre_buffer=False)
        for batch in parquet.iter_batches(batch_size=size):
            yield cast(pl.DataFrame, pl.from_arrow(batch))
    elif fmt == "avro":  # an object: records streamed straight into frames
        with path.open("rb") as fh:
            yield from _avro_frames(fh, str(path), size)
    elif fmt == "ipc":
        import pyarrow.ipc as ipc  # type: ignore[import-untyped, unused-ignore]

        opened = path.open_random() if isinstance(path, ObjectPath) else pa.memory_map(str(path))
        with opened as source:
            reader = ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield cast(pl.DataFrame, pl.from_arrow(reader.get_batch(i)))
    elif fmt == "csv":
        yield from _csv_blocks(path, prepared.separator, prepared.eol)
    else:  # ndjson: batches of lines, each parsed by polars
        with path.open("rb") as fh:
            while True:
                lines = [line for _, line in zip(range(size), fh, strict=False)]
                if not lines:
                    return
                body = b"".join(ln for ln in lines if ln.strip())
                if body:
                    yield pl.read_ndjson(io.BytesIO(body), infer_schema_length=None)


_CSV_BLOCK = 16 << 20


def _csv_blocks(path: Path, separator: str, eol: str = "\n") -> Iterator[pl.DataFrame]:
    """Parse a UTF-8 CSV in ~16 MB blocks cut at record boundaries, header re-attached.

    A line end (``eol``) ends a record only outside quotes; with RFC 4180 quoting (a
    quote inside a value is doubled) that is where the count of quote characters so far
    is even. (pyarrow's streaming CSV reader was measured to grow RSS with file size,
    and polars' batch APIs buffer ahead; this keeps memory at one block.)

    A record longer than a block grows ``carry`` in place, and only the complete
    records are copied out (once) before the carry is dropped: a 200 MB field is held
    twice while it is parsed (its bytes, then polars' column), not four times.
    """
    end = eol.encode()
    with path.open("rb") as fh:
        header = _first_line(fh, end)
        if header.startswith(b"\xef\xbb\xbf"):
            header = header[3:]
        carry = bytearray()
        while True:
            block = fh.read(_CSV_BLOCK)
            if not block:
                if carry.strip():
                    records, carry = header + carry, bytearray()
                    yield _parse_csv(records, separator, eol)
                return
            carry += block
            del block
            cut = _record_end(carry, end)
            if cut < 0:
                continue
            with memoryview(carry) as view:
                records, rest = header + view[:cut], bytearray(view[cut:])
            carry = rest
            yield _parse_csv(records, separator, eol)
            del records


def _first_line(fh: IO[bytes], end: bytes) -> bytes:
    """The first line with its line end (binary ``readline`` knows only ``\\n``)."""
    if end == b"\n":
        return fh.readline()
    line = b""
    while block := fh.read(_SNIFF_BYTES):
        at = block.find(end)
        if at >= 0:
            fh.seek(at + 1 - len(block), io.SEEK_CUR)
            return line + block[: at + 1]
        line += block
    return line


def _record_end(data: bytes | bytearray, end: bytes = b"\n") -> int:
    """Index just after the last line end that is outside quotes, or -1."""
    pos = len(data)
    while True:
        nl = data.rfind(end, 0, pos)
        if nl < 0:
            return -1
        if data.count(b'"', 0, nl) % 2 == 0:
            return nl + 1
        pos = nl


def _parse_csv(data: bytes, separator: str, eol: str = "\n") -> pl.DataFrame:
    return pl.read_csv(
        io.BytesIO(data),
        separator=separator,
        eol_char=eol,
        infer_schema=False,
        has_header=True,
        encoding="utf8",
        raise_if_empty=False,
    )


def _finish(chunk: pl.DataFrame, sf: SourceFile, first_row: int, target: pl.Schema) -> pl.DataFrame:
    """Add provenance and hive columns, then conform to the Source schema."""
    chunk = chunk.with_columns(
        *[pl.lit(v, dtype=pl.String).alias(k) for k, v in sf.hive],
        pl.lit(sf.display, dtype=pl.String).alias(SOURCE_FILE),
        pl.int_range(first_row + 1, first_row + 1 + chunk.height, dtype=pl.Int64).alias(SOURCE_ROW),
    )
    exprs = []
    for name, dtype in target.items():
        if name not in chunk.columns:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
        elif chunk.schema[name] == dtype:
            exprs.append(pl.col(name))
        elif _widens(chunk.schema[name], dtype):
            exprs.append(pl.col(name).cast(dtype).alias(name))
        else:
            # never narrow (2.5 → 2) or drop struct fields: the chunk keeps its own type
            exprs.append(pl.col(name))
    # NDJSON keys first seen after the schema sample are kept, not dropped
    extra = [pl.col(n) for n in chunk.columns if n not in target]
    return chunk.select(exprs[:-2] + extra + exprs[-2:]) if extra else chunk.select(exprs)


def _widens(have: pl.DataType, want: pl.DataType) -> bool:
    """Whether casting ``have`` to ``want`` loses nothing (want is their supertype)."""
    if have == pl.Null:
        return True
    try:
        both = pl.concat(
            [pl.DataFrame(schema={"c": have}), pl.DataFrame(schema={"c": want})],
            how="vertical_relaxed",
        )
    except pl.exceptions.PolarsError:
        return False
    return bool(both.schema["c"] == want)


def _split(frame: pl.DataFrame, size: int) -> Iterator[pl.DataFrame]:
    if frame.height <= size:
        yield frame
        return
    for offset in range(0, frame.height, size):
        yield frame.slice(offset, size)


@contextlib.contextmanager
def _translated(
    sf: SourceFile, prepared: Callable[[], _Prepared | None] = lambda: None
) -> Iterator[None]:
    """Turn polars/pyarrow/OS errors about one file into an InputError naming it."""
    try:
        yield
    except InputError:
        raise
    except FileNotFoundError as exc:
        msg = f"{sf.display}: no such file (was it moved while reading?)"
        raise InputError(msg) from exc
    except PermissionError as exc:
        msg = f"{sf.display}: permission denied; check the file's permissions"
        raise InputError(msg) from exc
    except pl.exceptions.NoDataError as exc:
        msg = f"{sf.display}: the file is empty; a header line naming the columns is required"
        raise InputError(msg) from exc
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise _explain(sf, exc, prepared()) from exc


def _bad_json_line(path: Path | None) -> int:
    """1-based number of the first non-blank line that is not a JSON object (error path)."""
    if path is None:
        return 0
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError:
                return number
            if not isinstance(value, dict):
                return number
    return 0


def _explain(sf: SourceFile, exc: BaseException, prepared: _Prepared | None = None) -> InputError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    lower = str(exc).lower()
    fmt = sf.format
    if "utf-8" in lower or "utf8" in lower:
        line = _bad_line(sf.path, sf.compression, sf.display, "utf-8")
        return _decode_error(sf.display, line, "utf-8")
    if fmt in ("csv", "tsv") and (
        "fields" in lower or ("expected" in lower and "columns" in lower)
    ):
        ragged = None
        with contextlib.suppress(Exception):
            if prepared is not None:  # the decompressed / UTF-8 copy: same line numbers
                ragged = _ragged_line(prepared.path, prepared.separator)
            elif sf.compression is None:
                with sf.path.open("rb") as fh:
                    sample = fh.read(_SNIFF_BYTES).decode("utf-8", errors="ignore")
                sep = "\t" if fmt == "tsv" else _detect_delimiter(sample, sf.display)
                ragged = _ragged_line(sf.path, sep)
        if ragged:
            line, expected, found = ragged
            return InputError(
                f"{sf.display}: line {line} has {found} fields but the header has {expected}; "
                "fix or quote that line (a delimiter inside a value needs quotes)"
            )
        return InputError(
            f"{sf.display}: a line has more fields than the header ({text}); "
            "fix or quote it (a delimiter inside a value needs quotes)"
        )
    if fmt == "parquet" and ("parquet" in lower or "out of specification" in lower):
        return InputError(
            f"{sf.display}: not a valid Parquet file ({text}); it may be truncated or "
            "another format (pass --format)"
        )
    if fmt == "ipc":
        return InputError(
            f"{sf.display}: not a valid Arrow IPC/Feather file ({text}); it may be truncated "
            "(export it again) or another format (pass --format)"
        )
    if fmt in ("ndjson", "json"):
        plain = sf.path if sf.compression is None and sf.format == "ndjson" else None
        line = _bad_json_line(prepared.path if prepared is not None else plain)
        if line:
            return InputError(
                f"{sf.display}: line {line} is not a valid JSON object; each line must be "
                "one complete JSON object (is the file truncated?)"
            )
        return InputError(
            f"{sf.display}: not valid newline-delimited JSON ({text}); each line must be one "
            "JSON object"
        )
    return InputError(
        f"{sf.display}: cannot be read as {fmt} ({text}); check the file, or pass --format"
    )


def _arrow_file(path: Path) -> Any:
    """What pyarrow opens: a local path as a string, an object as a seekable reader."""
    return path.open_random() if isinstance(path, ObjectPath) else str(path)


# --------------------------------------------------------------------------------------
# public functions
# --------------------------------------------------------------------------------------


def open_source(
    paths: str | Path | Sequence[str | Path],
    *,
    format: Format | None = None,
    encoding: str = "utf-8",
    separator: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    storage: StorageOptions | None = None,
) -> Source:
    """Resolve files, directories and globs into a :class:`Source` (nothing read yet).

    Object URLs (``s3://``, ``gs://``, ``az://``, ``abfss://``, ``https://``) name one
    object, a prefix, a glob or a Redshift manifest; ``storage`` holds their endpoints
    and profiles (``[storage]`` of kraiter-sync.toml). They are streamed, never copied.
    """
    if format is not None and format not in FORMATS:
        msg = f"unknown format {format!r}; choose one of {', '.join(FORMATS)}"
        raise InputError(msg)
    return Source(
        _resolve(paths, format, storage),
        encoding=encoding,
        separator=separator,
        chunk_size=chunk_size,
    )


def iter_chunks(
    paths: str | Path | Sequence[str | Path],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    format: Format | None = None,
    encoding: str = "utf-8",
    separator: str | None = None,
) -> Iterator[pl.DataFrame]:
    """Stream every row of every input as DataFrames of at most ``chunk_size`` rows."""
    with open_source(
        paths, format=format, encoding=encoding, separator=separator, chunk_size=chunk_size
    ) as source:
        yield from source.iter_chunks()


def read_source(
    paths: str | Path | Sequence[str | Path],
    *,
    format: Format | None = None,
    encoding: str = "utf-8",
    separator: str | None = None,
) -> pl.DataFrame:
    """Eager: every row of every input in one DataFrame."""
    with open_source(paths, format=format, encoding=encoding, separator=separator) as source:
        return source.read()


def scan_source(
    paths: str | Path | Sequence[str | Path],
    *,
    format: Format | None = None,
    encoding: str = "utf-8",
    separator: str | None = None,
) -> pl.LazyFrame:
    """Lazy: every input as one LazyFrame.

    Temporary copies (compressed, transcoded, JSON arrays, Avro) live until the
    interpreter exits; prefer :func:`open_source` as a context manager for those.
    """
    source = open_source(paths, format=format, encoding=encoding, separator=separator)
    _KEEP_ALIVE.append(source)
    return source.scan()


_KEEP_ALIVE: list[Source] = []


#: Deepest nesting of lists and structs a source may hold. polars' Python layer recurses
#: once per level (about 150 levels exhaust the interpreter's stack, 600 crash the NDJSON
#: reader) and Kraiter's properties are flat anyway: deeper values are refused up front;
#: the validator rejects rows nested past its own, lower limit (``max_depth``).
MAX_NESTING = 64


def _check_nesting(schema: pl.Schema, sf: SourceFile) -> None:
    """Refuse a column nested deeper than :data:`MAX_NESTING` (walked without recursion)."""
    for name, dtype in schema.items():
        deepest = 0
        stack: list[tuple[Any, int]] = [(dtype, 0)]
        while stack:
            current, level = stack.pop()
            deepest = max(deepest, level)
            if deepest > MAX_NESTING:
                break
            if isinstance(current, pl.Struct):
                stack.extend((f.dtype, level + 1) for f in current.fields)
            elif isinstance(current, pl.List | pl.Array):
                stack.append((current.inner, level + 1))
        if deepest > MAX_NESTING:
            msg = (
                f"{sf.display}: column {name!r} nests objects or lists more than "
                f"{MAX_NESTING} levels deep; Kraiter properties are flat, so flatten it (or "
                "leave it out of the export) and run again"
            )
            raise InputError(msg)
