"""``import``: files → validated frames → plan against the ledger → upload → report.

Two passes keep memory flat and make the safety checks possible before anything is
sent:

1. **Validate** every input in chunks. Invalid rows go to the rejects file; valid
   events are spooled to Parquet parts in the state directory; the event names and
   contact emails seen are collected.
2. **Send.** First the sequence-trigger guard (nothing has been sent yet). Then
   contacts (created or patched; unchanged ones skipped by hash). Then, for events:
   verification of keys a killed run left ``inflight``, and the spool chunk by chunk,
   minus keys already recorded; contacts the ledger does not know cost nothing where
   Kraiter creates them for events, and are found or created first where it does not
   (``upload.links``). Sends whose answer was lost are checked once, at the end.

Before the first events go to a target the ledger knows nothing of (a new or replaced
state directory), the input is sample-checked against Kraiter (``plan.lost_state``): if
Kraiter holds some of it already, the import stops before sending anything, unless
``rebuild`` (the ledger is rebuilt from Kraiter first: ``verbs.rebuild``) or ``adopt``
(every event is looked for in Kraiter before it is sent) is given.

A ledger written before values read as text were typed (``state.ledger.KEY_VERSION``)
knows some events under their earlier key: ``plan.ledger`` finds them under it, and rows
a killed earlier version left inflight under it are verified with the properties sent
then (:meth:`_Run._recover_legacy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from kraiter_sync.api.ratelimit import RateController
from kraiter_sync.config import Settings
from kraiter_sync.errors import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_REJECTED,
    ConfigError,
    StateError,
    is_disk_full,
    os_reason,
    status_for_exit,
)
from kraiter_sync.inputs import (
    ChunkSource,
    Input,
    InputOptions,
    KindValidation,
    PreparedInput,
    prepare_inputs,
)
from kraiter_sync.logs import get_logger
from kraiter_sync.plan.contact_plan import contacts_to_write
from kraiter_sync.plan.guards import check_triggers
from kraiter_sync.plan.ledger import contacts_to_send, split_events
from kraiter_sync.plan.lost_state import (
    SampleCheck,
    check_sample,
    lost_state_error,
    needs_check,
    read_sample,
    record_checked,
    sample_positions,
    tenant_is_empty,
)
from kraiter_sync.plan.shards import in_shard, rows_elsewhere
from kraiter_sync.state.ledger import KEY_VERSION
from kraiter_sync.state.rejects import (
    DuplicatesWriter,
    RejectsWriter,
    duplicates_path,
    reuse_identical,
)
from kraiter_sync.state.store import StateStore
from kraiter_sync.upload.context import (
    ClientFactory,
    Run,
    RunOptions,
    locked_state,
    recorded_run,
    worker_state,
)
from kraiter_sync.upload.core import Snapshot
from kraiter_sync.upload.engine import ContactRow, Engine, EngineStats, EventRow, rows_of_events
from kraiter_sync.upload.rows import outcome_rejects
from kraiter_sync.urls import redact_url
from kraiter_sync.validate import ValidationReport
from kraiter_sync.validate.engine import LEGACY_KEY, LEGACY_PROPERTIES
from kraiter_sync.verbs.rebuild import rebuild_ledger
from kraiter_sync.verbs.sharing import Sharing, job_id, sharing_for, work_through_shards

if TYPE_CHECKING:
    from kraiter_sync.state.work import ShardLeases

__all__ = [
    "ImportOptions",
    "ImportResult",
    "KindCounts",
    "Snapshot",
    "check_worker_options",
    "import_",
    "import_locked",
]

log = get_logger("import")
_SPOOL_COLUMNS = [
    "event_key",
    "email",
    "contact_id",
    "name",
    "timestamp_iso",
    "properties",
    "source_file",
    "source_row",
    LEGACY_KEY,
    LEGACY_PROPERTIES,
]


@dataclass(frozen=True)
class ImportOptions:
    """Everything ``kraiter-sync import`` takes besides the paths and the target."""

    input: InputOptions = field(default_factory=InputOptions)
    rejects: Path | None = None
    dry_run: bool = False
    concurrency: int = 16
    #: Ceiling in requests/s (None: as fast as Kraiter allows).
    rate: float | None = None
    max_retries: int = 5
    allow_triggers: bool = False
    #: Send again the keys the ledger holds as ``rejected`` (what ``retry`` does).
    resend_rejected: bool = False
    #: Re-send every valid contact even when its hash equals the ledger's (a full pass).
    ignore_contact_cache: bool = False
    #: Worker processes sharing this import through PostgreSQL state (``verbs.workers``;
    #: 0: a plain run, alone on its target). With 1 this process is one worker.
    workers: int = 0
    #: The part of the tenant's rate limit this run and the runs beside it use together.
    max_share: float = 1.0
    #: Seconds a worker's claim on a shard lasts unless renewed (a killed worker's work
    #: is taken over after it).
    lease_seconds: float = 60.0
    #: A worker started by ``import_with_workers``: it works in the round of shards its
    #: parent began, and never begins a new one.
    join_round: bool = False
    #: Look for every event the ledger does not know in Kraiter before sending it (one
    #: listing per contact and name): the way on when the state was lost.
    adopt: bool = False
    #: Rebuild the ledger from what Kraiter holds before anything else (``state rebuild``).
    rebuild: bool = False

    @property
    def run_options(self) -> RunOptions:
        return RunOptions(
            concurrency=self.concurrency, rate=self.rate, max_retries=self.max_retries
        )


@dataclass
class KindCounts:
    """What happened to every row of one kind.

    ``read = duplicates + invalid + already + previously_rejected + sent + verified
    + unchanged + rejected + failed + pending``.
    """

    read: int = 0
    duplicates: int = 0
    invalid: int = 0
    already: int = 0
    previously_rejected: int = 0
    sent: int = 0
    verified: int = 0
    unchanged: int = 0
    rejected: int = 0
    failed: int = 0
    pending: int = 0
    #: Rows of the shards other workers sent (an import run by several workers).
    elsewhere: int = 0

    def absorb(self, report: ValidationReport) -> None:
        self.read += report.rows_read
        self.duplicates += report.duplicates
        self.invalid += report.rejected

    @property
    def accounted(self) -> int:
        return (
            self.duplicates
            + self.invalid
            + self.already
            + self.previously_rejected
            + self.sent
            + self.verified
            + self.unchanged
            + self.rejected
            + self.failed
            + self.pending
            + self.elsewhere
        )


@dataclass
class ImportResult:
    """The outcome of one import run; ``exit_code`` follows design.md §8."""

    run_id: int
    events: KindCounts = field(default_factory=KindCounts)
    contacts: KindCounts = field(default_factory=KindCounts)
    rejects_path: Path | None = None
    duration_s: float = 0.0
    requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    interrupted: bool = False
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)
    #: How each input was mapped (detected or given): one line per field.
    detections: list[str] = field(default_factory=list)
    #: Why the run stopped before sending anything (``max_reject_ratio``), else None.
    stopped: str | None = None
    #: The rows dropped or merged as duplicates, with the row each went into (None:
    #: there were none).
    duplicates_path: Path | None = None
    #: The lost-state check of a target the ledger knew nothing of (``how``: sample or
    #: empty-tenant; sampled, found, requests, events), None when none was needed.
    state_check: dict[str, Any] | None = None
    #: What ``rebuild`` read and cost (``verbs.rebuild.RebuildResult.as_dict``).
    rebuild: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        kinds = (self.events, self.contacts)
        if self.stopped is not None:
            return EXIT_REJECTED
        if self.interrupted or any(c.failed or (c.pending and not self.dry_run) for c in kinds):
            return EXIT_INCOMPLETE
        if any(c.invalid or c.rejected for c in kinds):
            return EXIT_REJECTED
        return EXIT_OK

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def status(self) -> str:
        """``ok``, ``rejected-rows``, ``incomplete`` or ``dry-run`` (:func:`status_for_exit`)."""
        return status_for_exit(self.exit_code, dry_run=self.dry_run)

    def as_dict(self) -> dict[str, Any]:
        """The counts (what the run record keeps)."""
        out = asdict(self)
        del out["detections"]
        out["rejects_path"] = str(self.rejects_path) if self.rejects_path else None
        out["duplicates_path"] = str(self.duplicates_path) if self.duplicates_path else None
        out["exit_code"] = self.exit_code
        out["status"] = self.status
        out["requests_per_s"] = round(self.requests_per_s, 1)
        return out

    def to_json(self, *, command: str = "import") -> dict[str, Any]:
        """The ``--json`` document (docs/schemas/import.schema.json; ``retry`` too)."""
        doc: dict[str, Any] = {"command": command}
        doc.update(self.as_dict())
        doc["files"] = {"rejects": doc["rejects_path"], "duplicates": doc["duplicates_path"]}
        doc["mapping"] = list(self.detections)
        return doc


class _Run:
    """State of one import between its two passes."""

    def __init__(
        self,
        settings: Settings,
        options: ImportOptions,
        store: StateStore,
        run_id: int,
        writer: RejectsWriter,
        command: str = "import",
    ) -> None:
        self.settings = settings
        self.command = command
        self.options = options
        self.store = store
        self.run_id = run_id
        self.writer = writer
        self.target = settings.target
        self.spool = settings.state_dir / "spool" / f"run-{run_id}"
        self.spool_parts: list[Path] = []
        self.spool_heights: list[int] = []
        self.contacts: pl.DataFrame | None = None
        self.names: set[str] = set()
        self.emails: pl.Series | None = None
        self.sharing: Sharing | None = None
        self.result = ImportResult(run_id=run_id, rejects_path=writer.path, dry_run=options.dry_run)
        #: Kraiter held some of this input when the ledger knew nothing of the target: the
        #: check is recorded complete once an ``adopt`` run has settled every event.
        self.adopting = False
        #: Where the rows dropped or merged as duplicates are listed (None: nowhere).
        self.duplicates: DuplicatesWriter | None = None

    # -- pass 1 --------------------------------------------------------------------------

    def validate(
        self, inputs: Sequence[PreparedInput], on_progress: Callable[[int], None] | None = None
    ) -> None:
        kinds = {i.kind for i in inputs}
        self.result.detections = [
            f"{inp.label}: {line}" for inp in inputs for line in inp.detection.lines()
        ]
        if "contacts" in kinds:
            run = KindValidation(
                "contacts",
                inputs,
                self.options.input,
                on_rejects=self.writer.write,
                on_progress=on_progress,
                on_duplicates=self.duplicates.write if self.duplicates else None,
            )
            frames = list(run.run())
            self.contacts = pl.concat(frames) if frames else None
            self.result.contacts.absorb(run.report)
            self.result.warnings.extend(run.report.all_warnings())
        if "events" in kinds:
            run = KindValidation(
                "events",
                inputs,
                self.options.input,
                on_rejects=self.writer.write,
                on_progress=on_progress,
                on_duplicates=self.duplicates.write if self.duplicates else None,
            )
            self._spool_write(self.spool.mkdir, parents=True, exist_ok=True)
            # distinct emails so far: merged chunk by chunk, so memory follows the number
            # of contacts, not the number of events
            emails = pl.Series("email", [], dtype=pl.String)
            for part, valid in enumerate(run.run()):
                if not valid.height:
                    continue
                frame = valid.select(
                    [
                        pl.col(c) if c in valid.columns else pl.lit(None, pl.String).alias(c)
                        for c in _SPOOL_COLUMNS
                    ]
                )
                path = self.spool / f"part-{part:05d}.parquet"
                self._spool_write(frame.write_parquet, path)
                self.spool_parts.append(path)
                self.spool_heights.append(frame.height)
                self.names.update(frame["name"].unique().to_list())
                emails = pl.concat([emails, frame["email"].drop_nulls()]).unique()
            self.emails = emails if emails.len() else None
            self.result.events.absorb(run.report)
            self.result.warnings.extend(run.report.all_warnings())

    def _spool_write(self, write: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        """Valid events wait in the spool until the sending pass: nothing is sent yet."""
        try:
            write(*args, **kwargs)
        except (OSError, pl.exceptions.PolarsError) as exc:
            if is_disk_full(exc):
                hint = "free some space in the state directory"
            else:
                hint = "make sure the state directory is writable"
            msg = (
                f"cannot write the spool {self.spool}: {os_reason(exc)}; nothing was sent: "
                f"{hint} and run again"
            )
            raise StateError(msg) from exc

    def spooled(self) -> Iterator[pl.DataFrame]:
        for path in self.spool_parts:
            yield pl.read_parquet(path)

    # -- pass 2 --------------------------------------------------------------------------

    async def guard_triggers(self, engine: Engine) -> None:
        """Refuse back-dated events that would start live sequences (before any send)."""
        if self.options.allow_triggers or not self.names:
            return
        await check_triggers(
            engine.client,
            self.names,
            call=engine.with_retry,
            what="these event names trigger live sequences and importing history",
        )

    async def guard_lost_state(self, engine: Engine) -> None:
        """Rebuild the ledger from Kraiter first (``rebuild``), or make sure it knows the
        target before the first events go to it (``plan.lost_state``): a refusal when
        Kraiter holds sampled events the ledger does not know, unless ``adopt``."""
        options, store, target = self.options, self.store, self.target
        if options.rebuild:
            self.result.rebuild = (await rebuild_ledger(engine)).as_dict()
            return
        if not self.spool_parts:  # contacts are idempotent by email: nothing to check
            return
        why = needs_check(store, target, record=not options.dry_run)
        if why is None:
            return
        before = engine.requests
        events = sum(self.spool_heights)
        check, how = SampleCheck(), "empty-tenant"
        if not await tenant_is_empty(engine.client, call=engine.with_retry):
            how = "sample"
            positions = sample_positions(events, rng=random.SystemRandom())
            sample = read_sample(self.spool_parts, self.spool_heights, positions)
            check = await check_sample(
                engine.client,
                sample,
                call=engine.with_retry,
                concurrency=engine.options.concurrency,
            )
        facts = {
            "sampled": check.sampled,
            "found": check.found,
            "unsettled": check.unsettled,
            "requests": engine.requests - before,
            "events": events,
        }
        self.result.state_check = {"how": how, "why": why, **facts}
        if check.found and not options.adopt:
            raise lost_state_error(
                check,
                why=why,
                state_dir=(
                    redact_url(self.settings.state_url)
                    if self.settings.state_url
                    else self.settings.state_dir
                ),
                base_url=self.settings.base_url,
                events=events,
                groups=self._groups(),
                command=self.command,
            )
        if options.dry_run or (why == "unfinished rebuild" and not check.found):
            return  # (an unfinished rebuild is checked again until it is finished)
        self.adopting = bool(check.found)
        record_checked(
            store, target, "adopt" if check.found else how, complete=not check.found, **facts
        )

    def _groups(self) -> int:
        """Distinct (contact, event name) pairs of the input: what ``adopt`` lists."""
        return int(
            pl.scan_parquet(self.spool_parts)
            .select(pl.coalesce("contact_id", "email"), "name")
            .unique()
            .select(pl.len())
            .collect()
            .item()
        )

    def adopted(self) -> None:
        """An ``adopt`` run that settled every event: the ledger knows the target now."""
        ev = self.result.events
        if self.adopting and not (self.result.interrupted or ev.failed or ev.pending):
            record_checked(self.store, self.target, "adopt", events=ev.read - ev.invalid)

    async def diff_against_kraiter(
        self, engine: Engine, frame: pl.DataFrame
    ) -> tuple[pl.DataFrame, int]:
        """Of the rows the ledger can't vouch for, keep those Kraiter doesn't already hold.

        This is the reconcile plan: a new state directory or another machine
        re-importing the same contacts costs reads (a listing or per-email lookups,
        whichever is cheaper), not writes. Unchanged ones are cached for next time;
        the rows to update get Kraiter's id in ``_id`` (one PATCH each).
        """
        if not frame.height:
            return frame, 0
        wanted = frame.select(
            "email",
            "user_id",
            "properties",
            pl.col("source_file").cast(pl.String),
            pl.col("source_row").cast(pl.Int64),
        )
        todo, plan, _snapshot = await contacts_to_write(
            engine.client,
            wanted,
            call=engine.with_retry,
            concurrency=engine.options.concurrency,
        )
        unchanged = plan.of("unchanged")
        if not self.options.dry_run and unchanged.height:
            hashes = unchanged.select("email", "id").join(
                frame.select("email", "_hash"), on="email", how="inner"
            )
            self.store.put_contacts(self.target, hashes.select("email", "id", "_hash").rows())
        ids = plan.of("update").select("email", pl.col("id").alias("_remote"))
        keep = (
            frame.join(todo.select("email"), on="email", how="semi", maintain_order="left")
            .join(ids, on="email", how="left", maintain_order="left")
            .with_columns(pl.col("_remote").alias("_id"))  # Kraiter's word beats the cache
            .drop("_remote")
        )
        return keep, unchanged.height

    async def send_contacts(self, engine: Engine, frame: pl.DataFrame) -> None:
        counts = self.result.contacts
        todo, unchanged = contacts_to_send(
            self.store, self.target, frame, ignore_cache=self.options.ignore_contact_cache
        )
        counts.unchanged += unchanged
        # The ledger knows these contacts and what it last wrote to them, and the row
        # differs: an update by id, without asking Kraiter first (the nightly sync's
        # common case). The rest are diffed against Kraiter.
        known = pl.col("_id").is_not_null() & pl.col("_cached").is_not_null()
        by_id = todo.filter(known)
        unknown, same_in_kraiter = await self.diff_against_kraiter(engine, todo.filter(~known))
        counts.unchanged += same_in_kraiter
        if self.options.dry_run:
            counts.pending = counts.read - counts.accounted
            return
        rows = [
            ContactRow(email, props, user, sfile, int(srow), digest, cid)
            for part in (by_id, unknown)
            for email, props, user, sfile, srow, digest, cid in part.select(
                "email", "properties", "user_id", "source_file", "source_row", "_hash", "_id"
            ).iter_rows()
        ]
        written = await engine.write_contacts(rows)
        if written.rejected:
            self.writer.write(outcome_rejects(written.rejected))
        counts.sent += written.created + written.updated
        counts.unchanged += written.unchanged
        counts.rejected += len(written.rejected)
        counts.failed += written.failed
        counts.pending = counts.read - counts.accounted

    async def _recover_legacy(self, engine: Engine, frame: pl.DataFrame) -> list[EventRow]:
        """Rows a killed earlier version left inflight under their earlier key: looked for
        in Kraiter with the properties sent then; found → done under both keys, not found
        → the earlier key is dropped and the row is sent (returned)."""
        if not frame.height:
            return []
        earlier = frame.with_columns(
            pl.col(LEGACY_KEY).alias("event_key"), pl.col(LEGACY_PROPERTIES).alias("properties")
        )
        missing = {row.key for row in await engine.recover(list(rows_of_events(earlier)))}
        if engine.stopping:  # not all were checked: they stay inflight for the next run
            return []
        done = frame.filter(~pl.col(LEGACY_KEY).is_in(list(missing)))
        if done.height:
            self.store.adopt_keys(self.target, done.select(LEGACY_KEY, "event_key").iter_rows())
        self.store.forget(self.target, list(missing))
        return list(rows_of_events(frame.filter(pl.col(LEGACY_KEY).is_in(list(missing)))))

    async def send_events(self, engine: Engine, shard: tuple[int, int] | None = None) -> None:
        """The spooled events (``shard``: only those of shard ``(number, of)``)."""
        counts = self.result.events
        if self.spool_parts:
            emails = self.emails.to_list() if self.emails is not None else []
            if shard is not None:
                emails = in_shard(
                    pl.DataFrame({"email": emails}, schema={"email": pl.String}), *shard
                )["email"].to_list()
            if self.options.dry_run:
                cached = self.store.get_contacts(self.target, emails)
                ids = {e: cid for e, (cid, _h) in cached.items()}
            else:
                ids = engine.contacts_for_events(emails)
            for frame in self.spooled():
                if engine.stopping:
                    break
                if shard is not None:
                    frame = in_shard(frame, *shard)
                split = split_events(
                    self.store,
                    self.target,
                    frame,
                    ids,
                    resend_rejected=self.options.resend_rejected,
                    adopt=not self.options.dry_run,
                )
                counts.already += split.done
                counts.previously_rejected += split.rejected
                todo, inflight, legacy = split.todo, split.inflight, split.legacy_inflight
                if self.options.dry_run:
                    continue
                leftovers = await engine.recover(list(rows_of_events(inflight)))
                leftovers += await self._recover_legacy(engine, legacy)
                new = list(rows_of_events(todo))
                if self.options.adopt:  # looked for in Kraiter like inflight keys
                    new = await engine.recover(new)
                await engine.send_events([*leftovers, *new], settle=False)
            await engine.settle_events()  # once, late: one check serves many lost answers
            counts.sent = engine.stats.events_sent
            counts.verified = engine.stats.events_verified
            counts.rejected = engine.stats.events_rejected
            counts.failed = engine.stats.events_failed
        # Whatever was valid and not accounted for above was not attempted.
        counts.pending = counts.read - counts.accounted

    async def send_shards(self, engine: Engine, sharing: Sharing, leases: ShardLeases) -> None:
        """A worker's part: the shards it claims, contacts then events of each."""

        async def send(shard: int) -> None:
            if self.contacts is not None:
                await self.send_contacts(engine, in_shard(self.contacts, shard, leases.shards))
            await self.send_events(engine, (shard, leases.shards))

        mine = await work_through_shards(
            leases,
            sharing,
            send,
            stopping=lambda: engine.stopping,
            new_round=not self.options.join_round,
        )
        if mine is not None:  # every shard is done: the rest were other workers'
            contacts = [self.contacts] if self.contacts is not None else []
            self.result.contacts.elsewhere = rows_elsewhere(contacts, mine, leases.shards)
            self.result.events.elsewhere = rows_elsewhere(self.spooled(), mine, leases.shards)
        for counts in (self.result.contacts, self.result.events):
            counts.pending = counts.read - (counts.accounted - counts.pending)

    def snapshot(self, stats: EngineStats, controller: RateController) -> Snapshot:
        """Progress so far: records settled out of the valid records of this run."""
        ev, ct = self.result.events, self.result.contacts
        total = (ev.read - ev.duplicates - ev.invalid) + (ct.read - ct.duplicates - ct.invalid)
        done = (
            ct.unchanged
            + stats.contacts_created
            + stats.contacts_updated
            + stats.contacts_unchanged
            + stats.contacts_rejected
            + stats.contacts_failed
            + ev.already
            + ev.previously_rejected
            + stats.events_sent
            + stats.events_verified
            + stats.events_rejected
            + stats.events_failed
        )
        rate = controller.stats()
        sharing = self.sharing
        return Snapshot(
            done=done,
            total=total - ev.elsewhere - ct.elsewhere,
            retries=stats.retries,
            rate_limited=rate.rate_limited,
            rate_budget=rate.rate,
            requests=rate.requests,
            share=sharing.fraction if sharing is not None else None,
        )

    async def send(self, run: Run, on_progress: Callable[[Snapshot], None] | None) -> None:
        engines: list[Engine] = []

        def progress(stats: EngineStats) -> None:
            if on_progress is not None and engines and engines[0].controller is not None:
                on_progress(self.snapshot(stats, engines[0].controller))

        async with run.engine(
            on_rejected=lambda outcomes: self.writer.write(outcome_rejects(outcomes)),
            on_progress=progress,
            graceful_stop=True,
        ) as engine:
            engines.append(engine)
            await self.guard_triggers(engine)
            sharing, controller = self.sharing, engine.controller
            with sharing.checking() if sharing is not None else contextlib.nullcontext():
                await self.guard_lost_state(engine)
            if engine.stopping:  # stopped while rebuilding the ledger: nothing was sent
                for counts in (self.result.contacts, self.result.events):
                    counts.pending = counts.read - counts.accounted
            else:
                progress(engine.stats)  # the phase is sending now, before a batch settles
                async with (
                    sharing.running(controller)
                    if sharing is not None and controller is not None
                    else contextlib.nullcontext()
                ):
                    if sharing is not None and sharing.leases is not None:
                        await self.send_shards(engine, sharing, sharing.leases)
                    else:
                        if self.contacts is not None:
                            await self.send_contacts(engine, self.contacts)
                        await self.send_events(engine)
            self.result.interrupted = engine.stopping
            self.adopted()
            self.result.retries = engine.stats.retries
            if engine.controller is not None:
                stats = engine.controller.stats()
                self.result.requests = stats.requests
                self.result.rate_limited = stats.rate_limited


