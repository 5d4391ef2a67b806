"""sources: every format, compression and layout; row provenance; clear errors for bad files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import fastavro
import polars as pl
import pytest
import zstandard

from kraiter_sync import jsontypes
from kraiter_sync.errors import InputError
from kraiter_sync.frames import SOURCE_PROBLEM
from kraiter_sync.sources import iter_chunks, open_source, read_source, reading, scan_source

ROWS = [
    {"email": "ana@example.com", "event": "signed_up", "n": "1"},
    {"email": "bo@example.com", "event": "viewed_pricing", "n": "2"},
    {"email": "cy@example.com", "event": "invoice_paid", "n": "3"},
]
CSV = "email,event,n\n" + "".join(f"{r['email']},{r['event']},{r['n']}\n" for r in ROWS)


def _data(frame: pl.DataFrame) -> list[tuple[str, str]]:
    return list(zip(frame["email"].to_list(), frame["event"].to_list(), strict=True))


EXPECTED = [(r["email"], r["event"]) for r in ROWS]


def _write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# ---- formats -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("plain.csv", CSV),
        ("semicolon.csv", CSV.replace(",", ";")),
        ("pipe.txt", CSV.replace(",", "|")),
        ("tabs.tsv", CSV.replace(",", "\t")),
        ("tabs_named.csv", CSV.replace(",", "\t")),
        ("crlf.csv", CSV.replace("\n", "\r\n")),
        ("cr.csv", CSV.replace("\n", "\r")),  # old Mac Excel
        ("bom.csv", "\ufeff" + CSV),
    ],
)
def test_csv_variants(tmp_path: Path, name: str, content: str) -> None:
    frame = read_source(_write(tmp_path / name, content))
    assert _data(frame) == EXPECTED
    assert frame.columns == ["email", "event", "n", "source_file", "source_row"]
    assert frame["source_row"].to_list() == [1, 2, 3]
    assert frame["source_file"].to_list() == [str(tmp_path / name)] * 3


def test_csv_values_stay_strings(tmp_path: Path) -> None:
    """Zip codes and ids keep their leading zeros: CSV is read without type guessing."""
    frame = read_source(_write(tmp_path / "z.csv", "email,zip\na@x.io,01234\n"))
    assert frame["zip"].to_list() == ["01234"]


def test_quoted_newline_counts_as_one_row(tmp_path: Path) -> None:
    path = _write(tmp_path / "q.csv", 'email,note\na@x.io,"two\nlines"\nb@x.io,one\n')
    frame = read_source(path)
    assert frame["email"].to_list() == ["a@x.io", "b@x.io"]
    assert frame["source_row"].to_list() == [1, 2]


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252", "utf-16"])
def test_other_encodings(tmp_path: Path, encoding: str) -> None:
    text = "email,name\nrene@example.com,René Müller\n"
    path = _write(tmp_path / "enc.csv", text.encode(encoding))
    frame = read_source(path, encoding=encoding)
    assert frame["name"].to_list() == ["René Müller"]


@pytest.mark.parametrize(
    ("name", "text", "encoding"),
    [
        ("u16.csv", "email,name\nrene@example.com,René\n", "utf-16"),
        ("u16be.csv", "email,name\nrene@example.com,René\n", "utf-16-be"),
        ("u32.csv", "email,name\nrene@example.com,René\n", "utf-32"),
        ("u16.ndjson", '{"email": "rene@example.com"}\n', "utf-16"),
    ],
)
def test_a_wide_encoding_read_as_utf8_is_refused(
    tmp_path: Path, name: str, text: str, encoding: str
) -> None:
    """A UTF-16/32 file with its byte-order mark, read as UTF-8, was misread silently
    (its NUL bytes split rows): refused, naming the --encoding to pass."""
    bom = {"utf-16-be": b"\xfe\xff"}.get(encoding, b"")
    path = _write(tmp_path / name, bom + text.encode(encoding))
    family = "utf-32" if "32" in encoding else "utf-16"
    with pytest.raises(InputError, match=f"byte-order mark.*pass --encoding {family}$"):
        read_source(path)
    assert read_source(path, encoding=family)["email"].to_list() == ["rene@example.com"]


@pytest.mark.parametrize("suffix", [".csv.gz", ".csv.zst", ".gzdata"])
def test_compressed_csv(tmp_path: Path, suffix: str) -> None:
    raw = CSV.encode()
    data = zstandard.ZstdCompressor().compress(raw) if "zst" in suffix else gzip.compress(raw)
    frame = read_source(_write(tmp_path / f"data{suffix}", data))
    assert _data(frame) == EXPECTED
    assert frame["source_row"].to_list() == [1, 2, 3]


def test_compressed_latin1(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "l.csv.gz", gzip.compress("email,n\nzoë@example.com,1\n".encode("latin-1"))
    )
    assert read_source(path, encoding="latin-1")["email"].to_list() == ["zoë@example.com"]


def test_ndjson_plain_and_gzipped(tmp_path: Path) -> None:
    lines = "".join(json.dumps(r) + "\n" for r in ROWS)
    for path in (
        _write(tmp_path / "a.ndjson", lines),
        _write(tmp_path / "b.jsonl.gz", gzip.compress(lines.encode())),
        _write(tmp_path / "c.json", lines),
    ):
        frame = read_source(path)
        assert _data(frame) == EXPECTED, path
        assert frame["source_row"].to_list() == [1, 2, 3]


def test_json_array_streams_nested_values(tmp_path: Path) -> None:
    items = [r | {"props": {"plan": "pro", "seats": i}} for i, r in enumerate(ROWS)]
    path = _write(tmp_path / "arr.json", json.dumps(items, indent=2))
    frame = read_source(path)
    assert _data(frame) == EXPECTED
    assert frame["props"].struct.field("seats").to_list() == [0, 1, 2]


def test_json_array_truncated(tmp_path: Path) -> None:
    path = _write(tmp_path / "cut.json", json.dumps(ROWS)[:-30])
    with pytest.raises(InputError, match=r"cut\.json.*(not closed|invalid JSON)"):
        read_source(path)


def test_parquet_ipc_avro(tmp_path: Path) -> None:
    frame = pl.DataFrame(ROWS)
    frame.write_parquet(tmp_path / "f.parquet")
    frame.write_ipc(tmp_path / "f.arrow")
    frame.write_ipc(tmp_path / "f.feather")
    schema = {
        "type": "record",
        "name": "Row",
        "fields": [{"name": k, "type": "string"} for k in ("email", "event", "n")],
    }
    with (tmp_path / "f.avro").open("wb") as fh:
        fastavro.writer(fh, schema, ROWS)
    for name in ("f.parquet", "f.arrow", "f.feather", "f.avro"):
        got = read_source(tmp_path / name)
        assert _data(got) == EXPECTED, name
        assert got["source_row"].to_list() == [1, 2, 3], name


def test_format_detected_from_magic_bytes(tmp_path: Path) -> None:
    pl.DataFrame(ROWS).write_parquet(tmp_path / "export.bin")
    assert _data(read_source(tmp_path / "export.bin")) == EXPECTED


def test_avro_large_is_chunked(tmp_path: Path) -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "i", "type": "long"}]}
    with (tmp_path / "big.avro").open("wb") as fh:
        fastavro.writer(fh, schema, ({"i": i} for i in range(2500)))
    with open_source(tmp_path / "big.avro", chunk_size=1000) as source:
        chunks = list(source.iter_chunks())
    assert [c.height for c in chunks] == [1000, 1000, 500]
    assert pl.concat(chunks)["i"].to_list() == list(range(2500))


# ---- several files, directories, globs, hive ------------------------------------------


def test_warehouse_unload_parts_each_with_header(tmp_path: Path) -> None:
    unload = tmp_path / "unload"
    unload.mkdir()
    for i in range(3):
        part = "email,event,n\n" + f"p{i}a@x.io,e,1\np{i}b@x.io,e,2\n"
        _write(unload / f"data_0_0_{i}.csv.gz", gzip.compress(part.encode()))
    _write(unload / "_SUCCESS", "")
    frame = read_source(unload)
    assert frame.height == 6
    assert frame["source_row"].to_list() == [1, 2, 1, 2, 1, 2]
    assert frame["source_file"].unique(maintain_order=True).to_list() == [
        str(unload / f"data_0_0_{i}.csv.gz") for i in range(3)
    ]


def test_several_paths_and_globs(tmp_path: Path) -> None:
    for i in range(3):
        _write(tmp_path / f"part-{i}.csv", f"email,n\nu{i}@x.io,{i}\n")
    _write(tmp_path / "other.csv", "email,n\nz@x.io,9\n")
    frame = read_source([str(tmp_path / "part-*.csv"), tmp_path / "other.csv"])
    assert frame["email"].to_list() == ["u0@x.io", "u1@x.io", "u2@x.io", "z@x.io"]


def test_hive_partitions_become_columns(tmp_path: Path) -> None:
    for day in ("2025-01-01", "2025-01-02"):
        d = tmp_path / "events" / f"dt={day}" / "region=eu%20west"
        d.mkdir(parents=True)
        pl.DataFrame({"email": [f"{day}@x.io"]}).write_parquet(d / "0.parquet")
    frame = read_source(tmp_path / "events")
    assert frame["dt"].to_list() == ["2025-01-01", "2025-01-02"]
    assert frame["region"].to_list() == ["eu west", "eu west"]
    glob_frame = read_source(str(tmp_path / "events" / "**" / "*.parquet"))
    assert glob_frame["dt"].to_list() == ["2025-01-01", "2025-01-02"]


def test_parts_with_different_columns_are_aligned(tmp_path: Path) -> None:
    pl.DataFrame({"email": ["a@x.io"], "n": [1]}).write_parquet(tmp_path / "a.parquet")
    pl.DataFrame({"email": ["b@x.io"], "extra": ["y"]}).write_parquet(tmp_path / "b.parquet")
    with open_source(tmp_path) as source:
        assert list(source.schema) == ["email", "n", "extra", "source_file", "source_row"]
        frame = source.read()
    assert frame["n"].to_list() == [1, None]
    assert frame["extra"].to_list() == [None, "y"]


def test_ndjson_later_rows_with_wider_types_lose_nothing(tmp_path: Path) -> None:
    lines = [json.dumps({"n": i, "p": {"a": 1}}) for i in range(5)]
    lines.append('{"n": 2.5, "p": {"a": 2, "b": "new"}, "late": true}')
    path = _write(tmp_path / "w.ndjson", "\n".join(lines) + "\n")
    chunks = list(iter_chunks(path, chunk_size=5))
    # each value keeps its JSON type: the integers stay integers (an earlier version
    # cast them to the float the schema sample saw; that type is kept for its keys)
    first = chunks[0]["n"]
    assert first.struct.field(jsontypes.INT).to_list() == [0, 1, 2, 3, 4]
    assert first.struct.field(jsontypes.WAS).dtype == pl.Float64
    last = chunks[-1]
    assert last["n"].to_list() == [2.5]
    assert last["p"].to_list() == [{"a": 2, "b": "new"}]
    assert last["late"].to_list() == [True]
    assert last.columns[-2:] == ["source_file", "source_row"]
    assert last["source_row"].to_list() == [6]


# ---- chunking -------------------------------------------------------------------------


def test_chunks_keep_source_row_across_chunk_and_file_boundaries(tmp_path: Path) -> None:
    for i, size in enumerate((2500, 1300)):
        rows = "".join(f"f{i}r{r}@x.io\n" for r in range(1, size + 1))
        _write(tmp_path / f"f{i}.csv", "email\n" + rows)
    chunks = list(iter_chunks([tmp_path / "f0.csv", tmp_path / "f1.csv"], chunk_size=1000))
    assert all(c.height <= 1000 for c in chunks)
    frame = pl.concat(chunks)
    assert frame.height == 3800
    expected = [f"f0r{r}@x.io" for r in range(1, 2501)] + [f"f1r{r}@x.io" for r in range(1, 1301)]
    assert frame["email"].to_list() == expected
    rows = frame["source_row"].to_list()
    assert rows == list(range(1, 2501)) + list(range(1, 1301))
    assert frame["source_row"].dtype == pl.Int64


def test_parquet_chunks(tmp_path: Path) -> None:
    pl.DataFrame({"i": range(10_000)}).write_parquet(tmp_path / "p.parquet", row_group_size=3000)
    chunks = list(iter_chunks(tmp_path / "p.parquet", chunk_size=4096))
    assert max(c.height for c in chunks) <= 4096
    assert len(chunks) >= 3
    assert pl.concat(chunks)["source_row"].to_list() == list(range(1, 10_001))


def test_scan_source_is_lazy_and_complete(tmp_path: Path) -> None:
    _write(tmp_path / "a.csv.gz", gzip.compress(CSV.encode()))
    lazy = scan_source(tmp_path / "a.csv.gz")
    assert isinstance(lazy, pl.LazyFrame)
    assert _data(lazy.collect()) == EXPECTED


# ---- malformed input: InputError naming the file and the fix ---------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.csv: no such file; check the path"):
        read_source(tmp_path / "nope.csv")


def test_glob_without_match(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no file matches this pattern"):
        read_source(str(tmp_path / "*.parquet"))


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"empty\.csv: the file is empty"):
        read_source(_write(tmp_path / "empty.csv", ""))


def test_empty_parquet(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"e\.parquet: the file is empty"):
        read_source(_write(tmp_path / "e.parquet", ""))


def test_truncated_gzip(tmp_path: Path) -> None:
    data = gzip.compress((CSV * 200).encode())
    path = _write(tmp_path / "cut.csv.gz", data[: len(data) // 2])
    with pytest.raises(InputError) as info:
        read_source(path)
    message = str(info.value)
    assert "cut.csv.gz" in message
    assert "truncated or corrupt" in message
    assert "export the file again" in message


def test_truncated_parquet(tmp_path: Path) -> None:
    pl.DataFrame(ROWS).write_parquet(tmp_path / "ok.parquet")
    data = (tmp_path / "ok.parquet").read_bytes()
    path = _write(tmp_path / "cut.parquet", data[: len(data) - 20])
    with pytest.raises(InputError, match=r"cut\.parquet: not a valid Parquet file"):
        read_source(path)


def _problems(frame: pl.DataFrame) -> dict[int, tuple[str, str]]:
    return {
        row: (p["rule"], p["message"])
        for row, p in zip(frame["source_row"], frame[SOURCE_PROBLEM], strict=True)
        if p is not None
    }


def test_ragged_csv_rows_are_rows_with_their_problem(tmp_path: Path) -> None:
    """A record with more fields than the header refused the whole file, one with fewer
    was read padded with nulls: each is now a row of nulls with its line, the others are
    read as they were (a blank line stays a row of nulls, not a ragged one)."""
    body = 'email,n\na@x.io,1\nb@x.io,2,oops\nc@x.io\n\n"d\n@x.io",\ne@x.io,5,6,7\nf@x.io,\n'
    frame = read_source(_write(tmp_path / "rag.csv", body))
    assert frame.drop(SOURCE_PROBLEM, "source_file").rows() == [
        ("a@x.io", "1", 1),
        (None, None, 2),
        (None, None, 3),
        (None, None, 4),
        ("d\n@x.io", None, 5),
        (None, None, 6),
        ("f@x.io", None, 7),
    ]
    hint = "fix or quote that line (a delimiter inside a value needs quotes)"
    assert _problems(frame) == {
        2: ("row.ragged", f"line 3 has 3 fields but the header has 2; {hint}"),
        3: ("row.ragged", f"line 4 has 1 field but the header has 2; {hint}"),
        6: ("row.ragged", f"line 8 has 4 fields but the header has 2; {hint}"),
    }


def test_ragged_rows_across_blocks_name_their_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reading, "CSV_BLOCK", 40)
    lines = [f'u{i}@x.io,"multi\nline"' if i % 5 else f"u{i}@x.io,1,2" for i in range(30)]
    path = _write(tmp_path / "rag.csv", "email,note\n" + "\n".join(lines) + "\n")
    problems = _problems(read_source(path))
    # rows 1, 6, 11, ... are ragged, one line each; every other row spans two lines
    assert {row: message.split(";")[0] for row, (_, message) in problems.items()} == {
        i + 1: f"line {2 + 2 * i - i // 5} has 3 fields but the header has 2"
        for i in range(0, 30, 5)
    }


def test_ragged_gzipped_tsv_names_the_line(tmp_path: Path) -> None:
    body = "email\tn\n" + "a@x.io\t1\n" * 5 + "b@x.io\t2\textra\n"
    path = _write(tmp_path / "rag.tsv.gz", gzip.compress(body.encode()))
    frame = read_source(path)
    assert frame["email"].to_list() == ["a@x.io"] * 5 + [None]
    assert _problems(frame)[6][1].startswith("line 7 has 3 fields but the header has 2")


def test_csv_blocks_cut_only_between_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tiny blocks force cuts everywhere, including inside quoted multi-line values."""
    monkeypatch.setattr(reading, "CSV_BLOCK", 7)
    rows = [(f"u{i}@x.io", f'line one\nline "two" {i}') for i in range(50)]
    body = "email,note\n" + "".join(f'{e},"{n.replace(chr(34), chr(34) * 2)}"\n' for e, n in rows)
    frame = read_source(_write(tmp_path / "q.csv", body))
    assert list(zip(frame["email"], frame["note"], strict=True)) == rows
    assert frame["source_row"].to_list() == list(range(1, 51))


