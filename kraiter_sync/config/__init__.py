"""Settings: flags > environment > kraiter-sync.toml > defaults.

The API key is a secret: it is never part of ``repr()``, never written to state, and
the state that must be keyed by tenant uses :func:`key_fingerprint` instead.

Where a key may come from and go to:

* a key, from a flag, the environment or ``[target].api_key_file``, must look like a
  Kraiter key (``kr_`` then printable ASCII): a file that holds another secret (a
  GitHub token, a password) is refused before anything is sent;
* a base URL carrying a user name or password is refused (the key is the credential);
* a key is never sent to a host that only an *auto-loaded* ``./kraiter-sync.toml`` names
  (a file that came with a checkout, not one the user pointed at) until the user
  confirms that host once: by naming it with ``--base-url`` or ``KRAITER_BASE_URL``, by
  passing the file with ``--config``, or in the user-level config
  (``$XDG_CONFIG_HOME/kraiter-sync/config.toml``, else ``~/.config/…``)::

      [hosts."kraiter.example.eu"]
      trust = true

  Kraiter's own host and loopback addresses need no confirmation.

With neither an API key nor a base URL configured, commands talk to a *local Kraiter*
(the emulator) stored in the state directory: :attr:`Settings.local` is then true.

Where state lives: SQLite files in the state directory by default, or a shared
PostgreSQL store named by a state URL (``--state``, ``KRAITER_SYNC_STATE`` or
``[target].state``): ``postgresql://user@host:5432/db`` (``?schema=NAME``, default
``kraiter_sync``). The URL's password is a secret like the key: never shown (every
message uses :func:`~kraiter_sync.urls.redact_url`), and refused in kraiter-sync.toml.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from kraiter_sync.errors import ConfigError
from kraiter_sync.urls import is_loopback_host, redact_url

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_STATE_DIR",
    "LOCAL_API_KEY",
    "LOCAL_BASE_URL",
    "Settings",
    "check_api_key",
    "check_base_url",
    "check_header_safe_key",
    "check_state_url",
    "describe_target",
    "is_loopback_host",
    "key_fingerprint",
    "load_config_file",
    "resolve_settings",
    "resolve_state_dir",
    "resolve_state_url",
    "split_state_url",
    "state_url_problem",
    "trusted_hosts",
    "user_config_path",
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
ENV_STATE = "KRAITER_SYNC_STATE"
#: The schemes of a state URL (a shared state store); without one, state is SQLite files
#: in the state directory.
STATE_SCHEMES = ("postgresql", "postgres")
#: The PostgreSQL schema the state lives in unless the URL names one (``?schema=NAME``).
DEFAULT_STATE_SCHEMA = "kraiter_sync"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
ENV_TENANT = "KRAITER_TENANT"
ENV_XDG_CONFIG_HOME = "XDG_CONFIG_HOME"
_KEY_PREFIX = "kr_"


def key_fingerprint(api_key: str) -> str:
    """A short, one-way fingerprint of a key: safe to store, useless to an attacker."""
    return hashlib.sha256(b"kraiter-sync/tenant:" + api_key.encode()).hexdigest()[:16]


def _key_problem(key: str) -> str | None:
    """What is wrong with a key, without quoting any of it; None when it looks right."""
    if not key:
        return "is empty"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        return "holds a control character"
    if not key.isascii():
        return "holds a non-ASCII character"
    if any(c.isspace() for c in key):
        return "holds a space"
    if not key.startswith(_KEY_PREFIX):
        return "does not look like a Kraiter key (they start with kr_)"
    return None


def check_api_key(key: str, source: str) -> str:
    """``key`` without surrounding whitespace, if it looks like a Kraiter key (``kr_`` then
    printable ASCII); else a ConfigError naming ``source`` and never quoting the key."""
    key = key.strip()
    problem = _key_problem(key)
    if problem is not None:
        if source.startswith("[target].api_key_file"):
            hint = "is this the right file?"
        else:
            hint = "copy the whole key from Kraiter's settings again"
        msg = f"the API key from {source} {problem}: {hint}"
        raise ConfigError(msg)
    return key


def check_header_safe_key(key: str) -> None:
    """The least a key must be to travel in an ``Authorization`` header (any prefix)."""
    problem = _key_problem(key)
    if problem is not None and not problem.startswith("does not look"):
        msg = f"the API key {problem}; it cannot be sent in a request header"
        raise ConfigError(msg)


def check_base_url(url: str) -> str:
    """Validate and normalise a base URL; plain HTTP is allowed only on loopback, and
    credentials in the URL are refused (the API key is the credential).

    A trailing ``/api`` is removed: the client always adds the ``/api`` prefix itself.
    """
    try:
        parts = urlsplit(url.strip())
        hostname = parts.hostname
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        parts, hostname = None, None
    if parts is None or parts.scheme not in {"http", "https"} or not hostname:
        shown = url if "@" not in url else url.split("://", 1)[0] + "://…"
        msg = (
            f"base URL {shown!r} is not an http(s) URL; pass e.g. "
            "--base-url https://api.kraiter.com"
        )
        raise ConfigError(msg)
    if parts.username is not None or parts.password is not None:
        msg = (
            f"the base URL for {hostname} carries a user name or password before the host: "
            "Kraiter authenticates with the API key alone; remove them from the URL"
        )
        raise ConfigError(msg)
    if parts.scheme == "http" and not is_loopback_host(hostname):
        msg = (
            f"refusing plain http:// for {hostname}: the API key would travel in clear "
            "text. Use https://, or http:// only for a local Kraiter on 127.0.0.1/localhost"
        )
        raise ConfigError(msg)
    path = parts.path.rstrip("/")
    if path.endswith("/api"):
        path = path[: -len("/api")]
    netloc = parts.netloc
    return f"{parts.scheme}://{netloc}{path}"


def state_url_problem(url: str, *, in_file: bool = False) -> str | None:
    """What is wrong with a state URL, never quoting its password; None when it is one
    (``in_file``: written in kraiter-sync.toml, where a password is refused)."""
    text = url.strip()
    scheme, sep, _rest = text.partition("://")
    if not sep:
        return (
            "takes the URL of a shared state store, e.g. postgresql://kraiter@db.internal/"
            "kraiter; for a folder use --state-dir (or KRAITER_SYNC_STATE_DIR)"
        )
    if scheme.lower() not in STATE_SCHEMES:
        return (
            f"{redact_url(text)!r} has the unknown scheme {scheme!r}: a state URL starts with "
            f"{' or '.join(s + '://' for s in STATE_SCHEMES)}; leave it unset to keep state in "
            "SQLite files in the state directory (--state-dir)"
        )
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError as exc:
        return f"{redact_url(text)!r} is not a valid URL ({exc})"
    for name, value in parse_qsl(parts.query):
        if name == "schema" and not _SCHEMA_NAME.match(value):
            return (
                f"schema={value!r} is not a plain PostgreSQL name: use lower-case letters, "
                "digits and _ (e.g. ?schema=kraiter_sync)"
            )
    if in_file and parts.password is not None:
        return (
            "a password does not belong in files that get committed: write the URL without "
            "it and set PGPASSWORD, use ~/.pgpass, or set the whole URL in KRAITER_SYNC_STATE"
        )
    return None


def check_state_url(url: str, source: str = "--state") -> str:
    """A state URL (``postgresql://[user[:password]@]host[:port]/database[?schema=NAME]``),
    stripped; else a ConfigError naming ``source`` and the schemes, never the password."""
    problem = state_url_problem(url, in_file=source.startswith("[target]"))
    if problem is not None:
        sep = " " if problem.startswith("takes") else ": "
        msg = f"{source}{sep}{problem}"
        raise ConfigError(msg)
    return url.strip()


def split_state_url(url: str) -> tuple[str, str]:
    """(the URL as libpq takes it, without our ``schema`` parameter; the schema name)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), DEFAULT_STATE_SCHEMA)
    rest = urlencode([(k, v) for k, v in query if k != "schema"], quote_via=quote)
    return parts._replace(query=rest).geturl(), schema


