"""The local Kraiter as a hand-written ASGI application.

Hand-written rather than a framework because it sits under every benchmark of the
importer: routing is a dict lookup on path segments and a request costs one parse of
the body and one short SQLite transaction. The same app is served by uvicorn
(:mod:`kraiter_sync.emulator.server`) or mounted in-process (:func:`asgi_transport`).

Order of work for an ``/api`` request: authenticate (401) → rate limit (429) → added
latency → injected 5xx (nothing applied) → handle and commit → answer, or, for a
dropped response, cut the connection without an answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from kraiter_sync.emulator.config import EmulatorConfig
from kraiter_sync.emulator.faults import NO_FAULT, FaultPlan, Faults, RateLimiter
from kraiter_sync.emulator.routes import Handler, Request, Router
from kraiter_sync.emulator.store import Store
from kraiter_sync.emulator.validation import MAX_BODY_BYTES, ApiProblem

__all__ = ["ABORT_EXTENSION", "EmulatorApp", "ResponseDropped", "create_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: ASGI scope extension through which a server offers "cut this connection now".
ABORT_EXTENSION = "kraiter.abort"

log = logging.getLogger("kraiter_sync.emulator")

_JSON = (b"content-type", b"application/json")


class ResponseDropped(Exception):
    """Raised by the app when it must cut a connection but the server offers no way to.

    The request has been applied and committed; :func:`asgi_transport` turns this into
    :class:`httpx.RemoteProtocolError`, exactly what a client sees over real HTTP.
    """


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def key_hash(api_key: str) -> str:
    """What the store keeps instead of a key: the key itself is never written anywhere."""
    return hashlib.sha256(b"kraiter-emulator/key:" + api_key.encode()).hexdigest()


class EmulatorApp:
    """ASGI callable holding the store, the limiter and the fault plan."""

    def __init__(
        self,
        config: EmulatorConfig,
        *,
        now: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config
        self.store = Store(config.db_path, now=now)
        self.faults = Faults(config)
        self.limiter = RateLimiter(
            config.rate_limit, config.bucket_size, monotonic=monotonic, wall=wall
        )
        self.router = Router(self.store, config, self.faults.rng)
        self._sleep = sleep
        # One lock around every handler: the store's single connection may be driven
        # from the server thread and from a test's thread at once.
        self._lock = threading.Lock()
        self._pending: asyncio.Future[None] | None = None

    def close(self) -> None:
        """Commit pending writes and close the database (idempotent)."""
        with self._lock:
            if self.store.closed:
                return
            self._flush_locked()
            self.store.close()

    # -- group commit -------------------------------------------------------------------

    def _commit_waiter(self) -> asyncio.Future[None]:
        """The future of the commit that will cover the writes just made (lock held).

        The first write of a loop iteration schedules one commit at the end of the
        iteration; every request whose writes ran in between waits for it. A request
        from another event loop (another thread) flushes the batch synchronously.
        """
        loop = asyncio.get_running_loop()
        pending = self._pending
        if pending is not None and pending.get_loop() is not loop:
            self._flush_locked()
            pending = None
        if pending is None:
            pending = loop.create_future()
            self._pending = pending
            loop.call_soon(self._flush)
        return pending

    def _flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        pending, self._pending = self._pending, None
        error: BaseException | None = None
        try:
            self.store.commit()
        except Exception as exc:
            error = exc
        if pending is None:
            if error is not None:
                raise error
            return
        loop = pending.get_loop()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            _settle(pending, error)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(_settle, pending, error)

    # -- ASGI -------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":  # pragma: no cover - websockets are not part of the API
            return
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        raw_path = raw_path.partition(b"?")[0]
        parts = [unquote(p.decode("latin-1")) for p in raw_path.split(b"/") if p]
        body = await self._read_body(receive)
        method: str = scope["method"]
        if parts[:1] == ["_emulator"] and parts[1:] == ["noop"]:
            await self._respond(send, 200, {}, [])
            return
        headers: list[tuple[bytes, bytes]] = []
        plan: FaultPlan = NO_FAULT
        try:
            handler, params, writes, tenant, content_type, plan = await self._admit(
                scope, method, parts, headers
            )
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            request = Request(method, parts, query, body, content_type, tenant, params)
            if writes:
                with self._lock:
                    try:
                        with self.store.batched():
                            status, payload = handler(request)
                    finally:
                        committed = self._commit_waiter()
                await asyncio.shield(committed)
            else:
                with self._lock:
                    status, payload = handler(request)
        except ApiProblem as problem:
            status, payload = problem.status, problem.body()
        except Exception:
            log.exception("emulator bug while handling %s %s", method, "/".join(parts))
            status = 500
            payload = ApiProblem(500, "internal error in the local Kraiter").body()
        if plan.drop:
            await self._cut(scope, receive)
            return
        await self._respond(send, status, payload, headers)

    async def _admit(
        self, scope: Scope, method: str, parts: list[str], headers: list[tuple[bytes, bytes]]
    ) -> tuple[Handler, list[str], bool, int, str | None, FaultPlan]:
        """Everything before handling: route, auth, rate limit, latency, injected 5xx."""
        if parts[:1] not in (["api"], ["_emulator"]):
            msg = "no such endpoint; the Kraiter API lives under /api"
            raise ApiProblem(404, msg)
        auth, content_type = _headers(scope)
        tenant = self._authenticate(auth)
        if parts[0] != "api":
            handler, writes = self.router.resolve_admin(method, parts[1:])
            return handler, [], writes, tenant, content_type, NO_FAULT
        handler, params, writes = self.router.resolve(method, parts[1:])
        if self.limiter.enabled:
            decision = self.limiter.take(tenant)
            if not self.config.hide_rate_headers:
                headers.extend(decision.headers())
            if not decision.allowed:
                headers.append((b"retry-after", str(decision.retry_after).encode()))
                msg = f"rate limit exceeded; retry in {decision.retry_after} s"
                raise ApiProblem(429, msg)
        if self.faults.latency:
            await self._sleep(self.faults.latency)
        plan = self.faults.plan()
        if plan.fail_status is not None:
            msg = "injected server error (nothing was applied)"
            raise ApiProblem(plan.fail_status, msg)
        return handler, params, writes, tenant, content_type, plan

    async def _respond(
        self, send: Send, status: int, payload: Any, headers: list[tuple[bytes, bytes]]
    ) -> None:
        body = b"" if payload is None or status == 204 else _dumps(payload)
        out = [*headers, (b"content-length", str(len(body)).encode())]
        if body:
            out.append(_JSON)
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": body})

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            if size <= MAX_BODY_BYTES:  # keep draining an oversize body, but stop storing it
                chunks.append(chunk)
            size += len(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _authenticate(self, auth: str | None) -> int:
        if auth is None:
            msg = "missing API key: send Authorization: Bearer kr_..."
            raise ApiProblem(401, msg)
        scheme, _, key = auth.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key.startswith("kr_") or len(key) < 4:
            msg = "unknown API key: keys look like kr_... (sent as Authorization: Bearer)"
            raise ApiProblem(401, msg)
        digest = key_hash(key)
        with self._lock:
            return self.store.tenant(digest)

    async def _cut(self, scope: Scope, receive: Receive) -> None:
        """Close the connection without an answer; the request is already committed."""
        abort = scope.get("extensions", {}).get(ABORT_EXTENSION)
        if abort is None:
            raise ResponseDropped
        abort()
        # Let the server notice the disconnect so it does not try to answer for us.
        try:
            async with asyncio.timeout(1.0):
                while (await receive())["type"] != "http.disconnect":
                    pass
        except TimeoutError:  # pragma: no cover - the server never reported it
            pass

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _headers(scope: Scope) -> tuple[str | None, str | None]:
    auth = content_type = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            auth = value.decode("latin-1")
        elif name == b"content-type":
            content_type = value.decode("latin-1")
    return auth, content_type


def create_app(config: EmulatorConfig | None = None, **kwargs: Any) -> EmulatorApp:
    """The local Kraiter as an ASGI app (keyword arguments inject clocks for tests)."""
    return EmulatorApp(config or EmulatorConfig(), **kwargs)
