"""Shard leases, rate shares and the workers' shared lock, on the test PostgreSQL server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kraiter_sync.api.ratelimit import RateController
from kraiter_sync.errors import LockHeldError, StateError
from kraiter_sync.state.postgres import PostgresStore
from kraiter_sync.state.work import RateShares, ShardLeases
from kraiter_sync.verbs.sharing import Sharing
from tests.helpers.pgstate import fresh_schema


@pytest.fixture
def store_url() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[PostgresStore]:
    with PostgresStore(store_url, state_dir=tmp_path / "st") as opened:
        yield opened


def _leases(
    store: PostgresStore, holder: str, ttl: float = 30.0, job: str = "job-1"
) -> ShardLeases:
    return ShardLeases(store.db, "target", job, holder=holder, ttl=ttl, shards=4)


def test_workers_claim_disjoint_shards_until_none_is_left(store: PostgresStore) -> None:
    a, b = _leases(store, "a"), _leases(store, "b")
    assert a.begin() == b.begin(new_round=False) == 0
    claimed = [a.claim(), b.claim(), a.claim(), b.claim()]
    assert sorted(claimed) == [0, 1, 2, 3]  # type: ignore[type-var]
    assert a.claim() is None
    assert a.wait() is not None  # held, not done
    for shard, leases in zip(claimed, [a, b, a, b], strict=True):
        assert shard is not None
        leases.finish(shard)
    assert a.wait() is None


def test_an_expired_lease_is_taken_over_and_its_holder_stops(store: PostgresStore) -> None:
    dead, alive = _leases(store, "dead", ttl=0.5), _leases(store, "alive")
    dead.begin()
    alive.begin(new_round=False)
    first = dead.claim()
    assert first == 0
    for _ in range(3):
        assert alive.claim() is not None  # the other three
    assert alive.claim() is None  # shard 0 is still leased
    time.sleep(0.8)
    assert alive.claim() == 0  # taken over
    with pytest.raises(StateError, match="another worker took it over"):
        dead.renew(0)
    dead.finish(0)  # not its lease any more: changes nothing
    assert alive.wait() is not None


def test_two_imports_on_one_target_never_hold_the_same_shard_at_once(
    store: PostgresStore,
) -> None:
    backfill, nightly = _leases(store, "a", job="backfill"), _leases(store, "b", job="nightly")
    backfill.begin()
    nightly.begin()
    held = [backfill.claim(), backfill.claim()]
    assert held == [0, 1]
    assert nightly.claim() == 2  # 0 and 1 hold contacts the backfill is sending now
    backfill.finish(0)
    assert nightly.claim() == 0  # free again: the nightly import's own shard 0 is its own


def test_a_finished_job_begins_a_new_round_and_old_workers_leave_it(
    store: PostgresStore,
) -> None:
    old = _leases(store, "old")
    old.begin()
    while (shard := old.claim()) is not None:
        old.finish(shard)
    assert old.wait() is None
    joiner = _leases(store, "joiner")
    assert joiner.begin(new_round=False) == 0  # joins the finished round: nothing to do
    assert joiner.claim() is None
    new = _leases(store, "new")
    assert new.begin() == 1
    assert old.claim() is None  # its round is over
    assert old.wait() is None
    assert new.claim() == 0


def test_runs_on_one_tenant_split_the_limit_times_max_share(store: PostgresStore) -> None:
    one = RateShares(store.db, "https://k#t", holder="one")
    two = RateShares(store.db, "https://k#t", holder="two")
    other = RateShares(store.db, "https://k#other", holder="x")
    assert one.beat(None) == (1, None)
    assert two.beat(100.0) == (2, 100.0)
    assert other.beat(50.0) == (1, 50.0)  # another tenant: a budget of its own
    controller = RateController()  # knows no limit itself: takes the one another run knows
    sharing = Sharing(one, max_share=0.7)
    sharing.beat(controller)
    assert controller.share == pytest.approx(100 * 0.7 / 2)
    assert sharing.fraction == pytest.approx(0.35)
    two.leave()
    mine = RateController(ceiling=100.0)  # --rate 100
    sharing.beat(mine)
    assert mine.share == pytest.approx(100 * 0.7)
    one.ttl = two.ttl = 0.2
    two.beat(100.0)
    time.sleep(0.4)  # two stopped renewing (killed): its share returns
    assert one.beat(None) == (1, None)


def test_workers_hold_the_target_lock_shared_and_exclude_a_plain_run(
    store: PostgresStore, store_url: str, tmp_path: Path
) -> None:
    with (
        PostgresStore(store_url, state_dir=tmp_path / "b") as second,
        PostgresStore(store_url, state_dir=tmp_path / "c") as third,
    ):
        with (
            store.worker_lock("t"),
            second.worker_lock("t"),
            pytest.raises(LockHeldError, match="--workers"),
            third.run_lock("t"),
        ):
            pass
        with store.run_lock("t"), pytest.raises(LockHeldError), second.worker_lock("t"):
            pass


def test_a_late_renewal_of_a_finished_shard_does_not_stop_the_worker(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    leases = _leases(store, "w")
    leases.begin()
    sharing = Sharing(None, leases=leases)
    first = leases.claim()
    assert first is not None
    sharing.hold(first)
    renew = leases.renew
    moved: list[int] = []

    def slow_renew(shard: int) -> None:
        # the heartbeat (a thread) read the shard in hand; before its renewal reaches the
        # database the main loop finishes that shard and takes the next one
        sharing.hold(None)
        leases.finish(shard)
        second = leases.claim()
        assert second is not None
        sharing.hold(second)
        moved.append(second)
        renew(shard)

    monkeypatch.setattr(leases, "renew", slow_renew)
    sharing.beat(RateController())
    assert moved
    sharing.guard()  # the late renewal was refused, and it is not this worker's concern
    # a lease really lost (taken over) on the shard in hand stops it
    monkeypatch.setattr(leases, "renew", renew)
    store.db.query(
        "UPDATE {s}.work_shards SET holder = 'thief' WHERE job = 'job-1' AND shard = %s "
        "RETURNING shard",
        [moved[0]],
    )
    sharing.beat(RateController())
    with pytest.raises(StateError, match="another worker took it over"):
        sharing.guard()
