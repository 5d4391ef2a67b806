"""Reconcile against the emulator: snapshot strategies, plans, apply, stale plans,
tombstones and restore, events. In-process emulator (one real-HTTP test at the end)."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
import pytest

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.emulator import EmulatorConfig, asgi_transport, create_app, serve_in_thread
from kraiter_sync.errors import GuardError
from kraiter_sync.plan.contact_plan import changed_contacts, plan_contacts, read_plan, write_plan
from kraiter_sync.plan.contacts import diff_contacts
from kraiter_sync.plan.guards import check_mirror_guards, verify_plan_fresh
from kraiter_sync.plan.snapshot import snapshot_contacts
from kraiter_sync.state.tombstones import read_tombstone
from kraiter_sync.verbs.reconcile import reconcile_events
from tests.helpers.reconcile import apply_with, local_frame, reconcile_applied, restore_with

T = TypeVar("T")


def run_with_client(fn: Callable[[KraiterClient], Awaitable[T]]) -> T:
    async def go() -> T:
        app = create_app(EmulatorConfig())
        async with KraiterClient(
            "http://kraiter.test", "kr_test", transport=asgi_transport(app, close_app=True)
        ) as client:
            return await fn(client)

    return asyncio.run(go())


async def seed(client: KraiterClient, n: int, prefix: str = "r") -> list[dict[str, Any]]:
    return [
        await client.create_contact(f"{prefix}{i}@example.com", properties={"i": i})
        for i in range(n)
    ]


async def all_contacts(client: KraiterClient) -> dict[str, dict[str, Any]]:
    return {c["email"].lower(): c async for c in client.list_contacts()}


def test_strategy_lists_when_cheap_and_looks_up_when_remote_is_big() -> None:
    async def scenario(client: KraiterClient) -> None:
        await seed(client, 250)
        few = ["r1@example.com", "nobody@example.com"]
        snap = await snapshot_contacts(client, few)
        assert snap.strategy == "lookups"
        assert not snap.complete
        assert snap.frame["key"].to_list() == ["r1@example.com"]
        assert snap.requests == 2 + 2  # two pages to find out, then two lookups
        assert "more than 200 contacts" in snap.reason

        many = [f"r{i}@example.com" for i in range(5)]
        snap = await snapshot_contacts(client, many)
        assert snap.strategy == "listing"
        assert snap.complete
        assert snap.frame.height == 250
        assert snap.requests == 3
        seen: list[int] = []
        forced = await snapshot_contacts(client, few, strategy="listing", on_progress=seen.append)
        assert forced.frame.height == 250
        assert seen == [100, 200, 250]

    run_with_client(scenario)


def test_plan_over_the_emulator_covers_every_case() -> None:
    async def scenario(client: KraiterClient) -> None:
        await client.create_contact("same@example.com", properties={"plan": "pro"})
        await client.create_contact("changed@example.com", properties={"plan": "free"})
        await client.create_contact("Case@Example.COM", properties={"plan": "pro"}, user_id="u9")
        await client.create_contact("remote@example.com", properties={"plan": "free"})
        local = local_frame(
            [
                ("same@example.com", None, {"plan": "pro"}),
                ("changed@example.com", None, {"plan": "pro"}),
                ("case@example.com", "u9", {"plan": "pro"}),
                ("new@example.com", None, {"plan": "trial"}),
            ]
        )
        plan, snap = await plan_contacts(client, local, strategy="listing")
        assert snap.strategy == "listing"
        actions = dict(zip(plan.rows["email"], plan.rows["action"], strict=True))
        assert actions == {
            "same@example.com": "unchanged",
            "changed@example.com": "update",
            "case@example.com": "unchanged",
            "new@example.com": "create",
            "remote@example.com": "remote_only",
        }
        assert changed_contacts(plan, local)["email"].to_list() == [
            "changed@example.com",
            "new@example.com",
        ]
        # apply, then reconcile again: nothing left to do, and no duplicate for Case@
        result = await apply_with(client, plan)
        assert (result.created, result.updated, result.deleted) == (1, 1, 0)
        again, _ = await plan_contacts(client, local)
        assert again.is_empty
        assert again.counts()["unchanged"] == 4
        remote = await all_contacts(client)
        assert len(remote) == 5
        assert remote["changed@example.com"]["properties"] == {"plan": "pro"}

    run_with_client(scenario)


def test_a_change_made_in_kraiter_after_import_shows_up_with_old_and_new() -> None:
    async def scenario(client: KraiterClient) -> None:
        local = local_frame([("ann@example.com", "u1", {"plan": "pro", "seats": 5})])
        first, _ = await plan_contacts(client, local)
        await apply_with(client, first)  # the "last import"
        ann = await client.get_contact_by_email("ann@example.com")
        assert ann is not None
        # someone edits the contact directly in Kraiter
        await client.update_contact(ann["id"], properties={"plan": "free", "note": "hi"})
        plan, _ = await plan_contacts(client, local)
        row = plan.of("update").row(0, named=True)
        assert json.loads(row["changes"]) == {"properties": {"plan": ["free", "pro"]}}
        mirrored, _ = await plan_contacts(client, local, mirror_properties=True)
        assert json.loads(mirrored.of("update")["changes"].item()) == {
            "properties": {"plan": ["free", "pro"], "note": ["hi", None]}
        }
        await apply_with(client, mirrored)
        after = await client.get_contact(ann["id"])
        assert after["properties"] == {"plan": "pro", "seats": 5}

    run_with_client(scenario)


def test_saved_plan_is_refused_when_kraiter_changed_since(tmp_path: Path) -> None:
    async def scenario(client: KraiterClient) -> None:
        await client.create_contact("ann@example.com", properties={"plan": "free"})
        await client.create_contact("bob@example.com", properties={"plan": "free"})
        local = local_frame(
            [
                ("ann@example.com", None, {"plan": "pro"}),
                ("bob@example.com", None, {"plan": "pro"}),
                ("cy@example.com", None, {}),
            ]
        )
        plan, _ = await plan_contacts(client, local)
        for name in ("plan.json", "plan.parquet"):
            saved = read_plan(write_plan(plan, tmp_path / name))
            assert saved.rows.equals(plan.rows), name
            assert saved.created_at == plan.created_at
        saved = read_plan(tmp_path / "plan.json")
        # unchanged remote: fresh
        await verify_plan_fresh(client, saved)
        bob = await client.get_contact_by_email("bob@example.com")
        assert bob is not None
        await client.update_contact(bob["id"], properties={"plan": "business"})
        with pytest.raises(GuardError, match=r"1 contact\(s\) changed in Kraiter") as err:
            await verify_plan_fresh(client, saved)
        assert "bob@example.com (changed)" in str(err.value)
        # a contact created for an email the plan would create also makes it stale
        fresh, _ = await plan_contacts(client, local)
        await client.create_contact("cy@example.com")
        with pytest.raises(GuardError, match=r"cy@example.com \(created\)"):
            await verify_plan_fresh(client, fresh)

    run_with_client(scenario)


def test_mirror_guards_refuse_with_clear_messages() -> None:
    async def scenario(client: KraiterClient) -> None:
        await seed(client, 40)
        empty, _ = await plan_contacts(client, local_frame([]), mirror=True)
        with pytest.raises(GuardError, match="refusing to mirror an empty input"):
            check_mirror_guards(empty, max_delete_ratio=0.05)
        local = local_frame([(f"r{i}@example.com", None, {"i": i}) for i in range(37)])
        plan, _ = await plan_contacts(client, local, mirror=True)
        assert plan.counts()["delete"] == 3
        with pytest.raises(GuardError) as err:
            check_mirror_guards(plan, max_delete_ratio=0.05)
        assert str(err.value) == (
            "refusing to delete 3 of 40 contacts in Kraiter (7.5%), more than "
            "--max-delete-ratio 0.05 (5.0%). Review the plan (--plan-out) and raise "
            "--max-delete-ratio if it is right"
        )
        assert err.value.exit_code == 2
        check_mirror_guards(plan, max_delete_ratio=0.1)  # raised explicitly: allowed

    run_with_client(scenario)


def test_tombstone_then_restore_round_trip(tmp_path: Path) -> None:
    async def scenario(client: KraiterClient) -> None:
        keep = await client.create_contact("keep@example.com", properties={"a": 1})
        gone = await client.create_contact(
            "gone@example.com", properties={"plan": "pro", "seats": 3, "vip": True}, user_id="u7"
        )
        await client.update_contact(gone["id"], unsubscribed=True)
        local = local_frame([("keep@example.com", None, {"a": 1})])
        plan, snap = await plan_contacts(client, local, mirror=True)
        before = {c["id"]: c for c in read_frame_raw(snap.frame)}
        tomb = tmp_path / "t" / "tombstone.json"
        result = await apply_with(client, plan, remote=before, tombstone=tomb)
        assert result.deleted == 1
        assert result.tombstone == tomb
        saved = read_tombstone(tomb)
        assert [c["email"] for c in saved] == ["gone@example.com"]
        assert saved[0]["properties"] == {"plan": "pro", "seats": 3, "vip": True}
        assert await client.get_contact_by_email("gone@example.com") is None

        restored = await restore_with(client, saved)
        assert (restored.restored, restored.existing) == (1, 0)
        back = await client.get_contact_by_email("gone@example.com")
        assert back is not None
        assert back["properties"] == {"plan": "pro", "seats": 3, "vip": True}
        assert back["userId"] == "u7"
        assert back["unsubscribed"] is True
        # restoring twice is safe: the contact exists and is left alone
        again = await restore_with(client, saved)
        assert (again.restored, again.existing) == (0, 1)
        assert (await client.get_contact(keep["id"]))["properties"] == {"a": 1}

    run_with_client(scenario)


def read_frame_raw(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return [json.loads(r) for r in frame["raw"]]


def events_frame(rows: list[tuple[str, str, str, dict[str, Any]]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "email": [r[0] for r in rows],
            "name": [r[1] for r in rows],
            "timestamp_iso": [r[2] for r in rows],
            "properties": [json.dumps(r[3], separators=(",", ":")) for r in rows],
            "event_key": [str(i) for i in range(len(rows))],
            "source_file": ["events.csv"] * len(rows),
            "source_row": list(range(1, len(rows) + 1)),
        }
    )


def test_events_missing_and_extra_then_apply_sends_only_the_missing() -> None:
    t1, t2, t3 = (
        "2026-01-01T10:00:00.000Z",
        "2026-01-02T10:00:00.000Z",
        "2026-01-03T10:00:00.000Z",
    )

    async def scenario(client: KraiterClient) -> None:
        ann = await client.create_contact("ann@example.com")
        await client.track_event("login", contact_id=ann["id"], timestamp=t1, properties={"n": 1})
        await client.track_event("login", contact_id=ann["id"], timestamp=t3)  # extra
        await client.track_event("paid", contact_id=ann["id"], timestamp=t1, properties={"x": 2})
        local = events_frame(
            [
                ("ann@example.com", "login", t1, {"n": 1}),  # matches (same canonical form)
                ("ann@example.com", "login", t2, {}),  # missing
                ("ann@example.com", "paid", t1, {"x": 2}),
                ("ann@example.com", "paid", t1, {"x": 2}),  # a second identical one: missing
                ("new@example.com", "signup", t1, {}),  # contact not in Kraiter
            ]
        )
        result = await reconcile_events(client, local)
        counts = {(r["contact"], r["name"]): r for r in result.counts.iter_rows(named=True)}
        login = counts[("ann@example.com", "login")]
        assert (login["local"], login["remote"], login["missing"], login["extra"]) == (2, 2, 1, 1)
        paid = counts[("ann@example.com", "paid")]
        assert (paid["local"], paid["remote"], paid["missing"], paid["extra"]) == (2, 1, 1, 0)
        assert counts[("new@example.com", "signup")]["missing"] == 1
        assert result.contacts_absent == 1
        assert result.missing.height == 3

        applied = await reconcile_applied(client, local)
        assert applied.sent == 3
        assert applied.exit_code == 0
        again = await reconcile_events(client, local)
        assert int(again.counts["missing"].sum()) == 0
        assert int(again.counts["extra"].sum()) == 1  # never deleted
        names = [e["name"] async for e in client.list_events(email="ann@example.com")]
        assert sorted(names) == ["login", "login", "login", "paid", "paid"]

    run_with_client(scenario)


def test_reconcile_over_real_http() -> None:
    async def scenario(base_url: str) -> None:
        async with KraiterClient(base_url, "kr_http") as client:
            await seed(client, 3)
            local = local_frame([("r0@example.com", None, {"i": 1}), ("x@example.com", None, {})])
            plan, _ = await plan_contacts(client, local)
            assert plan.counts() == {
                "create": 1,
                "update": 1,
                "unchanged": 0,
                "remote_only": 2,
                "delete": 0,
            }
            await apply_with(client, plan)
            again, _ = await plan_contacts(client, local)
            assert again.is_empty

    with serve_in_thread(EmulatorConfig()) as url:
        asyncio.run(scenario(url))


def test_diff_with_remote_frame_from_snapshot_matches_pure_diff() -> None:
    async def scenario(client: KraiterClient) -> None:
        await seed(client, 5)
        local = local_frame([("r1@example.com", None, {"i": 2})])
        snap = await snapshot_contacts(client, None)
        plan, _ = await plan_contacts(client, local, strategy="listing")
        assert plan.rows.equals(diff_contacts(local, snap.frame, strategy="listing").rows)

    run_with_client(scenario)


def test_import_hook_sends_nothing_for_unchanged_contacts() -> None:
    from kraiter_sync.plan.contact_plan import contacts_to_write

    class Counting:
        """A RequestObserver that counts the write requests (the import's cost)."""

        def __init__(self) -> None:
            self.statuses: list[int] = []

        async def before_request(self) -> None:
            return None

        def after_response(self, status: int, headers: Any) -> None:
            self.statuses.append(status)

    async def go() -> None:
        app = create_app(EmulatorConfig())
        counter = Counting()
        async with KraiterClient(
            "http://kraiter.test",
            "kr_test",
            transport=asgi_transport(app, close_app=True),
            observer=counter,
        ) as client:
            local = local_frame([(f"c{i}@example.com", None, {"i": i}) for i in range(5)])
            todo, plan, _ = await contacts_to_write(client, local)
            assert todo.height == 5
            await apply_with(client, plan)
            counter.statuses.clear()
            todo, plan, snap = await contacts_to_write(client, local)
            assert todo.height == 0
            assert plan.counts()["unchanged"] == 5
            assert counter.statuses == [200] * snap.requests  # reads only, no writes
            changed = local.with_columns(
                pl.when(pl.col("email") == "c3@example.com")
                .then(pl.lit('{"i":33}'))
                .otherwise(pl.col("properties"))
                .alias("properties")
            )
            todo, _, _ = await contacts_to_write(client, changed)
            assert todo["email"].to_list() == ["c3@example.com"]

    asyncio.run(go())


def test_apply_under_faults_converges_with_retries(tmp_path: Path) -> None:
    """5xx answers and dropped responses (applied, then cut): retried, nothing doubled."""
    from kraiter_sync.api.retry import RetryPolicy, call_with_retry

    waits: list[float] = []

    async def no_sleep(seconds: float) -> None:
        waits.append(seconds)

    policy = RetryPolicy(max_retries=12, sleep=no_sleep)

    async def call(fn: Callable[[], Awaitable[Any]]) -> Any:
        return await call_with_retry(fn, policy)

    async def go() -> None:
        app = create_app(EmulatorConfig(fail_rate=0.25, drop_rate=0.15, seed=11))
        async with KraiterClient(
            "http://kraiter.test", "kr_test", transport=asgi_transport(app, close_app=True)
        ) as client:
            for i in range(12):
                # a partial (not a lambda): tenacity awaits retries only of coroutine functions
                await call(
                    functools.partial(
                        client.upsert_contact, f"r{i}@example.com", properties={"v": 0}
                    )
                )
            local = local_frame(
                [(f"r{i}@example.com", None, {"v": 1}) for i in range(11)]
                + [(f"n{i}@example.com", None, {"v": 1}) for i in range(8)]
            )
            plan, snap = await plan_contacts(client, local, mirror=True, call=call)
            assert plan.counts()["delete"] == 1
            result = await apply_with(
                client,
                plan,
                remote={c["id"]: c for c in read_frame_raw(snap.frame)},
                tombstone=tmp_path / "t.json",
                policy=policy,
            )
            assert result.failed == 0
            assert result.rejects == []
            again, _ = await plan_contacts(client, local, mirror=True, call=call)
            assert again.is_empty, again.rows.filter(pl.col("action") != "unchanged")
            assert again.counts()["unchanged"] == 19  # no duplicates were created

    asyncio.run(go())
    assert waits  # faults happened and were retried (without real sleeping)
