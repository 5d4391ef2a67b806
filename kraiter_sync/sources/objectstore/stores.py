"""Buckets behind obstore: settings, credentials, one error boundary, list/get/put.

Settings (:class:`StorageOptions`) come from the ``[storage.s3]``, ``[storage.gcs]`` and
``[storage.azure]`` tables of kraiter-sync.toml and from each cloud's standard
environment variables (which win, as the environment wins over the file everywhere in
kraiter-sync). They name an endpoint, a region, a profile or an account: never a secret.
A secret-looking key in the file is refused, as ``[target].api_key`` is.

Credentials come only from each cloud's own chain:

- S3: boto3's chain when boto3 is installed (it is, with the ``cloud`` extra):
  environment, ``~/.aws`` profiles (SSO, assume-role, credential_process), web identity,
  container and instance roles; without boto3, obstore's own chain (environment, web
  identity, container and instance roles; no profiles).
- GCS: ``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's application-default file, the
  metadata server (workload identity). ``STORAGE_EMULATOR_HOST`` (the emulator
  convention) sends anonymous requests to that host.
- Azure: ``AZURE_*`` variables (client secret, federated token, SAS, key), managed
  identity, the Azure CLI; ``AZURE_STORAGE_USE_EMULATOR`` for azurite.

:func:`translate_error` is the one place where obstore's, boto3's and the network's
errors become :class:`~kraiter_sync.errors.InputError` (exit 2) naming the next step.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kraiter_sync.config.storage import StorageOptions, check_endpoint
from kraiter_sync.errors import ConfigError, InputError
from kraiter_sync.urls import Cloud, ObjectUrl, redact

__all__ = [
    "INSTALL_HINT",
    "Bucket",
    "ObjectInfo",
    "StorageOptions",
    "open_bucket",
    "translate_error",
]

INSTALL_HINT = 'pip install "kraiter-sync[cloud]"'

_CODE = re.compile(r"<Code>([A-Za-z]+)</Code>")
_STATUS = re.compile(r"status code: (\d{3})")


@dataclass(frozen=True)
class ObjectInfo:
    """One object as listed: what ``source_file`` shows and what a sync job remembers."""

    url: str
    key: str
    size: int
    etag: str | None = None
    last_modified: str | None = None

    @property
    def version(self) -> str:
        """What tells one content of this key from another: the ETag, else the time."""
        return f"{self.size}:{self.etag or self.last_modified or ''}"


def _obstore() -> Any:
    try:
        import obstore
    except ImportError:
        msg = f"reading object storage (s3://, gs://, az://, https://) needs: {INSTALL_HINT}"
        raise InputError(msg) from None
    return obstore


# --------------------------------------------------------------------------------------
# error translation
# --------------------------------------------------------------------------------------


def translate_error(exc: BaseException, where: str, *, bucket: str = "") -> InputError:
    """One foreign error (obstore, boto3, network) as an InputError naming what to do."""
    if isinstance(exc, InputError):
        return exc
    text = str(exc)
    first = redact(text.strip().splitlines()[0]) if text.strip() else type(exc).__name__
    codes = set(_CODE.findall(text))
    status = _STATUS.search(text)
    code = status.group(1) if status else ""
    name = type(exc).__name__
    what = bucket or where
    lower = text.lower()
    if (
        codes & {"NoSuchBucket", "ContainerNotFound"}
        or ("bucket" in lower and "not exist" in lower)
        or "no bucket named" in lower  # fake-gcs-server's wording
    ):
        return InputError(
            f"{where}: the bucket or container {what} does not exist; check its name "
            "(and the endpoint or region in [storage])"
        )
    if codes & {"ExpiredToken", "TokenRefreshRequired", "InvalidToken"} or "expired" in lower:
        return InputError(
            f"{where}: the credentials have expired; refresh them (aws sso login, gcloud auth "
            "application-default login, az login, or new environment variables) and run again"
        )
    if (
        codes & {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AuthenticationFailed"}
        or name == "UnauthenticatedError"
        or code == "401"
    ):
        return InputError(
            f"{where}: the credentials were refused ({', '.join(sorted(codes)) or code or name}); "
            "check the environment variables or profile the cloud's chain picks up"
        )
    if (
        codes & {"AccessDenied", "AuthorizationFailure", "AuthorizationPermissionMismatch"}
        or name == "PermissionDeniedError"
        or code == "403"
    ):
        return InputError(
            f"{where}: access denied; the credentials in use may not read it. Grant list and "
            "read access on the bucket or prefix, or use another profile or identity"
        )
    if name == "PreconditionError" or code == "412":
        return InputError(
            f"{where}: the object changed while it was being read; run again once the "
            "export has finished writing"
        )
    if isinstance(exc, FileNotFoundError) or name == "NotFoundError" or code == "404":
        return InputError(f"{where}: no such object; check the URL")
    if "error sending request" in lower or "connect" in lower or "dns" in lower:
        return InputError(
            f"{where}: cannot reach the storage service ({first}); check the endpoint and "
            "the network"
        )
    return InputError(f"{where}: object storage error ({first})")


# --------------------------------------------------------------------------------------
# buckets
# --------------------------------------------------------------------------------------


def _parse_time(value: Any) -> str | None:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    return None


class Bucket:
    """One bucket, container or https host: list, head, get (stream or range), put,
    delete."""

    def __init__(self, url: ObjectUrl, store: Any) -> None:
        self.url = url
        self.store = store

    def _info(self, meta: Mapping[str, Any], key: str | None = None) -> ObjectInfo:
        key = key if key is not None else str(meta["path"])
        return ObjectInfo(
            url=self.url.child(key),
            key=key,
            size=int(meta["size"]),
            etag=(meta.get("e_tag") or "").strip('"') or None,
            last_modified=_parse_time(meta.get("last_modified")),
        )

    def _fail(self, exc: BaseException, key: str) -> InputError:
        return translate_error(exc, self.url.child(key), bucket=self.url.root)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (recursive), in key order."""
        obstore = _obstore()
        if self.url.cloud == "http":
            msg = (
                f"{self.url.child(prefix)}: https:// sources are single files: globs and "
                "directories need a bucket URL (s3://, gs://, az://)"
            )
            raise InputError(msg)
        try:
            found = [
                self._info(meta)
                for page in obstore.list(self.store, prefix=prefix or None, chunk_size=1000)
                for meta in page
            ]
        except Exception as exc:
            raise self._fail(exc, prefix) from None
        yield from sorted(found, key=lambda info: info.key)

    def head(self, key: str) -> ObjectInfo | None:
        """The object at ``key``, or None when there is none (a missing bucket raises)."""
        obstore = _obstore()
        try:
            if self.url.cloud == "http":
                # a one-byte GET, not a HEAD: a presigned URL is signed for GET only
                meta = obstore.get(self.store, self._path(key), options={"range": (0, 1)}).meta
            else:
                meta = obstore.head(self.store, self._path(key))
        except FileNotFoundError:
            if self.url.cloud != "http":
                self.check_bucket(key)
            return None
        except Exception as exc:
            if type(exc).__name__ == "NotFoundError":
                return None
            raise self._fail(exc, key) from None
        return self._info(meta, key)

    def check_bucket(self, key: str) -> None:
        """Raise the clear error when the bucket itself is missing or unreadable."""
        obstore = _obstore()
        try:
            for _page in obstore.list(self.store, prefix=key or None, chunk_size=1):
                break
        except Exception as exc:
            raise self._fail(exc, key) from None

    def _path(self, key: str) -> str:
        if self.url.cloud == "http" and self.url.query and key == self.url.key:
            return f"{key}?{self.url.query}"
        return key

    def get(self, info: ObjectInfo, *, start: int = 0, end: int | None = None) -> Any:
        """A GetResult for ``info`` (bytes ``start``..``end``), pinned to its ETag."""
        obstore = _obstore()
        options: dict[str, Any] = {}
        if info.etag and self.url.cloud != "http":
            options["if_match"] = f'"{info.etag}"'
        if start or end is not None:
            options["range"] = (start, info.size if end is None else end)
        try:
            return obstore.get(self.store, self._path(info.key), options=options or None)
        except Exception as exc:
            raise self._fail(exc, info.key) from None

    def put(self, key: str, data: bytes | Path) -> ObjectInfo:
        """Write one object atomically: readers see the old object or the whole new one
        (a single PUT, or a multipart upload that only appears when completed)."""
        obstore = _obstore()
        if self.url.cloud == "http":
            msg = f"{self.url.child(key)}: https:// locations are read only"
            raise InputError(msg)
        try:
            obstore.put(self.store, key, data)
        except Exception as exc:
            raise self._fail(exc, key) from None
        info = self.head(key)
        if info is None:  # pragma: no cover - a store that lost a completed write
            msg = f"{self.url.child(key)}: the object was not there after writing it"
            raise InputError(msg)
        return info

    def delete(self, key: str) -> None:
        """Delete one object (no error when it is gone already)."""
        obstore = _obstore()
        if self.url.cloud == "http":
            msg = f"{self.url.child(key)}: https:// locations are read only"
            raise InputError(msg)
        try:
            obstore.delete(self.store, key)
        except FileNotFoundError:
            return
        except Exception as exc:
            if type(exc).__name__ == "NotFoundError":
                return
            raise self._fail(exc, key) from None