def user_config_path(env: Mapping[str, str] | None = None) -> Path:
    """The user-level config: ``$XDG_CONFIG_HOME/kraiter-sync/config.toml`` (else
    ``~/.config/kraiter-sync/config.toml``), where hosts are trusted once."""
    environ = os.environ if env is None else env
    base = environ.get(ENV_XDG_CONFIG_HOME) or str(Path.home() / ".config")
    return Path(base) / "kraiter-sync" / "config.toml"


def trusted_hosts(path: Path) -> frozenset[str]:
    """Hosts (``name`` or ``name:port``) marked ``trust = true`` in the user-level config."""
    if not path.is_file():
        return frozenset()
    hosts = load_config_file(path).get("hosts", {})
    if not isinstance(hosts, dict):
        msg = f'{path}: [hosts] must be a table of hosts, e.g. [hosts."kraiter.example.eu"]'
        raise ConfigError(msg)
    trusted = set()
    for host, entry in hosts.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("trust", False), bool):
            msg = f'{path}: hosts."{host}" must be a table with trust = true or false'
            raise ConfigError(msg)
        if entry.get("trust"):
            trusted.add(str(host).strip().lower())
    return frozenset(trusted)


def _host_of(url: str) -> tuple[str, str]:
    """(host, host:port) of a checked base URL, lower case."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return host, f"{host}:{parts.port}" if parts.port else host


def _check_trusted(url: str, env: Mapping[str, str]) -> None:
    """A host named only by the auto-loaded ./kraiter-sync.toml needs the user's word."""
    host, host_port = _host_of(url)
    if host == _host_of(DEFAULT_BASE_URL)[0] or is_loopback_host(host):
        return
    path = user_config_path(env)
    if {host, host_port} & trusted_hosts(path):
        return
    msg = (
        f"refusing to send the API key to {host_port}: only ./{DEFAULT_CONFIG_FILE}, which "
        "kraiter-sync reads from the current directory by itself, names that host. If you "
        f"trust it, confirm it once: pass --base-url {url} (or set {ENV_BASE_URL}), pass "
        f"--config {DEFAULT_CONFIG_FILE}, or add it to {path}: "
        f'[hosts."{host_port}"] trust = true'
    )
    raise ConfigError(msg)


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
    #: Accept a new key for :attr:`tenant` (a rotation): the ledger binds a tenant name to
    #: the key it was first used with and refuses another one otherwise.
    tenant_rotate: bool = False
    #: The shared state store (``postgresql://…``); None: SQLite in :attr:`state_dir`. It
    #: may hold a password: show :attr:`state_display`, never this.
    state_url: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        state = f", state={self.state_display!r}" if self.state_url else ""
        return (
            f"Settings(base_url={self.base_url!r}, api_key='{mask_key(self.api_key)}', "
            f"state_dir={str(self.state_dir)!r}{state}, local={self.local!r}, "
            f"tenant={self.tenant!r}{', tenant_rotate=True' if self.tenant_rotate else ''})"
        )

    @property
    def state_display(self) -> str:
        """Where state lives, safe to print: the state URL without its password, or the
        state directory."""
        return redact_url(self.state_url) if self.state_url else str(self.state_dir)

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


