"""Objects for the object-storage tests: a moto S3 and the frames put in it."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator

import polars as pl
import pytest

from kraiter_sync.sources.objectstore import stores
from tests.helpers.cloud import AWS_ENV, S3, moto_server, s3_client

BUCKET = "warehouse"


def events(n: int, offset: int = 0, *, bad: int = 0) -> pl.DataFrame:
    """``n`` valid events (and ``bad`` rows with an invalid email at the end)."""
    return pl.DataFrame(
        {
            "email": [f"user{offset + i}@example.com" for i in range(n)] + ["not-an-email"] * bad,
            "event": ["order_placed"] * (n + bad),
            "timestamp": [f"2025-03-01T10:{(offset + i) % 60:02d}:00Z" for i in range(n + bad)],
            "amount": [float(offset + i) for i in range(n + bad)],
        }
    )


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_parquet(buf)
    return buf.getvalue()


def csv_gz_bytes(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_csv(buf)
    return gzip.compress(buf.getvalue())


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3:
    """The AWS chain finds keys in the environment; AWS_ENDPOINT_URL points at moto."""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask a metadata address
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    stores._bucket.cache_clear()
    server = S3(moto_endpoint, s3_client(moto_endpoint))
    server.bucket(BUCKET)
    return server