def open_bucket(url: ObjectUrl, options: StorageOptions | None = None) -> Bucket:
    """The bucket of ``url``, built once per bucket and settings (connections are reused)."""
    return _bucket(url.cloud, url.scheme, url.bucket, url.query, options or StorageOptions())


@functools.lru_cache(maxsize=64)
def _bucket(cloud: Cloud, scheme: str, bucket: str, query: str, options: StorageOptions) -> Bucket:
    url = ObjectUrl(cloud, scheme, bucket, "", query=query)
    if "@" in bucket:
        url = ObjectUrl(cloud, scheme, bucket, "", account=bucket.split("@")[1].split(".")[0])
    try:
        store = _make_store(url, options)
    except (InputError, ConfigError):
        raise
    except Exception as exc:
        raise translate_error(exc, url.root + "/") from None
    return Bucket(url, store)


_RETRY: dict[str, Any] = {
    "max_retries": 3,
    "retry_timeout": dt.timedelta(seconds=30),
    "backoff": {"init_backoff": dt.timedelta(milliseconds=100), "base": 2},
}
_RETRY_ANY: Any = _RETRY


def _client_options(endpoint: str | None) -> dict[str, Any]:
    # obstore's default (30 s for a whole request, body included) is short for a 16 MiB
    # block on a slow link; every request here is one bounded block, never a long stream
    client: dict[str, Any] = {
        "connect_timeout": dt.timedelta(seconds=10),
        "timeout": dt.timedelta(minutes=5),
    }
    if endpoint and endpoint.startswith("http://"):
        client["allow_http"] = True  # loopback only: _check_endpoint refused the rest
    return client


