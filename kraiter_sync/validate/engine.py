"""The validator proper: mapped chunk → (valid, rejects, report), plus whole-input runners."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any

import polars as pl

from kraiter_sync.frames import REJECT_SCHEMA, SOURCE_PROBLEM, Kind
from kraiter_sync.validate._series import MAX_TEXT_BYTES, column, full, overrule, without_huge
from kraiter_sync.validate.emails import normalise_emails
from kraiter_sync.validate.keys import SeenKeys, key_parts
from kraiter_sync.validate.names import check_names
from kraiter_sync.validate.options import RULE_MESSAGES, ValidationOptions
from kraiter_sync.validate.originals import original_values
from kraiter_sync.validate.properties import CanonicalProperties, canonical_properties
from kraiter_sync.validate.report import (
    DUPLICATE_SCHEMA,
    MAX_NAMES,
    ReportAccumulator,
    ValidationReport,
    ValidationResult,
)
from kraiter_sync.validate.timestamps import parse_timestamps, to_iso

__all__ = [
    "LEGACY_KEY",
    "LEGACY_PROPERTIES",
    "REJECT_SCHEMA",
    "ReportAccumulator",
    "ValidationReport",
    "ValidationResult",
    "validate_contacts",
    "validate_events",
]


#: Columns of valid rows whose properties an earlier version wrote differently (with
#: ``ValidationOptions.legacy_keys``): that version's properties text and event key.
LEGACY_PROPERTIES = "legacy_properties"
LEGACY_KEY = "legacy_key"


def merged_contacts(frame: pl.DataFrame) -> pl.DataFrame:
    """The contacts of ``frame`` merged into another row of the same email (the last,
    which wins), each with the source of the row it went into."""
    key = "email"
    empty = pl.DataFrame(schema=DUPLICATE_SCHEMA)
    if key not in frame.columns or frame.height < 2:
        return empty
    indexed = frame.select(key, "source_file", "source_row").with_row_index("_i")
    dup = indexed.filter(pl.col(key).is_duplicated())
    if not dup.height:
        return empty
    kept = dup.group_by(key).agg(pl.col("_i").last().alias("_kept"))
    kept = kept.join(
        indexed.select(
            pl.col("_i").alias("_kept"),
            pl.col("source_file").alias("kept_file"),
            pl.col("source_row").alias("kept_row"),
        ),
        on="_kept",
    )
    out = dup.join(kept, on=key).filter(pl.col("_i") != pl.col("_kept")).sort("_i")
    return out.select(
        pl.lit("contacts").alias("kind"),
        pl.col(key).cast(pl.String).alias("key"),
        pl.col("source_file").cast(pl.String),
        pl.col("source_row").cast(pl.Int64),
        pl.col("kept_file").cast(pl.String),
        pl.col("kept_row").cast(pl.Int64),
    )


@cache
def _pool() -> ThreadPoolExecutor:
    """Worker threads shared by every validation in the process (fields of one chunk)."""
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="kraiter-validate")


@cache
def _ahead_pool() -> ThreadPoolExecutor:
    """One worker thread that reads and prepares the next chunk (see ChunkedValidation)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="kraiter-validate-ahead")


def _rejects(
    mapped: pl.DataFrame,
    field_s: pl.Series,
    rule_s: pl.Series,
    mask: pl.Series,
    options: ValidationOptions,
) -> pl.DataFrame:
    """The rejects frame for the rows in ``mask`` (filtered first: rejects are few), with
    their original values as ``originals`` shows them (refused values masked, long ones
    cut). A row the source could not read takes its message from ``source_problem``."""
    # (only the provenance is filtered whole: the originals take each value apart first,
    # as a rejected value may be hundreds of megabytes)
    bad = pl.DataFrame([column(mapped, "source_file"), column(mapped, "source_row")]).filter(mask)
    base = pl.DataFrame(
        {
            "source_file": column(bad, "source_file").cast(pl.String),
            "source_row": column(bad, "source_row").cast(pl.Int64),
            "field": field_s.filter(mask),
            "rule": rule_s.filter(mask),
        }
    ).with_columns(
        pl.col("rule").replace_strict(dict(RULE_MESSAGES), default=None).alias("message"),
        pl.lit("invalid").alias("stage"),
    )
    if SOURCE_PROBLEM in mapped.columns:
        told = mapped[SOURCE_PROBLEM].struct.field("message").filter(mask)
        base = base.with_columns(pl.coalesce(pl.lit(told), pl.col("message")).alias("message"))
    return pl.concat([base, original_values(mapped, mask, options)], how="horizontal")


