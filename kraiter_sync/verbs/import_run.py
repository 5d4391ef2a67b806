"""One import run between its two passes (:class:`ImportRun`): validating the inputs
into the spool, then sending (the trigger guard, the lost-state check, contacts, events,
the verification of what was left inflight or whose answer was lost). ``verbs.importer``
opens the run record, the rejects file and the inputs and drives it."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from kraiter_sync.api.ratelimit import RateController
from kraiter_sync.config import Settings
from kraiter_sync.errors import StateError, is_disk_full, os_reason
from kraiter_sync.inputs import KindValidation, PreparedInput
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
from kraiter_sync.state.rejects import DuplicatesWriter, RejectsWriter
from kraiter_sync.state.store import StateStore
from kraiter_sync.upload.context import Run
from kraiter_sync.upload.core import Snapshot
from kraiter_sync.upload.engine import ContactRow, Engine, EngineStats, EventRow, rows_of_events
from kraiter_sync.upload.rows import outcome_rejects
from kraiter_sync.urls import redact_url
from kraiter_sync.validate.engine import LEGACY_KEY, LEGACY_PROPERTIES
from kraiter_sync.verbs.import_options import ImportOptions, ImportResult
from kraiter_sync.verbs.rebuild import rebuild_ledger
from kraiter_sync.verbs.sharing import Sharing, work_through_shards

if TYPE_CHECKING:
    from kraiter_sync.state.work import ShardLeases


__all__ = ["ImportRun"]

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


class ImportRun:
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
