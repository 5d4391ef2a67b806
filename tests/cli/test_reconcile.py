"""`kraiter-sync reconcile` and `restore` end to end against the local Kraiter."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.cli import main
from kraiter_sync.config import resolve_settings
from kraiter_sync.upload.context import client_for


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def kraiter(state: Path, fn: Any) -> Any:
    """Run ``fn(client)`` against the local Kraiter the CLI uses."""
    settings = resolve_settings(state_dir=state, env={})

    async def go() -> Any:
        async with client_for(settings) as client:
            return await fn(client)

    return asyncio.run(go())


def run(state: Path, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"KRAITER_SYNC_STATE_DIR": str(state)})


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(["email,user_id,plan", *rows]) + "\n")
    return path


def test_reconcile_shows_the_plan_and_apply_converges(tmp_path: Path, state: Path) -> None:
    async def seed(client: KraiterClient) -> None:
        await client.create_contact("Ann@Example.com", properties={"plan": "free"})
        await client.create_contact("same@example.com", properties={"plan": "pro"})
        await client.create_contact("only@example.com")

    kraiter(state, seed)
    csv = write_csv(
        tmp_path / "c.csv",
        ["ann@example.com,u1,pro", "same@example.com,,pro", "new@example.com,,trial"],
    )
    result = run(state, "reconcile", str(csv))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "plan: 1 to create, 1 to update, 1 unchanged, 1 only in Kraiter "
        "(left alone; --mirror deletes them)",
        "create (1):",
        '  + new@example.com  {"plan":"trial"}',
        "update (1):",
        '  ~ ann@example.com  plan: "free" → "pro"; userId: null → "u1"',
        "remote_only (1):",
        f"  - only@example.com  id {result.stdout.split('id ')[-1].strip()}",
    ]
    assert "input: 3 rows, 3 contacts, 0 merged duplicates, 0 rejected" in result.stderr
    assert "read Kraiter by listing (1 requests)" in result.stderr

    applied = run(state, "reconcile", str(csv), "--apply")
    assert applied.exit_code == 0, applied.stderr
    assert "applied: 1 created, 1 updated, 0 deleted, 0 rejected, 0 failed" in applied.stdout
    again = run(state, "reconcile", str(csv), "--apply")
    assert again.exit_code == 0
    assert again.stdout.startswith("plan: 0 to create, 0 to update, 3 unchanged, 1 only")
    assert "nothing to apply: Kraiter already matches the input" in again.stdout


def test_saved_plan_applies_when_fresh_and_is_refused_when_stale(
    tmp_path: Path, state: Path
) -> None:
    kraiter(state, lambda c: c.create_contact("ann@example.com", properties={"plan": "free"}))
    csv = write_csv(tmp_path / "c.csv", ["ann@example.com,,pro"])
    for name in ("plan.json", "stale.parquet"):
        made = run(state, "reconcile", str(csv), "--plan-out", str(tmp_path / name))
        assert made.exit_code == 0, made.stderr
        assert f"plan written to {tmp_path / name}" in made.stderr
    doc = json.loads((tmp_path / "plan.json").read_text())
    assert doc["rows"][0]["changes"] == {"properties": {"plan": ["free", "pro"]}}

    ok = run(state, "reconcile", "--plan", str(tmp_path / "plan.json"), "--apply")
    assert ok.exit_code == 0, ok.stderr
    assert "applied: 0 created, 1 updated" in ok.stdout
    # the parquet plan was computed before that update: Kraiter changed since
    stale = run(state, "reconcile", "--plan", str(tmp_path / "stale.parquet"), "--apply")
    assert stale.exit_code == 2
    assert stale.stderr.splitlines()[-1].startswith(
        "error: refusing to apply the saved plan: 1 contact(s) changed in Kraiter since it "
        "was computed"
    )
    assert "ann@example.com (changed). Run reconcile again for a fresh plan" in stale.stderr
    assert stale.stdout == ""


def test_mirror_guards_exit_2(tmp_path: Path, state: Path) -> None:
    async def seed(client: KraiterClient) -> None:
        for i in range(10):
            await client.create_contact(f"r{i}@example.com")

    kraiter(state, seed)
    empty = tmp_path / "empty.csv"
    empty.write_text("email,plan\n")
    result = run(state, "reconcile", str(empty), "--mirror", "--apply")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        "error: refusing to mirror an empty input: it would delete every contact in Kraiter. "
        "Check the input files and the mapping (kraiter-sync validate)"
    )
    csv = write_csv(tmp_path / "c.csv", [f"r{i}@example.com,," for i in range(8)])
    result = run(state, "reconcile", str(csv), "--mirror", "--apply")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        "error: refusing to delete 2 of 10 contacts in Kraiter (20.0%), more than "
        "--max-delete-ratio 0.05 (5.0%). Review the plan (--plan-out) and raise "
        "--max-delete-ratio if it is right"
    )
    remaining = kraiter(state, lambda c: _count(c))
    assert remaining == 10  # nothing was deleted


async def _count(client: KraiterClient) -> int:
    return len([c async for c in client.list_contacts()])


def test_mirror_writes_a_tombstone_and_restore_undoes_it(tmp_path: Path, state: Path) -> None:
    async def seed(client: KraiterClient) -> None:
        for i in range(4):
            await client.create_contact(f"r{i}@example.com", properties={"i": i}, user_id=f"u{i}")

    kraiter(state, seed)
    csv = write_csv(tmp_path / "c.csv", ["r0@example.com,u0,", "r1@example.com,u1,"])
    tomb = tmp_path / "tomb.json"
    result = run(
        state,
        "reconcile",
        str(csv),
        "--mirror",
        "--max-delete-ratio",
        "0.5",
        "--apply",
        "--tombstone",
        str(tomb),
    )
    assert result.exit_code == 0, result.stderr
    assert "2 deleted" in result.stdout
    assert f"undo: kraiter-sync restore {tomb}" in result.stdout
    assert kraiter(state, _count) == 2
    restored = run(state, "restore", str(tomb))
    assert restored.exit_code == 0, restored.stderr
    assert restored.stdout.startswith("restored 2 contact(s); 0 already existed")

    async def check(client: KraiterClient) -> None:
        r3 = await client.get_contact_by_email("r3@example.com")
        assert r3 is not None
        assert r3["properties"] == {"i": 3}
        assert r3["userId"] == "u3"

    kraiter(state, check)
    bad = run(state, "restore", str(csv))
    assert bad.exit_code == 2
    assert "is not a kraiter-sync tombstone" in bad.stderr


def test_usage_errors(tmp_path: Path, state: Path) -> None:
    csv = write_csv(tmp_path / "c.csv", ["a@example.com,,"])
    both = run(state, "reconcile", str(csv), "--plan", "p.json", "--apply")
    assert both.exit_code == 2
    assert "pass either PATHs to compare or --plan PLAN to apply, not both" in both.stderr
    none = run(state, "reconcile")
    assert none.exit_code == 2
    assert "no input given" in none.stderr
    wrong = run(state, "reconcile", str(csv), "--plan-out", str(tmp_path / "p.txt"))
    assert wrong.exit_code == 2
    assert "must end in .json or .parquet" in wrong.stderr


def test_events_kind(tmp_path: Path, state: Path) -> None:
    kraiter(state, lambda c: c.create_contact("ann@example.com"))
    events = tmp_path / "events.csv"
    events.write_text(
        "email,event,timestamp\n"
        "ann@example.com,login,2026-01-01T10:00:00Z\n"
        "ann@example.com,login,2026-01-02T10:00:00Z\n"
    )
    first = run(state, "reconcile", "--kind", "events", str(events))
    assert first.exit_code == 0, first.stderr
    assert "2 local, 0 in Kraiter for these 1 contacts: 2 missing" in first.stdout
    assert "ann@example.com  login: 2 local, 0 in Kraiter → 2 missing, 0 extra" in first.stdout
    applied = run(state, "reconcile", "--kind", "events", str(events), "--apply")
    assert applied.exit_code == 0, applied.stderr
    assert "applied: 2 sent, 0 rejected, 0 failed" in applied.stdout
    again = run(state, "reconcile", "--kind", "events", str(events))
    assert "2 local, 2 in Kraiter for these 1 contacts: 0 missing" in again.stdout


def test_help_explains_the_guards() -> None:
    result = CliRunner().invoke(main, ["reconcile", "--help"])
    assert result.exit_code == 0
    for text in ("--max-delete-ratio", "tombstone", "--plan-out", "--mirror-properties"):
        assert text in result.output
    assert "restore" in CliRunner().invoke(main, ["--help"]).output


def test_saved_plan_is_refused_for_another_kraiter(tmp_path: Path, state: Path) -> None:
    csv = write_csv(tmp_path / "c.csv", ["a@example.com,,pro"])
    made = run(state, "reconcile", str(csv), "--plan-out", str(tmp_path / "p.json"))
    assert made.exit_code == 0, made.stderr
    meta = json.loads((tmp_path / "p.json").read_text())["meta"]
    assert meta["target"].startswith("local:")
    assert "kr_" not in json.dumps(meta)  # a fingerprint, never the key
    other = run(
        tmp_path / "other-state", "reconcile", "--plan", str(tmp_path / "p.json"), "--apply"
    )
    assert other.exit_code == 2
    assert "computed against another Kraiter account or base URL" in other.stderr


def test_mirror_refuses_an_input_with_rejected_rows(tmp_path: Path, state: Path) -> None:
    kraiter(state, lambda c: c.create_contact("keep@example.com"))
    csv = write_csv(tmp_path / "c.csv", ["keep@example.com,,", "not-an-email,,"])
    result = run(state, "reconcile", str(csv), "--mirror", "--apply")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        "error: refusing to mirror: 1 input row(s) were rejected, and mirror mode would "
        "delete their contacts from Kraiter. Fix them (see --rejects) first"
    )


def test_apply_is_recorded_as_a_run(tmp_path: Path, state: Path) -> None:
    from kraiter_sync.state.ledger import Ledger

    csv = write_csv(tmp_path / "c.csv", ["a@example.com,,pro"])
    assert run(state, "reconcile", str(csv)).exit_code == 0  # read-only: no run, no lock
    assert run(state, "reconcile", str(csv), "--apply").exit_code == 0
    with Ledger(state / "ledger.db") as ledger:
        runs = ledger.list_runs()
    assert [(r.command, r.status) for r in runs] == [("reconcile", "ok")]
    assert runs[0].counts["created"] == 1


def test_events_deleted_in_kraiter_are_sent_again(tmp_path: Path, state: Path) -> None:
    events = tmp_path / "events.csv"
    events.write_text(
        "email,event,timestamp\n"
        "ann@example.com,login,2026-01-01T10:00:00Z\n"
        "ann@example.com,paid,2026-01-02T10:00:00Z\n"
    )
    first = run(state, "reconcile", "--kind", "events", str(events), "--apply")
    assert first.exit_code == 0, first.stderr
    assert "1 contact(s) do not exist in Kraiter yet" in first.stdout
    assert "applied: 2 sent" in first.stdout

    async def delete_ann(client: KraiterClient) -> None:
        ann = await client.get_contact_by_email("ann@example.com")
        assert ann is not None
        await client.delete_contact(ann["id"])  # takes its events with it

    kraiter(state, delete_ann)
    # the ledger holds both events as done; reconcile sees Kraiter lacks them
    again = run(state, "reconcile", "--kind", "events", str(events), "--apply")
    assert again.exit_code == 0, again.stderr
    assert "applied: 2 sent" in again.stdout
    check = run(state, "reconcile", "--kind", "events", str(events))
    assert "2 local, 2 in Kraiter for these 1 contacts: 0 missing" in check.stdout


def test_import_after_a_mirror_delete_recreates_the_contact(tmp_path: Path, state: Path) -> None:
    full = write_csv(tmp_path / "full.csv", [f"r{i}@example.com,,p{i}" for i in range(4)])
    imported = run(state, "import", str(full))
    assert imported.exit_code == 0, imported.stderr
    fewer = write_csv(tmp_path / "fewer.csv", [f"r{i}@example.com,,p{i}" for i in range(3)])
    mirrored = run(
        state, "reconcile", str(fewer), "--mirror", "--max-delete-ratio", "0.5", "--apply"
    )
    assert mirrored.exit_code == 0, mirrored.stderr
    assert kraiter(state, _count) == 3
    # the ledger's contact cache must not make import think r3 is still there, unchanged
    again = run(state, "import", str(full))
    assert again.exit_code == 0, again.stderr
    assert kraiter(state, _count) == 4


def test_events_apply_refuses_live_sequence_triggers(tmp_path: Path, state: Path) -> None:
    kraiter(
        state,
        lambda c: c.put_sequence("seq1", name="Welcome", status="active", triggers=["signup"]),
    )
    events = tmp_path / "events.csv"
    events.write_text("email,event,timestamp\nann@example.com,signup,2026-01-01T10:00:00Z\n")
    refused = run(state, "reconcile", "--kind", "events", str(events), "--apply")
    assert refused.exit_code == 2
    assert "these missing events trigger live sequences" in refused.stderr
    assert "signup → Welcome" in refused.stderr
    allowed = run(
        state, "reconcile", "--kind", "events", str(events), "--apply", "--allow-triggers"
    )
    assert allowed.exit_code == 0, allowed.stderr
    assert "applied: 1 sent" in allowed.stdout


def test_after_import_of_the_sample_data_reconcile_finds_nothing_to_do(state: Path) -> None:
    """Import and reconcile agree on every value (formatting of numbers, dates, case)."""
    from tests.helpers.paths import SAMPLE_DATA

    contacts, events = SAMPLE_DATA / "contacts.csv", SAMPLE_DATA / "events.parquet"
    imported = run(state, "import", str(contacts), str(events))
    assert imported.exit_code == 3, imported.stderr  # the sample has deliberately bad rows
    plan = run(state, "reconcile", str(contacts))
    # ghost.user@ has events but no contact row: import created the contact for them
    assert plan.stdout.startswith(
        "plan: 0 to create, 0 to update, 1,502 unchanged, 1 only in Kraiter"
    ), plan.stdout
    assert "  - ghost.user@example.com  id cnt_" in plan.stdout
    ev = run(state, "reconcile", str(events))
    assert "0 missing from Kraiter, 0 extra in Kraiter" in ev.stdout, ev.stdout
