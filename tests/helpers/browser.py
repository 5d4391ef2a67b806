"""Load a page in a real headless Chromium and read what it shows, with no extra package.

Chromium is driven over the DevTools protocol through ``--remote-debugging-pipe``: it
reads commands from its fd 3 and writes answers and events to its fd 4, as JSON messages
ended by a NUL byte (the transport Playwright and Puppeteer use). No port is opened and
no browser is downloaded: the browser is Debian's ``chromium`` (``.ci/chromium.sh``
installs it), or ``KRAITER_TEST_CHROMIUM``.

:func:`load_page` opens a file, waits until a JavaScript condition holds, evaluates an
expression, and returns its value with every uncaught exception, console error, log
error and network request the page made.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
)


# Read at import: the autouse fixture in conftest.py removes KRAITER_* variables.
CHROMIUM = os.environ.get("KRAITER_TEST_CHROMIUM") or shutil.which("chromium")


def chromium_or_skip() -> str:
    """The Chromium binary; skip without one locally, fail in CI (``CI=true``)."""
    if CHROMIUM:
        return CHROMIUM
    reason = "Chromium is not installed (source .ci/chromium.sh, or set KRAITER_TEST_CHROMIUM)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI must run the browser tests, not skip them)")
    pytest.skip(reason)


@dataclass
class PageResult:
    """What the page did while it loaded, and the value of the expression."""

    value: Any = None
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


class _Pipe:
    """The DevTools protocol over Chromium's fds 3 (commands) and 4 (messages)."""

    def __init__(self, write_fd: int, read_fd: int) -> None:
        self._write = write_fd
        self._read = read_fd
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise AssertionError(f"{method} failed: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def pump(self, seconds: float) -> None:
        """Collect the events that arrive within ``seconds``."""
        deadline = time.monotonic() + seconds
        with contextlib.suppress(TimeoutError):
            while True:
                self.events.append(self._receive(deadline))

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([self._read], [], [], left)
            if not ready:
                raise TimeoutError
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                raise AssertionError("Chromium closed the DevTools pipe (did it crash?)")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)  # type: ignore[no-any-return]


def _problems(events: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    errors: list[str] = []
    requests: list[str] = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            errors.append(
                "uncaught: "
                + str(details.get("exception", {}).get("description") or details.get("text"))
            )
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(
                "console: "
                + " ".join(
                    str(a.get("value", a.get("description"))) for a in params.get("args", [])
                )
            )
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            errors.append("log: " + str(params["entry"].get("text")))
        elif method == "Network.requestWillBeSent":
            requests.append(str(params.get("request", {}).get("url")))
    return errors, requests


#: Puts the pipes on fds 3 and 4 of the browser, then becomes it.
_LAUNCHER = (
    "import os, sys; r, w = int(sys.argv[1]), int(sys.argv[2]); "
    "os.dup2(r, 3); os.dup2(w, 4); os.close(r); os.close(w); os.execv(sys.argv[3], sys.argv[3:])"
)


def _above_4(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


def load_page(
    chromium: str, page: Path, *, ready: str, expression: str, timeout: float = 60.0
) -> PageResult:
    """Open ``page``, wait until the JavaScript ``ready`` is true, return ``expression``'s
    value (JSON-able) and what went wrong on the way."""
    profile = tempfile.mkdtemp(prefix="kraiter-chromium-")
    commands_r, commands_w = os.pipe()
    messages_r, messages_w = os.pipe()
    # the browser's ends must not already be 3 or 4, which the shell assigns below
    commands_r, messages_w = (_above_4(fd) for fd in (commands_r, messages_w))
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _LAUNCHER,
            str(commands_r),
            str(messages_w),
            chromium,
            *FLAGS,
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        pass_fds=(commands_r, messages_w),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(commands_r)
    os.close(messages_w)
    pipe = _Pipe(commands_w, messages_r)
    try:
        target = pipe.call("Target.createTarget", {"url": "about:blank"}, timeout=timeout)
        session = pipe.call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            pipe.call(f"{domain}.enable", session=session)
        pipe.call("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        deadline = time.monotonic() + timeout
        while True:
            done = pipe.call(
                "Runtime.evaluate",
                {"expression": f"Boolean({ready})", "returnByValue": True},
                session=session,
            )
            if done.get("result", {}).get("value") is True:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"the page never got ready ({ready})")
            pipe.pump(0.2)
        pipe.pump(0.5)  # errors raised by late callbacks
        answer = pipe.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=session,
        )
        if "exceptionDetails" in answer:
            raise AssertionError(f"evaluating the expression failed: {answer['exceptionDetails']}")
        errors, requests = _problems(pipe.events)
        with contextlib.suppress(AssertionError, TimeoutError, OSError):
            pipe.call("Browser.close", timeout=5)
        return PageResult(answer.get("result", {}).get("value"), errors, requests)
    finally:
        os.close(commands_w)
        os.close(messages_r)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        shutil.rmtree(profile, ignore_errors=True)