def _make_store(url: ObjectUrl, options: StorageOptions) -> Any:
    obstore = _obstore()
    from obstore import store as stores

    cloud = url.cloud
    endpoint = options.get(cloud, "endpoint")
    if endpoint:
        endpoint = check_endpoint(endpoint, f"{cloud} endpoint")
    anonymous = bool(options.get(cloud, "anonymous"))
    common: dict[str, Any] = {
        "client_options": _client_options(endpoint),
        "retry_config": _RETRY,
    }
    del obstore
    if cloud == "http":
        client: Any = _client_options(url.bucket)
        return stores.HTTPStore.from_url(url.bucket, client_options=client, retry_config=_RETRY_ANY)
    if cloud == "s3":
        kwargs: dict[str, Any] = dict(common)
        region = options.get("s3", "region")
        if endpoint:
            kwargs["endpoint"] = endpoint
        if anonymous:
            kwargs["skip_signature"] = True
        else:
            provider = _aws_credentials(options.get("s3", "profile"))
            if provider is not None:
                kwargs["credential_provider"] = provider
                region = region or provider.config.get("region")
        kwargs["region"] = region or "us-east-1"
        return stores.S3Store(url.container, **kwargs)
    if cloud == "gcs":
        kwargs = dict(common)
        if endpoint:
            kwargs["base_url"] = endpoint
        if anonymous or os.environ.get("STORAGE_EMULATOR_HOST"):
            kwargs["skip_signature"] = True
        return stores.GCSStore(url.container, **kwargs)
    kwargs = dict(common)
    account = url.account or options.get("azure", "account")
    if account:
        kwargs["account_name"] = account
    if endpoint:
        kwargs["endpoint"] = endpoint
    if anonymous:
        kwargs["skip_signature"] = True
    if not account and not os.environ.get("AZURE_STORAGE_USE_EMULATOR"):
        msg = (
            f"{url.root}: no Azure storage account; use abfss://CONTAINER@ACCOUNT.dfs.core."
            'windows.net/..., set AZURE_STORAGE_ACCOUNT_NAME, or account = "NAME" in '
            "[storage.azure]"
        )
        raise ConfigError(msg)
    return stores.AzureStore(url.container, **kwargs)


def _aws_credentials(profile: str | None) -> Any:
    """boto3's credential chain as an obstore provider (None: use obstore's own chain)."""
    try:
        import boto3
        import botocore.exceptions
        from obstore.auth.boto3 import Boto3CredentialProvider
    except ImportError:
        if profile:
            msg = f'AWS profile "{profile}" needs boto3 to read ~/.aws: {INSTALL_HINT}'
            raise ConfigError(msg) from None
        return None
    try:
        return Boto3CredentialProvider(boto3.Session(profile_name=profile))
    except botocore.exceptions.ProfileNotFound:
        msg = f'AWS profile "{profile}" is not in ~/.aws/config or ~/.aws/credentials'
        raise ConfigError(msg) from None
    except ValueError:
        msg = (
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, run "
            'aws configure or aws sso login, or name a profile (profile = "NAME" in '
            "[storage.s3]); for a public bucket set anonymous = true"
        )
        raise InputError(msg) from None
    except botocore.exceptions.BotoCoreError as exc:
        raise translate_error(exc, "AWS credentials") from None