def _source_problems(mapped: pl.DataFrame) -> list[tuple[str, pl.Series]]:
    """The check for rows the source could not read (first of all), when there are any."""
    if SOURCE_PROBLEM not in mapped.columns:
        return []
    return [("row", mapped[SOURCE_PROBLEM].struct.field("rule"))]


def _identifier(values: pl.Series, options: ValidationOptions, code: str) -> pl.DataFrame:
    """An id (contact id, user id): trimmed, blank as none; ``code`` when longer than
    ``options.max_id_length`` characters (judged by length alone beyond 64 KiB: never
    copied)."""
    s, huge = without_huge(values.cast(pl.String), MAX_TEXT_BYTES)
    if s.null_count() < len(s):
        s = s.str.strip_chars()
        s = pl.select(pl.when(pl.lit(s) != "").then(pl.lit(s))).to_series()
    long = (s.str.len_chars() > options.max_id_length).fill_null(False)
    rule = pl.select(pl.when(pl.lit(long)).then(pl.lit(code))).to_series()
    rule = overrule(rule, huge, code)
    if huge is not None or long.any():  # (the row is rejected: its id is never sent)
        s = pl.select(pl.when(~pl.lit(rule).is_not_null()).then(pl.lit(s))).to_series()
        has = pl.select(pl.lit(s).is_not_null() | pl.lit(rule).is_not_null()).to_series()
    else:
        has = s.is_not_null()
    return pl.DataFrame({"id": s, "rule": rule.cast(pl.String), "present": has})


def _no_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema=REJECT_SCHEMA)


def _first_failure(checks: list[tuple[str, pl.Series]], n: int) -> tuple[pl.Series, pl.Series]:
    """(field, rule) of the first failing check per row; nulls where all pass."""
    checks = [(f, r) for f, r in checks if r.null_count() < n]  # skip checks that all pass
    if not checks:
        empty = full(n, None, pl.String)
        return empty, empty
    frame = pl.DataFrame({f"r{i}": rule for i, (_, rule) in enumerate(checks)})
    # failing rows are few: find them in one pass, then pick field and rule there only
    idx = frame.select(pl.any_horizontal(pl.all().is_not_null())).to_series().arg_true()
    bad = frame[idx]
    rule = bad.select(pl.coalesce(pl.all()).alias("rule")).to_series()
    fld = bad.select(
        pl.coalesce(
            [
                pl.when(pl.col(f"r{i}").is_not_null()).then(pl.lit(f))
                for i, (f, _) in enumerate(checks)
            ]
        ).alias("field")
    ).to_series()
    return (
        full(n, None, pl.String, "field").scatter(idx, fld),
        full(n, None, pl.String, "rule").scatter(idx, rule),
    )


def _count_rules(rules: pl.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in rules.drop_nulls().value_counts().iter_rows()}


@dataclass
class _Prepared:
    """A chunk checked field by field, before its keys; safe to build in threads.

    ``canon`` holds the rows that passed every check, without their keys yet.
    """

    canon: pl.DataFrame
    rejects: pl.DataFrame
    report: ValidationReport


def validate_events(
    mapped: pl.DataFrame,
    *,
    options: ValidationOptions | None = None,
    seen: SeenKeys | None = None,
) -> ValidationResult:
    """Validate one chunk of a mapped events frame (docs/internals.md).

    Pass the same ``seen`` to every chunk of one input so duplicates are found across
    chunks; without it, only duplicates inside this chunk are found.
    """
    return _finish_events(_prepare_events(mapped, options), seen)


@dataclass
class _Started:
    """A chunk whose costliest fields are being checked in the worker threads."""

    mapped: pl.DataFrame
    options: ValidationOptions
    props: Future[CanonicalProperties]
    emails: Future[pl.DataFrame]


def _start_events(mapped: pl.DataFrame, options: ValidationOptions | None) -> _Started:
    """Hands properties and emails (the costliest fields) to the worker threads: polars
    releases the GIL, so the field validators share the cores."""
    options = options or ValidationOptions()
    return _Started(
        mapped,
        options,
        _pool().submit(canonical_properties, column(mapped, "properties"), options),
        _pool().submit(
            normalise_emails,
            column(mapped, "email"),
            allow_smtputf8=options.allow_smtputf8,
            allow_special_use_domains=options.allow_special_use_domains,
        ),
    )


