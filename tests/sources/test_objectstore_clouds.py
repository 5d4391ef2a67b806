"""Inputs in GCS (fake-gcs-server), Azure Blob (azurite) and on https (a static server):
the same layouts as S3, through each cloud's own emulator on 127.0.0.1."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import fastavro
import polars as pl
import pytest
from click.testing import CliRunner

from kraiter_sync.cli import main
from kraiter_sync.errors import InputError
from kraiter_sync.sources import open_source
from kraiter_sync.sources.objectstore import redact, stores
from kraiter_sync.state.ledger import Ledger
from tests.helpers.cloud import (
    AZURITE_ACCOUNT,
    GCS,
    Azure,
    azurite_server,
    fake_gcs_server,
    static_server,
)
from tests.helpers.objects import csv_gz_bytes, events, parquet_bytes


def read_all(url: str) -> pl.DataFrame:
    with open_source(url, chunk_size=40) as source:
        return source.read()


# --------------------------------------------------------------------------------------
# GCS
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gcs_endpoint() -> Iterator[str]:
    with fake_gcs_server() as url:
        yield url


@pytest.fixture
def gcs(gcs_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> GCS:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
    stores._bucket.cache_clear()
    server = GCS(gcs_endpoint)
    server.bucket("bq-exports")
    return server


def test_gcs_bigquery_parquet_parts_with_hive_partitions(gcs: GCS) -> None:
    for day, offset in (("2025-03-01", 0), ("2025-03-02", 60)):
        for part in range(2):
            key = f"events/dt={day}/000000000{part:03d}.parquet"
            gcs.put("bq-exports", key, parquet_bytes(events(30, offset + 30 * part)))
    frame = read_all("gs://bq-exports/events/")
    assert frame.height == 120
    assert frame["dt"].value_counts().sort("dt").rows() == [("2025-03-01", 60), ("2025-03-02", 60)]
    assert frame["source_file"][0] == "gs://bq-exports/events/dt=2025-03-01/000000000000.parquet"


def test_gcs_avro_parts(gcs: GCS) -> None:
    schema = {
        "type": "record",
        "name": "Row",
        "fields": [{"name": "email", "type": "string"}, {"name": "event", "type": "string"}],
    }
    for part in range(2):
        buf = io.BytesIO()
        fastavro.writer(buf, schema, events(50, 50 * part).select("email", "event").to_dicts())
        gcs.put("bq-exports", f"avro/part-{part}.avro", buf.getvalue())
    frame = read_all("gs://bq-exports/avro/*.avro")
    assert frame.height == 100
    assert frame["email"].n_unique() == 100


def test_gcs_missing_bucket(gcs: GCS, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["validate", "gs://nope/x/", "--state-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "gs://nope does not exist" in result.stderr


# --------------------------------------------------------------------------------------
# Azure Blob
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def azurite_endpoint() -> Iterator[str]:
    with azurite_server() as url:
        yield url


@pytest.fixture
def azure(azurite_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Azure:
    """azurite through the Azure variables a user sets for it (no secret in our files)."""
    monkeypatch.setenv("AZURE_STORAGE_USE_EMULATOR", "true")
    monkeypatch.setenv("AZURITE_BLOB_STORAGE_URL", azurite_endpoint.rsplit("/", 1)[0])
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", AZURITE_ACCOUNT)
    stores._bucket.cache_clear()
    server = Azure(azurite_endpoint)
    server.bucket("stage")
    return server


def test_azure_snowflake_gzip_csv_parts(azure: Azure) -> None:
    for i in range(3):
        azure.put("stage", f"unload/data_0_{i}_0.csv.gz", csv_gz_bytes(events(20, 20 * i)))
    frame = read_all("az://stage/unload/")
    assert frame.height == 60
    assert frame["source_file"].unique().sort().to_list() == [
        f"az://stage/unload/data_0_{i}_0.csv.gz" for i in range(3)
    ]


def test_azure_abfss_url_names_the_account(azure: Azure) -> None:
    azure.put("stage", "delta/part-0.parquet", parquet_bytes(events(12)))
    url = f"abfss://stage@{AZURITE_ACCOUNT}.dfs.core.windows.net/delta/"
    frame = read_all(url)
    assert frame.height == 12
    assert frame["source_file"][0] == (
        f"abfss://stage@{AZURITE_ACCOUNT}.dfs.core.windows.net/delta/part-0.parquet"
    )


def test_azure_missing_container(azure: Azure, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["validate", "az://no-container/x.csv", "--state-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "az://no-container does not exist" in result.stderr


def test_azure_wrong_key_is_refused_credentials(
    azure: Azure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    azure.put("stage", "keyed/part-0.parquet", parquet_bytes(events(3)))
    monkeypatch.delenv("AZURE_STORAGE_USE_EMULATOR")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", "d3Jvbmcta2V5LXdyb25nLWtleQ==")
    monkeypatch.setenv("AZURE_STORAGE_ENDPOINT", azure.endpoint)
    monkeypatch.delenv("AZURITE_BLOB_STORAGE_URL")
    stores._bucket.cache_clear()
    result = CliRunner().invoke(
        main, ["validate", "az://stage/keyed/", "--state-dir", str(tmp_path)]
    )
    assert result.exit_code == 2, result.output
    assert "credentials were refused" in result.stderr or "access denied" in result.stderr
    assert "d3Jvbmcta2V5" not in result.output


# --------------------------------------------------------------------------------------
# https (read only, one file per URL)
# --------------------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "site"
    root.mkdir()
    stores._bucket.cache_clear()
    with static_server(root) as url:
        yield root, url


def test_https_csv_and_parquet_files(site: tuple[Path, str]) -> None:
    root, url = site
    (root / "events.csv.gz").write_bytes(csv_gz_bytes(events(30)))
    (root / "events.parquet").write_bytes(parquet_bytes(events(25)))
    assert read_all(f"{url}/events.csv.gz").height == 30
    frame = read_all(f"{url}/events.parquet")  # footer and columns by range requests
    assert frame.height == 25
    assert frame["source_file"][0] == f"{url}/events.parquet"


def test_signed_url_query_never_reaches_rejects_or_output(
    site: tuple[Path, str], tmp_path: Path
) -> None:
    root, url = site
    (root / "export.csv").write_text("email,event,timestamp\nnot-an-email,x,2025-01-01T00:00:00Z\n")
    signed = f"{url}/export.csv?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=deadbeef1234"
    rejects = tmp_path / "rejects.csv"
    result = CliRunner().invoke(
        main, ["validate", signed, "--rejects", str(rejects), "--state-dir", str(tmp_path / "s")]
    )
    assert result.exit_code == 3, result.output
    assert pl.read_csv(rejects)["source_file"].to_list() == [f"{url}/export.csv"]
    for secret in ("deadbeef1234", "AKIAEXAMPLE"):
        assert secret not in result.output
        assert secret not in rejects.read_text()


def test_signed_url_query_never_reaches_state(site: tuple[Path, str], tmp_path: Path) -> None:
    root, url = site
    (root / "contacts.csv").write_text("email,plan\nada@example.com,pro\n")
    signed = f"{url}/contacts.csv?sv=2024-01-01&se=2030-01-01&sig=c2lnbmF0dXJlLXNlY3JldA%3D"
    state = tmp_path / "state"
    result = CliRunner().invoke(main, ["import", signed, "--state-dir", str(state), "-v"])
    assert result.exit_code == 0, result.output
    assert "c2lnbmF0dXJl" not in result.output
    files = [p for p in state.rglob("*") if p.is_file()]
    assert any(p.name == "ledger.db" for p in files)
    for path in files:
        assert b"c2lnbmF0dXJl" not in path.read_bytes(), path
    with Ledger(state / "ledger.db") as ledger:
        (run,) = ledger.list_runs()
    assert run.args["paths"] == [f"{url}/contacts.csv?…"]


def test_https_missing_file_and_globs(site: tuple[Path, str]) -> None:
    _root, url = site
    with pytest.raises(InputError, match="no such object"):
        open_source(f"{url}/missing.csv")
    with pytest.raises(InputError, match="must be one file"):
        open_source(f"{url}/parts/*.csv")


def test_plain_http_is_refused_off_loopback() -> None:
    with pytest.raises(InputError, match=r"plain http:// is refused for data\.example\.com"):
        open_source("http://data.example.com/export.csv")


def test_redact_removes_signatures_from_any_text() -> None:
    text = (
        "GET https://acct.blob.core.windows.net/c/f.csv?sv=2022&sig=SECRET failed; "
        "see https://b.s3.amazonaws.com/k?X-Amz-Signature=SECRET2"
    )
    cleaned = redact(text)
    assert "SECRET" not in cleaned
    assert "https://acct.blob.core.windows.net/c/f.csv?…" in cleaned
