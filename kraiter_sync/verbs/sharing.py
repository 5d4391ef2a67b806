"""One import's part in what runs share through a PostgreSQL state store.

* **The rate budget.** Every import on PostgreSQL state, workers or not, keeps a row in
  ``rate_shares`` while it sends (:class:`~kraiter_sync.state.work.RateShares`) and paces
  itself to ``limit x max_share / live runs``: runs on one tenant (its base URL and key)
  together stay within the limit, each with an equal part, and ``--max-share`` leaves the
  rest to the application's own traffic. The limit is ``--rate``, else the
  ``X-RateLimit-Limit`` header per second; until one is known the run paces as it always
  did (the controller's own learning).
* **The work** (workers only): the shards of the import, leased one at a time
  (:class:`~kraiter_sync.state.work.ShardLeases`); the lease of the shard in hand is
  renewed in the same heartbeat, and a worker whose lease was taken over stops before
  marking more keys inflight (a guard on the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from kraiter_sync.config import Settings, key_fingerprint
from kraiter_sync.errors import StateError
from kraiter_sync.logs import get_logger
from kraiter_sync.state.store import StateStore

if TYPE_CHECKING:
    from kraiter_sync.api.ratelimit import RateController
    from kraiter_sync.state.work import RateShares, ShardLeases

__all__ = ["Sharing", "budget_key", "job_id", "sharing_for", "work_through_shards"]

log = get_logger("import")

#: Seconds between heartbeats (rate share and lease renewal): how soon the others take
#: up the share of a run that stopped sending.
BEAT = 0.5


def job_id(target: str, inputs: Sequence[str]) -> str:
    """One import's identity, which its workers share: its target and inputs, in order."""
    text = "\n".join([target, *inputs])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def budget_key(settings: Settings) -> str:
    """Whose rate budget a run spends: the base URL and the key (the tenant's limit is
    per key's tenant, whatever ``--tenant`` name the state is kept under)."""
    return f"{settings.base_url}#{key_fingerprint(settings.api_key)}"


class Sharing:
    """What this run shares with others (see the module docstring)."""

    def __init__(
        self,
        shares: RateShares | None,
        *,
        max_share: float = 1.0,
        leases: ShardLeases | None = None,
    ) -> None:
        self.shares = shares
        self.max_share = max_share
        self.leases = leases
        #: The shard in hand (workers), renewed by the heartbeat.
        self.shard: int | None = None
        #: Whether this run sends now (a worker waiting for a lease to expire does not).
        self.active = True
        #: This run's part of the limit (0-1) and the limit, once known.
        self.fraction: float | None = None
        self.limit: float | None = None
        self._lost: str | None = None
        self._renewed_at = time.monotonic()

    def guard(self) -> None:
        """Called before a batch is marked inflight: stop when the lease is not ours."""
        if self._lost is not None:
            raise StateError(self._lost)
        shard, leases = self.shard, self.leases
        late = leases is not None and time.monotonic() - self._renewed_at > leases.ttl * 0.8
        if shard is not None and late:
            self._renew(shard)  # the heartbeat fell behind: renew (or fail) before sending

    def _renew(self, shard: int) -> None:
        """Renew the lease on ``shard``. The heartbeat runs in a thread: by the time its
        renewal reaches the database the shard may be finished and another one in hand,
        so a refusal counts only while ``shard`` is still the one in hand."""
        if self.leases is None:
            return
        try:
            self.leases.renew(shard)
        except StateError as exc:
            if self.shard == shard:
                self._lost = str(exc)
                raise
            return
        if self.shard == shard:
            self._renewed_at = time.monotonic()

    def checking(self) -> contextlib.AbstractContextManager[None]:
        """Workers check that the ledger knows the target one at a time: the first records
        its check before it sends anything, so the others find it recorded instead of
        finding that worker's events in Kraiter and taking them for lost state."""
        if self.leases is None:
            return contextlib.nullcontext()
        from kraiter_sync.state.work import one_at_a_time

        return one_at_a_time(self.leases.db, f"check:{self.leases.target}")

    def detach(self, store: StateStore) -> None:
        """Stop guarding the store's sends (the run is over)."""
        guards: list[object] = getattr(store, "guards", [])
        if self.guard in guards:
            guards.remove(self.guard)

    def leave(self) -> None:
        """Give this run's share of the budget back now (it stopped sending)."""
        if self.shares is not None:
            self.shares.leave()

    def hold(self, shard: int | None) -> None:
        """The shard now in hand (None: none); a lease lost on an earlier one is past."""
        self.shard = shard
        self._lost = None
        self._renewed_at = time.monotonic()

    def beat(self, controller: RateController) -> None:
        """One heartbeat: renew the lease in hand, take this run's part of the budget."""
        shard = self.shard
        if shard is not None:
            with contextlib.suppress(StateError):  # guard() raises it before the next send
                self._renew(shard)
        if not self.active:
            if self.shares is not None:
                self.shares.leave()
            return
        limit = controller.known_limit
        runs, shared_limit = self.shares.beat(limit) if self.shares is not None else (1, None)
        limit = shared_limit or limit
        if limit is None:
            return
        part = self.max_share / max(runs, 1)
        self.limit, self.fraction = limit, part
        controller.set_share(limit * part)

    @contextlib.asynccontextmanager
    async def running(self, controller: RateController) -> AsyncIterator[None]:
        """Heartbeats for the block, then this run's share given back."""

        async def loop() -> None:
            while True:
                try:
                    await asyncio.to_thread(self.beat, controller)
                except StateError as exc:
                    log.warning("warning: the shared rate budget was not renewed: %s", exc)
                await asyncio.sleep(BEAT)

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if self.shares is not None:
                with contextlib.suppress(StateError):
                    await asyncio.to_thread(self.shares.leave)


