"""Inputs in S3 (moto's real S3 HTTP server on 127.0.0.1): warehouse export layouts,
streaming, provenance, and the clear errors of a bucket that cannot be read."""

from __future__ import annotations

import gzip
import http.server
import io
import json
import threading
from pathlib import Path
from typing import Any

import fastavro
import polars as pl
import pytest
from click.testing import CliRunner

from kraiter_sync.cli import main
from kraiter_sync.errors import ConfigError, InputError
from kraiter_sync.sources import open_source
from kraiter_sync.sources.objectstore import StorageOptions, readers, stores
from tests.helpers.cloud import AWS_ENV, S3
from tests.helpers.objects import BUCKET, csv_gz_bytes, events, parquet_bytes


def read_all(url: str, **kwargs: Any) -> pl.DataFrame:
    with open_source(url, **kwargs) as source:
        return source.read()


# --------------------------------------------------------------------------------------
# layouts
# --------------------------------------------------------------------------------------


def test_multipart_parquet_with_hive_partitions(s3: S3) -> None:
    prefix = "bq/events"
    for day, offset in (("2025-03-01", 0), ("2025-03-02", 100)):
        for part in range(2):
            s3.put(
                BUCKET,
                f"{prefix}/date={day}/part-{part:05d}.parquet",
                parquet_bytes(events(50, offset + 50 * part)),
            )
    s3.put(BUCKET, f"{prefix}/_SUCCESS", b"")

    with open_source(f"s3://{BUCKET}/{prefix}/", chunk_size=30) as source:
        chunks = list(source.iter_chunks())
    frame = pl.concat(chunks)
    assert max(c.height for c in chunks) <= 30
    assert frame.height == 200
    assert frame["email"].n_unique() == 200
    assert frame["date"].value_counts().sort("date").rows() == [
        ("2025-03-01", 100),
        ("2025-03-02", 100),
    ]
    first = f"s3://{BUCKET}/{prefix}/date=2025-03-01/part-00000.parquet"
    assert frame["source_file"][0] == first
    assert frame.filter(pl.col("source_file") == first)["source_row"].to_list() == list(
        range(1, 51)
    )
    # the same parts through a glob, the hive pairs from the glob's fixed part
    globbed = read_all(f"s3://{BUCKET}/{prefix}/date=*/*.parquet")
    assert globbed.sort("email").equals(frame.sort("email"))


def test_snowflake_gzip_csv_parts(s3: S3) -> None:
    for i in range(3):
        s3.put(BUCKET, f"stage/unload/data_0_{i}_0.csv.gz", csv_gz_bytes(events(40, 40 * i)))
    frame = read_all(f"s3://{BUCKET}/stage/unload/data_*.csv.gz")
    assert frame.height == 120
    assert frame["source_file"].unique().sort().to_list() == [
        f"s3://{BUCKET}/stage/unload/data_0_{i}_0.csv.gz" for i in range(3)
    ]
    assert frame["source_row"].max() == 40  # rows count per part, as in the file
    assert frame["amount"].cast(pl.Float64).sum() == sum(range(120))


def test_redshift_manifest_reads_exactly_the_listed_parts(s3: S3) -> None:
    parts = [parquet_bytes(events(25, 25 * i)) for i in range(2)]
    urls = [s3.put(BUCKET, f"unload/venue_{i:04d}_part_00.parquet", p) for i, p in enumerate(parts)]
    s3.put(BUCKET, "unload/venue_9999_part_00.parquet", parquet_bytes(events(7, 999)))  # stray
    manifest = {
        "entries": [
            {"url": url, "mandatory": True, "meta": {"content_length": len(part)}}
            for url, part in zip(urls, parts, strict=True)
        ]
    }
    s3.put(BUCKET, "unload/venue_manifest", json.dumps(manifest).encode())

    frame = read_all(f"s3://{BUCKET}/unload/venue_manifest")
    assert frame.height == 50
    assert sorted(frame["source_file"].unique()) == urls
    # a prefix listing skips the manifest file itself
    assert read_all(f"s3://{BUCKET}/unload/").height == 57


def test_manifest_length_mismatch_is_a_truncated_object(s3: S3) -> None:
    part = parquet_bytes(events(10))
    url = s3.put(BUCKET, "short/part_00.parquet", part[:-100])
    manifest = {"entries": [{"url": url, "meta": {"content_length": len(part)}}]}
    s3.put(BUCKET, "short/manifest", json.dumps(manifest).encode())
    with pytest.raises(InputError, match=r"truncated or was replaced"):
        open_source(f"s3://{BUCKET}/short/manifest")


