"""Settings: flags > environment > kraiter-sync.toml > defaults.

The API key is a secret: it is never part of ``repr()``, never written to state, and
the state that must be keyed by tenant uses :func:`key_fingerprint` instead.

With neither an API key nor a base URL configured, commands talk to a *local Kraiter*
(the emulator) stored in the state directory: :attr:`Settings.local` is then true.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kraiter_sync.errors import ConfigError

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_STATE_DIR",
    "LOCAL_API_KEY",
    "LOCAL_BASE_URL",
    "Settings",
    "check_base_url",
    "is_loopback_host",
    "key_fingerprint",
    "load_config_file",
    "resolve_settings",
]

DEFAULT_BASE_URL = "https://api.kraiter.com"
DEFAULT_STATE_DIR = Path(".kraiter-sync")
DEFAULT_CONFIG_FILE = Path("kraiter-sync.toml")
#: The base URL under which the in-process local Kraiter is addressed.
LOCAL_BASE_URL = "http://local.kraiter"
#: The key used against the local Kraiter (any ``kr_`` key is a tenant there).
LOCAL_API_KEY = "kr_local"

ENV_API_KEY = "KRAITER_API_KEY"
ENV_BASE_URL = "KRAITER_BASE_URL"
ENV_STATE_DIR = "KRAITER_SYNC_STATE_DIR"
ENV_TENANT = "KRAITER_TENANT"


def key_fingerprint(api_key: str) -> str:
    """A short, one-way fingerprint of a key: safe to store, useless to an attacker."""
    return hashlib.sha256(b"kraiter-sync/tenant:" + api_key.encode()).hexdigest()[:16]


def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(url: str) -> str:
    """Validate and normalise a base URL; plain HTTP is allowed only on loopback.

    A trailing ``/api`` is removed: the client always adds the ``/api`` prefix itself.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        msg = (
            f"base URL {url!r} is not an http(s) URL; pass e.g. --base-url https://api.kraiter.com"
        )
        raise ConfigError(msg)
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        msg = (
            f"refusing plain http:// for {parts.hostname}: the API key would travel in clear "
            "text. Use https://, or http:// only for a local Kraiter on 127.0.0.1/localhost"
        )
        raise ConfigError(msg)
    path = parts.path.rstrip("/")
    if path.endswith("/api"):
        path = path[: -len("/api")]
    netloc = parts.netloc
    return f"{parts.scheme}://{netloc}{path}"


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a kraiter-sync.toml; a syntax error is a ConfigError naming the line."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        msg = f"config file {path} does not exist; create it or drop --config"
        raise ConfigError(msg) from None
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path} is not valid TOML: {exc}"
        raise ConfigError(msg) from None
    except OSError as exc:
        msg = f"cannot read config file {path}: {exc.strerror}"
        raise ConfigError(msg) from None


@dataclass(frozen=True)
class Settings:
    """Where to send, with which key, and where state lives. ``repr()`` masks the key."""

    base_url: str
    api_key: str = field(repr=False)
    state_dir: Path = DEFAULT_STATE_DIR
    #: True when talking to the local Kraiter stored in the state directory.
    local: bool = False
    #: Overrides the key fingerprint in the target identity (use it when rotating keys).
    tenant: str | None = None

    def __repr__(self) -> str:
        return (
            f"Settings(base_url={self.base_url!r}, api_key='{mask_key(self.api_key)}', "
            f"state_dir={str(self.state_dir)!r}, local={self.local!r}, tenant={self.tenant!r})"
        )

    @property
    def local_db(self) -> Path:
        """The SQLite file of the local Kraiter (used when :attr:`local` is true)."""
        return self.state_dir / "local-kraiter.db"

    @property
    def ledger_path(self) -> Path:
        return self.state_dir / "ledger.db"

    @property
    def target(self) -> str:
        """The identity state is keyed by: base URL + tenant, never the key itself."""
        tenant = self.tenant or key_fingerprint(self.api_key)
        base = f"local:{self.local_db.resolve()}" if self.local else self.base_url
        return f"{base}#{tenant}"


def mask_key(api_key: str | None) -> str:
    """``kr_…`` with everything else hidden; used wherever a key must be mentioned."""
    if not api_key:
        return "<none>"
    return f"{api_key[:3]}…" if api_key.startswith("kr_") else "…"


def resolve_settings(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    state_dir: Path | str | None = None,
    tenant: str | None = None,
    config: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Combine flags (the keyword arguments), environment and the ``[target]`` table.

    With no key and no base URL from any source, the result points at the local
    Kraiter in the state directory (``Settings.local``).
    """
    environ = os.environ if env is None else env
    target = dict((config or {}).get("target", {}))

    def pick(flag: str | Path | None, env_name: str, key: str) -> str | None:
        if flag not in (None, ""):
            return str(flag)
        if environ.get(env_name):
            return environ[env_name]
        value = target.get(key)
        if value is not None and not isinstance(value, str):
            msg = f"[target].{key} must be a string, got {type(value).__name__}"
            raise ConfigError(msg)
        return value

    if "api_key" in target:
        msg = (
            "[target].api_key is not allowed in kraiter-sync.toml: keys do not belong in "
            'files that get committed. Set KRAITER_API_KEY, or use api_key_file = "PATH"'
        )
        raise ConfigError(msg)
    key = api_key or environ.get(ENV_API_KEY) or None
    if key is None and target.get("api_key_file"):
        key_path = Path(str(target["api_key_file"])).expanduser()
        try:
            key = key_path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            msg = f"[target].api_key_file {key_path} cannot be read: {exc.strerror}"
            raise ConfigError(msg) from None
    url = pick(base_url, ENV_BASE_URL, "base_url")
    state = Path(pick(state_dir, ENV_STATE_DIR, "state_dir") or DEFAULT_STATE_DIR)
    tenant_name = pick(tenant, ENV_TENANT, "tenant")

    if key is None and url is None:
        return Settings(
            base_url=LOCAL_BASE_URL,
            api_key=LOCAL_API_KEY,
            state_dir=state,
            local=True,
            tenant=tenant_name,
        )
    if key is None:
        msg = "no API key: set KRAITER_API_KEY or pass --api-key (keys start with kr_)"
        raise ConfigError(msg)
    return Settings(
        base_url=check_base_url(url or DEFAULT_BASE_URL),
        api_key=key,
        state_dir=state,
        local=False,
        tenant=tenant_name,
    )
