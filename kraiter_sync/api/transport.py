"""httpx's transport interface over an aiohttp connection pool.

:class:`KraiterClient` drives an ``httpx.AsyncBaseTransport`` directly. httpx's own
pool (httpcore) manages a few hundred requests/s here, aiohttp several thousand
(``benchmarks/client_transport.py``), so this is the default for real HTTP.

The one thing that must be right is the meaning of a failure: whether the request
may already have reached Kraiter. aiohttp's exceptions are mapped to the httpx
exception with that meaning (a connection cut after sending is a
``RemoteProtocolError``, never a connect error — the httpx-aiohttp package gets this
wrong), and ``api.failures.translate_transport_error`` turns those into errors.py.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import aiohttp
import httpx

__all__ = ["AiohttpTransport"]


#: aiohttp exception → httpx exception, most specific first. What matters is the
#: sent / maybe-sent split: only failures before the request left are "connect" ones.
_AIOHTTP_MAP: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientProxyConnectionError, httpx.ProxyError),
    (aiohttp.ClientHttpProxyError, httpx.ProxyError),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerFingerprintMismatch, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.ClientOSError, httpx.ReadError),
    (aiohttp.ClientConnectionResetError, httpx.ReadError),
    (aiohttp.UploadAbortedError, httpx.WriteError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.NonHttpUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.ClientConnectionError, httpx.RemoteProtocolError),
    (aiohttp.ClientError, httpx.RemoteProtocolError),
    (TimeoutError, httpx.ReadTimeout),
    (OSError, httpx.ReadError),
)


def _map_aiohttp_error(exc: BaseException) -> type[httpx.TransportError] | None:
    for aio_cls, httpx_cls in _AIOHTTP_MAP:
        if isinstance(exc, aio_cls):
            return httpx_cls
    return None


def _describe(exc: BaseException) -> str:
    """The failure in a user's words: for a refused or unresolvable host, the host and
    what the system said (aiohttp's own text adds ``ssl:default`` even for http://)."""
    if type(exc) is aiohttp.ClientConnectorError:
        os_error = exc.os_error
        reason = os_error.strerror or str(os_error) or type(os_error).__name__
        return f"cannot connect to {exc.host}:{exc.port}: {reason.lower()}"
    return str(exc) or type(exc).__name__


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx's request/response API over an aiohttp connection pool.

    Reads each (small, JSON) answer whole, and maps aiohttp's exceptions to the httpx
    ones with the right meaning: notably a server that cut the connection is a
    ``RemoteProtocolError`` (the request may have applied), never a connect error.
    The aiohttp session is created on first use, inside the running event loop.

    One aiohttp behaviour to know: a GET/PUT/DELETE that fails on a *reused* keep-alive
    connection the server had already closed is resent once on a fresh connection.
    Those methods are idempotent, so this is not a hidden retry of anything that could
    apply twice; POST and PATCH are never resent.
    """

    def __init__(
        self,
        *,
        max_connections: int = 64,
        keepalive_expiry: float = 15.0,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._verify = verify
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            # A session belongs to the loop it was made in (asyncio.run twice).
            self._loop = loop
            ssl_context: ssl.SSLContext | bool = self._verify
            if self._verify is True:
                ssl_context = httpx.create_ssl_context()
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                keepalive_timeout=self._keepalive_expiry,
                ssl=ssl_context,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        content = request.content if isinstance(request.stream, httpx.ByteStream) else None
        if content is None:
            content = await request.aread()
        session = self._get_session()
        try:
            async with session.request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=content or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            ) as answer:
                body = await answer.read()
                status = answer.status
                headers = answer.raw_headers
                reason = answer.reason
        except (aiohttp.ClientError, OSError) as exc:  # TimeoutError is an OSError
            mapped = _map_aiohttp_error(exc) or httpx.RemoteProtocolError
            raise mapped(_describe(exc), request=request) from exc
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if reason:
            extensions["reason_phrase"] = reason.encode("ascii", "replace")
        return httpx.Response(
            status, headers=headers, content=body, request=request, extensions=extensions
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
