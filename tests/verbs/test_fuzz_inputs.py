"""Random ragged, oddly encoded, oddly typed CSV, NDJSON and Parquet files.

Whatever a file holds, ``validate`` (and ``import``, on a few examples, against the
local Kraiter) ends with no traceback: either a clear error (a ``KraiterSyncError`` that
names the file) or an account of every row, ``valid + duplicates + rejected`` (``sent +
skipped + duplicates + rejected`` for ``import``) equal to the rows in the file, with
one row in the rejects file per rejected row.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kraiter_sync.config import resolve_settings
from kraiter_sync.errors import KraiterSyncError
from kraiter_sync.inputs import InputOptions
from kraiter_sync.verbs.importer import ImportOptions, import_
from kraiter_sync.verbs.validate import validate_inputs

VISA = "4111 1111 1111 1111"

EMAILS = [
    "ada@example.com",
    " Bob@Example.COM ",
    "Ann <ann@example.org>",
    "mailto:cy@example.net",
    "josé@example.com",
    "x@bücher.de",
    "x@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",
    "dev@box.test",
    "a@b.c",
    "a@ab--cd.com",
    "not-an-email",
    "",
    '"q"@example.com',
    "a@[1.2.3.4]",
    "a" * 300 + "@example.com",
    "ada@example.com\x00",
]
NAMES = ["signed_up", "Page View", "", "  ", "email.opened", "bad\x01name", "n" * 300, "é"]
TIMES = [
    "2024-01-01T00:00:00Z",
    "2024-01-01 10:00:00+02:00",
    "2024-02-03",
    "1700000000",
    "1700000000123",
    "yesterday",
    "2099-01-01T00:00:00Z",
    "1990-01-01T00:00:00Z",
    "",
    "2024-13-45",
]
TEXTS = [
    "plain",
    "with, comma",
    'with "quotes"',
    "multi\nline",
    "cr\ronly",
    f"card {VISA}",
    "0123",
    "é ü 中文 \U0001f600",
    "[masked: 3 characters, hash 0123456789ab]",
    '{"nested": {"a": 1}}',
    "x" * 12_000,
    "  ",
]
PROP_NAMES = ["plan", "note", "password", "utm.source", "Amount", "a b", "", "é"]

_value = st.one_of(st.none(), st.sampled_from(TEXTS), st.text(max_size=8))


def _pick(pool: list[str], good: int, sendable: bool) -> st.SearchStrategy[str | None]:
    """A value of ``pool``; with ``sendable``, mostly one of its ``good`` first ones."""
    if sendable:
        return st.one_of(st.sampled_from(pool[:good]), st.sampled_from(pool[:good]), st.none())
    return st.one_of(st.none(), st.sampled_from(pool))


@st.composite
def tables(draw: st.DrawFn, sendable: bool = False) -> tuple[list[str], list[list[Any]]]:
    """A header (email, event, timestamp and a few property columns) and its rows;
    ``sendable`` makes most rows valid (for the import tests)."""
    extra = draw(st.lists(st.sampled_from(PROP_NAMES), max_size=3, unique=True))
    header = ["email", "event", "timestamp", *(name for name in extra if name)]
    n = draw(st.integers(1 if sendable else 0, 12))
    rows = []
    for _ in range(n):
        row: list[Any] = [
            draw(_pick(EMAILS, 4, sendable)),
            draw(_pick(NAMES, 2, sendable)),
            draw(_pick(TIMES, 4, sendable)),
        ]
        row += [draw(_value) for _ in header[3:]]
        rows.append(row)
    if rows and draw(st.booleans()):
        rows.append(list(rows[0]))  # an exact duplicate
    return header, rows


def _text(value: Any) -> str:
    return "" if value is None else str(value)


@st.composite
def csv_files(draw: st.DrawFn, sendable: bool = False) -> tuple[bytes, str, int | None]:
    """CSV bytes (delimiter, line end, quoting, encoding, ragged rows), the encoding a
    user passes (now and then not the file's) and its number of records."""
    header, rows = draw(tables(sendable))
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    ragged = draw(st.booleans())
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=eol, quoting=quoting)
    writer.writerow(header)
    for row in rows:
        cells = [_text(v) for v in row]
        if ragged:  # short rows (missing trailing fields) and long ones (extra fields)
            cells = cells[: draw(st.integers(2, len(cells)))]
            cells += [draw(st.sampled_from(TEXTS))] * draw(st.integers(0, 2))
        if eol == "\r":  # a bare-CR file cannot hold CRs or LFs inside values
            cells = [c.replace("\r", " ").replace("\n", " ") for c in cells]
        writer.writerow(cells)
    text = out.getvalue()
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"]))
    data = text.encode(encoding, errors="replace")
    if draw(st.integers(0, 4)):
        return data, encoding, len(rows)
    # the wrong encoding given: the rows read are whatever the bytes decode to (or a
    # clear error), so their number is not known in advance
    return data, "utf-8", None


