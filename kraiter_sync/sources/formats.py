"""What a file is and how its bytes become rows: formats and compression detected from
the name and the first bytes, decompression, re-encoding, JSON arrays and Avro streamed
into a form polars scans, and the header checks every input passes."""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import io
import json
import shutil
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple, cast

import polars as pl

from kraiter_sync.errors import InputError
from kraiter_sync.frames import SOURCE_FILE, SOURCE_PROBLEM, SOURCE_ROW
from kraiter_sync.logs import get_logger

__all__ = [
    "COPY_BLOCK",
    "DEFAULT_CHUNK_SIZE",
    "FORMATS",
    "SAMPLE_BYTES",
    "SAMPLE_ITEMS",
    "SNIFF_BYTES",
    "Compression",
    "Format",
    "Prepared",
    "SourceFile",
    "avro_frames",
    "avro_to_parquet",
    "bad_line",
    "check_header",
    "check_names",
    "check_wide_bom",
    "decode_error",
    "decompress",
    "detect_delimiter",
    "detect_format",
    "json_array_to_ndjson",
    "line_end",
    "normal_encoding",
    "open_decompressed",
    "ragged_line",
    "transcode_text",
]

log = get_logger("sources")

Format = Literal["csv", "tsv", "parquet", "ndjson", "json", "avro", "ipc"]


FORMATS: tuple[str, ...] = ("csv", "tsv", "parquet", "ndjson", "json", "avro", "ipc")


Compression = Literal["gzip", "zstd"]


DEFAULT_CHUNK_SIZE = 100_000


COPY_BLOCK = 1 << 20


SAMPLE_BYTES = 4 << 20  # head of a converted file used to infer its schema


SAMPLE_ITEMS = 20_000  # JSON array elements / Avro records for the same


SNIFF_BYTES = 64 * 1024


_DELIMITERS = (",", "\t", ";", "|")


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


class Prepared(NamedTuple):
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


def detect_format(
    path: Path, display: str, forced: Format | None
) -> tuple[Format, Compression | None]:
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
            with open_decompressed(path, compression, display) as fh:
                head = fh.read(16)
        fmt = _format_from_magic(head)
    return fmt, compression


@contextlib.contextmanager
def open_decompressed(
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
            block = self._raw.read(COPY_BLOCK)
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


def normal_encoding(encoding: str) -> str:
    try:
        name = codecs.lookup(encoding).name
    except LookupError as exc:
        msg = (
            f"unknown encoding {encoding!r}; use a Python codec name such as utf-8, latin-1, cp1252"
        )
        raise InputError(msg) from exc
    return name


def bad_line(path: Path, compression: Compression | None, display: str, encoding: str) -> int:
    """Find the 1-based physical line holding the first undecodable bytes (error path only)."""
    decoder_name = "utf-8" if encoding in ("utf-8", "utf-8-sig") else encoding
    with open_decompressed(path, compression, display) as fh:
        for number, line in enumerate(fh, start=1):
            try:
                line.decode(decoder_name)
            except UnicodeDecodeError:
                return number
    return 0


def decode_error(
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


#: Byte-order marks of the encodings whose text is no valid UTF-8 (longest first).
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def check_wide_bom(head: bytes, encoding: str, display: str) -> None:
    """Refuse a file read as UTF-8 that starts with a UTF-16 or UTF-32 byte-order mark:
    read as UTF-8, its NUL bytes split rows and values silently."""
    if encoding not in ("utf-8", "utf-8-sig"):
        return
    for bom, name in _WIDE_BOMS:
        if head.startswith(bom):
            msg = (
                f"{display}: the file starts with a {name.upper()} byte-order mark but is "
                f"read as UTF-8; pass --encoding {name}"
            )
            raise InputError(msg)


def transcode_text(sf: SourceFile, encoding: str, target: Path, limit: int | None = None) -> None:
    """Stream (decompress and) decode to UTF-8 without a BOM, in fixed-size pieces.

    With ``limit``, stop after about that many bytes, at a line end (a schema sample).
    """
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    first = True
    written = 0
    with open_decompressed(sf.path, sf.compression, sf.display) as src, target.open("wb") as dst:
        while True:
            block = src.read(COPY_BLOCK)
            try:
                text = decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                line = bad_line(sf.path, sf.compression, sf.display, encoding)
                raise decode_error(sf.display, line, encoding, exc) from exc
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


def decompress(sf: SourceFile, target: Path) -> None:
    with open_decompressed(sf.path, sf.compression, sf.display) as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, COPY_BLOCK)


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
        chunk = fh.read(COPY_BLOCK)
        if not chunk:
            eof = True
        buf = buf[pos:] + chunk
        pos = 0


def json_array_to_ndjson(
    sf: SourceFile, encoding: str, target: Path, limit: int | None = None
) -> None:
    with (
        open_decompressed(sf.path, sf.compression, sf.display) as raw,
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
            raise decode_error(sf.display, 0, encoding, exc) from exc


def avro_frames(
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


def avro_to_parquet(
    sf: SourceFile, target: Path, chunk_size: int, limit: int | None = None
) -> None:
    import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

    with open_decompressed(sf.path, sf.compression, sf.display) as fh:
        writer: pq.ParquetWriter | None = None
        try:
            for frame in avro_frames(fh, sf.display, chunk_size, limit):
                table = frame.to_arrow()
                if writer is None:
                    writer = pq.ParquetWriter(str(target), table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            pl.DataFrame().write_parquet(target)


def detect_delimiter(sample: str, display: str) -> str:
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


def line_end(head: bytes) -> str:
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


def check_names(names: Sequence[str], sf: SourceFile) -> None:
    """A file's own columns must not take the provenance names, nor its directory keys."""
    for name in names:
        if name in (SOURCE_FILE, SOURCE_ROW, SOURCE_PROBLEM):
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


def check_header(header: list[str], display: str) -> None:
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


def ragged_line(path: Path, separator: str) -> tuple[int, int, int] | None:
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
