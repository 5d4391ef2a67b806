"""``import`` end to end against the local Kraiter (in-process, real SQLite, real files)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from kraiter_sync.api.ratelimit import RateController
from kraiter_sync.cli import main
from kraiter_sync.config import resolve_settings
from kraiter_sync.emulator import create_app
from kraiter_sync.errors import ConfigError, GuardError, StateError
from kraiter_sync.verbs.importer import ImportOptions, import_
from tests.helpers.imports import BAD_ROWS, KEY, LocalKraiter, write_events


@pytest.fixture
def settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    return resolve_settings(
        api_key=KEY, base_url="http://127.0.0.1:9", state_dir=tmp_path / "st", env={}
    )


def test_import_sends_each_valid_event_once_and_rejects_the_rest(tmp_path: Path, settings) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "events.parquet"
    expected = write_events(src, rows=120)
    kraiter = LocalKraiter(tmp_path)

    result = import_([src], settings=settings, client_factory=kraiter.factory)

    assert result.events.read == 120 + 1 + BAD_ROWS
    assert result.events.sent == 120
    assert result.events.duplicates == 1
    assert result.events.invalid == BAD_ROWS
    assert result.events.accounted == result.events.read
    assert result.exit_code == 3
    assert kraiter.events() == Counter(expected)
    rejects = pl.read_csv(result.rejects_path)  # type: ignore[arg-type]
    assert sorted(rejects["rule"].to_list()) == [
        "email.invalid",
        "name.reserved",
        "timestamp.future",
    ]
    assert set(rejects["stage"]) == {"invalid"}


def test_progress_says_sending_before_the_first_batch_settles(tmp_path: Path, settings) -> None:  # type: ignore[no-untyped-def]
    """The heartbeat off a terminal shows the last phase reported: with fewer records
    than a batch, nothing was reported until the send had ended, so a slow send read
    as `validating` all along."""
    src = tmp_path / "events.parquet"
    write_events(src, rows=120)
    kraiter = LocalKraiter(tmp_path)
    seen: list[tuple[int, int]] = []

    import_(
        [src],
        settings=settings,
        client_factory=kraiter.factory,
        on_progress=lambda snap: seen.append((snap.done, snap.total)),
    )

    assert seen[0] == (0, 120)
    assert seen[-1] == (120, 120)


def test_rerun_sends_nothing_and_dry_run_sends_nothing(tmp_path: Path, settings) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "events.parquet"
    write_events(src, rows=60)
    kraiter = LocalKraiter(tmp_path)

    dry = import_(
        [src],
        settings=settings,
        options=ImportOptions(dry_run=True),
        client_factory=kraiter.factory,
    )
    assert kraiter.transports[-1].writes == 0
    assert dry.events.pending == 60
    assert sum(kraiter.events().values()) == 0

    first = import_([src], settings=settings, client_factory=kraiter.factory)
    assert first.events.sent == 60
    second = import_([src], settings=settings, client_factory=kraiter.factory)
    assert kraiter.transports[-1].writes == 0
    assert second.events.already == 60
    assert second.events.sent == 0
    assert sum(kraiter.events().values()) == 60


@pytest.mark.parametrize("mode", ["create", "not-found", "link-later"])
def test_same_end_state_under_every_unknown_email_behaviour(
    tmp_path: Path, settings, mode: str
) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "events.parquet"
    expected = write_events(src, rows=50)
    kraiter = LocalKraiter(tmp_path, unknown_email=mode)
    result = import_([src], settings=settings, client_factory=kraiter.factory)
    assert result.events.sent == 50
    assert kraiter.events() == Counter(expected)


def test_a_small_import_sends_only_the_requests_it_needs(tmp_path: Path, settings) -> None:  # type: ignore[no-untyped-def]
    """10 events over 5 new contacts (Kraiter creates contacts for events): the events, the
    sequence-trigger guard's one read, and on a target's first import the lost-state
    guard's one read (is the tenant empty) and one look-up that learns how it treats
    unknown emails. Nothing else (it was 16: an upsert per contact)."""
    kraiter = LocalKraiter(tmp_path)

    def ten(name: str, day: int) -> Path:
        src = tmp_path / name
        rows = [f"u{i % 5}@example.com,login,2025-01-{day:02d}T10:00:{i:02d}Z" for i in range(10)]
        src.write_text("email,event,timestamp\n" + "\n".join(rows) + "\n")
        return src

    first = import_([ten("a.csv", 1)], settings=settings, client_factory=kraiter.factory)
    assert first.events.sent == 10
    assert kraiter.transports[-1].routes == {
        "GET /api/sequences": 1,
        "GET /api/events": 1,
        "GET /api/contacts/by-email/{email}": 1,
        "POST /api/events": 10,
    }
    second = import_([ten("b.csv", 2)], settings=settings, client_factory=kraiter.factory)
    assert second.events.sent == 10
    assert kraiter.transports[-1].routes == {"GET /api/sequences": 1, "POST /api/events": 10}
    allowed = ImportOptions(allow_triggers=True)
    third = import_(
        [ten("c.csv", 3)], settings=settings, options=allowed, client_factory=kraiter.factory
    )
    assert third.events.sent == 10
    assert kraiter.transports[-1].routes == {"POST /api/events": 10}


def test_sequence_guard_stops_before_anything_is_sent(tmp_path: Path, settings) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "events.parquet"
    write_events(src, rows=30)
    kraiter = LocalKraiter(tmp_path)
    app = create_app(kraiter.config)
    try:
        from tests.helpers.emulator import Api  # the emulator's own synchronous facade

        loop = asyncio.new_event_loop()
        api = Api(app, loop, KEY)
        r = api.put(
            "/api/sequences/seq_trial",
            json={
                "name": "Trial nurture",
                "status": "active",
                "triggers": [{"event": "started_trial"}],
            },
        )
        assert r.status_code in (200, 201), r.text
        loop.run_until_complete(api.client.aclose())
        loop.close()
    finally:
        app.close()

    with pytest.raises(GuardError, match=r"started_trial → Trial nurture"):
        import_([src], settings=settings, client_factory=kraiter.factory)
    assert kraiter.transports[-1].writes == 0
    allowed = import_(
        [src],
        settings=settings,
        options=ImportOptions(allow_triggers=True),
        client_factory=kraiter.factory,
    )
    assert allowed.events.sent == 30


def test_contacts_created_then_patched_only_where_changed(tmp_path: Path, settings) -> None:  # type: ignore[no-untyped-def]
    kraiter = LocalKraiter(tmp_path)
    src = tmp_path / "contacts.csv"
    src.write_text("email,plan,country\nada@example.com,pro,UK\nbob@example.com,free,US\n")
    first = import_([src], settings=settings, client_factory=kraiter.factory)
    assert first.contacts.sent == 2

    unchanged = import_([src], settings=settings, client_factory=kraiter.factory)
    assert kraiter.transports[-1].writes == 0
    assert unchanged.contacts.unchanged == 2

    src.write_text("email,plan,country\nADA@example.com,team,UK\nbob@example.com,free,US\n")
    changed = import_([src], settings=settings, client_factory=kraiter.factory)
    assert changed.contacts.sent == 1
    assert changed.contacts.unchanged == 1
    # a fresh state dir knows nothing: Kraiter is read and nothing differs
    fresh = resolve_settings(
        api_key=KEY, base_url="http://127.0.0.1:9", state_dir=tmp_path / "fresh", env={}
    )
    again = import_([src], settings=fresh, client_factory=kraiter.factory)
    assert again.contacts.unchanged == 2
    # the reconcile plan : a new state dir costs reads, not writes
    assert kraiter.transports[-1].writes == 0


def test_contacts_kraiter_holds_with_other_values_are_patched_by_id(tmp_path: Path) -> None:
    """A state dir that knows nothing: the diff against Kraiter finds the contacts and their
    ids, so each changed one is one PATCH (no create answered CONFLICT, no second look-up)."""
    kraiter = LocalKraiter(tmp_path)
    src = tmp_path / "contacts.csv"
    src.write_text("email,plan\nada@example.com,pro\nbob@example.com,free\n")

    def fresh(name: str):  # type: ignore[no-untyped-def]
        return resolve_settings(
            api_key=KEY, base_url="http://127.0.0.1:9", state_dir=tmp_path / name, env={}
        )

    assert import_([src], settings=fresh("one"), client_factory=kraiter.factory).contacts.sent == 2
    src.write_text("email,plan\nada@example.com,team\nbob@example.com,free\nnew@example.com,pro\n")
    result = import_([src], settings=fresh("two"), client_factory=kraiter.factory)
    assert (result.contacts.sent, result.contacts.unchanged) == (2, 1)
    methods = kraiter.transports[-1].methods
    assert (methods["PATCH"], methods["POST"]) == (1, 1)  # ada patched, new created
    again = import_([src], settings=fresh("two"), client_factory=kraiter.factory)
    assert (again.contacts.unchanged, kraiter.transports[-1].writes) == (3, 0)


def test_cli_import_of_sample_data_offline(tmp_path: Path) -> None:
    from tests.helpers.paths import SAMPLE_DATA

    runner = CliRunner()
    state = tmp_path / "state"
    args = [
        "import",
        str(SAMPLE_DATA / "contacts.csv"),
        str(SAMPLE_DATA / "events.parquet"),
        "--state-dir",
        str(state),
    ]
    result = runner.invoke(main, args)
    assert result.exit_code == 3, result.output  # the samples hold deliberately bad rows
    assert "local Kraiter" in result.stderr
    assert "contacts: 1,506 read" in result.stdout
    assert "rejected rows:" in result.stdout
    again = runner.invoke(main, [*args, "--json"])
    summary = json.loads(again.stdout)
    assert summary["events"]["sent"] == 0
    assert summary["events"]["already"] == summary["events"]["read"] - (
        summary["events"]["duplicates"] + summary["events"]["invalid"]
    )
    runs = runner.invoke(main, ["runs", "--json", "--state-dir", str(state)])
    # both runs exited 3 (the bad rows): their records say so
    recorded = json.loads(runs.stdout)["runs"]
    assert [(r["status"], r["exit_code"]) for r in recorded] == [("rejected-rows", 3)] * 2


def test_api_key_is_never_written_or_printed(tmp_path: Path) -> None:
    src = tmp_path / "events.parquet"
    write_events(src, rows=20)
    kraiter = LocalKraiter(tmp_path)
    settings = resolve_settings(
        api_key=KEY, base_url="http://127.0.0.1:9", state_dir=tmp_path / "st", env={}
    )
    result = import_(
        [src],
        settings=settings,
        client_factory=kraiter.factory,
        args={"paths": [str(src)], "api_key": KEY},
    )
    assert result.events.sent == 20
    for path in (tmp_path / "st").rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    with sqlite3.connect(tmp_path / "st" / "ledger.db") as db:
        assert KEY not in json.dumps(db.execute("SELECT * FROM runs").fetchall())


def test_retry_resends_what_kraiter_rejected_once_the_cause_is_fixed(
    tmp_path: Path, settings
) -> None:  # type: ignore[no-untyped-def]
    from kraiter_sync.verbs.retry import retry_

    kraiter = LocalKraiter(tmp_path)

    async def make_contact() -> str:
        async with kraiter.factory(RateController()) as client:
            contact = await client.create_contact("ada@example.com")
            return str(contact["id"])

    real_id = asyncio.run(make_contact())
    src = tmp_path / "events.csv"
    lines = ["contact_id,event,timestamp,plan"]
    lines += [f"{real_id},login,2025-01-0{i}T10:00:00Z,pro" for i in (1, 2)]
    lines += [f"cnt_gone,+login,2025-02-0{i}T10:00:00Z,team" for i in (1, 2, 3)]
    src.write_text("\n".join(lines) + "\n")

    first = import_([src], settings=settings, client_factory=kraiter.factory)
    assert (first.events.sent, first.events.rejected, first.exit_code) == (2, 3, 3)
    rejects_path = first.rejects_path
    assert rejects_path is not None
    rejects = pl.read_csv(rejects_path, infer_schema=False)
    assert set(rejects["rule"]) == {"api.NOT_FOUND"}
    assert set(rejects["stage"]) == {"rejected"}
    # the CSV is spreadsheet-safe: a cell a spreadsheet would evaluate is neutralised
    assert set(rejects["name"]) == {"'+login"}

    # unchanged rejects: sent again, refused again, still nothing lost
    again = retry_(rejects_path, settings=settings, client_factory=kraiter.factory)
    assert (again.events.sent, again.events.rejected) == (0, 3)

    # the user fixes the cause (the right contact id) and retries
    rejects_path.write_text(rejects_path.read_text().replace("cnt_gone", real_id))
    fixed = retry_(rejects_path, settings=settings, client_factory=kraiter.factory)
    assert (fixed.events.sent, fixed.exit_code) == (3, 0)
    stored = kraiter.events()
    assert sum(stored.values()) == 5
    # retry undid the neutralisation: the name Kraiter holds is the original one
    assert {name for (_e, name, _t, _p) in stored} == {"login", "+login"}

    nothing = retry_(rejects_path, settings=settings, client_factory=kraiter.factory)
    assert nothing.events.already == 3
    assert kraiter.transports[-1].writes == 0


def test_json_log_format_gives_machine_readable_progress_on_stderr(tmp_path: Path) -> None:
    src = tmp_path / "events.parquet"
    write_events(src, rows=40)
    result = CliRunner().invoke(
        main,
        ["import", str(src), "--state-dir", str(tmp_path / "st"), "--log-format", "json", "--json"],
    )
    assert result.exit_code == 3, result.output
    records = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    progress = [r for r in records if r["msg"] == "progress"]
    assert progress, records
    assert progress[-1]["done"] == progress[-1]["total"] == 40
    assert {"per_s", "eta_s", "rate_limited", "retries"} <= set(progress[-1])
    assert json.loads(result.stdout)["events"]["sent"] == 40


def test_contact_deleted_in_kraiter_after_being_cached_is_recreated(
    tmp_path: Path, settings
) -> None:  # type: ignore[no-untyped-def]
    kraiter = LocalKraiter(tmp_path)
    first = tmp_path / "first.csv"
    first.write_text("email,event,timestamp\nada@example.com,login,2025-01-01T10:00:00Z\n")
    assert import_([first], settings=settings, client_factory=kraiter.factory).events.sent == 1

    async def delete_ada() -> None:
        async with kraiter.factory(RateController()) as client:
            contact = await client.get_contact_by_email("ada@example.com")
            assert contact is not None
            await client.delete_contact(str(contact["id"]))

    asyncio.run(delete_ada())
    second = tmp_path / "second.csv"
    second.write_text("email,event,timestamp\nada@example.com,login,2025-01-02T10:00:00Z\n")
    result = import_([second], settings=settings, client_factory=kraiter.factory)
    assert (result.events.sent, result.events.rejected) == (1, 0)
    stored = kraiter.events()
    assert [(email, ts) for (email, _n, ts, _p) in stored] == [
        ("ada@example.com", "2025-01-02T10:00:00.000Z")
    ]


def test_vectorised_contact_hashes_equal_the_scalar_ones() -> None:
    from kraiter_sync.plan.contacts import contact_hash, contact_hashes

    frame = pl.DataFrame(
        {
            "user_id": ["u1", None, "ü-7", None],
            "properties": ['{"plan":"pro"}', None, '{"a":"é\\u0000"}', "{}"],
        }
    )
    expected = [contact_hash(p, u) for u, p in frame.iter_rows()]
    assert contact_hashes(frame).to_list() == expected


def test_unreachable_kraiter_is_incomplete_and_says_what_to_check(tmp_path: Path) -> None:
    src = tmp_path / "events.parquet"
    write_events(src, rows=5)
    result = CliRunner(env={"KRAITER_API_KEY": KEY}).invoke(
        main,
        [
            "import",
            str(src),
            "--base-url",
            "http://127.0.0.1:9",
            "--max-retries",
            "0",
            "--state-dir",
            str(tmp_path / "st"),
        ],
    )
    assert result.exit_code == 4
    assert "cannot reach Kraiter" in result.stderr
    assert "cannot connect to 127.0.0.1:9" in result.stderr
    assert "check --base-url and the network, then run the same command again" in result.stderr
    # nothing was sent, so there is nothing to "resume"; aiohttp's ssl:default is not
    # ours to show for an http:// URL
    assert "resume" not in result.stderr
    assert "ssl:default" not in result.stderr
    assert "Traceback" not in result.stderr
    assert KEY not in result.stderr + result.stdout


def test_tenant_name_keeps_the_ledger_across_a_key_rotation(tmp_path: Path) -> None:
    src = tmp_path / "events.parquet"
    write_events(src, rows=10)
    state = tmp_path / "st"
    base = ["import", str(src), "--state-dir", str(state), "--tenant", "acme", "--json"]
    kraiter = LocalKraiter(tmp_path)
    # the same local Kraiter under two keys of one organisation: the emulator keys
    # tenants by key, so the test points both runs at one key and checks the ledger
    # target, which is what a rotation changes
    first = resolve_settings(
        api_key="kr_old_key", base_url="http://127.0.0.1:9", state_dir=state, tenant="acme", env={}
    )
    second = resolve_settings(
        api_key="kr_new_key",
        base_url="http://127.0.0.1:9",
        state_dir=state,
        tenant="acme",
        tenant_rotate=True,  # the new key of the same account, said once
        env={},
    )
    assert first.target == second.target
    import_([src], settings=first, client_factory=kraiter.factory)
    again = import_([src], settings=second, client_factory=kraiter.factory)
    assert again.events.already == 10
    assert kraiter.transports[-1].writes == 0
    result = CliRunner().invoke(main, [*base[:1], "--help"])
    assert "--tenant" in result.stdout
    assert "--tenant-rotate" in result.stdout


def test_a_tenant_name_refuses_another_accounts_key(tmp_path: Path) -> None:
    """--tenant acme with a key of another account would find acme's ledger and send
    nothing ("already imported"): the tenant keeps the key it was first used with."""
    src = tmp_path / "events.parquet"
    write_events(src, rows=10)
    state = tmp_path / "st"
    kraiter = LocalKraiter(tmp_path)
    acme = resolve_settings(
        api_key="kr_acme_key", base_url="http://127.0.0.1:9", state_dir=state, tenant="acme", env={}
    )
    assert import_([src], settings=acme, client_factory=kraiter.factory).events.sent == 10
    other = resolve_settings(
        api_key="kr_other_account",
        base_url="http://127.0.0.1:9",
        state_dir=state,
        tenant="acme",
        env={},
    )
    sent_before = len(kraiter.transports)
    with pytest.raises(ConfigError, match="--tenant-rotate"):
        import_([src], settings=other, client_factory=kraiter.factory)
    assert len(kraiter.transports) == sent_before  # no client was even made
    result = CliRunner().invoke(
        main,
        ["import", str(src), "--state-dir", str(state), "--tenant", "acme"],
        env={"KRAITER_API_KEY": "kr_other_account", "KRAITER_BASE_URL": "http://127.0.0.1:9"},
    )
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert result.stderr.splitlines()[-1] == (
        "error: tenant 'acme' was first used with another API key on http://127.0.0.1:9: "
        "this key may belong to another Kraiter account, whose ledger and watermarks must "
        "not be mixed with acme's. If you rotated acme's key, pass --tenant-rotate once; "
        "otherwise use another --tenant"
    )
    assert "kr_other_account" not in result.output


def test_cli_imports_a_cr_only_csv(tmp_path: Path) -> None:
    """Old Mac Excel ends lines with a bare CR: every row is read and sent."""
    src = tmp_path / "mac.csv"
    src.write_bytes(
        b"email,event,timestamp\rada@example.com,login,2025-01-01T10:00:00Z\r"
        b"bob@example.com,login,2025-01-02T10:00:00Z\r"
    )
    result = CliRunner().invoke(main, ["import", str(src), "--state-dir", str(tmp_path / "st")])
    assert result.exit_code == 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "events: 2 read, 2 sent" in result.stdout


def test_cli_refuses_input_whose_rows_cannot_be_read(tmp_path: Path) -> None:
    src = tmp_path / "q.csv"
    src.write_text('email,"plan\nada@example.com,pro\n')
    result = CliRunner().invoke(main, ["import", str(src), "--state-dir", str(tmp_path / "st")])
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert result.stderr.splitlines()[-1].startswith(f"error: {src}: no row could be read")
    assert result.stdout == ""


def test_import_with_a_new_state_dir_on_a_read_only_mount(tmp_path: Path) -> None:
    from tests.helpers.disk import read_only

    src = tmp_path / "events.parquet"
    write_events(src, rows=5)
    with read_only(tmp_path) as ro:
        state = ro / "state"
        result = CliRunner().invoke(main, ["import", str(src), "--state-dir", str(state)])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    reason = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
    assert result.stderr.splitlines()[-1] == (
        f"error: cannot create the state directory {state}: {reason}; pass --state-dir "
        "(or set KRAITER_SYNC_STATE_DIR) with a folder you can write"
    )


def test_a_full_disk_while_spooling_names_the_spool_and_sends_nothing(tmp_path: Path) -> None:
    from tests.helpers.disk import full_disk

    src = tmp_path / "events.parquet"
    write_events(src, rows=60_000)
    kraiter = LocalKraiter(tmp_path)
    with full_disk(tmp_path, "600k") as disk:
        settings = resolve_settings(
            api_key=KEY, base_url="http://127.0.0.1:9", state_dir=disk / "st", env={}
        )
        with pytest.raises(StateError) as caught:
            import_([src], settings=settings, client_factory=kraiter.factory)
        message = str(caught.value)
        assert message.startswith(f"cannot write the spool {disk / 'st' / 'spool'}")
        assert "No space left on device" in message
        assert message.endswith("free some space in the state directory and run again")
    assert kraiter.transports == []  # validation never reached the sending pass
