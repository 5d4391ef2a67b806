"""Lost state is not a duplicate storm: every way a ledger can vanish, against the local
Kraiter (real HTTP semantics in-process, real SQLite, real files).

Each way was reproduced on the code before the lost-state check: the second import sent
every event again (2,000 of 2,000 with a new state directory, a zero-byte ledger.db, or a
damaged ledger moved aside as its error message advised).
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from kraiter_sync.cli import main
from kraiter_sync.config import Settings, resolve_settings
from kraiter_sync.errors import GuardError, StateError
from kraiter_sync.plan.lost_state import MAX_PAGES, SAMPLE_HEAD, SAMPLE_SPREAD
from kraiter_sync.verbs.importer import ImportOptions, import_
from kraiter_sync.verbs.reconcile import ReconcileOptions, reconcile
from tests.helpers.imports import KEY, LocalKraiter, write_events

ROWS = 300


def _settings(state: Path, base_url: str = "http://127.0.0.1:9") -> Settings:
    return resolve_settings(api_key=KEY, base_url=base_url, state_dir=state, env={})


def _gets(kraiter: LocalKraiter) -> int:
    return kraiter.transports[-1].methods["GET"]


@pytest.fixture
def src(tmp_path: Path) -> tuple[Path, list[tuple]]:
    path = tmp_path / "events.parquet"
    return path, write_events(path, rows=ROWS)


def _new_state_dir(state: Path) -> Path:
    return state.with_name("another-state")


def _deleted(state: Path) -> Path:
    shutil.rmtree(state)
    return state


def _ledger_files(state: Path) -> list[Path]:
    return sorted(state.glob("ledger.db*"))


def _zero_bytes_then_moved_aside(state: Path) -> Path:
    for path in _ledger_files(state):
        path.unlink()
    (state / "ledger.db").write_bytes(b"")
    with pytest.raises(StateError) as info:  # never taken for an empty ledger
        import_([], settings=_settings(state))
    assert "empty file (0 bytes)" in str(info.value)
    assert "kraiter-sync state rebuild" in str(info.value)
    (state / "ledger.db").rename(state / "ledger.db.unknown")  # as the message advises
    return state


def _damaged_then_moved_aside(state: Path) -> Path:
    for path in _ledger_files(state):
        path.unlink()
    (state / "ledger.db").write_bytes(b"not a ledger, just bytes " * 200)
    with pytest.raises(StateError) as info:
        import_([], settings=_settings(state))
    assert "damaged" in str(info.value)
    assert "--rebuild" in str(info.value)
    (state / "ledger.db").rename(state / "ledger.db.damaged")  # as the message advises
    return state


WAYS: dict[str, Callable[[Path], Path]] = {
    "new-state-dir": _new_state_dir,
    "state-dir-deleted": _deleted,
    "zero-byte-ledger": _zero_bytes_then_moved_aside,
    "damaged-ledger-moved-aside": _damaged_then_moved_aside,
}


@pytest.mark.parametrize("way", list(WAYS))
@pytest.mark.parametrize("fix", ["adopt", "rebuild"])
def test_lost_state_refuses_then_adopt_or_rebuild_send_nothing_twice(
    tmp_path: Path, src: tuple[Path, list[tuple]], way: str, fix: str
) -> None:
    path, expected = src
    kraiter = LocalKraiter(tmp_path)
    state = tmp_path / "state"
    first = import_([path], settings=_settings(state), client_factory=kraiter.factory)
    assert first.events.sent == ROWS
    assert first.state_check is not None
    assert first.state_check["how"] == "empty-tenant"

    lost = WAYS[way](state)
    with pytest.raises(GuardError) as info:
        import_([path], settings=_settings(lost), client_factory=kraiter.factory)
    message = str(info.value)
    assert f"all {SAMPLE_HEAD + SAMPLE_SPREAD} events sampled from this input" in message
    assert "Nothing was sent" in message
    assert "--rebuild" in message
    assert "kraiter-sync state rebuild" in message
    assert "--adopt" in message
    assert kraiter.transports[-1].writes == 0
    assert kraiter.events() == Counter(expected)

    options = ImportOptions(adopt=fix == "adopt", rebuild=fix == "rebuild")
    again = import_(
        [path], settings=_settings(lost), options=options, client_factory=kraiter.factory
    )
    assert kraiter.events() == Counter(expected)  # every event once: 0 duplicates
    assert again.events.sent == 0
    if fix == "adopt":
        assert again.events.verified == ROWS
    else:
        assert again.events.already == ROWS
        assert again.rebuild is not None
        assert again.rebuild["events_read"] == ROWS
        assert kraiter.transports[-1].writes == 0  # the contacts were learnt too
    # the ledger knows the target now: a plain run sends nothing and checks nothing
    plain = import_([path], settings=_settings(lost), client_factory=kraiter.factory)
    assert (plain.events.already, plain.events.sent, plain.state_check) == (ROWS, 0, None)


def test_a_ledger_that_holds_other_targets_only_is_checked_too(
    tmp_path: Path, src: tuple[Path, list[tuple]]
) -> None:
    path, expected = src
    kraiter = LocalKraiter(tmp_path / "a")
    import_([path], settings=_settings(tmp_path / "first"), client_factory=kraiter.factory)
    other = LocalKraiter(tmp_path / "b")
    shared = tmp_path / "shared"
    # the shared state directory knows another Kraiter's events, none of this one's
    import_(
        [path],
        settings=_settings(shared, base_url="http://127.0.0.1:8"),
        client_factory=other.factory,
    )
    with pytest.raises(GuardError, match="holds nothing for this target"):
        import_([path], settings=_settings(shared), client_factory=kraiter.factory)
    assert kraiter.events() == Counter(expected)


def test_reconcile_apply_then_import_does_not_duplicate(
    tmp_path: Path, src: tuple[Path, list[tuple]]
) -> None:
    """The issue's report: after a damaged ledger was moved aside, ``reconcile --kind
    events --apply`` reported 0 missing and the import then sent everything again."""
    path, expected = src
    kraiter = LocalKraiter(tmp_path)
    state = tmp_path / "state"
    import_([path], settings=_settings(state), client_factory=kraiter.factory)
    _damaged_then_moved_aside(state)
    result = reconcile(
        [path],
        settings=_settings(state),
        options=ReconcileOptions(apply=True),
        client_factory=kraiter.factory,
    )
    assert result.events is not None
    assert result.events.counts["missing"].sum() == 0
    with pytest.raises(GuardError, match="--rebuild"):
        import_([path], settings=_settings(state), client_factory=kraiter.factory)
    assert kraiter.events() == Counter(expected)


@pytest.mark.parametrize(("start", "share"), [(0, 0.02), (1_000, 0.1)])
def test_a_partly_sent_input_is_caught(tmp_path: Path, start: int, share: float) -> None:
    """An interrupted import sent the head of the input (caught by the sample's head);
    another state sent a stretch in the middle longer than two of the sample's slices
    (caught by the slices, which cover the whole input)."""
    full = tmp_path / "events.parquet"
    expected = write_events(full, rows=2_000)
    frame = pl.read_parquet(full)
    part = tmp_path / "part.parquet"
    frame.slice(start, int(2_000 * share)).write_parquet(part)
    kraiter = LocalKraiter(tmp_path)
    import_([part], settings=_settings(tmp_path / "old"), client_factory=kraiter.factory)
    sent = sum(kraiter.events().values())
    with pytest.raises(GuardError, match="events sampled from this input are in Kraiter"):
        import_([full], settings=_settings(tmp_path / "new"), client_factory=kraiter.factory)
    assert sum(kraiter.events().values()) == sent
    assert _gets(kraiter) <= MAX_PAGES + 1  # the probe, then at most MAX_PAGES listings
    adopted = import_(
        [full],
        settings=_settings(tmp_path / "new"),
        options=ImportOptions(adopt=True),
        client_factory=kraiter.factory,
    )
    assert adopted.events.verified == sent
    assert kraiter.events() == Counter(expected)


def test_the_check_is_paid_once_per_target(tmp_path: Path, src: tuple[Path, list[tuple]]) -> None:
    path, _expected = src
    kraiter = LocalKraiter(tmp_path)
    state = tmp_path / "state"
    # Kraiter already holds events this input does not have: the sample finds nothing
    seed = tmp_path / "seed.parquet"
    write_events(seed, rows=20, seed=99)
    import_([seed], settings=_settings(tmp_path / "elsewhere"), client_factory=kraiter.factory)

    contacts_only = tmp_path / "contacts.csv"
    contacts_only.write_text("email,plan\nann@example.com,pro\n")
    nothing = import_([contacts_only], settings=_settings(state), client_factory=kraiter.factory)
    assert nothing.state_check is None  # contacts are idempotent by email: no check

    first = import_([path], settings=_settings(state), client_factory=kraiter.factory)
    check = first.state_check
    assert check is not None
    assert (check["how"], check["sampled"], check["found"]) == ("sample", 48, 0)
    assert check["requests"] == 1 + 48  # the probe, then one listing per sampled event
    assert first.events.sent == ROWS

    other = tmp_path / "other.parquet"
    write_events(other, rows=30, seed=5)
    second = import_([other], settings=_settings(state), client_factory=kraiter.factory)
    assert second.state_check is None
    assert second.events.sent == 30


def test_dry_run_refuses_too_and_records_nothing(
    tmp_path: Path, src: tuple[Path, list[tuple]]
) -> None:
    path, _expected = src
    kraiter = LocalKraiter(tmp_path)
    import_([path], settings=_settings(tmp_path / "old"), client_factory=kraiter.factory)
    with pytest.raises(GuardError):
        import_(
            [path],
            settings=_settings(tmp_path / "new"),
            options=ImportOptions(dry_run=True),
            client_factory=kraiter.factory,
        )
    fresh = tmp_path / "fresh"
    empty = LocalKraiter(tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    dry = import_(
        [path],
        settings=_settings(fresh),
        options=ImportOptions(dry_run=True),
        client_factory=empty.factory,
    )
    assert dry.state_check is not None
    assert dry.state_check["how"] == "empty-tenant"
    real = import_([path], settings=_settings(fresh), client_factory=empty.factory)
    assert real.state_check is not None  # a dry run records no check


def test_adopt_and_rebuild_together_are_a_usage_error(
    tmp_path: Path, src: tuple[Path, list[tuple]]
) -> None:
    from kraiter_sync.errors import ConfigError

    with pytest.raises(ConfigError, match="not both"):
        import_(
            [src[0]],
            settings=_settings(tmp_path / "st"),
            options=ImportOptions(adopt=True, rebuild=True),
        )


def test_cli_refusal_is_exit_2_and_names_the_next_step(tmp_path: Path) -> None:
    """Against the CLI's local Kraiter (it lives in the state directory, beside the
    ledger): the ledger alone is lost."""
    src = tmp_path / "events.parquet"
    write_events(src, rows=80)
    state = tmp_path / "state"
    env = {"KRAITER_SYNC_STATE_DIR": str(state)}
    first = CliRunner().invoke(main, ["import", str(src)], env=env)
    assert first.exit_code == 3, first.stderr  # write_events adds rows to reject
    for path in _ledger_files(state):
        path.unlink()

    refused = CliRunner().invoke(main, ["import", str(src)], env=env)
    assert refused.exit_code == 2, refused.stderr
    assert "error: lost state? all 48 events sampled from this input" in refused.stderr
    assert "re-run with --rebuild" in refused.stderr
    assert "Traceback" not in refused.stderr

    rebuilt = CliRunner().invoke(main, ["import", str(src), "--rebuild"], env=env)
    assert rebuilt.exit_code == 3, rebuilt.stderr
    assert "events: 84 read, 80 already imported" in rebuilt.stdout
    assert "ledger rebuilt from Kraiter: 80 events held, " in rebuilt.stdout


def test_retry_after_lost_state_is_led_to_state_rebuild(tmp_path: Path) -> None:
    """``retry`` has no --rebuild or --adopt: its refusal names ``state rebuild``."""
    import asyncio

    from kraiter_sync.api.ratelimit import RateController
    from kraiter_sync.verbs.retry import retry_

    kraiter = LocalKraiter(tmp_path)
    settings = _settings(tmp_path / "state")

    async def make_contact() -> str:
        async with kraiter.factory(RateController()) as client:
            return str((await client.create_contact("ada@example.com"))["id"])

    real_id = asyncio.run(make_contact())
    src = tmp_path / "events.csv"
    rows = [f"cnt_gone,login,2025-02-0{i}T10:00:00Z,team" for i in (1, 2, 3)]
    src.write_text("contact_id,event,timestamp,plan\n" + "\n".join(rows) + "\n")
    first = import_([src], settings=settings, client_factory=kraiter.factory)
    assert (first.events.rejected, first.exit_code) == (3, 3)
    rejects = first.rejects_path
    assert rejects is not None
    rejects.write_text(rejects.read_text().replace("cnt_gone", real_id))  # the cause fixed
    fixed = retry_(rejects, settings=settings, client_factory=kraiter.factory)
    assert (fixed.events.sent, fixed.exit_code) == (3, 0)

    for path in _ledger_files(settings.state_dir):
        path.unlink()
    with pytest.raises(GuardError) as info:
        retry_(rejects, settings=settings, client_factory=kraiter.factory)
    message = str(info.value)
    assert "lost state? all 3 events sampled from this input" in message
    assert "`kraiter-sync state rebuild`" in message
    assert message.endswith("then run the retry again")
    assert "--rebuild" not in message
    assert "--adopt" not in message
    assert kraiter.transports[-1].writes == 0
    assert sum(kraiter.events().values()) == 3  # nothing sent twice
