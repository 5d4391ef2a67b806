"""The run context: how every verb gets its run (lock, store, record, client, engine)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.api.ratelimit import RateController
from kraiter_sync.config import Settings, resolve_settings
from kraiter_sync.emulator import EmulatorConfig, asgi_transport, create_app
from kraiter_sync.errors import ConfigError, LockHeldError
from kraiter_sync.export import ExportOptions, export
from kraiter_sync.state.ledger import Ledger
from kraiter_sync.upload.context import (
    RunOptions,
    client_for,
    connect,
    locked_state,
    recorded_run,
)

KEY = "kr_context_test"


def remote(tmp_path: Path) -> Settings:
    return resolve_settings(
        api_key=KEY, base_url="http://127.0.0.1:9", state_dir=tmp_path / "state", env={}
    )


def test_the_state_lock_is_taken_once_and_is_not_reentrant(tmp_path: Path) -> None:
    settings = remote(tmp_path)
    with locked_state(settings) as store:
        assert store.list_runs() == []
        with pytest.raises(LockHeldError, match="another kraiter-sync run"), locked_state(settings):
            pass  # a second take in the same process is refused, like another process's
    with locked_state(settings):  # released
        pass


def test_a_run_is_recorded_with_its_status_however_it_ends(tmp_path: Path) -> None:
    settings = remote(tmp_path)
    with locked_state(settings) as store:
        with recorded_run(store, settings, "import", {"paths": ["a.csv"]}) as run:
            run.status, run.counts = "ok", {"sent": 3}
        with pytest.raises(RuntimeError), recorded_run(store, settings, "retry", {}):
            raise RuntimeError("boom")
        ok, failed = store.get_run(1), store.get_run(2)
    assert ok is not None
    assert (ok.command, ok.status, ok.counts) == ("import", "ok", {"sent": 3})
    assert failed is not None
    assert (failed.command, failed.status) == ("retry", "failed")


def test_the_engine_gets_a_rate_controller_and_the_run_policy(tmp_path: Path) -> None:
    settings = remote(tmp_path)
    given: list[RateController] = []

    def factory(controller: RateController) -> KraiterClient:
        given.append(controller)
        app = create_app(EmulatorConfig())
        return KraiterClient(
            settings.base_url,
            KEY,
            transport=asgi_transport(app, close_app=True),
            observer=controller,
        )

    options = RunOptions(concurrency=3, rate=7.0, max_retries=2)
    with (
        locked_state(settings) as store,
        recorded_run(store, settings, "import", {}, options=options, client_factory=factory) as run,
    ):

        async def main() -> tuple[int, int, float | None]:
            async with run.engine() as engine:
                assert engine.store is store
                assert engine.run_id == run.run_id
                assert engine.controller is given[0]
                return (
                    engine.options.concurrency,
                    engine.options.retry.max_retries,
                    engine.controller.ceiling,
                )

        assert asyncio.run(main()) == (3, 2, 7.0)
        run.status = "ok"


def test_only_the_run_context_starts_the_local_kraiter(tmp_path: Path) -> None:
    local = resolve_settings(state_dir=tmp_path / "state", env={})
    assert local.local
    with pytest.raises(ConfigError, match="client_for"):
        KraiterClient.from_settings(local)

    async def main() -> int:
        async with client_for(local) as client:
            await client.create_contact("ann@example.com")
            page = await client.get_page("contacts.list", limit=10)
            return len(page.items)

    assert asyncio.run(main()) == 1
    assert local.local_db.is_file()


def test_export_from_python_is_rate_controlled(tmp_path: Path) -> None:
    """``export()`` builds its run like every verb: the client gets a rate controller
    (``ExportOptions.rate`` its ceiling), where a library caller once got none."""
    settings = remote(tmp_path)
    seen: list[RateController] = []
    app = create_app(EmulatorConfig())

    def factory(controller: RateController) -> KraiterClient:
        seen.append(controller)
        transport: httpx.AsyncBaseTransport = asgi_transport(app)
        return KraiterClient(settings.base_url, KEY, transport=transport, observer=controller)

    result = export(
        "contacts",
        tmp_path / "out",
        settings=settings,
        options=ExportOptions(rate=4.0),
        client_factory=factory,
    )
    app.close()
    (controller,) = seen
    assert controller.ceiling == 4.0
    assert controller.stats().requests == result.requests > 0


def test_connect_reads_without_a_lock_or_a_record(tmp_path: Path) -> None:
    settings = remote(tmp_path)
    app = create_app(EmulatorConfig())

    def factory(controller: RateController) -> KraiterClient:
        return KraiterClient(
            settings.base_url,
            KEY,
            transport=asgi_transport(app, close_app=True),
            observer=controller,
        )

    async def main() -> int:
        async with connect(settings, client_factory=factory) as conn:
            page = await conn.call(lambda: conn.client.get_page("contacts.list", limit=1))
            return len(page.items)

    with locked_state(settings):  # a held lock does not stop a read
        assert asyncio.run(main()) == 0
    with Ledger(settings.ledger_path) as ledger:
        assert ledger.list_runs() == []