def test_avro_parts_stream_in_chunks(s3: S3) -> None:
    schema = {
        "type": "record",
        "name": "Event",
        "fields": [
            {"name": "email", "type": "string"},
            {"name": "event", "type": "string"},
            {"name": "timestamp", "type": "string"},
        ],
    }
    for part in range(2):
        buf = io.BytesIO()
        records = events(300, 300 * part).select("email", "event", "timestamp").to_dicts()
        fastavro.writer(buf, schema, records)
        s3.put(BUCKET, f"avro/export-{part:012d}.avro", buf.getvalue())
    with open_source(f"s3://{BUCKET}/avro/", chunk_size=100) as source:
        chunks = list(source.iter_chunks())
    assert [c.height for c in chunks] == [100] * 6
    frame = pl.concat(chunks)
    assert frame["email"].n_unique() == 600
    assert frame.columns == ["email", "event", "timestamp", "source_file", "source_row"]


def test_encodings_and_codecs_stream_like_local_files(s3: S3) -> None:
    import zstandard

    text = "email,city\nada@example.com,Zürich\nbo@example.com,Malmö\n"
    s3.put(BUCKET, "enc/latin1.csv.gz", gzip.compress(text.encode("latin-1")))
    with open_source(f"s3://{BUCKET}/enc/latin1.csv.gz", encoding="latin-1") as source:
        assert source.read()["city"].to_list() == ["Zürich", "Malmö"]
    lines = b'{"email": "a@example.com", "n": 1}\n{"email": "b@example.com", "n": 2}\n'
    s3.put(BUCKET, "enc/rows.ndjson.zst", zstandard.ZstdCompressor().compress(lines))
    assert read_all(f"s3://{BUCKET}/enc/rows.ndjson.zst")["n"].to_list() == [1, 2]
    s3.put(BUCKET, "enc/bad.csv", b"email,city\nada@example.com,Z\xfcrich\n")
    with pytest.raises(InputError, match="bytes that are not valid utf-8 on line 2"):
        read_all(f"s3://{BUCKET}/enc/bad.csv")


def test_every_other_format_from_objects(s3: S3) -> None:
    frame = events(30)
    ipc = io.BytesIO()
    frame.write_ipc(ipc)
    s3.put(BUCKET, "fmt/events.arrow", ipc.getvalue())
    s3.put(BUCKET, "fmt/events.json", json.dumps(frame.to_dicts()).encode())
    tsv = io.BytesIO()
    frame.write_csv(tsv, separator="\t")
    s3.put(BUCKET, "fmt/events.tsv", tsv.getvalue())
    for name in ("events.arrow", "events.json", "events.tsv"):
        got = read_all(f"s3://{BUCKET}/fmt/{name}")
        assert got["email"].to_list() == frame["email"].to_list(), name
        assert got["source_row"].to_list() == list(range(1, 31)), name


def test_bucket_put_and_list_for_writers(s3: S3, tmp_path: Path) -> None:
    """The seam an export writer will use: atomic puts, listings with ETags."""
    from kraiter_sync.sources.objectstore import open_bucket, parse_url

    bucket = open_bucket(parse_url(f"s3://{BUCKET}/out/"))
    first = bucket.put("out/part-0.parquet", b"abc")
    local = tmp_path / "part-1.parquet"
    local.write_bytes(b"defg")
    second = bucket.put("out/part-1.parquet", local)
    assert (first.size, second.size) == (3, 4)
    assert first.etag
    assert first.etag != second.etag
    listed = list(bucket.list("out/"))
    assert [(i.key, i.size, i.etag) for i in listed] == [
        ("out/part-0.parquet", 3, first.etag),
        ("out/part-1.parquet", 4, second.etag),
    ]
    assert listed[0].url == f"s3://{BUCKET}/out/part-0.parquet"