def test_cr_line_endings_in_blocks_compressed_and_quoted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CR-only files read like LF ones, cut into blocks anywhere, gzipped or not, with
    quoted values that hold a line break."""
    monkeypatch.setattr(reading, "CSV_BLOCK", 7)
    rows = [(f"u{i}@x.io", f"line one\rline two {i}") for i in range(30)]
    body = "email,note\r" + "".join(f'{e},"{n}"\r' for e, n in rows)
    for path in (
        _write(tmp_path / "cr.csv", body),
        _write(tmp_path / "cr.csv.gz", gzip.compress(body.encode())),
        _write(tmp_path / "cr-latin.csv", body.encode("latin-1")),
    ):
        frame = read_source(path, encoding="latin-1" if "latin" in path.name else "utf-8")
        assert list(zip(frame["email"], frame["note"], strict=True)) == rows, path
        assert frame["source_row"].to_list() == list(range(1, 31))


def test_rows_that_cannot_be_read_are_an_error_naming_the_cause(tmp_path: Path) -> None:
    """Bytes after the header that yield no row (here an unclosed quote in the header
    swallows the file) are refused, not read as an empty input."""
    path = _write(tmp_path / "q.csv", 'email,"plan\na@x.io,pro\nb@x.io,free\n')
    with pytest.raises(InputError) as caught:
        read_source(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: no row could be read")
    assert "line endings" in message
    assert "quote" in message


def test_a_header_only_csv_is_an_empty_input_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(tmp_path / "h.csv", "email,plan\n")
    assert read_source(path).height == 0
    assert f"{path}: no rows (only a header line)" in caplog.text


@pytest.mark.parametrize("column", ["source_row", "source_file"])
@pytest.mark.parametrize("fmt", ["csv", "parquet", "ndjson"])
def test_provenance_column_names_are_refused(tmp_path: Path, column: str, fmt: str) -> None:
    frame = pl.DataFrame({"email": ["a@x.io"], column: ["7"]})
    path = tmp_path / f"p.{fmt}"
    getattr(frame, f"write_{fmt}")(path)
    with pytest.raises(InputError) as caught:
        read_source(path)
    assert str(caught.value) == (
        f"{path}: a column is named {column!r}, the name kraiter-sync gives each row's "
        "provenance (its file and row number); rename that column, e.g. to "
        f"{column.replace('source', 'original')!r}"
    )


def test_a_hive_key_naming_a_file_column_is_refused(tmp_path: Path) -> None:
    part = tmp_path / "unload" / "plan=pro"
    part.mkdir(parents=True)
    pl.DataFrame({"email": ["a@x.io"], "plan": ["free"]}).write_parquet(part / "p.parquet")
    with pytest.raises(InputError, match=r"p\.parquet: the column 'plan' is also a directory"):
        read_source(tmp_path / "unload")


def test_duplicate_column_names_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", "email,amount,plan,amount\na@x.io,1,pro,2\n")
    with pytest.raises(InputError) as caught:
        read_source(path)
    assert str(caught.value) == (
        f"{path}: the header names 'amount' twice (columns 2 and 4); give each column "
        "a name of its own"
    )


def test_wrong_encoding_names_the_line(tmp_path: Path) -> None:
    text = "email,name\na@x.io,Ann\nb@x.io,Zoë\n"
    path = _write(tmp_path / "latin.csv", text.encode("latin-1"))
    with pytest.raises(InputError) as info:
        read_source(path)
    message = str(info.value)
    assert "latin.csv: bytes that are not valid utf-8 on line 3" in message
    assert "--encoding" in message


def test_wrong_encoding_given(tmp_path: Path) -> None:
    path = _write(tmp_path / "u.csv", "email\n\xff\xfe".encode("latin-1"))
    with pytest.raises(InputError, match=r"u\.csv: bytes that are not valid ascii on line 2"):
        read_source(path, encoding="ascii")


def test_unknown_encoding(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"unknown encoding 'klingon'"):
        read_source(_write(tmp_path / "a.csv", CSV), encoding="klingon")


def test_headerless_csv_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "nohdr.csv", "ann@example.com,1\nbo@example.com,2\n")
    with pytest.raises(InputError, match=r"looks like data .* not a header"):
        read_source(path)


def test_an_invalid_ndjson_line_is_a_row_with_its_problem(tmp_path: Path) -> None:
    """A cut or broken line is a row (rejected by the validator with its line number);
    the other lines are read."""
    path = _write(tmp_path / "bad.ndjson", '{"a": 1}\n\n{"a": \n[1]\n{"a": 2}\n')
    frame = read_source(path)
    assert frame["a"].to_list() == [1, None, None, 2]
    assert frame["source_row"].to_list() == [1, 2, 3, 4]
    problems = frame[SOURCE_PROBLEM].to_list()
    assert problems[0] is None
    assert problems[3] is None
    assert problems[1] == {
        "rule": "row.invalid_json",
        "message": "line 3 is not valid JSON (Expecting value); each line must be one "
        "complete JSON object (is the file truncated?)",
    }
    assert problems[2] == {
        "rule": "row.invalid_json",
        "message": "line 4 is a JSON list, not an object; each line must be one JSON object",
    }


def test_a_file_with_no_json_line_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.ndjson", "email,name\nann@example.com,Ann\n")
    with pytest.raises(InputError) as info:
        read_source(path)
    assert str(info.value).startswith(f"{path}: line 1 is not valid JSON (")


def test_no_input() -> None:
    with pytest.raises(InputError, match="no input given"):
        read_source([])


# ---- the translation boundary: no foreign exception escapes -----------------------------


def test_truncated_zstd(tmp_path: Path) -> None:
    data = zstandard.ZstdCompressor().compress((CSV * 100).encode())
    path = _write(tmp_path / "cut.csv.zst", data[: len(data) - 8])
    with pytest.raises(InputError, match=r"cut\.csv\.zst: the zstd stream is truncated"):
        read_source(path)


def test_multi_frame_zstd(tmp_path: Path) -> None:
    cctx = zstandard.ZstdCompressor()
    data = cctx.compress(CSV.encode()) + cctx.compress(b"dy@example.com,e,4\n")
    frame = read_source(_write(tmp_path / "two.csv.zst", data))
    assert frame["email"].to_list()[-1] == "dy@example.com"
    assert frame.height == 4


def test_truncated_ndjson_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "cut.ndjson", '{"a": 1}\n{"a": 2}\n{"a": ')
    problem = read_source(path)[SOURCE_PROBLEM].to_list()[2]
    assert problem["rule"] == "row.invalid_json"
    assert problem["message"].startswith("line 3 is not valid JSON")
    assert problem["message"].endswith("(is the file truncated?)")


def _all_formats(tmp_path: Path) -> list[Path]:
    frame = pl.DataFrame(
        {"email": [f"u{i}@x.io" for i in range(300)], "n": list(range(300))}
    ).with_columns(props=pl.struct(a=pl.col("n"), b=pl.lit("x")))
    flat = frame.drop("props")
    out = []
    flat.write_csv(tmp_path / "a.csv")
    out.append(tmp_path / "a.csv")
    out.append(_write(tmp_path / "a.csv.gz", gzip.compress((tmp_path / "a.csv").read_bytes())))
    out.append(
        _write(
            tmp_path / "a.csv.zst",
            zstandard.ZstdCompressor().compress((tmp_path / "a.csv").read_bytes()),
        )
    )
    frame.write_parquet(tmp_path / "a.parquet")
    frame.write_ipc(tmp_path / "a.arrow")
    frame.write_ndjson(tmp_path / "a.ndjson")
    out += [tmp_path / "a.parquet", tmp_path / "a.arrow", tmp_path / "a.ndjson"]
    out.append(_write(tmp_path / "arr.json", json.dumps(flat.to_dicts())))
    schema = {
        "type": "record",
        "name": "R",
        "fields": [{"name": "email", "type": "string"}, {"name": "n", "type": "long"}],
    }
    with (tmp_path / "a.avro").open("wb") as fh:
        fastavro.writer(fh, schema, flat.to_dicts())
    out.append(tmp_path / "a.avro")
    return out


def test_damaged_files_only_ever_raise_input_error(tmp_path: Path) -> None:
    """Truncate or corrupt every format at several points: either rows come back, or an
    InputError naming the file does. Anything else is an unmapped foreign exception."""
    outcomes = []
    for original in _all_formats(tmp_path):
        data = original.read_bytes()
        damaged = {
            "head": data[:1],
            "short": data[:10],
            "half": data[: len(data) // 2],
            "tail": data[:-5],
            "garbage": data[:20] + bytes(range(256)) * 4 + data[-20:],
        }
        for label, content in damaged.items():
            path = _write(tmp_path / f"{label}-{original.name}", content)
            try:
                frame = read_source(path)
            except InputError as exc:
                outcomes.append((path, str(exc)))
            else:
                assert frame.height <= 300
                outcomes.append((path, ""))
    errors = [(path, message) for path, message in outcomes if message]
    assert len(errors) > len(outcomes) // 2
    for path, message in errors:
        assert message.startswith(f"{path}: "), message
        assert "file is empty" not in message, message  # damage is not emptiness


def test_unload_parts_are_converted_one_at_a_time(tmp_path: Path) -> None:
    """At most one decompressed copy exists on disk at a time; none after reading."""
    for i in range(3):
        body = "email\n" + "".join(f"p{i}r{r}@x.io\n" for r in range(2000))
        _write(tmp_path / f"part{i}.csv.gz", gzip.compress(body.encode()))
    with open_source(str(tmp_path / "part*.csv.gz"), chunk_size=500) as source:
        assert len(source.schema) == 3
        assert source._tmp is not None
        tmpdir = Path(source._tmp.name)
        assert list(tmpdir.iterdir()) == []  # schema samples are thrown away
        copies = []
        rows = 0
        for chunk in source.iter_chunks():
            copies.append(len(list(tmpdir.iterdir())))
            rows += chunk.height
        assert rows == 6000
        assert max(copies) == 1
        assert list(tmpdir.iterdir()) == []