def sharing_for(
    store: StateStore,
    settings: Settings,
    *,
    max_share: float,
    job: str | None,
    lease_seconds: float,
) -> Sharing | None:
    """The sharing of a run: on PostgreSQL state the budget (and with ``job`` the work)
    shared with other runs; on SQLite state only ``max_share`` of the limit (no other run
    can share it: one run per state directory); None when there is nothing to do."""
    if settings.state_url is None:
        return Sharing(None, max_share=max_share) if max_share < 1 else None
    from kraiter_sync.state.postgres import PostgresStore
    from kraiter_sync.state.work import RateShares, ShardLeases, holder_name

    if not isinstance(store, PostgresStore):
        return None
    holder = holder_name()
    shares = RateShares(store.db, budget_key(settings), holder=holder)
    leases = None
    if job is not None:
        leases = ShardLeases(store.db, settings.target, job, holder=holder, ttl=lease_seconds)
    sharing = Sharing(shares, max_share=max_share, leases=leases)
    store.guards.append(sharing.guard)
    return sharing


async def work_through_shards(
    leases: ShardLeases,
    sharing: Sharing,
    send: Callable[[int], Awaitable[None]],
    *,
    stopping: Callable[[], bool],
    new_round: bool = True,
) -> set[int] | None:
    """Claim, send (``send(shard)``) and finish shard after shard until every shard of
    the round is done, waiting, when the rest are held, for their leases to be renewed
    or to expire (a killed worker's shard is taken over then). Returns the shards this
    worker sent; None when it stopped first (``stopping()``, read after each await: a
    signal sets it), its shard in hand given back for another worker at once."""
    await asyncio.to_thread(leases.begin, new_round=new_round)
    mine: set[int] = set()
    while not stopping():
        shard = await asyncio.to_thread(leases.claim)
        if shard is None:
            wait = await asyncio.to_thread(leases.wait)
            if wait is None:
                return mine
            if sharing.active:  # its share of the rate goes to those sending
                sharing.active = False
                await asyncio.to_thread(sharing.leave)
            await asyncio.sleep(min(max(wait, 0.2), 2.0))
            continue
        sharing.active = True
        sharing.hold(shard)
        try:
            await send(shard)
        finally:
            sharing.hold(None)
        if stopping():  # not all of it was sent
            await asyncio.to_thread(leases.release, shard)
            return None
        await asyncio.to_thread(leases.finish, shard)
        mine.add(shard)
    return None