def _typed(value: Any, kind: str) -> Any:
    """A value as an odd but plausible JSON type."""
    if kind == "number":
        return None if value is None else len(str(value))
    if kind == "list":
        return [value]
    if kind == "object":
        return {"inner": value, "deeper": {"v": value}}
    if kind == "bool":
        return bool(value)
    return value


@st.composite
def ndjson_files(draw: st.DrawFn, sendable: bool = False) -> tuple[bytes, int]:
    header, rows = draw(tables(sendable))
    # one JSON type per key: a key whose type changes from line to line makes polars
    # refuse the whole file (see test_ndjson_keys_of_changing_type_are_rows_not_a_refusal)
    odd = ["number", "list", "object", "bool"]
    kinds = {  # mostly text for the three fields (a list there is a clear error)
        name: "as is"
        if i < 3 and sendable
        else draw(st.sampled_from(["as is"] * (8 if i < 3 else 2) + odd))
        for i, name in enumerate(header)
    }
    lines = []
    for row in rows:
        obj = {}
        for name, value in zip(header, row, strict=True):
            if draw(st.integers(0, 9)) == 0:
                continue  # a key missing from this line
            obj[name] = _typed(value, kinds[name])
        lines.append(json.dumps(obj, ensure_ascii=draw(st.booleans())))
        if draw(st.integers(0, 7)) == 0:
            lines.append("")  # a blank line is no row
    written = sum(1 for line in lines if line)
    return ("\n".join(lines) + "\n").encode(), written


_PARQUET_KINDS = {
    "string": (pl.String, lambda v: _text(v)),
    "int": (pl.Int64, lambda v: len(_text(v))),
    "binary": (pl.Binary, lambda v: _text(v).encode()),
    "list": (pl.List(pl.String), lambda v: [_text(v)]),
    "struct": (None, lambda v: {"a": _text(v), "b": {"c": len(_text(v))}}),
    "decimal": (pl.Decimal(10, 2), lambda v: decimal.Decimal(len(_text(v))) / 4),
    "datetime": (
        pl.Datetime("ms"),
        lambda v: dt.datetime(2024, 1, 1) + dt.timedelta(hours=len(_text(v))),
    ),
    "duration": (pl.Duration("us"), lambda v: dt.timedelta(seconds=len(_text(v)))),
    "float": (pl.Float64, lambda v: float("nan") if not v else len(_text(v)) / 3),
    "categorical": (pl.Categorical, lambda v: _text(v)),
}


@st.composite
def parquet_files(draw: st.DrawFn) -> tuple[pl.DataFrame, int]:
    header, rows = draw(tables())
    columns = {}
    for i, name in enumerate(header):
        values = [row[i] for row in rows]
        kind = (
            "string"
            if i < 3 and draw(st.integers(0, 3))
            else draw(st.sampled_from(sorted(_PARQUET_KINDS)))
        )
        dtype, convert = _PARQUET_KINDS[kind]
        converted = [None if v is None and draw(st.booleans()) else convert(v) for v in values]
        columns[name] = pl.Series(name, converted, dtype=dtype, strict=False)
    return pl.DataFrame(columns, height=len(rows)), len(rows)


def _check_accounting(path: Path, options: InputOptions, rows: int | None) -> None:
    """Validate ``path``: a clear error, or every row accounted for once (and as many
    rows read as were written, when that is known)."""
    rejects = path.with_name("rejects.csv")
    try:
        result = validate_inputs([path], options=options, rejects_path=rejects)
    except KraiterSyncError as exc:  # a clear error, with the next step
        event(f"clear error: {str(exc)[:80]}")
        error = str(exc)
    else:
        event(f"counted: {result.exit_code}")
        error = None
    if error is not None:
        assert path.name in error or "--" in error, error
        return
    assert len(result.reports) <= 1
    read = sum(r.rows_read for r in result.reports)
    assert rows is None or read == rows
    for report in result.reports:
        assert report.valid + report.duplicates + report.rejected == report.rows_read
    assert pl.read_csv(rejects, infer_schema=False).height == result.rejected


FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(data=csv_files(), kind=st.sampled_from([None, "events"]))
def test_csv_files_never_traceback_and_every_row_is_counted(
    tmp_path: Path, data: tuple[bytes, str, int | None], kind: str | None
) -> None:
    raw, encoding, rows = data
    path = tmp_path / "input.csv"
    path.write_bytes(raw)
    _check_accounting(path, InputOptions(kind=kind, encoding=encoding), rows)  # type: ignore[arg-type]


