"""The ``[storage]`` table of kraiter-sync.toml: where and how to reach each cloud
(endpoints, regions, profiles), never a secret."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kraiter_sync.errors import ConfigError
from kraiter_sync.urls import Cloud, is_loopback_host

__all__ = ["StorageOptions", "check_endpoint"]

_TABLES: dict[str, Cloud] = {"s3": "s3", "gcs": "gcs", "azure": "azure"}
_ALLOWED: dict[Cloud, frozenset[str]] = {
    "s3": frozenset({"endpoint", "region", "profile", "anonymous"}),
    "gcs": frozenset({"endpoint", "anonymous"}),
    "azure": frozenset({"account", "endpoint", "anonymous"}),
    "http": frozenset(),
}
_SECRET_WORDS = re.compile(r"secret|key|token|password|passwd|sas|credential|signature", re.I)
_SECRET_HINTS: dict[Cloud, str] = {
    "s3": "set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the environment, or name a "
    'profile (profile = "NAME") from ~/.aws/config',
    "gcs": "set GOOGLE_APPLICATION_CREDENTIALS to a key file, or run gcloud auth "
    "application-default login",
    "azure": "set the AZURE_* variables (e.g. AZURE_STORAGE_SAS_KEY) in the environment, "
    "or sign in with az login",
    "http": "",
}


@dataclass(frozen=True)
class StorageOptions:
    """Where and how to reach each cloud: endpoints, regions, profiles, no secrets."""

    s3: tuple[tuple[str, Any], ...] = ()
    gcs: tuple[tuple[str, Any], ...] = ()
    azure: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None, *, where: str = "") -> StorageOptions:
        """The ``[storage]`` table of a parsed kraiter-sync.toml (every problem: ConfigError)."""
        table = (config or {}).get("storage", {})
        return cls.from_table(table, where=where or "[storage]")

    @classmethod
    def from_table(cls, table: Any, *, where: str = "[storage]") -> StorageOptions:
        if not isinstance(table, Mapping):
            msg = f"{where} must be a table ([storage.s3], [storage.gcs], [storage.azure])"
            raise ConfigError(msg)
        values: dict[str, tuple[tuple[str, Any], ...]] = {}
        for name, sub in table.items():
            cloud = _TABLES.get(name)
            if cloud is None:
                msg = f"{where}.{name}: unknown storage table; use s3, gcs or azure"
                raise ConfigError(msg)
            if not isinstance(sub, Mapping):
                msg = f"{where}.{name} must be a table"
                raise ConfigError(msg)
            items = []
            for key, value in sub.items():
                at = f"{where}.{name}.{key}"
                if _SECRET_WORDS.search(key):
                    msg = (
                        f"{at} is not allowed in kraiter-sync.toml: secrets do not belong in "
                        f"files that get committed. {_SECRET_HINTS[cloud]}"
                    )
                    raise ConfigError(msg)
                if key not in _ALLOWED[cloud]:
                    allowed = ", ".join(sorted(_ALLOWED[cloud]))
                    msg = f"{at}: unknown setting; {name} takes {allowed}"
                    raise ConfigError(msg)
                if key == "anonymous":
                    if not isinstance(value, bool):
                        msg = f"{at} must be true or false"
                        raise ConfigError(msg)
                elif not isinstance(value, str) or not value:
                    msg = f"{at} must be a non-empty string"
                    raise ConfigError(msg)
                if key == "endpoint":
                    check_endpoint(value, at)
                items.append((key, value))
            values[name] = tuple(sorted(items))
        return cls(**values)

    def get(self, cloud: Cloud, key: str, env: Mapping[str, str] | None = None) -> Any:
        """A setting: the cloud's standard environment variable first, then the file."""
        environ = os.environ if env is None else env
        for name in _ENV.get((cloud, key), ()):
            if environ.get(name):
                return environ[name]
        return dict(getattr(self, cloud, ())).get(key)


_ENV: dict[tuple[Cloud, str], tuple[str, ...]] = {
    ("s3", "endpoint"): ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    ("s3", "region"): ("AWS_REGION", "AWS_DEFAULT_REGION"),
    ("s3", "profile"): ("AWS_PROFILE",),
    ("gcs", "endpoint"): ("STORAGE_EMULATOR_HOST",),
    ("azure", "account"): ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT"),
    ("azure", "endpoint"): ("AZURITE_BLOB_STORAGE_URL", "AZURE_STORAGE_ENDPOINT"),
}


def check_endpoint(value: str, at: str) -> str:
    parts = urlsplit(value if "://" in value else f"http://{value}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        msg = f"{at}: {value!r} is not an http(s) URL; e.g. https://minio.example.com"
        raise ConfigError(msg)
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        msg = (
            f"{at}: plain http:// is refused for {parts.hostname} (data and signatures would "
            "travel in clear text); use https://, or http:// only on 127.0.0.1/localhost"
        )
        raise ConfigError(msg)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
