"""KraiterClient failures: status table, Retry-After, transport errors, no key leaks.

The transport tests run over real loopback sockets against tiny asyncio servers that
misbehave on purpose (cut the connection, never answer, truncate the body), through
both the default AiohttpTransport and httpx's own transport.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import httpx
import pytest
import respx

from kraiter_sync import errors
from kraiter_sync.api.client import KraiterClient
from kraiter_sync.api.failures import translate_transport_error
from kraiter_sync.api.retry import parse_retry_after
from kraiter_sync.api.transport import AiohttpTransport, _map_aiohttp_error
from tests.helpers.respx import BASE, mocked

pytestmark = pytest.mark.anyio

KEY = "kr_LEAKCHECK_5f1e9a7c3b"


def http_date(delta_seconds: float) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=delta_seconds), usegmt=True)


def err_body(code: str, message: str = "nope", **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


# status, headers, body (dict → JSON, str → text, None → empty)
#   → class, retriable, ambiguous, code, retry_after (None or (low, high))
Row = tuple[str, int, dict[str, str], Any, type[errors.ApiError], bool, bool, str, Any]
FAILURES: list[Row] = [
    ("400", 400, {}, err_body("VALIDATION_ERROR", details={"field": "email"}),
     errors.BadRequestError, False, False, "VALIDATION_ERROR", None),
    ("401", 401, {}, err_body("UNAUTHORISED"),
     errors.AuthenticationError, False, False, "UNAUTHORISED", None),
    ("403", 403, {}, err_body("FORBIDDEN"),
     errors.PermissionDeniedError, False, False, "FORBIDDEN", None),
    ("404", 404, {}, err_body("NOT_FOUND"), errors.NotFoundError, False, False, "NOT_FOUND", None),
    ("409", 409, {}, err_body("CONFLICT"), errors.ConflictError, False, False, "CONFLICT", None),
    ("422", 422, {}, err_body("UNPROCESSABLE_ENTITY"),
     errors.UnprocessableError, False, False, "UNPROCESSABLE_ENTITY", None),
    ("429 no header", 429, {}, err_body("RATE_LIMITED"),
     errors.RateLimitError, True, False, "RATE_LIMITED", None),
    ("429 seconds", 429, {"Retry-After": "7"}, err_body("RATE_LIMITED"),
     errors.RateLimitError, True, False, "RATE_LIMITED", (7, 7)),
    ("429 fractional seconds", 429, {"Retry-After": "1.5"}, err_body("RATE_LIMITED"),
     errors.RateLimitError, True, False, "RATE_LIMITED", (1.5, 1.5)),
    ("429 HTTP date", 429, {"Retry-After": "DATE+120"}, err_body("RATE_LIMITED"),
     errors.RateLimitError, True, False, "RATE_LIMITED", (100, 121)),
    ("429 past HTTP date", 429, {"Retry-After": "DATE-60"}, err_body("RATE_LIMITED"),
     errors.RateLimitError, True, False, "RATE_LIMITED", None),
    ("429 zero", 429, {"Retry-After": "0"}, err_body("RATE_LIMITED"),
     errors.RateLimitError, True, False, "RATE_LIMITED", None),
    ("429 negative", 429, {"Retry-After": "-5"}, err_body("RATE_LIMITED"),
     errors.RateLimitError, True, False, "RATE_LIMITED", None),
    ("429 garbage", 429, {"Retry-After": "soon-ish"}, err_body("RATE_LIMITED"),
     errors.RateLimitError, True, False, "RATE_LIMITED", None),
    ("429 nan", 429, {"Retry-After": "nan"}, err_body("RATE_LIMITED"),
     errors.RateLimitError, True, False, "RATE_LIMITED", None),
    ("429 other code spelling", 429, {}, err_body("RATE_LIMIT_EXCEEDED"),
     errors.RateLimitError, True, False, "RATE_LIMIT_EXCEEDED", None),
    ("500", 500, {}, err_body("INTERNAL_ERROR"),
     errors.ServerError, True, True, "INTERNAL_ERROR", None),
    ("502 HTML", 502, {}, "<html><body>502 Bad Gateway</body></html>",
     errors.ServerError, True, True, "BAD_GATEWAY", None),
    ("500 empty body", 500, {}, None, errors.ServerError, True, True, "INTERNAL_ERROR", None),
    ("503 Retry-After", 503, {"Retry-After": "30"}, err_body("SERVICE_UNAVAILABLE"),
     errors.ServerError, True, True, "SERVICE_UNAVAILABLE", (30, 30)),
    ("504 empty body", 504, {}, None, errors.ServerError, True, True, "GATEWAY_TIMEOUT", None),
    ("503 plain text", 503, {"Retry-After": "2"}, "upstream busy",
     errors.ServerError, True, True, "SERVICE_UNAVAILABLE", (2, 2)),
    ("400 JSON without error member", 400, {}, {"message": "bad"},
     errors.BadRequestError, False, False, "VALIDATION_ERROR", None),
    ("418 unknown status", 418, {}, err_body("TEAPOT"),
     errors.ApiError, False, False, "TEAPOT", None),
    ("301 redirect is not followed", 301, {"Location": "https://elsewhere.test/"}, None,
     errors.ApiError, False, False, "ERROR", None),
]  # fmt: skip


def make_response(status: int, headers: dict[str, str], body: Any) -> httpx.Response:
    headers = {
        k: (http_date(float(v[4:])) if v.startswith("DATE") else v) for k, v in headers.items()
    }
    if isinstance(body, dict):
        return httpx.Response(status, headers=headers, json=body)
    if isinstance(body, str):
        return httpx.Response(status, headers=headers, text=body)
    return httpx.Response(status, headers=headers)


@pytest.mark.parametrize(
    ("status", "headers", "body", "cls", "retriable", "ambiguous", "code", "retry_after"),
    [pytest.param(*row[1:], id=row[0]) for row in FAILURES],
)
async def test_failure_table(
    router: respx.MockRouter,
    status: int,
    headers: dict[str, str],
    body: Any,
    cls: type[errors.ApiError],
    retriable: bool,
    ambiguous: bool,
    code: str,
    retry_after: tuple[float, float] | None,
) -> None:
    router.post("/api/events").mock(return_value=make_response(status, headers, body))
    async with KraiterClient(BASE, KEY, transport=mocked(router)) as client:
        with pytest.raises(errors.ApiError) as info:
            await client.track_event("signup", contact_id="cnt_1")
    err = info.value
    assert type(err) is cls
    assert err.retriable is retriable
    assert err.ambiguous is ambiguous
    assert err.code == code
    assert err.http_status == status
    assert (err.method, err.path) == ("POST", "/api/events")
    assert f"{status} {code} from Kraiter on POST /api/events" in str(err)
    if retry_after is None:
        assert err.retry_after is None
    else:
        assert err.retry_after is not None
        assert retry_after[0] <= err.retry_after <= retry_after[1]
    if isinstance(body, dict) and "error" in body:
        assert err.api_message == "nope"
    if isinstance(body, str):
        assert err.api_message == f"non-JSON answer: {body}"


async def test_error_details_are_kept(router: respx.MockRouter) -> None:
    router.post("/api/contacts").respond(
        400, json=err_body("VALIDATION_ERROR", "email is invalid", details={"field": "email"})
    )
    async with KraiterClient(BASE, KEY, transport=mocked(router)) as client:
        with pytest.raises(errors.BadRequestError) as info:
            await client.create_contact("not-an-email")
    assert info.value.details == {"field": "email"}
    assert info.value.api_message == "email is invalid"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10", 10.0),
        (" 3 ", 3.0),
        ("0", None),
        ("-1", None),
        ("inf", None),
        ("", None),
        (None, None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 60.0),
        ("Wed, 21 Oct 2015 07:26:00 GMT", None),
        ("Wed, 99 Foo 2015", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = datetime(2015, 10, 21, 7, 27, tzinfo=UTC).timestamp()
    assert parse_retry_after(value, now=now) == expected


def test_parse_retry_after_uses_the_clock_for_dates() -> None:
    future = format_datetime(datetime.fromtimestamp(time.time() + 90, UTC), usegmt=True)
    value = parse_retry_after(future)
    assert value is not None
    assert 85 <= value <= 90


# ---- the httpx exception boundary --------------------------------------------------


def walk(cls: type[BaseException]) -> Iterator[type[BaseException]]:
    yield cls
    for sub in cls.__subclasses__():
        yield from walk(sub)


def httpx_classes() -> list[type[httpx.HTTPError]]:
    found = {c for c in walk(httpx.HTTPError) if c.__module__.startswith("httpx")}
    return sorted(found, key=lambda c: c.__name__)  # type: ignore[return-value]


# Expected translation of every httpx exception class:
#   (our class, retriable, ambiguous). Written out independently of the client's table.
EXPECTED: dict[str, tuple[type[errors.KraiterSyncError], bool, bool]] = {
    "ConnectTimeout": (errors.RequestTimeoutError, True, False),
    "PoolTimeout": (errors.RequestTimeoutError, True, False),
    "ReadTimeout": (errors.RequestTimeoutError, True, True),
    "WriteTimeout": (errors.RequestTimeoutError, True, True),
    "TimeoutException": (errors.RequestTimeoutError, True, True),
    "ConnectError": (errors.ConnectError, True, False),
    "ProxyError": (errors.ConnectError, True, False),
    "ReadError": (errors.ResponseLostError, True, True),
    "WriteError": (errors.ResponseLostError, True, True),
    "CloseError": (errors.ResponseLostError, True, True),
    "RemoteProtocolError": (errors.ResponseLostError, True, True),
    "DecodingError": (errors.ResponseLostError, True, True),
    "NetworkError": (errors.ResponseLostError, True, True),
    "ProtocolError": (errors.ResponseLostError, True, True),
    # Unknown kinds of failure: assume the request may have applied.
    "TransportError": (errors.ResponseLostError, True, True),
    "RequestError": (errors.ResponseLostError, True, True),
    "HTTPError": (errors.ResponseLostError, True, True),
    # Cannot be sent at all: resending the same request cannot help.
    "LocalProtocolError": (errors.TransportError, False, False),
    "UnsupportedProtocol": (errors.TransportError, False, False),
    "TooManyRedirects": (errors.TransportError, False, False),
    "HTTPStatusError": (errors.ServerError, True, True),
}


def make_httpx_error(cls: type[httpx.HTTPError]) -> httpx.HTTPError:
    request = httpx.Request(
        "POST", f"{BASE}/api/events", headers={"Authorization": f"Bearer {KEY}"}
    )
    if cls is httpx.HTTPStatusError:
        response = httpx.Response(503, request=request)
        return httpx.HTTPStatusError("boom", request=request, response=response)
    if issubclass(cls, httpx.RequestError):
        return cls("boom", request=request)
    return cls("boom")


def test_every_httpx_exception_class_has_a_deliberate_translation() -> None:
    classes = httpx_classes()
    assert len(classes) >= 20
    unknown = sorted(c.__name__ for c in classes if c.__name__ not in EXPECTED)
    assert not unknown, f"httpx grew exception classes; map them deliberately: {unknown}"


@pytest.mark.parametrize("cls", httpx_classes(), ids=lambda c: c.__name__)
async def test_httpx_exceptions_never_leak(cls: type[httpx.HTTPError]) -> None:
    expected_cls, retriable, ambiguous = EXPECTED[cls.__name__]

    def fail(request: httpx.Request) -> httpx.Response:
        raise make_httpx_error(cls)

    async with KraiterClient(BASE, KEY, transport=httpx.MockTransport(fail)) as client:
        with pytest.raises(errors.KraiterSyncError) as info:
            await client.track_event("signup", contact_id="cnt_1")
    err = info.value
    assert not isinstance(err, httpx.HTTPError)
    assert type(err) is expected_cls
    assert err.retriable is retriable
    assert err.ambiguous is ambiguous
    assert KEY not in str(err)
    assert "POST /api/events" in str(err)
    if isinstance(err, errors.RequestTimeoutError):
        assert err.sent is ambiguous


def test_translation_of_status_error_uses_the_status_table() -> None:
    err = translate_transport_error(
        make_httpx_error(httpx.HTTPStatusError), method="POST", path="/api/events"
    )
    assert isinstance(err, errors.ServerError)


def aiohttp_classes() -> list[type[BaseException]]:
    return sorted(set(walk(aiohttp.ClientError)), key=lambda c: c.__name__)


# aiohttp exceptions whose request provably never left (everything else: maybe sent).
AIOHTTP_NOT_SENT = {
    "ClientConnectorError",
    "ClientConnectorDNSError",
    "ClientConnectorSSLError",
    "ClientConnectorCertificateError",
    "ClientSSLError",
    "ClientProxyConnectionError",
    "UnixClientConnectorError",
    "ConnectionTimeoutError",
    "ServerFingerprintMismatch",
    "ClientHttpProxyError",
}
AIOHTTP_NOT_RETRIABLE = {
    "InvalidURL",
    "InvalidUrlClientError",
    "InvalidUrlRedirectClientError",
    "NonHttpUrlClientError",
    "NonHttpUrlRedirectClientError",
}


@pytest.mark.parametrize("cls", aiohttp_classes(), ids=lambda c: c.__name__)
def test_every_aiohttp_exception_maps_to_the_right_side_of_sent(
    cls: type[BaseException],
) -> None:
    httpx_cls = _map_aiohttp_error(cls.__new__(cls))
    assert httpx_cls is not None
    ours = translate_transport_error(
        httpx_cls("x", request=httpx.Request("GET", BASE)), method="GET", path="/api/x"
    )
    if cls.__name__ in AIOHTTP_NOT_RETRIABLE:
        assert not ours.retriable
    elif cls.__name__ in AIOHTTP_NOT_SENT:
        assert ours.retriable
        assert not ours.ambiguous, httpx_cls
    else:
        # Including ServerDisconnectedError, which httpx-aiohttp calls a ConnectTimeout.
        assert ours.retriable
        assert ours.ambiguous, httpx_cls


# ---- real sockets: misbehaving servers -----------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def tcp_server(handler: Handler) -> AsyncIterator[str]:
    """A loopback server running ``handler`` per connection; every connection is
    closed (handlers cancelled) on exit, so no socket outlives the test."""
    tasks: set[asyncio.Task[None]] = set()

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


async def answer_201(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    body = b'{"id":"evt_1","name":"signup"}'
    writer.write(
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()


async def answer_503(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    body = b'{"error":{"code":"INTERNAL_ERROR","message":"down"}}'
    writer.write(
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 4\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()


async def cut_after_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)  # "commit", then drop the connection without an answer


async def truncated_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b'HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n{"id":')
    await writer.drain()


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    await asyncio.Event().wait()  # until the server is closed


TRANSPORTS: dict[str, Callable[[], httpx.AsyncBaseTransport]] = {
    "aiohttp": lambda: AiohttpTransport(max_connections=4),
    "httpx": lambda: httpx.AsyncHTTPTransport(),
}


@pytest.fixture(params=sorted(TRANSPORTS))
def transport(request: pytest.FixtureRequest) -> httpx.AsyncBaseTransport:
    return TRANSPORTS[request.param]()


async def track(base: str, transport: httpx.AsyncBaseTransport, timeout: float = 5.0) -> Any:
    async with KraiterClient(base, KEY, transport=transport, timeout=timeout) as client:
        return await client.track_event("signup", email="a@example.com", properties='{"a":1}')


async def test_real_http_round_trip(transport: httpx.AsyncBaseTransport) -> None:
    async with tcp_server(answer_201) as base:
        assert await track(base, transport) == {"id": "evt_1", "name": "signup"}


async def test_real_http_error_status(transport: httpx.AsyncBaseTransport) -> None:
    async with tcp_server(answer_503) as base:
        with pytest.raises(errors.ServerError) as info:
            await track(base, transport)
    assert info.value.retry_after == 4
    assert info.value.api_message == "down"


async def test_connection_refused_is_a_safe_connect_error(
    transport: httpx.AsyncBaseTransport,
) -> None:
    async with tcp_server(answer_201) as base:
        pass  # closed again: nothing listens on this port any more
    with pytest.raises(errors.ConnectError) as info:
        await track(base, transport)
    assert info.value.retriable
    assert not info.value.ambiguous


async def test_cut_connection_is_an_ambiguous_lost_response(
    transport: httpx.AsyncBaseTransport,
) -> None:
    async with tcp_server(cut_after_request) as base:
        with pytest.raises(errors.ResponseLostError) as info:
            await track(base, transport)
    assert info.value.ambiguous
    assert info.value.retriable


async def test_truncated_body_is_an_ambiguous_lost_response(
    transport: httpx.AsyncBaseTransport,
) -> None:
    async with tcp_server(truncated_body) as base:
        with pytest.raises(errors.ResponseLostError) as info:
            await track(base, transport)
    assert info.value.ambiguous


async def test_read_timeout_is_ambiguous(transport: httpx.AsyncBaseTransport) -> None:
    async with tcp_server(never_answer) as base:
        with pytest.raises(errors.RequestTimeoutError) as info:
            await track(base, transport, timeout=0.2)
    assert info.value.sent
    assert info.value.ambiguous


# ---- the key never leaks -----------------------------------------------------------


async def test_the_key_never_appears_in_errors_or_logs(
    router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    echo = f"you sent Authorization: Bearer {KEY}"
    statuses = [400, 401, 403, 404, 409, 422, 429, 500, 502, 503, 504, 418]
    effects: list[httpx.Response | Exception] = [
        *(httpx.Response(s, json=err_body("X", echo, details={"k": KEY})) for s in statuses),
        httpx.Response(500, text=echo),
        httpx.Response(201, text=echo),
        *(make_httpx_error(c) for c in httpx_classes() if c is not httpx.HTTPStatusError),
    ]
    route = router.post("/api/events").mock(side_effect=effects)
    async with KraiterClient(BASE, KEY, transport=mocked(router)) as client:
        texts.append(repr(client))
        for _ in effects:
            with pytest.raises(errors.KraiterSyncError) as info:
                await client.track_event("signup", contact_id="cnt_1")
            texts += [str(info.value), repr(info.value), str(info.value.args)]
            if isinstance(info.value, errors.ApiError):
                texts += [info.value.api_message, str(info.value.details)]
    assert route.call_count == len(statuses) + 2 + len(httpx_classes()) - 1
    assert len(texts) > 3 * route.call_count
    texts.append(caplog.text)
    assert any("***" in t for t in texts)  # the echoed key was scrubbed, not dropped
    for text in texts:
        assert KEY not in text


def test_aiohttp_transport_is_reusable_across_event_loops() -> None:
    """``asyncio.run`` twice with one transport: the pool is remade in the new loop."""

    async def serve_and_call(transport: AiohttpTransport) -> Any:
        async with (
            tcp_server(answer_201) as base,
            KraiterClient(base, KEY, transport=transport) as client,
        ):
            return await client.track_event("signup", contact_id="cnt_1")

    transport = AiohttpTransport()
    assert asyncio.run(serve_and_call(transport)) == {"id": "evt_1", "name": "signup"}
    assert asyncio.run(serve_and_call(transport)) == {"id": "evt_1", "name": "signup"}


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: AiohttpTransport(max_connections=1), id="aiohttp"),
        pytest.param(
            lambda: httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=1)), id="httpx"
        ),
    ],
)
async def test_waiting_for_a_pooled_connection_times_out_unsent(
    make: Callable[[], httpx.AsyncBaseTransport],
) -> None:
    """A request still queued for a connection never left: safe to resend."""
    async with (
        tcp_server(never_answer) as base,
        KraiterClient(base, KEY, transport=make(), timeout=httpx.Timeout(0.8, pool=0.1)) as client,
    ):
        results = await asyncio.gather(
            client.track_event("a", contact_id="cnt_1"),
            client.track_event("b", contact_id="cnt_1"),
            return_exceptions=True,
        )
    kinds = sorted((type(r).__name__, getattr(r, "sent", None)) for r in results)
    # One was sent and got no answer; the other waited for the only connection.
    assert kinds == [("RequestTimeoutError", False), ("RequestTimeoutError", True)]
