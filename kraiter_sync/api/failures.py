"""Failures at the HTTP boundary: an error status becomes the exception for it
(:func:`~kraiter_sync.errors.api_error_class`, with Kraiter's code and message), and a
failed exchange is translated by :func:`translate_transport_error`, the one place httpx
exceptions become kraiter-sync's. Neither the key nor anything echoing it ends up in a
message."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from kraiter_sync.api.retry import parse_retry_after
from kraiter_sync.errors import (
    ApiError,
    ConnectError,
    KraiterSyncError,
    RequestTimeoutError,
    ResponseLostError,
    TransportError,
    api_error_class,
)

__all__ = ["api_error", "translate_transport_error", "unexpected"]


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


#: Codes for gateway answers that carry no Kraiter error body (proxies, load balancers).
_GATEWAY_CODES = {502: "BAD_GATEWAY", 503: "SERVICE_UNAVAILABLE", 504: "GATEWAY_TIMEOUT"}


def api_error(response: httpx.Response, method: str, path: str, secret: str) -> ApiError:
    """The ApiError for an error answer; tolerates empty and non-JSON bodies."""
    status = response.status_code
    code: str | None = None
    message = ""
    details: Mapping[str, Any] | None = None
    try:
        body = json.loads(response.content) if response.content else None
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    code = _GATEWAY_CODES.get(status)
    if isinstance(error, dict):
        if isinstance(error.get("code"), str):
            code = error["code"]
        if error.get("message") is not None:
            message = str(error["message"])
        raw_details = error.get("details")
        if isinstance(raw_details, dict):
            details = raw_details
        elif raw_details is not None:
            details = {"details": raw_details}
    if not message:
        snippet = response.content[:200].decode("utf-8", "replace").strip()
        if body is None and snippet:
            message = f"non-JSON answer: {snippet}"
        else:
            message = response.reason_phrase or "no error message"
    if details is not None and secret and secret in json.dumps(details):
        details = json.loads(_scrub(json.dumps(details), secret))
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    return api_error_class(status)(
        _scrub(message, secret),
        method=method,
        path=path,
        status=status,
        code=code,
        details=details,
        retry_after=retry_after,
    )


def unexpected(response: httpx.Response, method: str, path: str, why: str) -> ApiError:
    """A success status whose body is not what the contract promises."""
    err = ApiError(
        f"unexpected answer ({why}); check --base-url points at Kraiter",
        method=method,
        path=path,
        status=response.status_code,
        code="UNEXPECTED_RESPONSE",
    )
    # The request succeeded, so a write may have taken effect.
    err.ambiguous = method != "GET"
    return err


#: httpx exception class → (our class, whether the request may have been sent).
#: Exact classes, most specific first; a test walks httpx's tree against this table.
_NOT_SENT = False
_MAYBE_SENT = True
_TRANSPORT_MAP: tuple[tuple[type[httpx.HTTPError], type[TransportError], bool], ...] = (
    (httpx.ConnectTimeout, RequestTimeoutError, _NOT_SENT),
    (httpx.PoolTimeout, RequestTimeoutError, _NOT_SENT),
    (httpx.ReadTimeout, RequestTimeoutError, _MAYBE_SENT),
    (httpx.WriteTimeout, RequestTimeoutError, _MAYBE_SENT),
    (httpx.TimeoutException, RequestTimeoutError, _MAYBE_SENT),
    (httpx.ConnectError, ConnectError, _NOT_SENT),
    (httpx.ProxyError, ConnectError, _NOT_SENT),
    (httpx.ReadError, ResponseLostError, _MAYBE_SENT),
    (httpx.WriteError, ResponseLostError, _MAYBE_SENT),
    (httpx.CloseError, ResponseLostError, _MAYBE_SENT),
    (httpx.RemoteProtocolError, ResponseLostError, _MAYBE_SENT),
    (httpx.DecodingError, ResponseLostError, _MAYBE_SENT),
    (httpx.NetworkError, ResponseLostError, _MAYBE_SENT),
    (httpx.ProtocolError, ResponseLostError, _MAYBE_SENT),
)
#: Failures a resend cannot fix: the request could not even be formed or routed.
_NOT_RETRIABLE: tuple[type[httpx.HTTPError], ...] = (
    httpx.LocalProtocolError,
    httpx.UnsupportedProtocol,
    httpx.TooManyRedirects,
)


def _classify(exc: httpx.HTTPError) -> tuple[type[TransportError], bool]:
    for httpx_cls, ours, sent in _TRANSPORT_MAP:
        if isinstance(exc, httpx_cls):
            return ours, sent
    # An httpx error this table does not know yet: assume the worst (it may have
    # applied) so that nothing is resent blindly.
    return ResponseLostError, _MAYBE_SENT


def translate_transport_error(exc: httpx.HTTPError, *, method: str, path: str) -> KraiterSyncError:
    """The one boundary for httpx exceptions: each becomes an errors.py exception."""
    where = f"{method} {path}"
    if isinstance(exc, httpx.HTTPStatusError):
        return api_error(exc.response, method, path, "")
    if isinstance(exc, _NOT_RETRIABLE):
        err = TransportError(
            f"request {where} could not be sent ({type(exc).__name__}: {exc})",
            method=method,
            path=path,
        )
        err.retriable = False
        return err
    ours, sent = _classify(exc)
    detail = str(exc) or type(exc).__name__
    if ours is RequestTimeoutError:
        outcome = (
            "timed out waiting for the answer ({}); it may have been applied"
            if sent
            else "timed out before it was sent ({}); safe to resend"
        )
        return RequestTimeoutError(
            f"{where} {outcome.format(detail)}", method=method, path=path, sent=sent
        )
    if ours is ConnectError:
        return ConnectError(
            f"cannot reach Kraiter for {where} ({detail}): check --base-url and the "
            "network, then run the same command again (nothing is sent twice)",
            method=method,
            path=path,
        )
    return ResponseLostError(
        f"connection lost during {where} before a complete answer ({detail}); "
        "the request may have been applied",
        method=method,
        path=path,
    )
