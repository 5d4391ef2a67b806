"""A synchronous facade over the in-process emulator, so rule tests read like the contract."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from kraiter_sync.emulator import EmulatorApp, asgi_transport

KEY_A = "kr_tenant_a_secret"
KEY_B = "kr_tenant_b_secret"


class Api:
    """One key's view of an app; every call is one real ASGI request."""

    def __init__(self, app: EmulatorApp, loop: asyncio.AbstractEventLoop, key: str | None) -> None:
        self.app = app
        self.loop = loop
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.AsyncClient(
            transport=asgi_transport(app), base_url="http://local.kraiter", headers=headers
        )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.client.request(method, path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def contact(self, email: str, **props: Any) -> dict[str, Any]:
        r = self.post("/api/contacts", json={"email": email, "properties": props})
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def event(self, **body: Any) -> httpx.Response:
        return self.post("/api/events", json=body)

    def all(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Follow nextCursor to the end."""
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = dict(params, limit=100)
            if cursor:
                query["cursor"] = cursor
            r = self.get(path, params=query)
            assert r.status_code == 200, r.text
            body = r.json()
            items.extend(body.get("data", body.get("items", [])))
            cursor = body["nextCursor"]
            if cursor is None:
                return items


def error(r: httpx.Response) -> tuple[int, str, str | None]:
    body = r.json()["error"]
    return r.status_code, body["code"], body.get("details", {}).get("field")