def describe_target(settings: Settings) -> dict[str, Any]:
    """Which Kraiter a command talks to, safe to print: the host (the local Kraiter's
    file), the tenant (its ``--tenant`` name, else the key's one-way fingerprint), never
    the key. ``display`` is the one-line form."""
    tenant = settings.tenant or key_fingerprint(settings.api_key)
    how = "tenant" if settings.tenant else "key fingerprint"
    if settings.local:
        return {
            "host": None,
            "local": str(settings.local_db),
            "tenant": tenant,
            "display": f"the local Kraiter in {settings.local_db} (no KRAITER_API_KEY or "
            "KRAITER_BASE_URL set: set both to talk to your real account)",
        }
    host = urlsplit(settings.base_url).netloc
    return {
        "host": host,
        "local": None,
        "tenant": tenant,
        "display": f"{settings.base_url} ({how} {tenant})",
    }


def mask_key(api_key: str | None) -> str:
    """``kr_…`` with everything else hidden; used wherever a key must be mentioned."""
    if not api_key:
        return "<none>"
    return f"{api_key[:3]}…" if api_key.startswith("kr_") else "…"


def _target_table(config: Mapping[str, Any] | None) -> dict[str, Any]:
    target = (config or {}).get("target", {})
    if not isinstance(target, Mapping):
        msg = "[target] must be a table (base_url, api_key_file, state_dir, state, tenant)"
        raise ConfigError(msg)
    return dict(target)