@FUZZ
@given(data=ndjson_files())
def test_ndjson_files_never_traceback_and_every_row_is_counted(
    tmp_path: Path, data: tuple[bytes, int]
) -> None:
    raw, rows = data
    path = tmp_path / "input.ndjson"
    path.write_bytes(raw)
    _check_accounting(path, InputOptions(kind="events"), rows)


@FUZZ
@given(data=parquet_files())
def test_parquet_files_never_traceback_and_every_row_is_counted(
    tmp_path: Path, data: tuple[pl.DataFrame, int]
) -> None:
    frame, rows = data
    path = tmp_path / "input.parquet"
    frame.write_parquet(path)
    _check_accounting(path, InputOptions(kind="events"), rows)


IMPORTS = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _import_twice(path: Path, inputs: InputOptions, rows: int | None, tmp: Path) -> None:
    """Import into the local Kraiter twice: every row is sent, skipped (the second
    time), a duplicate or rejected, and the second run sends nothing."""
    local = resolve_settings(state_dir=tmp / "state", env={})  # the local Kraiter
    options = ImportOptions(input=inputs)
    for attempt in (1, 2):
        try:
            result = import_([path], settings=local, options=options)
        except KraiterSyncError as exc:
            event(f"clear error: {str(exc)[:60]}")
            error = str(exc)
        else:
            error = None
        if error is not None:
            assert path.name in error or "--" in error, error
            return
        counts = result.contacts if inputs.kind == "contacts" else result.events
        event(f"run {attempt}: {'sent some' if counts.sent else 'sent none'}")
        assert rows is None or counts.read == rows
        skipped = counts.already + counts.previously_rejected + counts.unchanged
        sent = counts.sent + counts.verified
        assert sent + skipped + counts.duplicates + counts.invalid + counts.rejected == (
            counts.read
        ), counts
        assert counts.failed == counts.pending == 0
        if attempt == 2:
            assert counts.sent == 0


@IMPORTS
@given(data=ndjson_files(sendable=True))
def test_import_of_events_accounts_for_every_row(
    tmp_path_factory: pytest.TempPathFactory, data: tuple[bytes, int]
) -> None:
    raw, rows = data
    tmp = tmp_path_factory.mktemp("fuzz-import")
    path = tmp / "input.ndjson"
    path.write_bytes(raw)
    _import_twice(path, InputOptions(kind="events"), rows, tmp)


@IMPORTS
@given(data=csv_files(sendable=True))
def test_import_of_contacts_accounts_for_every_row(
    tmp_path_factory: pytest.TempPathFactory, data: tuple[bytes, str, int | None]
) -> None:
    raw, encoding, rows = data
    tmp = tmp_path_factory.mktemp("fuzz-import")
    path = tmp / "input.csv"
    path.write_bytes(raw)
    _import_twice(path, InputOptions(kind="contacts", encoding=encoding), rows, tmp)


# Found by the tests above, in sources (not the validator): each reproduces what the
# reader once got wrong.

_NDJSON_HEAD = '"email":"ada@example.com","event":"e","timestamp":"2024-01-01T00:00:00Z"'


def _validate_ndjson(tmp_path: Path, *extras: str) -> list[Any]:
    """Reports of validating one NDJSON line per extra key-value text."""
    path = tmp_path / "mixed.ndjson"
    path.write_text("".join(f"{{{_NDJSON_HEAD},{extra}}}\n" for extra in extras))
    options = InputOptions(kind="events")
    return validate_inputs([path], options=options, rejects_path=tmp_path / "r.csv").reports


def test_ndjson_a_list_in_one_line_is_not_sent_as_text(tmp_path: Path) -> None:
    (report,) = _validate_ndjson(tmp_path, '"plan":"pro"', '"plan":["pro"]')
    assert report.by_rule == {"properties.unsupported_type": 1}


def test_ndjson_nesting_that_changes_between_lines_gives_rows(tmp_path: Path) -> None:
    reports = _validate_ndjson(tmp_path, '"p":{"a":1}', '"p":{"a":{"b":2}}')
    assert sum(r.rows_read for r in reports) == 2


def test_a_utf16_csv_read_as_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "u16.csv"
    path.write_bytes("email,event,timestamp\nada@example.com,e,2024-01-01\n".encode("utf-16"))
    with pytest.raises(KraiterSyncError, match="--encoding"):
        validate_inputs(
            [path], options=InputOptions(kind="events"), rejects_path=tmp_path / "r.csv"
        )
