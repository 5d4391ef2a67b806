"""URLs the tool is given: object-store and database sources, hosts, and keeping their
secrets out of what is shown or stored.

A URL's query string is never shown or stored: signed URLs (``X-Amz-Signature``), Azure
SAS tokens (``sig=``) and GCS signatures all travel there. :func:`redact` removes it
from a URL or from any text (an error message from the library) that may quote one.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from kraiter_sync.errors import InputError

__all__ = [
    "SQL_SCHEMES",
    "Cloud",
    "ObjectUrl",
    "SqlDialect",
    "is_loopback_host",
    "is_object_url",
    "is_sql_url",
    "parse_url",
    "redact",
    "redact_url",
]

Cloud = Literal["s3", "gcs", "azure", "http"]
SqlDialect = Literal["postgresql", "duckdb", "sqlite"]
SQL_SCHEMES: dict[str, SqlDialect] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "duckdb": "duckdb",
    "sqlite": "sqlite",
}

_SCHEMES: dict[str, Cloud] = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "az": "azure",
    "azure": "azure",
    "abfs": "azure",
    "abfss": "azure",
    "https": "http",
    "http": "http",
}
_QUERY = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s?\"'<>]*)\?[^\s\"'<>]*", re.IGNORECASE)
_SECRET_PARAMS = re.compile(
    r"\b(x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|"
    r"x-goog-credential|sig|signature|se|sv|sp|token|access_token)=[^\s&\"'<>]*",
    re.IGNORECASE,
)


def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_sql_url(text: str) -> bool:
    """Whether a job's ``source`` names a database (``scheme://``) rather than files."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() in SQL_SCHEMES


def redact_url(url: str) -> str:
    """The URL with any password removed (``postgresql://me@host/db``): safe to print."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url.split("://", 1)[0] + "://…"
    if password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    user = quote(unquote(parts.username or ""), safe="")
    netloc = f"{user}@{host}" if user else host
    with contextlib.suppress(ValueError):
        if parts.port is not None:
            netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def is_object_url(text: object) -> bool:
    """True for ``s3://``, ``gs://``, ``az://``, ``abfss://``, ``https://`` (and loopback
    ``http://``) strings: the inputs read through object storage."""
    if not isinstance(text, str) or "://" not in text:
        return False
    return text.split("://", 1)[0].lower() in _SCHEMES


def redact(text: str) -> str:
    """``text`` with every URL's query string and every signature-like parameter removed."""
    text = _QUERY.sub(lambda m: m.group(1) + "?…", text)
    return _SECRET_PARAMS.sub(lambda m: m.group(1) + "=…", text)


@dataclass(frozen=True)
class ObjectUrl:
    """One object URL, split: ``cloud`` decides the store; ``bucket`` is the bucket, the
    container (``container@host`` for abfss) or ``scheme://host`` for https."""

    cloud: Cloud
    scheme: str
    bucket: str
    key: str
    #: The Azure storage account when the URL names it (abfss://container@account...).
    account: str | None = None
    #: A signed https URL's query string: sent with the request, never shown or stored.
    query: str = field(default="", repr=False)

    @property
    def container(self) -> str:
        """The bucket or container name alone (without ``@host`` for abfss)."""
        return self.bucket.split("@", 1)[0]

    @property
    def root(self) -> str:
        """The URL of the bucket itself (no key, no query)."""
        if self.cloud == "http":
            return self.bucket
        return f"{self.scheme}://{self.bucket}"

    def child(self, key: str) -> str:
        """The display URL of ``key`` in this bucket (what ``source_file`` holds)."""
        return f"{self.root}/{key}"

    @property
    def display(self) -> str:
        return self.child(self.key)


def parse_url(text: str) -> ObjectUrl:
    """Split an object URL. Plain ``http://`` is accepted only for loopback hosts."""
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    cloud = _SCHEMES.get(scheme)
    if cloud is None or not parts.netloc or not parts.hostname:
        msg = f"{redact(text)}: not an object URL; use s3://, gs://, az://, abfss:// or https://"
        raise InputError(msg)
    key = unquote(parts.path.lstrip("/"))
    if cloud == "http":
        if scheme == "http" and not is_loopback_host(parts.hostname):
            msg = (
                f"{redact(text)}: plain http:// is refused for {parts.hostname} (data and "
                "signatures would travel in clear text); use https://"
            )
            raise InputError(msg)
        return ObjectUrl("http", scheme, f"{scheme}://{parts.netloc}", key, query=parts.query)
    if parts.query:
        msg = (
            f"{redact(text)}: a {scheme}:// URL takes no query string; credentials come from "
            "the environment, a profile or the machine's identity"
        )
        raise InputError(msg)
    account = None
    if cloud == "azure" and "@" in parts.netloc:
        account = parts.netloc.split("@", 1)[1].split(".", 1)[0] or None
    return ObjectUrl(cloud, scheme, parts.netloc, key, account=account)
