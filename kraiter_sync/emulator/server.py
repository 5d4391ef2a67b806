"""Two mountings of the one emulator app: in-process for tests and the offline default,
over real HTTP (uvicorn) for the CLI, integration tests and benchmarks.

A *dropped response* must look to a client exactly like a network fault after the
request was sent. Over HTTP the app asks the server to abort the TCP connection
through an ASGI scope extension that our uvicorn protocol subclass adds
(:data:`~kraiter_sync.emulator.app.ABORT_EXTENSION`); in-process the transport turns
the app's :class:`~kraiter_sync.emulator.app.ResponseDropped` into
:class:`httpx.RemoteProtocolError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any, Literal, TextIO

import httpx
import uvicorn

from kraiter_sync.emulator.app import ABORT_EXTENSION, EmulatorApp, ResponseDropped, create_app
from kraiter_sync.emulator.config import EmulatorConfig

__all__ = ["asgi_transport", "http_protocol_class", "run_server", "serve_in_thread"]

log = logging.getLogger("kraiter_sync.emulator")


# -- in-process ---------------------------------------------------------------------------


class _EmulatorTransport(httpx.AsyncBaseTransport):
    """httpx.ASGITransport plus the one fault it cannot express: a cut connection."""

    def __init__(self, app: Any, *, close_app: bool = False) -> None:
        self._app = app
        self._close_app = close_app
        self._inner = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._inner.handle_async_request(request)
        except ResponseDropped:
            msg = "Server disconnected without sending a response."
            raise httpx.RemoteProtocolError(msg, request=request) from None

    async def aclose(self) -> None:
        await self._inner.aclose()
        if self._close_app:
            self._app.close()


def asgi_transport(app: Any, *, close_app: bool = False) -> httpx.AsyncBaseTransport:
    """Mount the app in-process: ``httpx.AsyncClient(transport=asgi_transport(app))``.

    With ``close_app`` closing the transport also closes the app (commits, closes SQLite).
    """
    return _EmulatorTransport(app, close_app=close_app)


# -- over HTTP ------------------------------------------------------------------------------


HttpParser = Literal["auto", "h11", "httptools"]


def _base_protocol(parser: HttpParser) -> type[asyncio.Protocol]:
    if parser == "h11" or (parser == "auto" and importlib.util.find_spec("httptools") is None):
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol
    # Optional speed-up, chosen like uvicorn's own "auto".
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    return HttpToolsProtocol


def http_protocol_class(parser: HttpParser = "auto") -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools if installed, else h11) that can cut a connection.

    Each connection wraps the app so that its scope carries ``kraiter.abort``: a
    callable that aborts the TCP transport at once (no response, no FIN handshake).
    """
    base: Any = _base_protocol(parser)

    class DroppableProtocol(base):  # type: ignore[misc]
        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            inner: Any = vars(self)["app"]  # set by uvicorn's protocol __init__

            async def app(scope: Any, receive: Any, send: Any) -> None:
                extensions = scope.setdefault("extensions", {})
                extensions[ABORT_EXTENSION] = transport.abort
                await inner(scope, receive, send)

            self.app = app

    return DroppableProtocol


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio disables Nagle only on sockets whose proto says
    # TCP, and with proto 0 every answer (headers and body are two writes) waited for
    # the client's delayed ACK: 40 ms per request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Server(uvicorn.Server):
    """uvicorn's server, minus re-raising the signal after a graceful stop.

    uvicorn re-raises SIGINT/SIGTERM once it has shut down, which would turn a clean
    Ctrl-C into a traceback or a death by signal; here a signal just stops serving.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def _uvicorn_config(app: EmulatorApp, parser: HttpParser = "auto") -> uvicorn.Config:
    return uvicorn.Config(
        app,
        http=http_protocol_class(parser),
        interface="asgi3",
        lifespan="off",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        log_level="warning",
        log_config=None,
        timeout_graceful_shutdown=5,
        timeout_keep_alive=30,
    )


@contextlib.contextmanager
def serve_in_thread(
    config: EmulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    app: EmulatorApp | None = None,
    http: HttpParser = "auto",
) -> Iterator[str]:
    """Serve the emulator over real HTTP in a background thread; yields the base URL.

    ``port=0`` picks a free port. The server is stopped (and an app created here
    closed) when the block exits, even on error. ``http`` picks uvicorn's HTTP parser
    (``auto``: httptools when installed, else h11).
    """
    owned = app is None
    emulator = app if app is not None else create_app(config or EmulatorConfig())
    sock = _bind(host, port)
    server = _Server(_uvicorn_config(emulator, http))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="kraiter-emulator", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                msg = "the local Kraiter did not start"
                raise RuntimeError(msg)
            time.sleep(0.005)
        yield _url(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        if owned:
            emulator.close()


def run_server(
    config: EmulatorConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8787,
    out: TextIO | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until Ctrl-C or SIGTERM (the ``kraiter-sync emulator`` command).

    Prints the URL it listens on once the socket is bound. Raises :class:`OSError`
    when the address cannot be bound (the CLI turns it into a clear message).
    """
    stream = out or sys.stdout
    app = create_app(config)
    try:
        sock = _bind(host, port)
    except OSError:
        app.close()
        raise
    url = _url(sock)
    server = _Server(_uvicorn_config(app))

    async def main() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            print(f"Local Kraiter listening on {url}  (Ctrl-C to stop)", file=stream, flush=True)
            if on_ready is not None:
                on_ready(url)
        await task

    try:
        asyncio.run(main())
    finally:
        sock.close()
        app.close()
    print("Local Kraiter stopped.", file=stream, flush=True)
