"""``state rebuild`` against the local Kraiter: what it reads, what it costs, resuming."""

from __future__ import annotations

import math
import os
import signal
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from kraiter_sync.cli import main
from kraiter_sync.config import Settings, resolve_settings
from kraiter_sync.emulator import EmulatorConfig, serve_in_thread
from kraiter_sync.errors import GuardError
from kraiter_sync.verbs.importer import import_
from kraiter_sync.verbs.rebuild import RebuildOptions, RebuildProgress, rebuild_state
from tests.helpers.imports import KEY, LocalKraiter, write_events

ROWS = 250
CONTACTS = 40


def _settings(state: Path) -> Settings:
    return resolve_settings(api_key=KEY, base_url="http://127.0.0.1:9", state_dir=state, env={})


@pytest.fixture
def sent(tmp_path: Path) -> tuple[LocalKraiter, Path, list[tuple]]:
    """Kraiter holding ROWS events of CONTACTS contacts, sent from a state now lost."""
    src = tmp_path / "events.parquet"
    expected = write_events(src, rows=ROWS, contacts=CONTACTS)
    kraiter = LocalKraiter(tmp_path)
    import_([src], settings=_settings(tmp_path / "lost"), client_factory=kraiter.factory)
    return kraiter, src, expected


def test_rebuild_reads_one_page_per_100_events_and_contacts(
    tmp_path: Path, sent: tuple[LocalKraiter, Path, list[tuple]]
) -> None:
    kraiter, src, expected = sent
    state = tmp_path / "state"
    result = rebuild_state(_settings(state), client_factory=kraiter.factory)
    assert result.complete
    assert result.exit_code == 0
    assert (result.events_read, result.contacts_read) == (ROWS, CONTACTS)
    assert result.keys_marked == 2 * ROWS  # keyed by contact id and by email
    assert result.requests == math.ceil(ROWS / 100) + math.ceil(CONTACTS / 100) == 4
    assert result.requests == result.expected_requests
    assert kraiter.transports[-1].writes == 0

    again = import_([src], settings=_settings(state), client_factory=kraiter.factory)
    assert (again.events.already, again.events.sent, again.state_check) == (ROWS, 0, None)
    assert kraiter.transports[-1].writes == 0
    assert kraiter.events() == Counter(expected)


def test_an_interrupted_rebuild_resumes_and_imports_wait_for_it(
    tmp_path: Path, sent: tuple[LocalKraiter, Path, list[tuple]]
) -> None:
    """Over real HTTP (Ctrl-C is handled by the event loop between requests)."""
    kraiter, src, expected = sent
    stopped: list[int] = []

    def interrupt(progress: RebuildProgress) -> None:
        if progress.stage == "events" and progress.events >= 100 and not stopped:
            stopped.append(progress.events)
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: stop after the page in flight

    with serve_in_thread(EmulatorConfig(db_path=str(kraiter.db))) as url:
        settings = resolve_settings(api_key=KEY, base_url=url, state_dir=tmp_path / "st", env={})
        first = rebuild_state(settings, on_progress=interrupt)
        assert not first.complete
        assert first.exit_code == 4
        assert 100 <= first.events_read < ROWS

        # a ledger half rebuilt is not one that knows the target
        with pytest.raises(GuardError, match="began and did not finish"):
            import_([src], settings=settings)

        rest = rebuild_state(settings)
        assert rest.resumed
        assert rest.complete
        assert first.events_read + rest.events_read == ROWS
        assert first.event_pages + rest.event_pages == math.ceil(ROWS / 100)
        done = import_([src], settings=settings)
        assert (done.events.already, done.events.sent) == (ROWS, 0)
    assert kraiter.events() == Counter(expected)


def test_a_finished_rebuild_goes_on_from_where_it_stopped(
    tmp_path: Path, sent: tuple[LocalKraiter, Path, list[tuple]]
) -> None:
    kraiter, _src, _expected = sent
    state = tmp_path / "state"
    rebuild_state(_settings(state), client_factory=kraiter.factory)
    more = tmp_path / "more.parquet"
    write_events(more, rows=30, seed=3)
    import_([more], settings=_settings(tmp_path / "lost"), client_factory=kraiter.factory)

    later = rebuild_state(_settings(state), client_factory=kraiter.factory)
    # the last page read before, again, and the 30 events sent since: not all 280
    assert later.resumed
    assert later.complete
    assert later.events_read == ROWS % 100 + 30
    full = rebuild_state(
        _settings(state), options=RebuildOptions(from_start=True), client_factory=kraiter.factory
    )
    assert (full.resumed, full.events_read) == (False, ROWS + 30)


def test_cli_state_rebuild(tmp_path: Path) -> None:
    src = tmp_path / "events.parquet"
    write_events(src, rows=120)
    state = tmp_path / "state"
    env = {"KRAITER_SYNC_STATE_DIR": str(state)}
    assert CliRunner().invoke(main, ["import", str(src)], env=env).exit_code == 3
    for path in state.glob("ledger.db*"):
        path.unlink()

    result = CliRunner().invoke(main, ["state", "rebuild"], env=env)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("ledger rebuilt from Kraiter: 120 events held, ")
    assert "requests (one per 100 events and contacts: " in result.stdout
    again = CliRunner().invoke(main, ["import", str(src)], env=env)
    assert again.exit_code == 3, again.stderr
    assert "events: 124 read, 120 already imported" in again.stdout
