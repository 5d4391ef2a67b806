"""The state store's interface: what a run remembers, whatever holds it.

Every layer above ``state/`` talks to a :class:`StateStore`, never to SQLite: the methods
are grouped by concern below, and :class:`~kraiter_sync.state.ledger.Ledger` (SQLite in
the state directory) is today's one implementation. A second backend (e.g. PostgreSQL,
shared by several machines) implements the same protocol.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from kraiter_sync.state.runs import RunRecord

__all__ = ["ContactCache", "EventLedger", "EventState", "RunLog", "StateStore", "Watermarks"]

EventState = Literal["inflight", "done", "rejected"]


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


class StateStore(EventLedger, ContactCache, RunLog, Watermarks, Protocol):
    """Everything a run keeps; closed when the run ends."""

    def close(self) -> None: ...
