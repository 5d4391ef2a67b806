"""The run context: how every verb gets its run (import, retry, reconcile, apply,
restore, export, sync).

One place assembles what a run needs, so no verb can forget a part of it:

* :func:`client_for` — a client for resolved settings. With ``settings.local`` the local
  Kraiter (the emulator, over the SQLite file in the state directory) is started here,
  lazily and in-process: this module is the only one that imports the emulator.
* :func:`locked_state` — the state store with the target's run lock (taken once, not
  re-entrant: the state directory's lock, and with PostgreSQL state an advisory lock
  shared by every machine), with the tenant binding checked.
* :func:`recorded_run` → :class:`Run` — a run record in the store, finished with the
  run's status and counts however the block ends; :meth:`Run.engine` opens the client
  with a rate controller and retry policy and yields the :class:`Engine`.
* :func:`connect` — a rate-controlled client and a retrying caller for runs that only
  read (a reconcile preview, an export, ``sync --check``).

``client_factory`` (``RateController`` → ``KraiterClient``) is the seam through which
tests and benchmarks put their own transport under any verb.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from kraiter_sync.api.blocking import SyncKraiterClient
from kraiter_sync.api.client import KraiterClient, RequestObserver
from kraiter_sync.api.ratelimit import RateController
from kraiter_sync.api.retry import RetryPolicy, call_with_retry
from kraiter_sync.api.timeline import Timeline, record_requests
from kraiter_sync.config import Settings
from kraiter_sync.errors import (
    EXIT_FAILED,
    EXIT_INCOMPLETE,
    ConfigError,
    KraiterSyncError,
    StateError,
    status_for_exit,
)
from kraiter_sync.logs import get_logger
from kraiter_sync.state.backend import locked_store, open_store, worker_store
from kraiter_sync.state.ledger import check_tenant
from kraiter_sync.state.store import StateStore
from kraiter_sync.upload.engine import Engine, EngineOptions, EngineStats
from kraiter_sync.upload.rows import RejectSink

__all__ = [
    "ClientFactory",
    "Connection",
    "Run",
    "RunOptions",
    "blocking_client_for",
    "check_tenant_binding",
    "client_for",
    "connect",
    "locked_state",
    "recorded_run",
    "serve_local_kraiter",
    "stop_on_signals",
    "terminate_as_interrupt",
    "worker_state",
]

log = get_logger("run")
T = TypeVar("T")

#: Builds the run's client around its rate controller (tests pass their own transport).
ClientFactory = Callable[[RateController], KraiterClient]


@dataclass(frozen=True)
class RunOptions:
    """How a run talks to Kraiter: requests in flight, a rate ceiling, retries."""

    concurrency: int = 16
    #: Ceiling in requests/s (None: as fast as Kraiter allows).
    rate: float | None = None
    max_retries: int = 5


# ---- clients ---------------------------------------------------------------------------


def _local_transport(settings: Settings) -> httpx.AsyncBaseTransport:
    """The local Kraiter over the state directory's SQLite file, mounted in-process."""
    from kraiter_sync.emulator import EmulatorConfig, asgi_transport, create_app

    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = (
            f"cannot create the state directory {settings.state_dir} for the local "
            f"Kraiter: {exc.strerror}; pass --state-dir with a folder you can write"
        )
        raise StateError(msg) from exc
    app = create_app(EmulatorConfig(db_path=str(settings.local_db)))
    return asgi_transport(app, close_app=True)


def client_for(
    settings: Settings, *, observer: RequestObserver | None = None, **kw: Any
) -> KraiterClient:
    """A client for resolved settings (``kw``: :class:`KraiterClient` options); with
    ``settings.local``, the local Kraiter runs in-process (no socket)."""
    if settings.local and "transport" not in kw:
        kw["transport"] = _local_transport(settings)
    return KraiterClient(settings.base_url, settings.api_key, observer=observer, **kw)


def blocking_client_for(settings: Settings, **kw: Any) -> SyncKraiterClient:
    """The blocking facade over :func:`client_for`."""
    return SyncKraiterClient.wrapping(client_for(settings, **kw))


def _factory(settings: Settings, options: RunOptions, given: ClientFactory | None) -> ClientFactory:
    if given is not None:
        return given
    return lambda controller: client_for(
        settings, observer=controller, max_connections=max(options.concurrency, 1)
    )


@dataclass
class Connection:
    """A rate-controlled client and a retrying caller (``await call(fn)``)."""

    client: KraiterClient
    controller: RateController
    call: Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]


@contextlib.asynccontextmanager
async def connect(
    settings: Settings,
    options: RunOptions | None = None,
    *,
    client_factory: ClientFactory | None = None,
) -> AsyncIterator[Connection]:
    """A client for a run that only reads: no lock, no run record."""
    opts = options or RunOptions()
    controller = RateController(ceiling=opts.rate)
    policy = RetryPolicy(max_retries=opts.max_retries)

    async def call(fn: Callable[[], Awaitable[T]]) -> T:
        return await call_with_retry(fn, policy)

    async with _factory(settings, opts, client_factory)(controller) as client:
        yield Connection(client, controller, call)


def serve_local_kraiter(
    *,
    db_path: str,
    host: str,
    port: int,
    out: Any = None,
    on_ready: Callable[[str], None] | None = None,
    **faults: Any,
) -> None:
    """``kraiter-sync emulator``: serve the local Kraiter over real HTTP until Ctrl-C
    (``faults``: :class:`~kraiter_sync.emulator.EmulatorConfig` fields; ``out``: where
    its messages go; ``on_ready`` gets the base URL once it listens)."""
    import sqlite3

    from kraiter_sync.emulator import EmulatorConfig, run_server

    try:
        config = EmulatorConfig(db_path=db_path, **faults)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        run_server(config, host=host, port=port, out=out, on_ready=on_ready)
    except OSError as exc:
        msg = f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port"
        raise ConfigError(msg) from None
    except sqlite3.Error as exc:
        msg = f"cannot use {config.db_path} as the local Kraiter's database: {exc}"
        raise StateError(msg) from None