def _prepare_events(mapped: pl.DataFrame, options: ValidationOptions | None) -> _Prepared:
    return _complete_events(_start_events(mapped, options))


def _complete_events(started: _Started) -> _Prepared:
    """The rest of the field checks, then the rejects and the canonical frame."""
    mapped, options = started.mapped, started.options
    props_future, emails_future = started.props, started.emails
    n = mapped.height
    contacts = _identifier(column(mapped, "contact_id"), options, "contact_id.too_long")
    contact = contacts["id"]
    has_contact = contacts["present"]
    names = check_names(column(mapped, "name"), options)
    ts = parse_timestamps(column(mapped, "timestamp"), options)
    emails = emails_future.result()
    email_rule = emails["rule"]
    if email_rule.null_count() < n:
        email_rule = pl.select(
            pl.when(pl.lit(has_contact))
            .then(pl.lit(None, pl.String))
            .when(pl.lit(email_rule) == "email.missing")
            .then(pl.lit("identity.missing"))
            .otherwise(pl.lit(email_rule))
        ).to_series()
    props = props_future.result()
    fld, rule = _first_failure(
        [
            *_source_problems(mapped),
            ("contact_id", contacts["rule"]),
            ("email", email_rule),
            ("name", names["rule"]),
            ("timestamp", ts.rule),
            ("properties", props.rule),
        ],
        n,
    )
    ok = rule.is_null()
    all_ok = bool(ok.all())
    canon = pl.DataFrame(
        {
            "email": emails["email"],
            "contact_id": contact,
            "name": names["name"],
            "timestamp": ts.timestamp,
            "properties": props.json,
            "source_file": column(mapped, "source_file").cast(pl.String),
            "source_row": column(mapped, "source_row").cast(pl.Int64),
        }
    )
    if props.legacy is not None and props.legacy.null_count() < n:
        canon = canon.with_columns(props.legacy.alias(LEGACY_PROPERTIES))
    if not all_ok:
        canon = canon.filter(ok)
    rejects = _no_rejects() if all_ok else _rejects(mapped, fld, rule, ~ok, options)
    report = ValidationReport(
        kind="events",
        rows_read=n,
        rejected=rejects.height,
        by_rule=_count_rules(rule),
        timestamp_formats=ts.formats,
        naive_timestamps=ts.naive,
        timezone_assumed=options.timezone if ts.naive else None,
        names=set(names["name"].drop_nulls().unique().head(MAX_NAMES).to_list()),
    )
    return _Prepared(canon, rejects, report)


def _finish_events(prep: _Prepared, seen: SeenKeys | None) -> ValidationResult:
    """Keys and cross-chunk dedup: must run chunk after chunk, in input order.

    (Formatting timestamps and hashing keys happen here rather than in
    :func:`_prepare_events` to balance the work between the thread that reads and checks
    the next chunk and the one that deduplicates this one.)
    """
    canon = prep.canon
    canon = canon.with_columns(to_iso(canon["timestamp"]).alias("timestamp_iso"))
    parts = key_parts(canon)
    canon = canon.with_columns(parts["event_key"])
    legacy: list[str] = []
    if LEGACY_PROPERTIES in canon.columns:
        canon = canon.with_columns(_legacy_keys(canon))
        legacy = [LEGACY_KEY, LEGACY_PROPERTIES]
    # without a tracker, duplicates are still found within the chunk
    first = (seen if seen is not None else SeenKeys()).mark(parts["hi"], parts["lo"])
    all_first = bool(first.all())
    valid = (canon if all_first else canon.filter(first)).select(
        "email",
        "contact_id",
        "name",
        "timestamp",
        "timestamp_iso",
        "properties",
        "event_key",
        "source_file",
        "source_row",
        *legacy,
    )
    prep.report.valid = valid.height
    prep.report.duplicates = canon.height - valid.height
    duplicates = None
    if not all_first:
        # each dropped row, with the row kept for its key: in this chunk, else null (an
        # earlier chunk of the input)
        kept = canon.filter(first).select(
            "event_key",
            pl.col("source_file").cast(pl.String).alias("kept_file"),
            pl.col("source_row").cast(pl.Int64).alias("kept_row"),
        )
        duplicates = (
            canon.filter(~first)
            .select("event_key", "source_file", "source_row")
            .join(kept, on="event_key", how="left", maintain_order="left")
            .select(
                pl.lit("events").alias("kind"),
                pl.col("event_key").cast(pl.String).alias("key"),
                pl.col("source_file").cast(pl.String),
                pl.col("source_row").cast(pl.Int64),
                "kept_file",
                "kept_row",
            )
        )
    return ValidationResult(valid, prep.rejects, prep.report, duplicates)


