"""``import``: files → validated frames → plan against the ledger → upload → report.

Two passes keep memory flat and make the safety checks possible before anything is
sent:

1. **Validate** every input in chunks. Invalid rows go to the rejects file; valid
   events are spooled to Parquet parts in the state directory; the event names and
   contact emails seen are collected.
2. **Send.** First the sequence-trigger guard (nothing has been sent yet). Then
   contacts (created or patched; unchanged ones skipped by hash). Then, for events:
   one upsert per contact the ledger does not know yet, verification of keys a killed
   run left ``inflight``, and the spool chunk by chunk, minus keys already recorded.

A ledger written before values read as text were typed (``ledger.KEY_VERSION``) knows
some events under their earlier key: for such a target the validator also gives each
row whose key changed its earlier key (``legacy_key``), and a row done or refused under
it is not sent again (the new key is recorded beside it). Contacts alike: the change
cache matches the earlier properties hash too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import io
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import polars_hash as plh

from kraiter_sync.client import KraiterClient
from kraiter_sync.config import Settings
from kraiter_sync.errors import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_REJECTED,
    GuardError,
    InputError,
    StateError,
    is_disk_full,
    os_reason,
)
from kraiter_sync.ledger import KEY_VERSION, Ledger, check_tenant, ensure_state_dir, state_lock
from kraiter_sync.logs import get_logger
from kraiter_sync.objectstore import is_object_url, parse_url, read_object
from kraiter_sync.pipeline import (
    ChunkSource,
    InputOptions,
    KindValidation,
    PreparedInput,
    prepare_inputs,
)
from kraiter_sync.progress import Snapshot
from kraiter_sync.ratelimit import RateController
from kraiter_sync.reconcile_run import contacts_to_write
from kraiter_sync.rejects import RejectsWriter
from kraiter_sync.report.timeline import Timeline, record_requests
from kraiter_sync.retry import RetryPolicy
from kraiter_sync.upload import (
    ContactRow,
    Engine,
    EngineOptions,
    EngineStats,
    EventRow,
    Outcome,
    rows_of_events,
)
from kraiter_sync.validate import REJECT_SCHEMA, ValidationReport
from kraiter_sync.validate.engine import LEGACY_KEY, LEGACY_PROPERTIES

__all__ = ["ImportOptions", "ImportResult", "KindCounts", "import_", "retry_"]

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

    @property
    def exit_code(self) -> int:
        kinds = (self.events, self.contacts)
        if self.interrupted or any(c.failed or (c.pending and not self.dry_run) for c in kinds):
            return EXIT_INCOMPLETE
        if any(c.invalid or c.rejected for c in kinds):
            return EXIT_REJECTED
        return EXIT_OK

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rejects_path"] = str(self.rejects_path) if self.rejects_path else None
        out["exit_code"] = self.exit_code
        out["requests_per_s"] = round(self.requests_per_s, 1)
        return out


def contact_hash(properties: str | None, user_id: str | None) -> str:
    """Hash of what we would write for a contact: equal hash → nothing to send."""
    text = f"{user_id or ''}\x1f{properties or '{}'}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def contact_hashes(frame: pl.DataFrame) -> pl.Series:
    """:func:`contact_hash` of every row of a canonical contacts frame, vectorised."""
    text = frame.select(
        pl.concat_str(
            [pl.col("user_id").fill_null(""), pl.col("properties").fill_null("{}")],
            separator="\x1f",
        ).alias("t")
    )
    return text.select(plh.col("t").chash.sha2_256().str.slice(0, 32)).to_series()


def _api_rejects(outcomes: Sequence[Outcome[Any]]) -> pl.DataFrame:
    """Outcomes refused by Kraiter as rows of the rejects frame (stage ``rejected``)."""
    rows = []
    for o in outcomes:
        row = o.row
        is_event = isinstance(row, EventRow)
        rows.append(
            {
                "source_file": row.source_file,
                "source_row": row.source_row,
                "field": "api",
                "rule": f"api.{o.code}",
                "message": o.message,
                "stage": "rejected",
                "email": row.email,
                "contact_id": row.contact_id if is_event else None,
                "name": row.name if is_event else None,
                "timestamp": row.timestamp if is_event else None,
                "properties": row.properties,
            }
        )
    return pl.DataFrame(rows, schema=REJECT_SCHEMA)


class _Run:
    """State of one import between its two passes."""

    def __init__(
        self,
        settings: Settings,
        options: ImportOptions,
        ledger: Ledger,
        run_id: int,
        writer: RejectsWriter,
    ) -> None:
        self.settings = settings
        self.options = options
        self.ledger = ledger
        self.run_id = run_id
        self.writer = writer
        self.target = settings.target
        self.spool = settings.state_dir / "spool" / f"run-{run_id}"
        self.spool_parts: list[Path] = []
        self.contacts: pl.DataFrame | None = None
        self.names: set[str] = set()
        self.emails: pl.Series | None = None
        self.result = ImportResult(run_id=run_id, rejects_path=writer.path, dry_run=options.dry_run)
        #: Requests per second of the sending pass (starts when it does).
        self.timeline: Timeline | None = None

    def details(self) -> dict[str, Any]:
        """What the run's report draws besides the counts (stored with the run)."""
        return {
            "timeline": None if self.timeline is None else self.timeline.as_dict(),
            "rejects": {"by_rule": self.writer.by_rule, "file": str(self.writer.path.absolute())},
        }

    # -- pass 1 --------------------------------------------------------------------------

    def validate(self, inputs: Sequence[PreparedInput]) -> None:
        kinds = {i.kind for i in inputs}
        if "contacts" in kinds:
            run = KindValidation(
                "contacts", inputs, self.options.input, on_rejects=self.writer.write
            )
            frames = list(run.run())
            self.contacts = pl.concat(frames) if frames else None
            self.result.contacts.absorb(run.report)
            self.result.warnings.extend(run.report.all_warnings())
        if "events" in kinds:
            run = KindValidation("events", inputs, self.options.input, on_rejects=self.writer.write)
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

        async def listing() -> list[dict[str, Any]]:
            return [seq async for seq in engine.client.list_sequences()]

        hits: dict[str, list[str]] = {}
        for seq in await engine.with_retry(listing):
            if str(seq.get("status", "")).lower() != "active":
                continue
            for trigger in seq.get("triggers") or []:
                event = trigger.get("event") if isinstance(trigger, dict) else trigger
                if event in self.names:
                    label = f"{seq.get('name') or seq.get('id')} ({seq.get('id')})"
                    hits.setdefault(str(event), []).append(label)
        if hits:
            found = "; ".join(f"{name} → {', '.join(seqs)}" for name, seqs in sorted(hits.items()))
            msg = (
                f"nothing was sent: these event names trigger live sequences and importing "
                f"history would enrol contacts and send real emails: {found}. Pause those "
                "sequences, or pass --allow-triggers if that is what you want"
            )
            raise GuardError(msg)

    def plan_contacts(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
        """Rows whose hash differs from what the ledger last wrote, and the unchanged count.

        The rows keep ``_hash`` (what they would write), and ``_id`` / ``_cached``: the
        contact id and hash the ledger holds for the email (null when it holds none).
        """
        frame = frame.with_columns(contact_hashes(frame).alias("_hash"))
        legacy = LEGACY_PROPERTIES in frame.columns and frame[LEGACY_PROPERTIES].null_count() < (
            frame.height
        )
        if legacy:  # what an earlier version cached for the row, before typing
            earlier = frame.select(
                "user_id", pl.coalesce(LEGACY_PROPERTIES, "properties").alias("properties")
            )
            frame = frame.with_columns(contact_hashes(earlier).alias("_legacy_hash"))
        if self.options.ignore_contact_cache:
            return frame.with_columns(
                pl.lit(None, pl.String).alias("_id"), pl.lit(None, pl.String).alias("_cached")
            ), 0
        found = self.ledger.contact_rows(self.target, frame["email"])
        emails, ids, digests = zip(*found, strict=True) if found else ((), (), ())
        cached = pl.DataFrame(
            {"email": emails, "_id": ids, "_cached": digests},
            schema={"email": pl.String, "_id": pl.String, "_cached": pl.String},
        )
        joined = frame.join(cached, on="email", how="left", maintain_order="left")
        if joined.height != frame.height:  # validation merges by email: not expected
            cached = cached.unique("email", keep="first")
            joined = frame.join(cached, on="email", how="left", maintain_order="left")
        changed = pl.col("_cached").ne_missing(pl.col("_hash"))
        if legacy:
            changed = changed & pl.col("_cached").ne_missing(pl.col("_legacy_hash"))
        todo = joined.filter(changed)
        return todo, frame.height - todo.height

    async def diff_against_kraiter(
        self, engine: Engine, frame: pl.DataFrame
    ) -> tuple[pl.DataFrame, int]:
        """Of the rows the ledger can't vouch for, keep those Kraiter doesn't already hold.

        This is the reconcile plan (issue 5): a new state directory or another machine
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
            self.ledger.put_contacts(self.target, hashes.select("email", "id", "_hash").rows())
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
        todo, counts.unchanged = self.plan_contacts(frame)
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
        before = engine.stats
        rejected = await engine.write_contacts(rows)
        if rejected:
            self.writer.write(_api_rejects(rejected))
        counts.sent = before.contacts_created + before.contacts_updated
        counts.unchanged += before.contacts_unchanged
        counts.rejected = before.contacts_rejected
        counts.failed = before.contacts_failed
        counts.pending = counts.read - counts.accounted

    def _plan_part(
        self, frame: pl.DataFrame, ids: dict[str, str]
    ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """Split a spool part: (rows to send, rows left inflight by a killed run, rows
        left inflight under their earlier key)."""
        states = self.ledger.known_states(self.target, frame["event_key"].to_list())
        state = frame["event_key"].replace_strict(states, default=None, return_dtype=pl.String)
        state = self._legacy_states(frame, state)
        counts = self.result.events
        if self.options.resend_rejected:
            state = state.replace("rejected", None)
        counts.already += int((state == "done").sum())
        counts.previously_rejected += int((state == "rejected").sum())
        if ids:
            resolved = frame["email"].replace_strict(ids, default=None, return_dtype=pl.String)
            frame = frame.with_columns(
                pl.coalesce(pl.col("contact_id"), resolved).alias("contact_id")
            )
        todo = frame.filter(state.is_null())
        inflight = frame.filter(state == "inflight")
        legacy_inflight = frame.filter(state == "legacy-inflight")
        return todo, inflight, legacy_inflight

    def _legacy_states(self, frame: pl.DataFrame, state: pl.Series) -> pl.Series:
        """For rows the ledger does not know by key, the state of their earlier key
        (``legacy_key``): done or rejected under it counts as done or rejected (and the new
        key is recorded so); inflight under it becomes ``legacy-inflight`` (verified with
        the properties sent then)."""
        if LEGACY_KEY not in frame.columns:
            return state
        old = frame[LEGACY_KEY]
        ask = state.is_null() & old.is_not_null()
        if not ask.any():
            return state
        found = self.ledger.known_states(self.target, old.filter(ask).to_list())
        if not found:
            return state
        earlier = pl.select(
            pl.when(pl.lit(ask)).then(
                pl.lit(old).replace_strict(found, default=None, return_dtype=pl.String)
            )
        ).to_series()
        settled = earlier.is_in(["done", "rejected"]).fill_null(False)
        if settled.any() and not self.options.dry_run:
            pairs = zip(
                old.filter(settled).to_list(),
                frame["event_key"].filter(settled).to_list(),
                strict=True,
            )
            self.ledger.adopt_keys(self.target, pairs)
        relabel = pl.when(pl.lit(earlier) == "inflight").then(pl.lit("legacy-inflight"))
        return pl.select(pl.coalesce(pl.lit(state), relabel.otherwise(pl.lit(earlier)))).to_series()

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
            self.ledger.adopt_keys(self.target, done.select(LEGACY_KEY, "event_key").iter_rows())
        self.ledger.forget(self.target, list(missing))
        return list(rows_of_events(frame.filter(pl.col(LEGACY_KEY).is_in(list(missing)))))

    async def send_events(self, engine: Engine) -> None:
        counts = self.result.events
        if self.spool_parts:
            emails = self.emails.to_list() if self.emails is not None else []
            if self.options.dry_run:
                ids = {
                    e: cid for e, (cid, _h) in self.ledger.get_contacts(self.target, emails).items()
                }
            else:
                ids = await engine.ensure_contacts(emails)
            unresolved = 0
            for frame in self.spooled():
                if engine.stopping:
                    break
                todo, inflight, legacy = self._plan_part(frame, ids)
                if self.options.dry_run:
                    continue
                known = pl.col("contact_id").is_not_null()
                unresolved += sum(f.filter(~known).height for f in (todo, inflight, legacy))
                leftovers = await engine.recover(list(rows_of_events(inflight.filter(known))))
                leftovers += await self._recover_legacy(engine, legacy.filter(known))
                await engine.send_events([*leftovers, *rows_of_events(todo.filter(known))])
            counts.sent = engine.stats.events_sent
            counts.verified = engine.stats.events_verified
            counts.rejected = engine.stats.events_rejected
            counts.failed = engine.stats.events_failed + unresolved
        # Whatever was valid and not accounted for above was not attempted.
        counts.pending = counts.read - counts.accounted

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
        return Snapshot(
            done=done,
            total=total,
            retries=stats.retries,
            rate_limited=rate.rate_limited,
            rate_budget=rate.rate,
        )

    async def send(
        self,
        client: KraiterClient,
        controller: RateController,
        on_progress: Callable[[Snapshot], None] | None,
    ) -> None:
        def progress(stats: EngineStats) -> None:
            if on_progress is not None:
                on_progress(self.snapshot(stats, controller))

        self.timeline = Timeline()
        record_requests(client, self.timeline)
        engine = Engine(
            client,
            self.ledger,
            target=self.target,
            run_id=self.run_id,
            options=EngineOptions(
                concurrency=self.options.concurrency,
                retry=RetryPolicy(max_retries=self.options.max_retries),
            ),
            on_rejected=lambda outcomes: self.writer.write(_api_rejects(outcomes)),
            on_progress=progress,
            on_retry=self.timeline.retry,
        )
        loop = asyncio.get_running_loop()
        with _stop_on_signals(loop, engine.request_stop):
            await self.guard_triggers(engine)
            if self.contacts is not None:
                await self.send_contacts(engine, self.contacts)
            await self.send_events(engine)
        self.result.interrupted = engine.stopping
        self.result.retries = engine.stats.retries
        stats = controller.stats()
        self.result.requests = stats.requests
        self.result.rate_limited = stats.rate_limited


@contextlib.contextmanager
def _stop_on_signals(loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> Iterator[None]:
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


def _clear_old_spools(state_dir: Path) -> None:
    """Spools of earlier (finished or killed) runs; we hold the state lock, so none is live."""
    root = state_dir / "spool"
    if root.is_dir():
        shutil.rmtree(root, ignore_errors=True)


def import_(
    paths: Sequence[str | Path | ChunkSource],
    *,
    settings: Settings,
    options: ImportOptions | None = None,
    client_factory: Callable[[RateController], KraiterClient] | None = None,
    on_progress: Callable[[Snapshot], None] | None = None,
    args: dict[str, Any] | None = None,
    command: str = "import",
) -> ImportResult:
    """Import files into Kraiter: the library form of ``kraiter-sync import``.

    ``paths`` may also hold open chunk sources (``sql.SqlSource``: see
    ``pipeline.ChunkSource``); ``command`` names the run record (``sync`` uses it).

    Safe to kill and re-run: the ledger in ``settings.state_dir`` makes the next run
    skip what is done and verify what was in flight. Returns counts for every row;
    ``result.exit_code`` is what the CLI exits with.
    """
    options = options or ImportOptions()
    started = time.monotonic()
    ensure_state_dir(settings.state_dir)
    with state_lock(settings.state_dir), contextlib.ExitStack() as stack:
        _clear_old_spools(settings.state_dir)
        ledger = stack.enter_context(Ledger(settings.ledger_path))
        check_tenant(ledger, settings)
        if ledger.oldest_key_version(settings.target) < KEY_VERSION:
            validation = dataclasses.replace(options.input.validation, legacy_keys=True)
            options = dataclasses.replace(
                options, input=dataclasses.replace(options.input, validation=validation)
            )
        run_id = ledger.start_run(
            command, settings.target, args or {"paths": [str(p) for p in paths]}
        )
        status = "failed"
        run: _Run | None = None
        try:
            rejects_path = options.rejects or (settings.state_dir / "rejects" / f"run-{run_id}.csv")
            writer = stack.enter_context(RejectsWriter(rejects_path))
            inputs = prepare_inputs(paths, options.input, stack=stack)
            run = _Run(settings, options, ledger, run_id, writer)
            run.validate(inputs)
            controller = RateController(ceiling=options.rate)
            factory = client_factory or (
                lambda ctrl: KraiterClient.from_settings(
                    settings, observer=ctrl, max_connections=max(options.concurrency, 1)
                )
            )

            async def main(run: _Run) -> None:
                async with factory(controller) as client:
                    await run.send(client, controller, on_progress)

            asyncio.run(main(run))
            run.result.duration_s = time.monotonic() - started
            status = "incomplete" if run.result.exit_code == EXIT_INCOMPLETE else "ok"
            if options.dry_run:
                status = "dry-run"
            return run.result
        finally:
            counts = run.result.as_dict() if run is not None else {}
            failing = sys.exc_info()[1] is not None
            try:
                ledger.finish_run(
                    run_id, status, counts, details=run.details() if run is not None else None
                )
            except StateError:
                if not failing:
                    raise
                # (a full disk fails this too: the run's own error says what happened)
                log.debug("could not record the end of run %d", run_id, exc_info=True)
            finally:
                if run is not None:
                    shutil.rmtree(run.spool, ignore_errors=True)


_UNFORMULA = r"^'([=+\-@\t\r])"


def _read_rejects(path: Path, data: bytes | None = None) -> pl.DataFrame:
    """A rejects file back as a frame (CSV formula neutralisation undone); ``data`` holds
    its bytes when it came from object storage."""
    suffix = path.suffix.lower()
    source: Path | io.BytesIO = path if data is None else io.BytesIO(data)
    try:
        if suffix == ".parquet":
            frame = pl.read_parquet(source)
        elif suffix in (".ndjson", ".jsonl"):
            frame = pl.read_ndjson(source, schema=REJECT_SCHEMA)
        elif suffix == ".csv":
            frame = pl.read_csv(source, infer_schema=False).with_columns(
                pl.col(pl.String).str.replace(_UNFORMULA, "${1}")
            )
        else:
            msg = f"{path}: a rejects file ends in .csv, .parquet or .ndjson"
            raise InputError(msg)
    except (OSError, pl.exceptions.PolarsError) as exc:
        msg = f"cannot read the rejects file {path}: {exc}"
        raise InputError(msg) from None
    missing = {"stage", "email", "name", "timestamp", "properties"} - set(frame.columns)
    if missing:
        msg = (
            f"{path} is not a kraiter-sync rejects file (no column {sorted(missing)[0]!r}); "
            "pass the file that `import` named at the end of its summary"
        )
        raise InputError(msg)
    return frame


def retry_(
    rejects_file: str | Path,
    *,
    settings: Settings,
    options: ImportOptions | None = None,
    client_factory: Callable[[RateController], KraiterClient] | None = None,
    on_progress: Callable[[Snapshot], None] | None = None,
) -> ImportResult:
    """Re-send the rows Kraiter refused (stage ``rejected``) after their cause was fixed.

    Rows the validator caught (stage ``invalid``) are not re-sent: fix them in the
    source and import again. Keys the ledger holds as rejected are sent again; keys
    already done are still skipped, so running ``retry`` twice sends nothing twice.
    """
    options = dataclasses.replace(options or ImportOptions(), resend_rejected=True)
    label = str(rejects_file)
    if is_object_url(str(rejects_file)):  # a rejects file kept in a bucket: small, read whole
        data = read_object(str(rejects_file), options.input.storage)
        path = Path(parse_url(str(rejects_file)).key)
        frame = _read_rejects(path, data).filter(pl.col("stage") == "rejected")
    else:
        path = Path(rejects_file)
        frame = _read_rejects(path).filter(pl.col("stage") == "rejected")
    work = settings.state_dir / "retry"
    work.mkdir(parents=True, exist_ok=True)
    renamed = frame.rename(
        {"source_file": "original_file", "source_row": "original_row"}, strict=False
    )
    results: list[ImportResult] = []
    for kind, subset in (
        ("contacts", renamed.filter(pl.col("name").is_null())),
        ("events", renamed.filter(pl.col("name").is_not_null())),
    ):
        if not subset.height:
            continue
        part = work / f"{path.stem}-{kind}.parquet"
        subset.write_parquet(part)
        kind_options = dataclasses.replace(
            options,
            input=dataclasses.replace(
                options.input,
                kind=kind,  # type: ignore[arg-type]
                connector=f"kraiter_rejects_{kind}",
            ),
        )
        results.append(
            import_(
                [part],
                settings=settings,
                options=kind_options,
                client_factory=client_factory,
                on_progress=on_progress,
                args={"retry": label, "kind": kind},
            )
        )
        part.unlink(missing_ok=True)
    if not results:
        msg = f"{label} holds no rows that Kraiter rejected (stage 'rejected'): nothing to retry"
        raise InputError(msg)
    merged = results[-1]
    for other in results[:-1]:
        merged.contacts = other.contacts if other.contacts.read else merged.contacts
        merged.requests += other.requests
        merged.retries += other.retries
        merged.rate_limited += other.rate_limited
        merged.duration_s += other.duration_s
        merged.interrupted = merged.interrupted or other.interrupted
    return merged