def resolve_state_dir(
    state_dir: Path | str | None = None,
    *,
    config: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Path:
    """The state directory alone (flag > environment > ``[target].state_dir`` > default),
    for commands that send nothing and so need neither a key nor a host."""
    environ = os.environ if env is None else env
    if state_dir not in (None, ""):
        return Path(state_dir)
    if environ.get(ENV_STATE_DIR):
        return Path(environ[ENV_STATE_DIR])
    value = _target_table(config).get("state_dir")
    if value is not None and not isinstance(value, str):
        msg = f"[target].state_dir must be a string, got {type(value).__name__}"
        raise ConfigError(msg)
    return Path(value) if value else DEFAULT_STATE_DIR


def resolve_state_url(
    state: str | None = None,
    *,
    config: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> str | None:
    """The state URL alone (flag > environment > ``[target].state``), checked; None when
    state stays in SQLite files in the state directory."""
    environ = os.environ if env is None else env
    if state not in (None, ""):
        return check_state_url(str(state), "--state")
    if environ.get(ENV_STATE):
        return check_state_url(environ[ENV_STATE], ENV_STATE)
    value = _target_table(config).get("state")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        msg = f"[target].state must be a string, got {type(value).__name__}"
        raise ConfigError(msg)
    return check_state_url(value, "[target].state")


def resolve_settings(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    state_dir: Path | str | None = None,
    tenant: str | None = None,
    config: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_auto_loaded: bool = False,
    tenant_rotate: bool = False,
    state: str | None = None,
) -> Settings:
    """Combine flags (the keyword arguments), environment and the ``[target]`` table.

    With no key and no base URL from any source, the result points at the local
    Kraiter in the state directory (``Settings.local``). ``config_auto_loaded`` says
    that ``config`` is ./kraiter-sync.toml found in the current directory rather than
    a file the user named: a host only it names must then be trusted (module docstring).
    """
    environ = os.environ if env is None else env
    target = _target_table(config)

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
    key: str | None = None
    if api_key:
        key = check_api_key(api_key, "--api-key")
    elif environ.get(ENV_API_KEY):
        key = check_api_key(environ[ENV_API_KEY], ENV_API_KEY)
    elif target.get("api_key_file"):
        key_path = Path(str(target["api_key_file"])).expanduser()
        try:
            text = key_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not a text file"
            msg = f"[target].api_key_file {key_path} cannot be read: {reason}"
            raise ConfigError(msg) from None
        key = check_api_key(text, f"[target].api_key_file {key_path}")
    url = pick(base_url, ENV_BASE_URL, "base_url")
    url_from_file = base_url in (None, "") and not environ.get(ENV_BASE_URL) and url is not None
    directory = resolve_state_dir(state_dir, config=config, env=environ)
    state_url = resolve_state_url(state, config=config, env=environ)
    tenant_name = pick(tenant, ENV_TENANT, "tenant")

    if key is None and url is None:
        return Settings(
            base_url=LOCAL_BASE_URL,
            api_key=LOCAL_API_KEY,
            state_dir=directory,
            local=True,
            tenant=tenant_name,
            state_url=state_url,
        )
    if key is None:
        msg = "no API key: set KRAITER_API_KEY or pass --api-key (keys start with kr_)"
        raise ConfigError(msg)
    checked = check_base_url(url or DEFAULT_BASE_URL)
    if url_from_file and config_auto_loaded:
        _check_trusted(checked, environ)
    return Settings(
        base_url=checked,
        api_key=key,
        state_dir=directory,
        local=False,
        tenant=tenant_name,
        tenant_rotate=tenant_rotate,
        state_url=state_url,
    )