def _legacy_keys(canon: pl.DataFrame) -> pl.Series:
    """``legacy_key``: the key an earlier version gave the rows whose properties it wrote
    differently (``legacy_properties`` set), before text values were typed; null
    elsewhere."""
    has = canon[LEGACY_PROPERTIES].is_not_null()
    idx = has.arg_true()
    old = canon.filter(has).with_columns(pl.col(LEGACY_PROPERTIES).alias("properties"))
    keys = key_parts(old)["event_key"] if old.height else pl.Series([], dtype=pl.String)
    return full(canon.height, None, pl.String, LEGACY_KEY).scatter(idx, keys)


def _merge_props(texts: list[str]) -> str:
    merged: dict[str, Any] = {}
    for t in texts:
        merged.update(json.loads(t))
    return json.dumps(dict(sorted(merged.items())), ensure_ascii=False, separators=(",", ":"))


def merge_contacts(frame: pl.DataFrame) -> pl.DataFrame:
    """Merge rows with the same email: last row wins per property and for ``user_id``.

    The merged row keeps the ``source_file``/``source_row`` of the last row.
    ``legacy_properties`` (when present: null means "as ``properties``") merge alike.
    """
    dup = frame["email"].is_duplicated()
    if not dup.any():
        return frame
    single = frame.filter(~dup)
    legacy = LEGACY_PROPERTIES in frame.columns
    extra = [pl.coalesce(LEGACY_PROPERTIES, "properties").alias(LEGACY_PROPERTIES)]
    grouped = (
        frame.filter(dup)
        .group_by("email", maintain_order=True)
        .agg(
            pl.col("user_id").drop_nulls().last(),
            pl.col("properties"),
            pl.col("source_file").last(),
            pl.col("source_row").last(),
            *(extra if legacy else []),
        )
    )
    texts = ["properties", LEGACY_PROPERTIES] if legacy else ["properties"]
    merged = grouped.with_columns(
        pl.Series(name, [_merge_props(p) for p in grouped[name].to_list()], dtype=pl.String)
        for name in texts
    ).select(frame.columns)
    if legacy:
        same = pl.col(LEGACY_PROPERTIES) == pl.col("properties")
        merged = merged.with_columns(
            pl.when(~same).then(pl.col(LEGACY_PROPERTIES)).alias(LEGACY_PROPERTIES)
        )
    return pl.concat([single, merged]).sort("source_file", "source_row", nulls_last=True)


def validate_contacts(
    mapped: pl.DataFrame, *, options: ValidationOptions | None = None
) -> ValidationResult:
    """Validate one mapped contacts frame; same-email rows are merged and counted as duplicates.

    Merging is within the frame given: pass the whole input (contacts files are small) or
    use :class:`ChunkedValidation`, which merges across chunks.
    """
    options = options or ValidationOptions()
    n = mapped.height
    emails = normalise_emails(
        column(mapped, "email"),
        allow_smtputf8=options.allow_smtputf8,
        allow_special_use_domains=options.allow_special_use_domains,
    )
    props = canonical_properties(column(mapped, "properties"), options)
    users = _identifier(column(mapped, "user_id"), options, "user_id.too_long")
    fld, rule = _first_failure(
        [
            *_source_problems(mapped),
            ("email", emails["rule"]),
            ("user_id", users["rule"]),
            ("properties", props.rule),
        ],
        n,
    )
    ok = rule.is_null()
    canon = pl.DataFrame(
        {
            "email": emails["email"],
            "user_id": users["id"],
            "properties": props.json,
            "source_file": column(mapped, "source_file").cast(pl.String),
            "source_row": column(mapped, "source_row").cast(pl.Int64),
        }
    )
    if options.legacy_keys:  # (always there, so chunks and inputs concatenate)
        legacy = props.legacy if props.legacy is not None else full(n, None, pl.String)
        canon = canon.with_columns(legacy.alias(LEGACY_PROPERTIES))
    canon = canon.filter(ok)
    valid = merge_contacts(canon)
    rejects = _rejects(mapped, fld, rule, ~ok, options)
    report = ValidationReport(
        kind="contacts",
        rows_read=n,
        valid=valid.height,
        duplicates=canon.height - valid.height,
        rejected=rejects.height,
        by_rule=_count_rules(rule),
    )
    duplicates = None
    if report.duplicates:
        report.warnings.append(
            "contacts with the same email were merged (last row wins per property)"
        )
        duplicates = merged_contacts(canon)
    return ValidationResult(valid, rejects, report, duplicates)


