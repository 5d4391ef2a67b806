"""Paths, directories, globs and object URLs as one :class:`Source` of chunks.

Why files are *prepared* first: polars scans plain CSV, NDJSON, Parquet and IPC lazily
and in bounded memory, but not compressed text, other encodings, JSON arrays or Avro.
Those are streamed once, in fixed-size pieces, into a temporary file polars can scan
(UTF-8 CSV, NDJSON or Parquet). Memory then stays flat whatever the input size; the
cost is one sequential copy on disk. Each file is scanned on its own so ``source_row``
restarts at 1 per file, which is what a user opening that file expects. Objects are
read as they stream (``objects``): no copy.
"""

from __future__ import annotations

import csv
import functools
import glob as globlib
import tempfile
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from kraiter_sync.errors import InputError
from kraiter_sync.frames import SOURCE_FILE, SOURCE_PROBLEM, SOURCE_ROW
from kraiter_sync.jsontypes import MAX_NESTING, plain_type
from kraiter_sync.logs import get_logger
from kraiter_sync.sources.formats import (
    DEFAULT_CHUNK_SIZE,
    FORMATS,
    SAMPLE_BYTES,
    SAMPLE_ITEMS,
    SNIFF_BYTES,
    Format,
    Prepared,
    SourceFile,
    avro_to_parquet,
    check_header,
    check_names,
    check_wide_bom,
    decompress,
    detect_delimiter,
    detect_format,
    json_array_to_ndjson,
    line_end,
    normal_encoding,
    open_decompressed,
    transcode_text,
)
from kraiter_sync.sources.ndjson import sample_schema
from kraiter_sync.sources.objects import expand_objects, object_stream, schema_frame
from kraiter_sync.sources.objectstore.readers import ObjectPath
from kraiter_sync.sources.reading import (
    check_nothing_after_header,
    finish_chunk,
    read_batches,
    split_frame,
    translated,
)
from kraiter_sync.urls import is_object_url

if TYPE_CHECKING:
    from kraiter_sync.sources.objectstore.stores import StorageOptions


__all__ = [
    "FORMATS",
    "Source",
    "SourceFile",
    "iter_chunks",
    "open_source",
    "read_source",
    "scan_source",
]


_GLOB_CHARS = frozenset("*?[")


