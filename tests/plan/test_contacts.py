"""The pure diff: hand-picked cases and hypothesis properties (partition, convergence)."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kraiter_sync.plan.contacts import diff_contacts
from kraiter_sync.plan.snapshot import remote_frame
from tests.helpers.reconcile import local_frame


def contact(
    i: int, email: str, props: dict[str, Any], user_id: str | None = None
) -> dict[str, Any]:
    return {
        "id": f"cnt_{i:06d}",
        "email": email,
        "userId": user_id,
        "properties": props,
        "createdAt": "2026-01-01T00:00:00.000Z",
        "updatedAt": "2026-01-02T00:00:00.000Z",
    }


def by_action(plan: Any) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in plan.rows.iter_rows(named=True):
        out.setdefault(row["action"], []).append(row)
    return out


def test_new_changed_unchanged_remote_only_and_case() -> None:
    local = local_frame(
        [
            ("new@example.com", None, {"plan": "free"}),
            ("changed@example.com", "u2", {"plan": "pro", "seats": 5}),
            ("same@example.com", None, {"plan": "free", "score": 30.0}),
            ("alice@example.com", None, {"plan": "pro"}),
        ]
    )
    remote = remote_frame(
        [
            contact(1, "changed@example.com", {"plan": "free", "seats": 5, "extra": True}, "u1"),
            contact(2, "same@example.com", {"plan": "free", "score": 30.0, "extra": "x"}),
            contact(3, "Alice@Example.COM", {"plan": "pro"}),
            contact(4, "gone@example.com", {"plan": "free"}),
        ]
    )
    plan = diff_contacts(local, remote)
    rows = by_action(plan)
    assert plan.counts() == {
        "create": 1,
        "update": 1,
        "unchanged": 2,
        "remote_only": 1,
        "delete": 0,
    }
    assert rows["create"][0]["email"] == "new@example.com"
    assert rows["create"][0]["properties"] == '{"plan":"free"}'
    upd = rows["update"][0]
    assert upd["id"] == "cnt_000001"
    assert json.loads(upd["changes"]) == {
        "properties": {"plan": ["free", "pro"]},
        "userId": ["u1", "u2"],
    }
    # Only what differs is sent; "extra" (Kraiter only) is left alone.
    assert json.loads(upd["properties"]) == {"plan": "pro"}
    assert upd["user_id"] == "u2"
    # Case-only difference in Kraiter's stored email is the same contact.
    assert {r["email"] for r in rows["unchanged"]} == {"same@example.com", "alice@example.com"}
    assert rows["remote_only"][0]["email"] == "gone@example.com"
    assert rows["remote_only"][0]["id"] == "cnt_000004"


def test_mirror_properties_removes_keys_and_mirror_deletes() -> None:
    local = local_frame([("a@example.com", None, {"plan": "pro"})])
    remote = remote_frame(
        [
            contact(1, "a@example.com", {"plan": "pro", "old": 1}),
            contact(2, "b@example.com", {}),
        ]
    )
    plan = diff_contacts(local, remote, mirror=True, mirror_properties=True)
    rows = by_action(plan)
    assert json.loads(rows["update"][0]["properties"]) == {"old": None}
    assert json.loads(rows["update"][0]["changes"]) == {"properties": {"old": [1, None]}}
    assert [r["id"] for r in rows["delete"]] == ["cnt_000002"]
    assert "remote_only" not in rows


def test_values_compare_by_canonical_form() -> None:
    """Types count: 30.0 != 30, "30" != 30 and true != 1; only equal JSON is unchanged."""
    local = local_frame(
        [
            ("a@example.com", None, {"n": 30.0}),
            ("b@example.com", None, {"n": "30"}),
            ("c@example.com", None, {"n": True}),
            ("d@example.com", None, {"n": 30}),
        ]
    )
    remote = remote_frame(
        [
            contact(1, "a@example.com", {"n": 30}),
            contact(2, "b@example.com", {"n": 30}),
            contact(3, "c@example.com", {"n": 1}),
            contact(4, "d@example.com", {"n": 30}),
        ]
    )
    rows = by_action(diff_contacts(local, remote))
    assert [r["email"] for r in rows["unchanged"]] == ["d@example.com"]
    assert sorted(r["email"] for r in rows["update"]) == [
        "a@example.com",
        "b@example.com",
        "c@example.com",
    ]


def test_tricky_keys_and_values_survive_the_split() -> None:
    props = {'a":b': 1, "c\\": 'x,"y"', "é": "ü", "k": '","'}
    local = local_frame([("a@example.com", None, {**props, "k": "new"})])
    remote = remote_frame([contact(1, "a@example.com", props)])
    upd = by_action(diff_contacts(local, remote))["update"][0]
    assert json.loads(upd["changes"]) == {"properties": {"k": ['","', "new"]}}
    assert json.loads(upd["properties"]) == {"k": "new"}
    # a key holding '":' changes value: split exactly, not at the escaped quote
    local = local_frame([("a@example.com", None, {'a":b': 2, "c\\": "y"})])
    upd = by_action(diff_contacts(local, remote))["update"][0]
    assert json.loads(upd["changes"]) == {"properties": {'a":b': [1, 2], "c\\": ['x,"y"', "y"]}}


def test_empty_sides() -> None:
    empty_local = local_frame([])
    plan = diff_contacts(empty_local, remote_frame([contact(1, "a@example.com", {})]))
    assert plan.counts()["remote_only"] == 1
    plan = diff_contacts(local_frame([("a@example.com", None, {})]), remote_frame([]))
    assert plan.counts()["create"] == 1
    assert diff_contacts(empty_local, remote_frame([])).rows.height == 0


def test_mirror_needs_a_complete_remote() -> None:
    with pytest.raises(ValueError, match="complete list"):
        diff_contacts(local_frame([]), remote_frame([]), mirror=True, remote_complete=False)


def test_duplicate_keys_are_resolved() -> None:
    local = local_frame([("a@example.com", None, {"v": 1}), ("a@example.com", None, {"v": 2})])
    remote = remote_frame(
        [contact(1, "a@example.com", {"v": 2}), contact(2, "A@EXAMPLE.com ", {"v": 3})]
    )
    plan = diff_contacts(local, remote)
    assert plan.counts()["unchanged"] == 1  # last local row wins, oldest remote kept
    assert plan.remote_duplicates == 1
    assert plan.rows.height == 1


# ---- properties ------------------------------------------------------------------------

EMAILS = [f"{n}@example.com" for n in ("ann", "bob", "cy", "dee", "eve", "fay", "gus")]
KEYS = st.sampled_from(["plan", "score", "a.b", 'q"k', 'x":y', "c,d", "back\\slash", "ü"])
VALUES = st.one_of(
    st.text(alphabet='ab,":{}\\ü', max_size=6),
    st.integers(-5, 5),
    st.sampled_from([1.5, 2.0, -0.25]),
    st.booleans(),
)
PROPS = st.dictionaries(KEYS, VALUES, max_size=4)
USER_IDS = st.one_of(st.none(), st.sampled_from(["u1", "u2", 'u"3']))


@st.composite
def sides(draw: st.DrawFn) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    local_emails = draw(st.lists(st.sampled_from(EMAILS), unique=True, max_size=6))
    remote_emails = draw(st.lists(st.sampled_from(EMAILS), unique=True, max_size=6))
    local = local_frame([(e, draw(USER_IDS), draw(PROPS)) for e in local_emails])
    remote = [
        contact(
            i, draw(st.sampled_from([e, e.upper(), e.capitalize()])), draw(PROPS), draw(USER_IDS)
        )
        for i, e in enumerate(remote_emails)
    ]
    return local, remote


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values with their types: 2 is not 2.0, true is not 1."""
    return type(a) is type(b) and repr(a) == repr(b)


