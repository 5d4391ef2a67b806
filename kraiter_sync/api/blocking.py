"""The blocking facade over :class:`~kraiter_sync.api.client.KraiterClient` for scripts
and notebooks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from kraiter_sync.api.client import KraiterClient, Page

if TYPE_CHECKING:
    from kraiter_sync.config import Settings

__all__ = ["SyncKraiterClient"]

T = TypeVar("T")


class SyncKraiterClient:
    """Blocking facade over :class:`KraiterClient` for scripts and notebooks.

    The async client runs on a private event loop in a daemon thread, so this works
    even where an event loop is already running (Jupyter). ``list_*`` methods return
    lists. Close it (or use ``with``) to stop the thread.
    """

    def __init__(self, base_url: str, api_key: str, **kw: Any) -> None:
        self._client = KraiterClient(base_url, api_key, **kw)
        self._start()

    @classmethod
    def from_settings(cls, settings: Settings, **kw: Any) -> SyncKraiterClient:
        """See :meth:`KraiterClient.from_settings` (``kraiter_sync.blocking_client_for``
        also serves the local Kraiter)."""
        return cls.wrapping(KraiterClient.from_settings(settings, **kw))

    @classmethod
    def wrapping(cls, client: KraiterClient) -> SyncKraiterClient:
        """The facade over an existing async client (it takes the client over)."""
        self = cls.__new__(cls)
        self._client = client
        self._start()
        return self

    def _start(self) -> None:
        # Started only once the client exists, so a bad argument leaves no thread behind.
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="kraiter-sync-client", daemon=True
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"Sync{self._client!r}"

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def call(self, work: Callable[[KraiterClient], Awaitable[T]]) -> T:
        """Run ``work(async_client)`` on the facade's loop and return its result (for
        code written against the async client, e.g. ``export.export_async``)."""
        return self._run(_awaited(work(self._client)))

    def _collect(
        self, factory: Callable[[], AsyncIterator[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        async def collect() -> list[dict[str, Any]]:
            return [item async for item in factory()]

        return self._run(collect())

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._run(self._client.aclose())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> SyncKraiterClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def create_contact(
        self, email: str, *, properties: Mapping[str, Any] | None = None, user_id: str | None = None
    ) -> dict[str, Any]:
        return self._run(self._client.create_contact(email, properties=properties, user_id=user_id))

    def get_contact(self, contact_id: str) -> dict[str, Any]:
        return self._run(self._client.get_contact(contact_id))

    def get_contact_by_email(self, email: str) -> dict[str, Any] | None:
        return self._run(self._client.get_contact_by_email(email))

    def list_contacts(
        self, *, search: str | None = None, suppressed: bool | None = None, page_size: int = 100
    ) -> list[dict[str, Any]]:
        return self._collect(
            lambda: self._client.list_contacts(
                search=search, suppressed=suppressed, page_size=page_size
            )
        )

    def update_contact(
        self,
        contact_id: str,
        *,
        email: str | None = None,
        properties: Mapping[str, Any] | None = None,
        user_id: str | None = None,
        unsubscribed: bool | None = None,
    ) -> dict[str, Any]:
        return self._run(
            self._client.update_contact(
                contact_id,
                email=email,
                properties=properties,
                user_id=user_id,
                unsubscribed=unsubscribed,
            )
        )

    def upsert_contact(
        self, email: str, *, properties: Mapping[str, Any] | None = None, user_id: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        return self._run(self._client.upsert_contact(email, properties=properties, user_id=user_id))

    def delete_contact(self, contact_id: str) -> None:
        self._run(self._client.delete_contact(contact_id))

    def contact_sends(self, contact_id: str) -> list[dict[str, Any]]:
        return self._collect(lambda: self._client.contact_sends(contact_id))

    def contact_scheduled(self, contact_id: str) -> list[dict[str, Any]]:
        return self._collect(lambda: self._client.contact_scheduled(contact_id))

    def contact_timeline(self, contact_id: str) -> list[dict[str, Any]]:
        return self._collect(lambda: self._client.contact_timeline(contact_id))

    def contact_sequences(self, contact_id: str) -> list[dict[str, Any]]:
        return self._run(self._client.contact_sequences(contact_id))

    def contact_segments(self, contact_id: str) -> list[dict[str, Any]]:
        return self._run(self._client.contact_segments(contact_id))

    def track_event(
        self,
        name: str,
        *,
        contact_id: str | None = None,
        email: str | None = None,
        properties: Mapping[str, Any] | str | None = None,
        timestamp: datetime | str | None = None,
    ) -> dict[str, Any]:
        return self._run(
            self._client.track_event(
                name,
                contact_id=contact_id,
                email=email,
                properties=properties,
                timestamp=timestamp,
            )
        )

    def list_events(
        self,
        *,
        contact_id: str | None = None,
        email: str | None = None,
        name: str | None = None,
        page_size: int = 100,
    ) -> list[dict[str, Any]]:
        return self._collect(
            lambda: self._client.list_events(
                contact_id=contact_id, email=email, name=name, page_size=page_size
            )
        )

    def list_sends(
        self,
        *,
        status: str | None = None,
        contact_id: str | None = None,
        template_id: str | None = None,
    ) -> list[dict[str, Any]]:
        return self._collect(
            lambda: self._client.list_sends(
                status=status, contact_id=contact_id, template_id=template_id
            )
        )

    def list_scheduled(self) -> list[dict[str, Any]]:
        return self._collect(self._client.list_scheduled)

    def put_sequence(
        self, sequence_id: str, *, name: str, status: str, triggers: list[str]
    ) -> dict[str, Any]:
        return self._run(
            self._client.put_sequence(sequence_id, name=name, status=status, triggers=triggers)
        )

    def list_sequences(self) -> list[dict[str, Any]]:
        return self._collect(self._client.list_sequences)

    def get_page(self, path_key: str, **kw: Any) -> Page:
        return self._run(self._client.get_page(path_key, **kw))


async def _awaited(value: Awaitable[T]) -> T:
    return await value