log = get_logger("sources")


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
            fmt, compression = detect_format(path, display, forced)
            out.append(SourceFile(path, display, fmt, compression, hive))
    return out


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
    _prepared: dict[int, Prepared] = field(default_factory=dict, repr=False)
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

    def _prepare(self, index: int, *, sample: bool = False) -> Prepared:
        """Path polars can scan, its format, and the CSV separator and line end.

        ``sample=True`` converts only the head of a file that needs converting (enough
        for its schema) into a throwaway copy, so computing the schema of a 40-part
        gzipped unload does not decompress all 40 parts to disk at once.
        """
        if index in self._prepared:
            return self._prepared[index]
        sf = self.files[index]
        encoding = normal_encoding(self.encoding)
        fmt: Format = sf.format
        path = sf.path
        separator = ""
        eol = "\n"
        target = self._tmpdir() / (f"sample-{index}" if sample else f"{index}")
        limit = SAMPLE_BYTES if sample else None
        items = SAMPLE_ITEMS if sample else None
        remote = isinstance(path, ObjectPath)
        if fmt in ("csv", "tsv", "ndjson", "json"):
            with open_decompressed(sf.path, sf.compression, sf.display) as fh:
                check_wide_bom(fh.read(4), encoding, sf.display)
        if fmt in ("csv", "tsv"):
            if remote and not sample:
                path = object_stream(sf, encoding)
            elif sf.compression is not None or encoding not in ("utf-8", "utf-8-sig") or remote:
                path = target.with_suffix(".csv")
                transcode_text(sf, encoding, path, limit)
            separator = self.separator or ("\t" if fmt == "tsv" else "")
            with path.open("rb") as fh:
                sample_bytes = fh.read(SNIFF_BYTES)
            if not sample_bytes.strip():
                msg = (
                    f"{sf.display}: the file is empty; a header line naming the columns is required"
                )
                raise InputError(msg)
            eol = line_end(sample_bytes)
            head_text = sample_bytes.decode("utf-8", errors="ignore").removeprefix("\ufeff")
            if not separator:
                separator = detect_delimiter(head_text, sf.display)
            header_line = head_text.splitlines()[0] if head_text else ""
            check_header(next(csv.reader([header_line], delimiter=separator), []), sf.display)
            fmt = "csv"
        elif fmt in ("ndjson", "json"):
            head = b""
            with open_decompressed(sf.path, sf.compression, sf.display) as fh:
                head = fh.read(SNIFF_BYTES)
            if not head.strip():
                msg = f"{sf.display}: the file is empty; expected JSON objects"
                raise InputError(msg)
            if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
                path = target.with_suffix(".ndjson")
                json_array_to_ndjson(sf, encoding, path, items)
            elif remote and not sample:
                path = object_stream(sf, encoding)
            elif sf.compression is not None or encoding not in ("utf-8", "utf-8-sig") or remote:
                path = target.with_suffix(".ndjson")
                transcode_text(sf, encoding, path, limit)
            fmt = "ndjson"
        elif fmt == "avro" and remote and not sample:
            path = object_stream(sf, None)  # streamed record batches (read_batches)
        elif fmt == "avro":
            path = target.with_suffix(".parquet")
            avro_to_parquet(sf, path, self.chunk_size, items)
            fmt = "parquet"
        elif sf.compression is not None:
            path = target.with_suffix("." + fmt)
            decompress(sf, path)
        prepared = Prepared(path, fmt, separator, eol)
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
        with translated(sf, functools.partial(self._prepared.get, index)):
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
            elif fmt == "ndjson" and sample:  # the types the lines have, read as they are
                with path.open("rb") as fh:
                    head = sample_schema(
                        fh, sf.display, self.infer_schema_length, SAMPLE_BYTES
                    ).schema
                lf = pl.LazyFrame(
                    schema={n: plain_type(t) for n, t in head.items() if n != SOURCE_PROBLEM}
                )
            elif fmt == "ndjson":
                lf = pl.scan_ndjson(path, infer_schema_length=self.infer_schema_length)
            elif isinstance(path, ObjectPath):
                lf = schema_frame(path, fmt)
            elif fmt == "parquet":
                lf = pl.scan_parquet(path, glob=False, hive_partitioning=False)
            else:
                lf = pl.scan_ipc(path, glob=False, hive_partitioning=False)
            check_names(lf.collect_schema().names(), sf)
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
            with translated(sf, functools.partial(self._prepared.get, index)):
                prepared = self._prepare(index)
                row = 0
                for raw in read_batches(prepared, size, sf.display):
                    if not raw.height:
                        continue
                    # (NDJSON keys past the schema sample)
                    check_names([c for c in raw.columns if c != SOURCE_PROBLEM], sf)
                    for piece in split_frame(raw, size):
                        yield finish_chunk(piece, sf, row, target)
                        row += piece.height
                if not row and prepared.format == "csv":
                    check_nothing_after_header(prepared, sf)
                    header_only = True
            total += row
            self._release(index, prepared.path)
        if not total:
            first = self.files[0].display if self.files else "the input"
            more = f" and {len(self.files) - 1} more file(s)" if len(self.files) > 1 else ""
            what = "only a header line" if header_only else "the files hold none"
            log.warning("%s%s: no rows (%s)", first, more, what)

    def read(self) -> pl.DataFrame:
        """Everything at once (only for inputs that fit in memory). A chunk without rows
        the source could not read has no ``source_problem``: null there."""
        chunks = list(self.iter_chunks())
        if not chunks:
            return pl.DataFrame(schema=self.schema)
        return pl.concat(chunks, how="diagonal")


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