def test_a_large_object_is_streamed_not_downloaded(s3: S3, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the first chunk arrives, only the blocks it needed (and one fetched ahead)
    have been requested, and nothing was copied to disk."""
    buf = io.BytesIO()
    events(800_000).write_csv(buf)
    body = buf.getvalue()
    url = s3.put(BUCKET, "big/data_0_0_0.csv", body)
    requested: list[int] = []
    get = stores.Bucket.get

    def counting(self: stores.Bucket, info: Any, *, start: int = 0, end: int | None = None) -> Any:
        requested.append((info.size if end is None else end) - start)
        return get(self, info, start=start, end=end)

    monkeypatch.setattr(stores.Bucket, "get", counting)
    monkeypatch.setattr(readers, "STREAM_BLOCK", 1 << 20)  # blocks small against the object
    with open_source(url, chunk_size=1000) as source:
        first = next(source.iter_chunks())
        fetched = sum(requested)
        tmp_files = list(Path(source._tmp.name).iterdir()) if source._tmp else []
    assert first.height == 1000
    assert len(body) > 40 << 20
    # the schema sample (4 MB) and one 16 MiB CSV block, each with a block read ahead
    assert fetched < 24 << 20, (fetched, len(body))
    assert max(requested) <= 1 << 20  # bounded requests, never the whole object at once
    assert tmp_files == []  # no copy on disk


# --------------------------------------------------------------------------------------
# errors: exit 2, clear, no traceback
# --------------------------------------------------------------------------------------


def validate(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["validate", *args])
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_cli_validates_an_s3_prefix_and_rejects_name_the_object(s3: S3, tmp_path: Path) -> None:
    s3.put(BUCKET, "cli/date=2025-03-01/part-0.parquet", parquet_bytes(events(20, bad=2)))
    rejects = tmp_path / "rejects.csv"
    code, out, err = validate(
        f"s3://{BUCKET}/cli/", "--rejects", str(rejects), "--state-dir", str(tmp_path / "st")
    )
    assert code == 3, err
    assert "22 events rows read: 20 valid, 0 duplicates, 2 rejected" in out
    rows = pl.read_csv(rejects)
    assert rows["source_file"].unique().to_list() == [
        f"s3://{BUCKET}/cli/date=2025-03-01/part-0.parquet"
    ]
    assert rows["source_row"].to_list() == [21, 22]


def test_missing_bucket(s3: S3, tmp_path: Path) -> None:
    code, _out, err = validate("s3://no-such-bucket/x/*.csv", "--state-dir", str(tmp_path))
    assert code == 2
    assert "the bucket or container s3://no-such-bucket does not exist" in err
    assert "Traceback" not in err


def test_glob_matching_nothing(s3: S3, tmp_path: Path) -> None:
    s3.put(BUCKET, "few/data_0_0_0.csv.gz", csv_gz_bytes(events(3)))
    code, _out, err = validate(f"s3://{BUCKET}/few/*.parquet", "--state-dir", str(tmp_path))
    assert code == 2
    assert f"s3://{BUCKET}/few/*.parquet: no object matches this pattern" in err


def test_missing_object(s3: S3, tmp_path: Path) -> None:
    code, _out, err = validate(f"s3://{BUCKET}/nothing/here.csv", "--state-dir", str(tmp_path))
    assert code == 2
    assert f"s3://{BUCKET}/nothing/here.csv: no such object or prefix" in err


def test_truncated_gzip_object(s3: S3, tmp_path: Path) -> None:
    body = csv_gz_bytes(events(500))
    s3.put(BUCKET, "cut/data_0_0_0.csv.gz", body[: len(body) // 2])
    code, _out, err = validate(f"s3://{BUCKET}/cut/", "--state-dir", str(tmp_path))
    assert code == 2
    assert "the gzip stream is truncated or corrupt" in err
    assert "Traceback" not in err


def test_truncated_parquet_object(s3: S3, tmp_path: Path) -> None:
    body = parquet_bytes(events(50))
    s3.put(BUCKET, "cutpq/part-0.parquet", body[:-40])
    code, _out, err = validate(f"s3://{BUCKET}/cutpq/", "--state-dir", str(tmp_path))
    assert code == 2
    assert f"s3://{BUCKET}/cutpq/part-0.parquet: not a valid Parquet file" in err


def test_object_replaced_while_reading_is_an_error_not_a_mix(s3: S3) -> None:
    url = s3.put(BUCKET, "moving/data_0_0_0.csv.gz", csv_gz_bytes(events(10)))
    with open_source(url) as source:
        _ = source.schema  # listed and sampled: the ETag is pinned
        s3.put(BUCKET, "moving/data_0_0_0.csv.gz", csv_gz_bytes(events(10, 500)))
        with pytest.raises(InputError, match="changed while it was being read"):
            source.read()


class _S3Error(http.server.BaseHTTPRequestHandler):
    """Answers every request as S3 does when it refuses the credentials or the access."""

    status = 403
    code = "AccessDenied"

    def _answer(self) -> None:
        body = (
            f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{self.code}</Code>"
            "<Message>refused</Message></Error>"
        ).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (403, "AccessDenied", "access denied; the credentials in use may not read it"),
        (400, "ExpiredToken", "the credentials have expired; refresh them"),
        (403, "InvalidAccessKeyId", "the credentials were refused (InvalidAccessKeyId)"),
    ],
)
def test_refused_credentials(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: int, code: str, expected: str
) -> None:
    handler = type("Handler", (_S3Error,), {"status": status, "code": code})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-that-must-not-leak")
    try:
        result = CliRunner().invoke(
            main, ["validate", "s3://locked/exports/", "--state-dir", str(tmp_path)]
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 2, result.output
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    for secret in ("session-token-that-must-not-leak", AWS_ENV["AWS_SECRET_ACCESS_KEY"]):
        assert secret not in result.output


# --------------------------------------------------------------------------------------
# settings: endpoint from the file, never a secret
# --------------------------------------------------------------------------------------


def test_endpoint_from_kraiter_sync_toml(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3.put(BUCKET, "minio/part-0.parquet", parquet_bytes(events(5)))
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    config = tmp_path / "kraiter-sync.toml"
    config.write_text(f'[storage.s3]\nendpoint = "{s3.endpoint}"\nregion = "us-east-1"\n')
    code, out, err = validate(
        f"s3://{BUCKET}/minio/", "--config", str(config), "--state-dir", str(tmp_path / "st")
    )
    assert code == 0, err
    assert "5 events rows read" in out


def test_inline_secret_in_storage_table_is_refused(s3: S3, tmp_path: Path) -> None:
    config = tmp_path / "kraiter-sync.toml"
    config.write_text('[storage.s3]\nsecret_access_key = "abc123"\n')
    code, _out, err = validate(
        f"s3://{BUCKET}/x/", "--config", str(config), "--state-dir", str(tmp_path)
    )
    assert code == 2
    assert "[storage].s3.secret_access_key is not allowed in kraiter-sync.toml" in err
    assert "abc123" not in err


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"s3": {"endpoint": "http://minio.example.com"}}, "plain http:// is refused"),
        ({"s3": {"bucket_key": "x"}}, "is not allowed in kraiter-sync.toml"),
        ({"s3": {"colour": "blue"}}, "unknown setting; s3 takes anonymous, endpoint"),
        ({"ftp": {}}, "unknown storage table"),
        ({"azure": {"sas_token": "sv=2020&sig=abc"}}, "AZURE_STORAGE_SAS_KEY"),
    ],
)
def test_storage_table_checks(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        StorageOptions.from_table(table)


def test_a_missing_extra_names_the_install(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "obstore", None)  # as if not installed
    code, _out, err = validate(f"s3://{BUCKET}/x/", "--state-dir", str(tmp_path))
    assert code == 2
    assert 'needs: pip install "kraiter-sync[cloud]"' in err


# --------------------------------------------------------------------------------------
# reconcile and retry take object URLs too
# --------------------------------------------------------------------------------------


def test_reconcile_an_s3_contacts_file(s3: S3, tmp_path: Path) -> None:
    s3.put(BUCKET, "crm/contacts.csv", b"email,plan\nada@example.com,pro\nbo@example.com,free\n")
    result = CliRunner().invoke(
        main, ["reconcile", f"s3://{BUCKET}/crm/contacts.csv", "--state-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("plan: 2 to create, 0 to update, 0 unchanged")


def test_retry_a_rejects_file_kept_in_s3(s3: S3, tmp_path: Path) -> None:
    from kraiter_sync.validate import REJECT_SCHEMA

    row = {
        "source_file": f"s3://{BUCKET}/crm/contacts.csv",
        "source_row": 1,
        "field": "email",
        "rule": "api.NOT_FOUND",
        "message": "refused",
        "stage": "rejected",
        "email": "ada@example.com",
        "contact_id": None,
        "name": None,
        "timestamp": None,
        "properties": '{"plan":"pro"}',
    }
    s3.put(
        BUCKET,
        "rejects/run-7.parquet",
        parquet_bytes(pl.DataFrame([row], schema=REJECT_SCHEMA)),
    )
    result = CliRunner().invoke(
        main, ["retry", f"s3://{BUCKET}/rejects/run-7.parquet", "--state-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.stderr
    assert "contacts: 1 read, 1 sent" in result.stdout
    missing = CliRunner().invoke(
        main, ["retry", f"s3://{BUCKET}/rejects/none.parquet", "--state-dir", str(tmp_path)]
    )
    assert missing.exit_code == 2
    assert f"s3://{BUCKET}/rejects/none.parquet: no such object" in missing.stderr


def test_credentials_from_a_named_profile(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No key in the environment or the file: the profile's keys come from ~/.aws."""
    s3.put(BUCKET, "profiled/part-0.parquet", parquet_bytes(events(4)))
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[etl]\naws_access_key_id = {AWS_ENV['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {AWS_ENV['AWS_SECRET_ACCESS_KEY']}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    config = tmp_path / "kraiter-sync.toml"
    config.write_text('[storage.s3]\nprofile = "etl"\n')
    code, out, err = validate(
        f"s3://{BUCKET}/profiled/", "--config", str(config), "--state-dir", str(tmp_path / "s")
    )
    assert code == 0, err
    assert "4 events rows read" in out

    config.write_text('[storage.s3]\nprofile = "nope"\n')
    stores._bucket.cache_clear()
    code, _out, err = validate(
        f"s3://{BUCKET}/profiled/", "--config", str(config), "--state-dir", str(tmp_path / "s")
    )
    assert code == 2
    assert 'AWS profile "nope" is not in ~/.aws/config or ~/.aws/credentials' in err
