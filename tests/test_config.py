from __future__ import annotations

from pathlib import Path

import pytest

from kraiter_sync.config import (
    LOCAL_BASE_URL,
    check_base_url,
    key_fingerprint,
    resolve_settings,
)
from kraiter_sync.errors import ConfigError

KEY = "kr_live_abcdefghijklmnopqrstuvwxyz"


def test_flags_beat_environment_beat_config() -> None:
    config = {"target": {"base_url": "https://config.example.com"}}
    env = {"KRAITER_API_KEY": "kr_env", "KRAITER_BASE_URL": "https://env.example.com"}
    assert resolve_settings(config=config, env={"KRAITER_API_KEY": KEY}).base_url == (
        "https://config.example.com"
    )
    assert resolve_settings(config=config, env=env).base_url == "https://env.example.com"
    flagged = resolve_settings(api_key=KEY, base_url="https://flag.example.com", env=env)
    assert flagged.base_url == "https://flag.example.com"
    assert flagged.api_key == KEY


def test_no_key_and_no_url_means_local_kraiter(tmp_path: Path) -> None:
    settings = resolve_settings(state_dir=tmp_path, env={})
    assert settings.local
    assert settings.base_url == LOCAL_BASE_URL
    assert settings.local_db == tmp_path / "local-kraiter.db"


def test_base_url_without_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="KRAITER_API_KEY"):
        resolve_settings(base_url="https://api.kraiter.com", env={})


def test_repr_and_target_never_contain_the_key() -> None:
    settings = resolve_settings(api_key=KEY, env={})
    assert KEY not in repr(settings)
    assert KEY not in settings.target
    assert key_fingerprint(KEY) in settings.target
    assert "kr_…" in repr(settings)


def test_inline_key_in_config_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"\[target\]\.api_key is not allowed"):
        resolve_settings(config={"target": {"api_key": KEY}}, env={})


def test_key_file_reference_is_read(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    settings = resolve_settings(config={"target": {"api_key_file": str(key_file)}}, env={})
    assert settings.api_key == KEY
    assert not settings.local


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.kraiter.com", "https://api.kraiter.com"),
        ("https://api.kraiter.com/", "https://api.kraiter.com"),
        ("https://api.kraiter.com/api", "https://api.kraiter.com"),
        ("http://127.0.0.1:8787", "http://127.0.0.1:8787"),
        ("http://localhost:8787/api/", "http://localhost:8787"),
        ("http://[::1]:8787", "http://[::1]:8787"),
    ],
)
def test_base_url_normalised(url: str, expected: str) -> None:
    assert check_base_url(url) == expected


@pytest.mark.parametrize(
    "url", ["http://api.kraiter.com", "http://10.0.0.5:8787", "ftp://x", "not a url"]
)
def test_plain_http_off_loopback_and_junk_refused(url: str) -> None:
    with pytest.raises(ConfigError):
        check_base_url(url)