def _clear_old_spools(state_dir: Path) -> None:
    """Spools of earlier (finished or killed) runs; we hold the state lock, so none is live."""
    root = state_dir / "spool"
    if root.is_dir():
        shutil.rmtree(root, ignore_errors=True)


def import_locked(
    store: StateStore,
    paths: Sequence[str | Path | ChunkSource | Input],
    *,
    settings: Settings,
    options: ImportOptions | None = None,
    client_factory: ClientFactory | None = None,
    on_progress: Callable[[Snapshot], None] | None = None,
    args: dict[str, Any] | None = None,
    command: str = "import",
    on_validated: Callable[[int], None] | None = None,
) -> ImportResult:
    """:func:`import_` for a caller that holds the state lock (``sync`` runs each job
    through it under one lock)."""
    options = options or ImportOptions()
    if options.adopt and options.rebuild:
        msg = (
            "pass --adopt or --rebuild, not both: --rebuild makes the ledger know what "
            "Kraiter holds, so there is nothing left to adopt"
        )
        raise ConfigError(msg)
    started = time.monotonic()
    _clear_old_spools(settings.state_dir)
    if store.oldest_key_version(settings.target) < KEY_VERSION:
        validation = dataclasses.replace(options.input.validation, legacy_keys=True)
        options = dataclasses.replace(
            options, input=dataclasses.replace(options.input, validation=validation)
        )
    record = args or {"paths": [str(getattr(p, "path", p)) for p in paths]}
    with (
        recorded_run(
            store,
            settings,
            command,
            record,
            options=options.run_options,
            client_factory=client_factory,
        ) as run,
        contextlib.ExitStack() as stack,
    ):
        job: _Run | None = None
        try:
            rejects_path = options.rejects or (
                settings.state_dir / "rejects" / f"run-{run.run_id}.csv"
            )
            writer = stack.enter_context(RejectsWriter(rejects_path))
            inputs = prepare_inputs(paths, options.input, stack=stack)
            job = _Run(settings, options, store, run.run_id, writer, command)
            shared = options.workers > 0 and not options.dry_run
            job.sharing = sharing_for(
                store,
                settings,
                max_share=options.max_share,
                job=job_id(settings.target, [str(p) for p in paths]) if shared else None,
                lease_seconds=options.lease_seconds,
            )
            job.duplicates = stack.enter_context(DuplicatesWriter(duplicates_path(writer.path)))
            job.validate(inputs, on_validated)
            job.duplicates.close()
            if job.duplicates.written is not None:
                job.result.duplicates_path = reuse_identical(
                    job.duplicates.path, "run-*.duplicates.csv"
                )
            job.result.stopped = options.input.reject_ratio_exceeded(
                job.result.contacts.read + job.result.events.read,
                job.result.contacts.invalid + job.result.events.invalid,
            )
            if job.result.stopped is None:
                asyncio.run(job.send(run, on_progress))
            else:
                for counts in (job.result.contacts, job.result.events):
                    counts.pending = counts.read - counts.accounted
                log.warning("stopped before sending anything: %s", job.result.stopped)
            if options.rejects is None:
                writer.close()
                writer.path = reuse_identical(writer.path, f"run-*{writer.path.suffix}")
                job.result.rejects_path = writer.path
            job.result.duration_s = time.monotonic() - started
            run.status = job.result.status
            return job.result
        finally:
            if job is not None and job.sharing is not None:
                job.sharing.detach(store)
            run.counts = job.result.as_dict() if job is not None else {}
            if job is None:
                run.details = None
            else:
                run.details = {
                    "rejects": {
                        "by_rule": job.writer.by_rule,
                        "file": str(job.writer.path.absolute()),
                    }
                }
                shutil.rmtree(job.spool, ignore_errors=True)


