"""The emulator over real HTTP on free loopback ports, and the ``emulator`` command."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from kraiter_sync.cli import main
from kraiter_sync.emulator import EmulatorConfig, create_app, serve_in_thread
from tests.helpers.emulator import KEY_A, KEY_B

A = {"Authorization": f"Bearer {KEY_A}"}
B = {"Authorization": f"Bearer {KEY_B}"}


def test_served_contacts_events_and_isolation() -> None:
    with serve_in_thread(EmulatorConfig()) as url, httpx.Client(base_url=url) as http:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        created = http.post("/api/contacts", json={"email": "h@example.com"}, headers=A)
        assert created.status_code == 201
        cid = created.json()["id"]
        assert (
            http.post("/api/events", json={"event": "x", "contactId": cid}, headers=A).status_code
            == 201
        )
        assert http.get(f"/api/contacts/{cid}", headers=A).json()["email"] == "h@example.com"
        assert http.get(f"/api/contacts/{cid}", headers=B).status_code == 404
        assert http.get("/api/events", headers=B).json() == {"data": [], "nextCursor": None}
        assert http.get("/api/events", headers={}).status_code == 401
        r = http.post("/api/contacts", json={"email": "H@example.com"}, headers=A)
        assert (r.status_code, r.json()["error"]["code"]) == (409, "CONFLICT")


@pytest.mark.parametrize("parser", ["h11", "httptools"])
def test_served_dropped_response_cuts_the_connection_after_committing(
    tmp_path: Path, parser: Any
) -> None:
    db = tmp_path / "drop.db"
    with serve_in_thread(EmulatorConfig(db_path=db, drop_rate=1.0), http=parser) as url:
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.post(
                url + "/api/events", json={"name": "cut", "email": "c@example.com"}, headers=A
            )
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.post(
                url + "/api/events", json={"name": "cut", "email": "c@example.com"}, headers=A
            )
    with serve_in_thread(EmulatorConfig(db_path=db)) as url:
        events = httpx.get(url + "/api/events", headers=A).json()["data"]
    assert [e["name"] for e in events] == ["cut", "cut"]  # both applied, never deduplicated


def test_served_429_with_retry_after() -> None:
    with (
        serve_in_thread(EmulatorConfig(rate_limit=0.5, burst=1)) as url,
        httpx.Client(base_url=url) as http,
    ):
        first = http.get("/api/contacts", headers=A)
        second = http.get("/api/contacts", headers=A)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit"] == "1"
    assert second.status_code == 429
    assert second.headers["retry-after"] == "2"
    assert second.json()["error"]["code"] == "RATE_LIMITED"
    assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= set(
        second.headers
    )


def test_serve_in_thread_can_share_an_app_with_in_process_use() -> None:
    app = create_app(EmulatorConfig())
    try:
        with serve_in_thread(app=app) as url:
            httpx.post(url + "/api/contacts", json={"email": "s@example.com"}, headers=A)
        assert app.store.contact_by_email(1, "s@example.com") is not None
    finally:
        app.close()


# -- the CLI ---------------------------------------------------------------------------------


def test_emulator_help_names_every_option() -> None:
    result = CliRunner().invoke(main, ["emulator", "--help"])
    assert result.exit_code == 0
    for option in (
        "--host",
        "--port",
        "--db",
        "--rate-limit",
        "--burst",
        "--latency",
        "--fail-rate",
        "--drop-rate",
        "--unknown-email",
        "--hide-rate-headers",
        "--list-shape",
        "--strict-contact-ref",
        "8787",
        "127.0.0.1",
    ):
        assert option in result.output


def _start(python: str, env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [python, "-m", "kraiter_sync", "emulator", "--port", "0", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:\d+", line)
    if match is None:
        proc.kill()
        pytest.fail(f"no URL printed: {line!r} {proc.communicate()[1]}")
    return proc, match.group(0)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_emulator_command_serves_and_stops_cleanly(
    python: str, cli_env: dict[str, str], tmp_path: Path, sig: signal.Signals
) -> None:
    proc, url = _start(python, cli_env, "--unknown-email", "not-found")
    try:
        r = httpx.post(url + "/api/events", json={"name": "x", "email": "n@example.com"}, headers=A)
        assert r.status_code == 404  # the flag reached the app
        assert (
            httpx.post(
                url + "/api/contacts", json={"email": "n@example.com"}, headers=A
            ).status_code
            == 201
        )
    finally:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in out
    assert "Traceback" not in err
    assert KEY_A not in out + err
    # Default database: local-kraiter.db in the state directory.
    assert (tmp_path / "state" / "local-kraiter.db").is_file()


def test_emulator_command_port_in_use_is_a_clear_error(
    python: str, cli_env: dict[str, str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [python, "-m", "kraiter_sync", "emulator", "--port", str(port), "--db", ":memory:"],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_emulator_command_rejects_bad_values() -> None:
    result = CliRunner().invoke(main, ["emulator", "--fail-rate", "1.5"])
    assert result.exit_code == 2
    assert "--fail-rate" in result.output
