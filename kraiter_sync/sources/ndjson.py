"""Newline-delimited JSON read line by line into exact frames (``jsontypes``).

Each line is parsed by Python's ``json`` (the reader ``validate.keys.canonical_json``
uses) and the chunk's columns are built so that every value keeps its JSON type
whatever the other lines hold: ``1`` stays an integer next to ``1.5``, ``true`` a
boolean next to ``1``, a list next to text is still a list (and rejected), and a key
that is an object in one line and a number in another gives both. polars' own NDJSON
reader guesses one type per column and chunk and coerces the rest, so the same event
would get another key in another chunk, and it refuses a whole file for one line whose
nesting differs.

A line that cannot become a row is still a row, with its line number, for the rejects
file (``frames.SOURCE_PROBLEM``): a line that is not a JSON object
(``row.invalid_json``), one nested more than ``jsontypes.MAX_NESTING`` levels deep
(``row.too_deep``, found by counting brackets, before any parser recurses into it),
and one longer than :data:`MAX_LINE_BYTES` (``row.too_large``), which is measured as
it streams past and never held or parsed: no event or contact within Kraiter's limits
comes near that size.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Any

import polars as pl

from kraiter_sync.errors import InputError
from kraiter_sync.frames import SOURCE_PROBLEM, problem_column
from kraiter_sync.jsontypes import MAX_NESTING, exact_frame, nesting_depth
from kraiter_sync.sources.formats import COPY_BLOCK, decode_error

__all__ = ["MAX_LINE_BYTES", "ndjson_frames", "sample_schema"]

#: Lines longer than this are rejected by their length: properties within every limit
#: (100 keys, 10,000 characters a value) stay under 7 MiB even escaped throughout.
MAX_LINE_BYTES = 16 << 20

_Problem = tuple[str, str]


def _line(fh: IO[bytes]) -> tuple[bytes | None, int]:
    """The next line (None at the end) and its length; a line over
    :data:`MAX_LINE_BYTES` is read past in blocks and comes back as ``(b"", length)``."""
    line = fh.readline(MAX_LINE_BYTES + 1)
    if not line:
        return None, 0
    if len(line) <= MAX_LINE_BYTES or line.endswith(b"\n"):
        return line, len(line)
    length = len(line)
    del line
    while True:
        piece = fh.readline(COPY_BLOCK)
        length += len(piece)
        if not piece or piece.endswith(b"\n"):
            return b"", length


def _parse(text: str, number: int) -> tuple[dict[str, Any] | None, _Problem | None]:
    if nesting_depth(text) > MAX_NESTING:
        return None, (
            "row.too_deep",
            f"line {number} nests objects or lists more than {MAX_NESTING} levels deep; "
            "Kraiter properties are flat: flatten the export",
        )
    try:
        value = json.loads(text)
    except ValueError as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        return None, (
            "row.invalid_json",
            f"line {number} is not valid JSON ({detail}); each line must be one complete "
            "JSON object (is the file truncated?)",
        )
    if not isinstance(value, dict):
        kind = "null" if value is None else type(value).__name__
        return None, (
            "row.invalid_json",
            f"line {number} is a JSON {kind}, not an object; each line must be one JSON object",
        )
    return value, None


def ndjson_frames(
    fh: IO[bytes],
    size: int,
    display: str,
    *,
    max_bytes: int | None = None,
) -> Iterator[pl.DataFrame]:
    """Frames of at most ``size`` rows (a row per line that is not blank), each with a
    ``source_problem`` column when some of its lines could not be read. With
    ``max_bytes``, stop after the line that passes that many bytes read (lines refused
    for their length do not count: a schema sample reads past them)."""
    number = 0
    consumed = 0
    done = False
    while not done:
        objects: list[dict[str, Any] | None] = []
        problems: dict[int, _Problem] = {}
        while len(objects) < size:
            line, length = _line(fh)
            if line is None:
                done = True
                break
            number += 1
            if number == 1:
                line = line.removeprefix(b"\xef\xbb\xbf")
            if length > MAX_LINE_BYTES:
                problems[len(objects)] = (
                    "row.too_large",
                    f"line {number} is {length:,} bytes long, more than "
                    f"{MAX_LINE_BYTES >> 20} MiB, which no event or contact within Kraiter's "
                    "limits comes near; it was not read",
                )
                objects.append(None)
            elif line.strip():
                consumed += length
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise decode_error(display, number, "utf-8", exc) from exc
                value, problem = _parse(text, number)
                if problem is not None:
                    problems[len(objects)] = problem
                objects.append(value)
            if max_bytes is not None and consumed >= max_bytes:
                done = True
                break
        if not objects:
            return
        frame = exact_frame(objects)
        if SOURCE_PROBLEM in frame.columns:
            msg = (
                f"{display}: a key is named {SOURCE_PROBLEM!r}, the name kraiter-sync gives "
                "the reason a row could not be read; rename that key"
            )
            raise InputError(msg)
        if problems:
            frame = frame.with_columns(problem_column(len(objects), problems))
        yield frame


def sample_schema(fh: IO[bytes], display: str, lines: int, max_bytes: int) -> pl.DataFrame:
    """The first frame of a file (``lines`` lines, about ``max_bytes`` bytes at most),
    refused when not one of its lines could be read (not NDJSON, or nothing but lines
    too large or too deep: there would be no columns to map)."""
    frame = next(ndjson_frames(fh, lines, display, max_bytes=max_bytes), None)
    if frame is None:
        return pl.DataFrame()
    if SOURCE_PROBLEM in frame.columns:
        problems = frame[SOURCE_PROBLEM]
        if problems.null_count() == 0:
            msg = f"{display}: {problems[0]['message']}"
            raise InputError(msg)
    return frame
