from __future__ import annotations

from pathlib import Path

import pytest

from kraiter_sync.config import (
    LOCAL_BASE_URL,
    check_base_url,
    key_fingerprint,
    resolve_settings,
    resolve_state_url,
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


# -- what a key may be, and where it may go ---------------------------------------------

GITHUB_TOKEN = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (GITHUB_TOKEN, "does not look like a Kraiter key"),
        ("kr_ab\x07cd", "holds a control character"),
        ("kr_ab\ncd", "holds a control character"),
        ("kr_abçd", "holds a non-ASCII character"),
        ("kr_ab cd", "holds a space"),
    ],
)
def test_keys_must_look_like_kraiter_keys_from_every_source(
    tmp_path: Path, key: str, problem: str
) -> None:
    key_file = tmp_path / "notakey.txt"
    key_file.write_text(key + "\n", encoding="utf-8")
    for kwargs, source in (
        ({"api_key": key, "env": {}}, "--api-key"),
        ({"env": {"KRAITER_API_KEY": key}}, "KRAITER_API_KEY"),
        (
            {"config": {"target": {"api_key_file": str(key_file)}}, "env": {}},
            f"[target].api_key_file {key_file}",
        ),
    ):
        with pytest.raises(ConfigError) as caught:
            resolve_settings(**kwargs)  # type: ignore[arg-type]
        message = str(caught.value)
        assert source in message
        assert problem in message
        assert key.strip() not in message
        assert key.strip()[4:] not in message


def test_surrounding_whitespace_of_a_key_is_ignored() -> None:
    assert resolve_settings(env={"KRAITER_API_KEY": f" {KEY}\n"}).api_key == KEY


