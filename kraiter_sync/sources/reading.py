"""Prepared files read in chunks (CSV in blocks, the rest through polars batches), every
row tagged with ``source_file`` and ``source_row``, and the one place where polars,
pyarrow, OS and codec errors become :class:`~kraiter_sync.errors.InputError`."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, cast

import polars as pl

from kraiter_sync.errors import InputError
from kraiter_sync.frames import SOURCE_FILE, SOURCE_ROW
from kraiter_sync.jsontypes import (
    BOOL,
    FLOAT,
    INT,
    TEXT,
    WAS,
    is_mixed,
    mixed_field_names,
    plain_type,
)
from kraiter_sync.sources.formats import (
    COPY_BLOCK,
    SNIFF_BYTES,
    Prepared,
    SourceFile,
    avro_frames,
    bad_line,
    decode_error,
    detect_delimiter,
    ragged_line,
)
from kraiter_sync.sources.ndjson import ndjson_frames
from kraiter_sync.sources.objectstore.readers import ObjectPath
from kraiter_sync.sources.ragged import mark_ragged, may_be_ragged

__all__ = [
    "CSV_BLOCK",
    "check_nothing_after_header",
    "finish_chunk",
    "read_batches",
    "split_frame",
    "translated",
    "with_legacy_type",
]


def check_nothing_after_header(prepared: Prepared, sf: SourceFile) -> None:
    """A CSV that read as no rows must hold nothing after its header line: bytes there that
    yielded no row (line ends or quoting not understood) would be silently lost."""
    with prepared.path.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
        cut = min((i for i in (head.find(b"\n"), head.find(b"\r")) if i >= 0), default=-1)
        block = head[cut + 1 :] if cut >= 0 else b""
        while not block.strip() and block:  # blank so far: look further, a block at a time
            block = fh.read(COPY_BLOCK)
        if not block.strip():
            return
    size = prepared.path.stat().st_size - (cut + 1)
    msg = (
        f"{sf.display}: no row could be read, though {size:,} bytes follow the header "
        "line; check the line endings (LF, CRLF or CR) and the quoting (a quote opened in "
        "the header and never closed swallows the whole file)"
    )
    raise InputError(msg)


def read_batches(prepared: Prepared, size: int, display: str = "") -> Iterator[pl.DataFrame]:
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
            yield from avro_frames(fh, str(path), size)
    elif fmt == "ipc":
        import pyarrow.ipc as ipc  # type: ignore[import-untyped, unused-ignore]

        opened = path.open_random() if isinstance(path, ObjectPath) else pa.memory_map(str(path))
        with opened as source:
            reader = ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield cast(pl.DataFrame, pl.from_arrow(reader.get_batch(i)))
    elif fmt == "csv":
        yield from _csv_blocks(path, prepared.separator, prepared.eol)
    else:  # ndjson: lines parsed one by one into exact columns (sources.ndjson)
        with path.open("rb") as fh:
            yield from ndjson_frames(fh, size, display or str(path))


CSV_BLOCK = 16 << 20


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
    lines = 0  # (of the records parsed so far: ragged records are named by their line)
    with path.open("rb") as fh:
        header = _first_line(fh, end)
        if header.startswith(b"\xef\xbb\xbf"):
            header = header[3:]
        carry = bytearray()
        while True:
            block = fh.read(CSV_BLOCK)
            if not block:
                if carry.strip():
                    records, carry = header + carry, bytearray()
                    yield _parse_csv(records, separator, eol, lines)
                return
            carry += block
            del block
            cut = _record_end(carry, end)
            if cut < 0:
                continue
            with memoryview(carry) as view:
                records, rest = header + view[:cut], bytearray(view[cut:])
            carry = rest
            yield _parse_csv(records, separator, eol, lines)
            lines += records.count(end) - header.count(end)
            del records


def _first_line(fh: IO[bytes], end: bytes) -> bytes:
    """The first line with its line end (binary ``readline`` knows only ``\\n``)."""
    if end == b"\n":
        return fh.readline()
    line = b""
    while block := fh.read(SNIFF_BYTES):
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


def _parse_csv(data: bytes, separator: str, eol: str = "\n", lines: int = 0) -> pl.DataFrame:
    """One block (header line, then records); a record with more or fewer fields than
    the header becomes a row with its problem (``sources.ragged``). ``lines``: the file's
    lines before the block's records, the header's not counted."""

    def read(*, truncate: bool) -> pl.DataFrame:
        return pl.read_csv(
            io.BytesIO(data),
            separator=separator,
            eol_char=eol,
            infer_schema=False,
            has_header=True,
            encoding="utf8",
            raise_if_empty=False,
            truncate_ragged_lines=truncate,
        )

    try:
        frame = read(truncate=False)
    except pl.exceptions.ComputeError as exc:
        if "more fields" not in str(exc):
            raise
        return mark_ragged(read(truncate=True), data, separator, lines, exc)
    if may_be_ragged(frame):
        return mark_ragged(frame, data, separator, lines)
    return frame


def finish_chunk(
    chunk: pl.DataFrame, sf: SourceFile, first_row: int, target: pl.Schema
) -> pl.DataFrame:
    """Add provenance and hive columns, then conform to the Source schema."""
    chunk = chunk.with_columns(
        *[pl.lit(v, dtype=pl.String).alias(k) for k, v in sf.hive],
        pl.lit(sf.display, dtype=pl.String).alias(SOURCE_FILE),
        pl.int_range(first_row + 1, first_row + 1 + chunk.height, dtype=pl.Int64).alias(SOURCE_ROW),
    )
    exprs: list[pl.Expr | pl.Series] = []
    for name, dtype in target.items():
        if name not in chunk.columns:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
            continue
        have = chunk.schema[name]
        if have == dtype or not _widens(plain_type(have), dtype):
            # never narrow (2.5 → 2) or drop struct fields: the chunk keeps its own type
            exprs.append(pl.col(name))
        elif _same_json(have, dtype):
            exprs.append(pl.col(name).cast(dtype).alias(name))
        else:
            # an earlier version cast it (1 → 1.0 in a column of floats): each value keeps
            # its own type, and the type it was cast to is kept for its earlier key
            exprs.append(with_legacy_type(chunk[name], dtype))
    # NDJSON keys first seen after the schema sample are kept, not dropped
    extra = [pl.col(n) for n in chunk.columns if n not in target]
    return chunk.select(exprs[:-2] + extra + exprs[-2:]) if extra else chunk.select(exprs)


_JSON_PARTS = {pl.Boolean: BOOL, pl.String: TEXT}


def _same_json(have: Any, want: Any) -> bool:
    """Whether casting ``have`` to ``want`` leaves every value's JSON text as it is (a
    wider integer, a struct with more fields; not an integer to a float, nor anything to
    text). Mixed columns (``jsontypes``) are never cast."""
    if have == want or have == pl.Null:
        return True
    if is_mixed(have) or is_mixed(want):
        return False
    if have.is_integer() and want.is_integer():
        return bool(want.is_signed_integer() or not have.is_signed_integer())
    if isinstance(have, pl.Datetime) and isinstance(want, pl.Datetime):
        return have.time_zone == want.time_zone
    if isinstance(have, pl.Struct) and isinstance(want, pl.Struct):
        wanted = {f.name: f.dtype for f in want.fields}
        return all(f.name in wanted and _same_json(f.dtype, wanted[f.name]) for f in have.fields)
    # (a property may not be a list: rejected whatever its items)
    return isinstance(have, pl.List) and isinstance(want, pl.List)


def _part_name(dtype: Any) -> str | None:
    if dtype.is_integer():
        return INT
    if dtype.is_float():
        return FLOAT
    return _JSON_PARTS.get(dtype.base_type())


def with_legacy_type(s: pl.Series, want: Any) -> pl.Series:
    """``s`` as it is, each scalar leaf whose type ``want`` changes made a mixed column
    (``jsontypes``) whose ``WAS`` is the leaf's type in ``want``: the key an earlier
    version wrote (it cast the column to ``want``) stays computable. Leaves of other
    types are cast as before."""
    have = s.dtype
    if have == want or have == pl.Null:
        return s.cast(want)
    if is_mixed(have):
        if not isinstance(want, pl.Struct):  # its values were all cast to ``want``
            parts = [s.struct.field(n) for n in mixed_field_names(have)]
            parts.append(pl.Series(WAS, [None] * len(s), dtype=want))
            return _rebuild(s, parts)
        return s
    if isinstance(have, pl.Struct) and isinstance(want, pl.Struct):
        wanted = {f.name: f.dtype for f in want.fields}
        fields = [
            with_legacy_type(s.struct.field(f.name), wanted[f.name])
            if f.name in wanted
            else s.struct.field(f.name)
            for f in have.fields
        ]
        return _rebuild(s, fields)
    part = _part_name(have)
    if part is None or _same_json(have, want) or isinstance(want, pl.Struct | pl.List):
        return s.cast(want, strict=False)
    return _rebuild(
        s, [s.alias(part), pl.Series(WAS, [None] * len(s), dtype=want)], keep_nulls=False
    )


def _rebuild(s: pl.Series, fields: list[pl.Series], *, keep_nulls: bool = True) -> pl.Series:
    built = pl.select(pl.struct([pl.lit(f) for f in fields])).to_series()
    if keep_nulls and s.null_count():
        built = pl.select(pl.when(pl.lit(s).is_not_null()).then(pl.lit(built))).to_series()
    return built.alias(s.name)


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


def split_frame(frame: pl.DataFrame, size: int) -> Iterator[pl.DataFrame]:
    if frame.height <= size:
        yield frame
        return
    for offset in range(0, frame.height, size):
        yield frame.slice(offset, size)


@contextlib.contextmanager
def translated(
    sf: SourceFile, prepared: Callable[[], Prepared | None] = lambda: None
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


def _explain(sf: SourceFile, exc: BaseException, prepared: Prepared | None = None) -> InputError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    lower = str(exc).lower()
    fmt = sf.format
    if "utf-8" in lower or "utf8" in lower:
        line = bad_line(sf.path, sf.compression, sf.display, "utf-8")
        return decode_error(sf.display, line, "utf-8")
    if fmt in ("csv", "tsv") and (
        "fields" in lower or ("expected" in lower and "columns" in lower)
    ):
        ragged = None
        with contextlib.suppress(Exception):
            if prepared is not None:  # the decompressed / UTF-8 copy: same line numbers
                ragged = ragged_line(prepared.path, prepared.separator)
            elif sf.compression is None:
                with sf.path.open("rb") as fh:
                    sample = fh.read(SNIFF_BYTES).decode("utf-8", errors="ignore")
                sep = "\t" if fmt == "tsv" else detect_delimiter(sample, sf.display)
                ragged = ragged_line(sf.path, sep)
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