# ---- state -----------------------------------------------------------------------------


def check_tenant_binding(settings: Settings) -> None:
    """The tenant check alone, for runs that hold no lock (export): a ``--tenant`` name
    must be used with the key it was first used with."""
    if settings.tenant is None or settings.local:
        return
    with open_store(settings) as store:
        check_tenant(store, settings)


@contextlib.contextmanager
def locked_state(settings: Settings) -> Iterator[StateStore]:
    """Hold the state lock and the state store for a run (or a sync of many runs).

    The lock is not re-entrant: take it once, around everything, and call the verbs'
    lock-free inner functions inside (``sync`` does). An unreachable PostgreSQL store
    stops here (exit 2), before anything is sent.
    """
    with locked_store(settings) as store:
        check_tenant(store, settings)
        yield store


@contextlib.contextmanager
def worker_state(settings: Settings) -> Iterator[StateStore]:
    """:func:`locked_state` for one worker of an import run by several: the PostgreSQL
    store with the target's lock held shared (the workers share the work by leases)."""
    with worker_store(settings) as store:
        check_tenant(store, settings)
        yield store


@dataclass
class Run:
    """One recorded run: its store, record id and how it talks to Kraiter.

    Set :attr:`status` (``ok``, ``incomplete``, ``dry-run``) and :attr:`counts` before the
    block ends; a run left ``failed`` is recorded as failed.
    """

    settings: Settings
    store: StateStore
    run_id: int
    options: RunOptions = field(default_factory=RunOptions)
    client_factory: ClientFactory | None = None
    status: str = "failed"
    counts: dict[str, Any] = field(default_factory=dict)
    #: What the run's report draws besides the counts (the verb adds to it; None: nothing
    #: was run). ``timeline`` is added from :attr:`timeline` when the run is recorded.
    details: dict[str, Any] | None = field(default_factory=dict)
    #: Requests per second of the run's engine (``api.timeline``), once it has one.
    timeline: Timeline | None = None

    def record_details(self) -> dict[str, Any] | None:
        """What the run record keeps for the run's report."""
        if self.details is None:
            return None
        timeline = None if self.timeline is None else self.timeline.as_dict()
        return {"timeline": timeline, **self.details}

    @contextlib.asynccontextmanager
    async def engine(
        self,
        *,
        on_rejected: RejectSink | None = None,
        on_progress: Callable[[EngineStats], None] | None = None,
        graceful_stop: bool = False,
    ) -> AsyncIterator[Engine]:
        """The run's client (rate-controlled) and the engine over it and the store.

        With ``graceful_stop`` the first Ctrl-C or SIGTERM stops issuing requests and
        lets those in flight finish and be recorded (a second one aborts).
        """
        controller = RateController(ceiling=self.options.rate)
        factory = _factory(self.settings, self.options, self.client_factory)
        async with factory(controller) as client:
            self.timeline = Timeline()
            record_requests(client, self.timeline)
            engine = Engine(
                client,
                self.store,
                target=self.settings.target,
                run_id=self.run_id,
                options=EngineOptions(
                    concurrency=self.options.concurrency,
                    retry=RetryPolicy(max_retries=self.options.max_retries),
                ),
                controller=controller,
                on_rejected=on_rejected,
                on_progress=on_progress,
                on_retry=self.timeline.retry,
            )
            if graceful_stop:
                with stop_on_signals(asyncio.get_running_loop(), engine.request_stop):
                    yield engine
            else:
                yield engine


@contextlib.contextmanager
def recorded_run(
    store: StateStore,
    settings: Settings,
    command: str,
    args: Mapping[str, Any],
    *,
    options: RunOptions | None = None,
    client_factory: ClientFactory | None = None,
) -> Iterator[Run]:
    """Record a run in the store for the block; the caller holds the lock."""
    run_id = store.start_run(command, settings.target, args)
    run = Run(settings, store, run_id, options or RunOptions(), client_factory)
    failing = False
    try:
        yield run
    except BaseException as exc:
        failing = True
        # the record says how the command ended: its exit code, its status, and why
        if isinstance(exc, KraiterSyncError):
            code = exc.exit_code
        else:
            code = EXIT_INCOMPLETE if isinstance(exc, KeyboardInterrupt) else EXIT_FAILED
        run.counts = {
            **run.counts,
            "exit_code": code,
            "error": str(exc)[:2000] or type(exc).__name__,
        }
        run.status = status_for_exit(code)
        raise
    finally:
        try:
            store.finish_run(run_id, run.status, run.counts, details=run.record_details())
        except StateError:
            if not failing:
                raise
            # (a full disk fails this too: the run's own error says what happened)
            log.debug("could not record the end of run %d", run_id, exc_info=True)


# ---- signals ---------------------------------------------------------------------------


@contextlib.contextmanager
def stop_on_signals(loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> Iterator[None]:
    """First Ctrl-C / SIGTERM: stop issuing, drain, flush. A second one: stop at once."""
    installed: list[signal.Signals] = []
    pressed = 0

    def handler() -> None:
        nonlocal pressed
        pressed += 1
        if pressed == 1:
            log.warning("stopping: finishing requests in flight (Ctrl-C again to abort)")
            stop()
        else:
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, handler)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt for the block, like Ctrl-C (export: the run is
    recorded as interrupted and resumes). Outside the main thread nothing changes."""

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