@pytest.mark.parametrize(
    "url",
    ["http://user:pw@127.0.0.1:8787", "https://me:s3cret@api.kraiter.com", "https://tok@x.io"],
)
def test_credentials_in_the_base_url_are_refused(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_base_url(url)
    message = str(caught.value)
    assert "user name or password" in message
    assert "pw" not in message
    assert "s3cret" not in message
    assert "tok" not in message


def test_a_client_refuses_a_key_that_cannot_be_a_header() -> None:
    from kraiter_sync.api.client import KraiterClient

    with pytest.raises(ConfigError, match="control character") as caught:
        KraiterClient("https://api.kraiter.com", "kr_ab\r\nX-Evil: 1")
    assert "X-Evil" not in str(caught.value)


# -- CLI: a key is never sent to a host only ./kraiter-sync.toml names -------------------


def _cli(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str, object]:
    from click.testing import CliRunner

    from kraiter_sync.cli import main

    result = CliRunner().invoke(main, args, env=env)
    return result.exit_code, result.stdout, result.stderr, result.exception


def _untrusted_config(directory: Path, host: str = "kraiter.invalid") -> Path:
    config = directory / "kraiter-sync.toml"
    config.write_text(f'[target]\nbase_url = "https://{host}"\n')
    return config


def test_api_key_file_holding_another_secret_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notakey.txt").write_text(GITHUB_TOKEN + "\n")
    (tmp_path / "kraiter-sync.toml").write_text(
        '[target]\nbase_url = "https://api.kraiter.com"\napi_key_file = "notakey.txt"\n'
    )
    (tmp_path / "c.csv").write_text("email\na@example.com\n")
    code, out, err, exc = _cli(["import", "c.csv", "--state-dir", str(tmp_path / "st")])
    assert code == 2
    assert isinstance(exc, SystemExit)
    assert err.splitlines()[-1] == (
        "error: the API key from [target].api_key_file notakey.txt does not look like a "
        "Kraiter key (they start with kr_): is this the right file?"
    )
    assert GITHUB_TOKEN not in out + err
    assert not (tmp_path / "st" / "ledger.db").exists()


@pytest.mark.parametrize("command", ["import", "export", "sync"])
def test_a_host_named_only_by_the_auto_loaded_config_gets_no_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.csv").write_text("email\na@example.com\n")
    (tmp_path / "kraiter-sync.toml").write_text(
        '[target]\nbase_url = "https://kraiter.invalid"\n'
        '[jobs.c]\nsource = "c.csv"\nkind = "contacts"\n'
    )
    args = {
        "import": ["import", "c.csv", "--max-retries", "0"],
        "export": ["export", "contacts", "--out", "exports", "--max-retries", "0"],
        "sync": ["sync", "--check"],
    }[command]
    code, out, err, exc = _cli(
        [*args, "--state-dir", str(tmp_path / "st")], env={"KRAITER_API_KEY": KEY}
    )
    assert code == 2, err
    assert isinstance(exc, SystemExit)
    message = err.splitlines()[-1]
    assert message.startswith(
        "error: refusing to send the API key to kraiter.invalid: only ./kraiter-sync.toml, "
        "which kraiter-sync reads from the current directory by itself, names that host."
    )
    assert "pass --base-url https://kraiter.invalid (or set KRAITER_BASE_URL)" in message
    assert "pass --config kraiter-sync.toml" in message
    assert message.endswith('config.toml: [hosts."kraiter.invalid"] trust = true')
    assert "cannot reach Kraiter" not in err  # no request was attempted
    assert KEY not in out + err


def test_commands_that_send_nothing_work_beside_such_a_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _untrusted_config(tmp_path)
    (tmp_path / "c.csv").write_text("email\na@example.com\n")
    env = {"KRAITER_API_KEY": KEY}
    state = ["--state-dir", str(tmp_path / "st")]
    assert _cli(["runs", *state], env=env)[:2] == (0, "no runs yet\n")
    code, out, err, _exc = _cli(["validate", "c.csv", *state], env=env)
    assert code == 0, err
    assert "1 contacts rows read: 1 valid" in out


def test_the_confirmed_host_is_where_the_key_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --config the file is the user's word: the run goes on to reach the host (it
    cannot: .invalid never resolves)."""
    monkeypatch.chdir(tmp_path)
    _untrusted_config(tmp_path)
    (tmp_path / "c.csv").write_text("email\na@example.com\n")
    code, _out, err, _exc = _cli(
        ["import", "c.csv", "--config", "kraiter-sync.toml", "--max-retries", "0"],
        env={"KRAITER_API_KEY": KEY, "KRAITER_SYNC_STATE_DIR": str(tmp_path / "st")},
    )
    assert code == 4
    assert "cannot reach Kraiter" in err
    assert "kraiter.invalid" in err


@pytest.mark.parametrize("how", ["flag", "env", "named-file", "user-config", "default", "loop"])
def test_confirming_the_host_once_lets_the_key_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    import os

    url = {"default": "https://api.kraiter.com", "loop": "http://127.0.0.1:8787"}.get(
        how, "https://kraiter.invalid"
    )
    config = {"target": {"base_url": url}}
    kwargs: dict[str, object] = {"config": config, "config_auto_loaded": True}
    env = {"KRAITER_API_KEY": KEY, "XDG_CONFIG_HOME": os.environ["XDG_CONFIG_HOME"]}
    if how not in ("default", "loop"):  # Kraiter's own host and loopback need no word
        with pytest.raises(ConfigError, match="refusing to send the API key"):
            resolve_settings(config=config, config_auto_loaded=True, env=dict(env))
    if how == "flag":
        kwargs["base_url"] = url
    elif how == "env":
        env["KRAITER_BASE_URL"] = url
    elif how == "named-file":
        kwargs["config_auto_loaded"] = False
    elif how == "user-config":
        user = Path(os.environ["XDG_CONFIG_HOME"]) / "kraiter-sync" / "config.toml"
        user.parent.mkdir(parents=True)
        user.write_text('[hosts."kraiter.invalid"]\ntrust = true\n[hosts."other.example"]\n')
    assert resolve_settings(env=env, **kwargs).base_url == url  # type: ignore[arg-type]


def test_a_damaged_user_config_is_named(tmp_path: Path) -> None:
    user = tmp_path / "xdg" / "kraiter-sync" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text("[hosts\n")
    with pytest.raises(ConfigError, match=rf"{user} is not valid TOML"):
        resolve_settings(
            config={"target": {"base_url": "https://kraiter.invalid"}},
            config_auto_loaded=True,
            env={"KRAITER_API_KEY": KEY, "XDG_CONFIG_HOME": str(tmp_path / "xdg")},
        )


def test_credentials_in_base_url_are_a_clear_error_and_nothing_is_recorded(
    tmp_path: Path,
) -> None:
    src = tmp_path / "c.csv"
    src.write_text("email\na@example.com\n")
    state = tmp_path / "st"
    code, out, err, exc = _cli(
        ["import", str(src), "--base-url", "http://user:pw@127.0.0.1:9", "--state-dir", str(state)],
        env={"KRAITER_API_KEY": KEY},
    )
    assert code == 2
    assert isinstance(exc, SystemExit)
    assert err.splitlines()[-1] == (
        "error: the base URL for 127.0.0.1 carries a user name or password before the host: "
        "Kraiter authenticates with the API key alone; remove them from the URL"
    )
    assert "pw" not in out + err
    assert not (state / "ledger.db").exists()


def test_a_key_with_a_control_character_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "c.csv"
    src.write_text("email\na@example.com\n")
    code, _out, err, exc = _cli(
        ["import", str(src), "--state-dir", str(tmp_path / "st")],
        env={"KRAITER_API_KEY": "kr_ab\x1bcd", "KRAITER_BASE_URL": "http://127.0.0.1:9"},
    )
    assert code == 2
    assert isinstance(exc, SystemExit)
    assert "holds a control character" in err
    assert "Traceback" not in err


# -- where state lives: --state > KRAITER_SYNC_STATE > [target].state -------------------


def test_the_state_url_comes_from_the_flag_then_the_environment_then_the_file() -> None:
    flag, env, file = (f"postgresql://kraiter@{h}/kraiter" for h in ("flag", "env", "file"))
    config = {"target": {"state": file}}
    environ = {"KRAITER_SYNC_STATE": env}
    assert resolve_state_url(flag, config=config, env=environ) == flag
    assert resolve_state_url(None, config=config, env=environ) == env
    assert resolve_state_url(None, config=config, env={}) == file
    assert resolve_state_url(None, config={}, env={}) is None  # SQLite in --state-dir
    settings = resolve_settings(state_dir="st", state=flag, env={})
    assert (settings.state_url, settings.state_dir) == (flag, Path("st"))
    assert resolve_settings(state_dir="st", env={}).state_url is None


@pytest.mark.parametrize(
    ("value", "source", "expected"),
    [
        ("redis://u:hunter2@h/0", "KRAITER_SYNC_STATE", "has the unknown scheme 'redis'"),
        ("sqlite:///x.db", "--state", "starts with postgresql:// or postgres://"),
        (".kraiter-sync", "--state", "for a folder use --state-dir"),
        ("postgresql://u:hunter2@h:99999/d", "--state", "is not a valid URL"),
        ("postgresql://u@h/d?schema=Bad-Name", "--state", "is not a plain PostgreSQL name"),
    ],
)
def test_a_bad_state_url_names_its_source_and_never_its_password(
    value: str, source: str, expected: str
) -> None:
    flag = value if source == "--state" else None
    environ = {} if flag else {"KRAITER_SYNC_STATE": value}
    with pytest.raises(ConfigError) as info:
        resolve_state_url(flag, env=environ)
    assert str(info.value).startswith(source)
    assert expected in str(info.value)
    assert "hunter2" not in str(info.value)
    assert info.value.exit_code == 2