class ChunkedValidation:
    """Runs one input through the validator chunk by chunk with one report at the end.

    Events stream (memory: about three chunks in flight plus the seen-key set); contacts
    are merged across chunks, so their valid rows are held until the end. Events run as a
    two-deep pipeline over threads (polars releases the GIL): see
    :meth:`_events`; only the keys and the cross-chunk dedup run in the caller's thread,
    in input order.
    """

    def __init__(
        self,
        *,
        kind: Kind,
        options: ValidationOptions | None = None,
        on_rejects: Callable[[pl.DataFrame], None] | None = None,
    ) -> None:
        self.kind = kind
        self.options = options or ValidationOptions()
        self.on_rejects = on_rejects
        self.accumulator = ReportAccumulator(kind)
        self.seen = SeenKeys()
        #: Called with each chunk's report as it is validated (progress displays).
        self.on_chunk: Callable[[ValidationReport], None] | None = None
        #: Called with the rows dropped or merged as duplicates (:data:`DUPLICATE_SCHEMA`).
        self.on_duplicates: Callable[[pl.DataFrame], None] | None = None

    @property
    def report(self) -> ValidationReport:
        return self.accumulator.report

    def _take(self, result: ValidationResult) -> None:
        self.accumulator.add(result.report)
        if self.on_chunk is not None:
            self.on_chunk(result.report)
        if self.on_rejects is not None and result.rejects.height:
            self.on_rejects(result.rejects)
        if self.on_duplicates is not None and result.duplicates is not None:
            self.on_duplicates(result.duplicates)

    def _events(self, chunks: Iterable[pl.DataFrame]) -> Iterator[pl.DataFrame]:
        it = iter(chunks)
        options = self.options

        def start_next() -> _Started | None:
            chunk = next(it, None)
            return None if chunk is None else _start_events(chunk, options)

        # One "ahead" thread runs, in this order: start (read chunk i+1 and hand its
        # costliest fields to the field workers), then complete chunk i; so the field
        # workers check chunk i+1 while chunk i is completed here and deduplicated.
        ahead = _ahead_pool()
        started = ahead.submit(start_next).result()
        if started is None:
            return
        following = ahead.submit(start_next)
        prepared = ahead.submit(_complete_events, started)
        pending: list[Future[Any]] = [following, prepared]
        try:
            while True:
                prep = prepared.result()
                failed: BaseException | None = None
                try:
                    started = following.result()
                except Exception as exc:  # the source failed: this chunk still counts
                    failed, started = exc, None
                if started is not None:  # queue the next round before working on this one
                    following = ahead.submit(start_next)
                    prepared = ahead.submit(_complete_events, started)
                    pending = [following, prepared]
                else:
                    pending = []
                result = _finish_events(prep, self.seen)
                self._take(result)
                yield result.valid
                if failed is not None:
                    raise failed
                if started is None:
                    return
        finally:
            # stopped early (an error, or the caller closed us): let the work ahead end
            # before the source is closed under it
            for future in pending:
                future.cancel()
                with contextlib.suppress(Exception):
                    future.result()

    def run(self, chunks: Iterable[pl.DataFrame]) -> Iterator[pl.DataFrame]:
        """Yield the valid rows chunk by chunk (events) or once merged (contacts)."""
        if self.kind == "events":
            yield from self._events(chunks)
            return
        pending: list[pl.DataFrame] = []
        for chunk in chunks:
            result = validate_contacts(chunk, options=self.options)
            self._take(result)
            pending.append(result.valid)
        if pending:
            both = pl.concat(pending)
            merged = merge_contacts(both)
            extra = both.height - merged.height
            if extra and self.on_duplicates is not None and len(pending) > 1:
                self.on_duplicates(merged_contacts(both))
            self.report.valid -= extra
            self.report.duplicates += extra
            yield merged
