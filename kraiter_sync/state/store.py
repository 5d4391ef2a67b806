"""The state store's interface: what a run remembers, whatever holds it.

Every layer above ``state/`` talks to a :class:`StateStore`, never to SQLite or
PostgreSQL: the methods are grouped by concern below. Two backends implement it, chosen
by ``state.backend.open_store``:

* :class:`~kraiter_sync.state.local.LocalStore` — the SQLite ledger (``ledger.db``) in
  the state directory, with blobs and locks as files beside it (the default);
* :class:`~kraiter_sync.state.postgres.PostgresStore` — one PostgreSQL schema shared by
  machines, containers and workers, blobs in a table, locks as advisory locks.

A :class:`SharedFiles` (blobs and locks alone) is what an export needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from kraiter_sync.state.runs import RunRecord

__all__ = [
    "Blobs",
    "BusyMessage",
    "ContactCache",
    "EventLedger",
    "EventState",
    "Locks",
    "RunLog",
    "SharedFiles",
    "StateStore",
    "Watermarks",
    "in_chunks",
    "key_list",
]

EventState = Literal["inflight", "done", "rejected"]


def key_list(keys: Iterable[str] | Any) -> list[str]:
    """Keys (or emails) given as a list, a tuple or a polars Series, as a list."""
    to_list = getattr(keys, "to_list", None)
    if callable(to_list):
        return list(to_list())
    return list(keys)


def in_chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """``items`` in slices of at most ``size`` (keys per statement, for both backends)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class EventLedger(Protocol):
    """Each event key's state per target: ``inflight`` → ``done`` | ``rejected``."""

    def known_states(self, target: str, keys: Sequence[str] | Any) -> dict[str, EventState]: ...
    def mark_inflight(self, target: str, keys: Sequence[str] | Any, run_id: int | None) -> None: ...
    def mark_done(self, target: str, done: Iterable[tuple[str, str | None]]) -> None: ...
    def mark_rejected(self, target: str, rejected: Iterable[tuple[str, str, str]]) -> None: ...
    def inflight(self, target: str) -> list[str]: ...
    def forget(self, target: str, keys: Sequence[str] | Any) -> int: ...
    def count_states(self, target: str) -> dict[str, int]: ...
    def oldest_key_version(self, target: str) -> int: ...
    def adopt_keys(self, target: str, pairs: Iterable[tuple[str, str]]) -> int: ...


class ContactCache(Protocol):
    """email → (Kraiter's contact id, hash of what was last written) per target."""

    def get_contacts(
        self, target: str, emails: Sequence[str] | Any
    ) -> dict[str, tuple[str, str | None]]: ...
    def contact_rows(
        self, target: str, emails: Sequence[str] | Any
    ) -> list[tuple[str, str, str | None]]: ...
    def put_contacts(
        self, target: str, contacts: Iterable[tuple[str, str, str | None]]
    ) -> None: ...
    def forget_contacts(self, target: str, emails: Iterable[str]) -> None: ...


class RunLog(Protocol):
    """One record per command run, and the tenant each ``--tenant`` name belongs to."""

    def start_run(
        self, command: str, target: str, args: Mapping[str, Any] | None = None
    ) -> int: ...
    def finish_run(
        self,
        run_id: int,
        status: str,
        counts: Mapping[str, Any] | None = None,
        *,
        details: Mapping[str, Any] | None = None,
    ) -> None: ...
    def get_run(self, run_id: int) -> RunRecord | None: ...
    def list_runs(self, *, target: str | None = None, limit: int = 50) -> list[RunRecord]: ...
    def mark_killed_runs(self) -> list[int]: ...
    def bind_tenant(
        self, base: str, tenant: str, fingerprint: str, *, rotate: bool = False
    ) -> None: ...


class Watermarks(Protocol):
    """How far an incremental stream got, per target and stream (opaque text)."""

    def get_watermark(self, target: str, stream: str) -> str | None: ...
    def set_watermark(self, target: str, stream: str, value: str) -> None: ...


class Blobs(Protocol):
    """Named documents and files a run keeps whole (an export's state, a sync job's row
    cache), replaced atomically: a reader sees the old content or the new, never a mix.

    Names are relative paths such as ``export/events-0123abcd.json`` or
    ``sync/orders.rows.0123abcd.parquet``; each says which target it belongs to through a
    digest in it. Safe to call from another thread than the one that opened the store.
    """

    def read_blob(self, name: str) -> bytes | None: ...
    def write_blob(self, name: str, data: bytes) -> None: ...
    def delete_blobs(self, prefix: str, *, keep: str | None = None) -> int: ...
    def list_blobs(self, prefix: str) -> list[str]: ...
    def blob_label(self, name: str) -> str: ...


#: Builds the "busy" message from what is known of the holder ("pid 12 on host h" or "").
BusyMessage = Callable[[str], str]


class Locks(Protocol):
    """Exclusive locks that die with their holder (a killed process frees its locks with
    no one having to act). A held lock raises
    :class:`~kraiter_sync.errors.LockHeldError` (exit 5) at once; not re-entrant."""

    def lock(self, name: str, *, busy: BusyMessage) -> AbstractContextManager[None]: ...
    def run_lock(self, target: str) -> AbstractContextManager[None]: ...


class SharedFiles(Blobs, Locks, Protocol):
    """Blobs and locks alone (an export's needs)."""

    #: Where this state lives, safe to print (no password).
    display: str

    def close(self) -> None: ...
    def __enter__(self) -> SharedFiles: ...
    def __exit__(self, *exc: object) -> None: ...


class StateStore(EventLedger, ContactCache, RunLog, Watermarks, Blobs, Locks, Protocol):
    """Everything a run keeps; closed when the run ends."""

    #: Where this state lives, safe to print (no password).
    display: str

    def close(self) -> None: ...
    def __enter__(self) -> StateStore: ...
    def __exit__(self, *exc: object) -> None: ...