def apply_model(plan: Any, remote: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What Kraiter looks like after the plan (PATCH merges; null removes)."""
    by_id = {c["id"]: {**c, "properties": dict(c["properties"])} for c in remote}
    new_id = 1000
    for row in plan.rows.iter_rows(named=True):
        if row["action"] == "create":
            by_id[f"new{new_id}"] = contact(
                new_id, row["email"], json.loads(row["properties"]), row["user_id"]
            )
            by_id[f"new{new_id}"]["id"] = f"new{new_id}"
            new_id += 1
        elif row["action"] == "update":
            c = by_id[row["id"]]
            for k, v in json.loads(row["properties"]).items():
                if v is None:
                    c["properties"].pop(k, None)
                else:
                    c["properties"][k] = v
            if row["user_id"] is not None:
                c["userId"] = row["user_id"]
        elif row["action"] == "delete":
            del by_id[row["id"]]
    return list(by_id.values())


@settings(max_examples=300, deadline=None)
@given(sides(), st.booleans(), st.booleans())
def test_plan_partitions_and_converges(
    data: tuple[pl.DataFrame, list[dict[str, Any]]], mirror: bool, mirror_properties: bool
) -> None:
    local, remote_contacts = data
    plan = diff_contacts(
        local, remote_frame(remote_contacts), mirror=mirror, mirror_properties=mirror_properties
    )
    rows = plan.rows
    # every local key lands in exactly one of create / update / unchanged
    local_side = rows.filter(pl.col("action").is_in(["create", "update", "unchanged"]))
    assert sorted(local_side["email"].to_list()) == sorted(local["email"].to_list())
    # every remote contact lands in exactly one of update / unchanged / remote-only|delete
    remote_side = rows.filter(pl.col("action") != "create")
    assert sorted(remote_side["id"].to_list()) == sorted(c["id"] for c in remote_contacts)
    assert set(rows["action"].unique()) <= {
        "create",
        "update",
        "unchanged",
        "delete" if mirror else "remote_only",
    }

    remote_by_key = {c["email"].lower(): c for c in remote_contacts}
    for row in rows.filter(pl.col("action") == "update").iter_rows(named=True):
        theirs = remote_by_key[row["email"]]
        mine = json.loads(local.filter(pl.col("email") == row["email"])["properties"].item())
        changes = json.loads(row["changes"])
        for k, (old, new) in changes.get("properties", {}).items():
            assert same(theirs["properties"].get(k), old) or (
                old is None and k not in theirs["properties"]
            )
            assert same(mine.get(k), new) or (new is None and k not in mine)
            assert not same(old, new)

    after = apply_model(plan, remote_contacts)
    again = diff_contacts(
        local, remote_frame(after), mirror=mirror, mirror_properties=mirror_properties
    )
    assert again.is_empty, again.rows.filter(pl.col("action") != "unchanged")
    # unchanged means: nothing local is missing or different in Kraiter
    for c in after:
        key = c["email"].lower()
        match = local.filter(pl.col("email") == key)
        if match.height:
            mine = json.loads(match["properties"].item())
            assert all(same(c["properties"].get(k), v) for k, v in mine.items())
            if mirror_properties:
                assert set(c["properties"]) == set(mine)