def check_worker_options(options: ImportOptions) -> None:
    """What workers cannot do (exit 2 before anything starts)."""
    if options.workers and options.rebuild:
        msg = (
            "--rebuild with --workers would rebuild the ledger in every worker: run "
            "`kraiter-sync state rebuild` first, then the import with --workers"
        )
        raise ConfigError(msg)


def import_(
    paths: Sequence[str | Path | ChunkSource | Input],
    *,
    settings: Settings,
    options: ImportOptions | None = None,
    client_factory: ClientFactory | None = None,
    on_progress: Callable[[Snapshot], None] | None = None,
    args: dict[str, Any] | None = None,
    command: str = "import",
    on_validated: Callable[[int], None] | None = None,
) -> ImportResult:
    """Import files into Kraiter: the library form of ``kraiter-sync import``.

    ``paths`` may also hold open chunk sources (``sources.sql.SqlSource``: see
    ``inputs.ChunkSource``) and :class:`~kraiter_sync.inputs.Input` items (one input
    with its own mapping); ``command`` names the run record. ``on_validated`` gets the
    rows validated so far, ``on_progress`` where the sending stands.

    Safe to kill and re-run: the ledger in ``settings.state_dir`` makes the next run
    skip what is done and verify what was in flight. Returns counts for every row;
    ``result.exit_code`` is what the CLI exits with.
    """
    if options is not None:
        check_worker_options(options)
    with worker_state(settings) if options and options.workers else locked_state(settings) as store:
        return import_locked(
            store,
            paths,
            settings=settings,
            options=options,
            client_factory=client_factory,
            on_progress=on_progress,
            args=args,
            command=command,
            on_validated=on_validated,
        )
