"""Read → map → validate: the part of the flow that ``validate`` and ``import`` share.

Each path argument is one *input* (a glob or directory inside it is one input made of
many parts) with its own connector: ``contacts.csv events.parquet`` is two inputs of
two kinds. Inputs of one kind are validated as one stream, so an event repeated in two
files is a duplicate and a contact in two files is merged.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import polars as pl

from kraiter_sync.connectors import (
    Detection,
    apply,
    direct_property_columns,
    resolve_connector,
)
from kraiter_sync.errors import InputError
from kraiter_sync.frames import Kind, empty_frame
from kraiter_sync.proptypes import PropertyType
from kraiter_sync.sources import DEFAULT_CHUNK_SIZE, open_source
from kraiter_sync.sources.objectstore.stores import StorageOptions
from kraiter_sync.urls import is_object_url, redact
from kraiter_sync.validate import (
    ChunkedValidation,
    ReportAccumulator,
    SeenKeys,
    ValidationOptions,
    ValidationReport,
    merge_contacts,
    merged_contacts,
)

__all__ = [
    "Input",
    "InputOptions",
    "KindValidation",
    "PreparedInput",
    "prepare_inputs",
    "read_inputs",
]


@dataclass(frozen=True)
class InputOptions:
    """How to read and map inputs (the options ``validate`` and ``import`` share)."""

    kind: Kind | None = None
    connector: str | None = None
    mapping: Mapping[str, str] = field(default_factory=dict)
    encoding: str = "utf-8"
    chunk_size: int = DEFAULT_CHUNK_SIZE
    #: ``--timezone`` when given explicitly (else the connector's zone, else UTC).
    timezone: str | None = None
    validation: ValidationOptions = field(default_factory=ValidationOptions)
    #: Endpoints and profiles for object URLs (the ``[storage]`` table); never secrets.
    storage: StorageOptions | None = None
    #: Declared property types (``--type``, a sync job's ``types``): win over the
    #: connector's, which win over the typing of text values.
    types: Mapping[str, PropertyType] = field(default_factory=dict)
    #: strftime format of text timestamps (``--timestamp-format "%d/%m/%Y %H:%M"``): wins
    #: over the connector's ``[timestamp] format``; naive values then take the time zone.
    timestamp_format: str | None = None
    #: Stop before anything is sent when more than this share of the rows read is
    #: invalid (``--max-reject-ratio 0.05``); None: never stop for that.
    max_reject_ratio: float | None = None

    def reject_ratio_exceeded(self, rows: int, invalid: int) -> str | None:
        """Why the run must stop (``max_reject_ratio``), or None to go on."""
        if self.max_reject_ratio is None or not rows:
            return None
        ratio = invalid / rows
        if ratio <= self.max_reject_ratio:
            return None
        return (
            f"{invalid:,} of {rows:,} rows ({ratio:.1%}) are invalid, more than the "
            f"{self.max_reject_ratio:.1%} --max-reject-ratio allows: nothing was sent. See "
            "the rejects file for why, fix the mapping or the data (--map, --connector, "
            "--timestamp-format) and run again"
        )


@dataclass(frozen=True)
class Input:
    """One input with its own reading and mapping (``--input PATH --map … --input PATH2
    --connector …``): what it sets wins over the run's :class:`InputOptions` for this
    input only; ``mapping`` and ``types`` are merged over the run's, field by field.
    A sync job's ``source`` with its ``connector``, ``map``, ``types``, ``timezone`` and
    ``encoding`` is the same model."""

    path: str | Path
    kind: Kind | None = None
    connector: str | None = None
    mapping: Mapping[str, str] = field(default_factory=dict)
    types: Mapping[str, PropertyType] = field(default_factory=dict)
    timezone: str | None = None
    timestamp_format: str | None = None
    encoding: str | None = None

    def options(self, base: InputOptions) -> InputOptions:
        """The run's options with this input's on top."""
        changes: dict[str, object] = {}
        for name in ("kind", "connector", "timezone", "timestamp_format", "encoding"):
            value = getattr(self, name)
            if value is not None:
                changes[name] = value
        if self.mapping:
            changes["mapping"] = {**base.mapping, **self.mapping}
        if self.types:
            changes["types"] = {**base.types, **self.types}
        if self.timezone is not None:
            changes["validation"] = dataclasses.replace(base.validation, timezone=self.timezone)
        return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


class ChunkSource(Protocol):
    """Anything the pipeline can read: ``sources.Source`` (files), ``sql.SqlSource``, or a
    wrapper such as ``sync.CursorWindow``. ``schema`` includes ``source_file`` and
    ``source_row``; every chunk carries them too. A source may also say which columns
    it read as text (``text_columns``, a frozenset: CSV columns), whose values are then
    typed; a wrapper passes its inner source's on."""

    @property
    def schema(self) -> pl.Schema: ...

    def iter_chunks(self, *, chunk_size: int | None = None) -> Iterator[pl.DataFrame]: ...

    def close(self) -> None: ...


@dataclass
class PreparedInput:
    """One path argument: its files, and the mapping chosen for them."""

    label: str
    source: ChunkSource
    detection: Detection
    #: This input's options (the run's, with an :class:`Input`'s own on top).
    options: InputOptions | None = None

    @property
    def kind(self) -> Kind:
        return self.detection.kind

    def mapped_chunks(self) -> Iterator[pl.DataFrame]:
        connector = self.detection.connector
        for chunk in self.source.iter_chunks():
            try:
                mapped = apply(connector, chunk)
            except InputError as exc:  # (a column's type: found in the data, not the header)
                msg = f"{self.label}: {exc}"
                raise InputError(msg) from None
            yield mapped

    def validation_options(self, options: InputOptions) -> ValidationOptions:
        """The run's options, adjusted by what the connector knows about timestamps, by
        the columns the source read as text, by declared property types, and with the
        switches its ``[validation]`` table turns on (a flag or a connector turns a switch
        on; neither turns one off)."""
        options = self.options or options
        connector = self.detection.connector
        changes: dict[str, object] = {key: True for key, on in connector.validation.items() if on}
        zone = options.timezone or connector.timezone
        if zone:
            changes["timezone"] = zone
        if connector.timestamp_unit != "auto" and options.validation.epoch_unit is None:
            changes["epoch_unit"] = connector.timestamp_unit
        # (spread, JSON and key/value columns are decoded into typed values)
        text = frozenset(getattr(self.source, "text_columns", ())) & direct_property_columns(
            connector, self.source.schema
        )
        if text:
            changes["text_properties"] = text
        types = {**options.validation.types, **connector.types, **options.types}
        if types:
            changes["types"] = types
        return dataclasses.replace(options.validation, **changes)  # type: ignore[arg-type]


def prepare_inputs(
    paths: Sequence[str | Path | ChunkSource | Input],
    options: InputOptions,
    *,
    stack: contextlib.ExitStack,
) -> list[PreparedInput]:
    """Open every path argument and choose its mapping; nothing is read beyond headers.

    An item that is already a :class:`ChunkSource` (e.g. a ``sql.SqlSource``) is used
    as it is, and closed by ``stack`` like the files opened here.

    Sources are closed by ``stack`` (temporary decompressed copies are removed).
    """
    if not paths:
        msg = "no input given: pass one or more files, directories or globs"
        raise InputError(msg)
    prepared: list[PreparedInput] = []
    base = options
    for given in paths:
        item: str | Path | ChunkSource
        if isinstance(given, Input):
            item, options = given.path, given.options(base)
        else:
            item, options = given, base
        source: ChunkSource
        if isinstance(item, str | Path):
            source = stack.enter_context(
                open_source(
                    item,
                    encoding=options.encoding,
                    chunk_size=options.chunk_size,
                    storage=options.storage,
                )
            )
            label = redact(str(item)) if is_object_url(str(item)) else str(item)
        else:  # an already-open chunk source (a SQL query, a windowed source): ours to close
            source = item
            stack.callback(source.close)
            label = str(getattr(source, "display", None) or item)
        try:
            detection = resolve_connector(
                source.schema.names(),
                connector=options.connector,
                kind=options.kind,
                overrides=options.mapping,
            )
        except InputError as exc:
            if len(paths) == 1:
                raise
            msg = f"{label}: {exc}"
            if options.mapping and not isinstance(given, Input):
                msg += (
                    " (--map applies to every input; give this one its own with "
                    f"--input {label} --map FIELD=COLUMN)"
                )
            raise InputError(msg) from None
        if options.timestamp_format:
            connector = dataclasses.replace(
                detection.connector, timestamp_format=options.timestamp_format
            )
            detection = dataclasses.replace(detection, connector=connector)
        prepared.append(PreparedInput(label, source, detection, options))
    return prepared


class KindValidation:
    """Every input of one kind through the validator, sharing duplicate detection.

    Iterate :meth:`run` for the valid frames (events stream chunk by chunk; contacts
    come as one merged frame at the end); :attr:`report` is complete afterwards.
    """

    def __init__(
        self,
        kind: Kind,
        inputs: Sequence[PreparedInput],
        options: InputOptions,
        *,
        on_rejects: Callable[[pl.DataFrame], None] | None = None,
        on_progress: Callable[[int], None] | None = None,
        on_duplicates: Callable[[pl.DataFrame], None] | None = None,
    ) -> None:
        self.kind = kind
        #: Called with the rows dropped or merged as duplicates, and the row each went
        #: into (``validate.report.DUPLICATE_SCHEMA``).
        self.on_duplicates = on_duplicates
        self.inputs = [i for i in inputs if i.kind == kind]
        self.options = options
        self.on_rejects = on_rejects
        #: Called with the rows read so far, after every chunk.
        self.on_progress = on_progress
        self.rows_read = 0
        self._accumulator = ReportAccumulator(kind)

    def _chunk_done(self, report: ValidationReport) -> None:
        self.rows_read += report.rows_read
        if self.on_progress is not None:
            self.on_progress(self.rows_read)

    @property
    def report(self) -> ValidationReport:
        return self._accumulator.report

    def run(self) -> Iterator[pl.DataFrame]:
        seen = SeenKeys()
        pending: list[pl.DataFrame] = []
        for inp in self.inputs:
            run = ChunkedValidation(
                kind=self.kind,
                options=inp.validation_options(self.options),
                on_rejects=self.on_rejects,
            )
            run.seen = seen
            run.on_chunk = self._chunk_done
            run.on_duplicates = self.on_duplicates
            for valid in run.run(inp.mapped_chunks()):
                if self.kind == "events":
                    yield valid
                else:
                    pending.append(valid)
            hint = _timestamp_hint(inp, run.report)
            if hint:
                run.report.warnings.append(hint)
            self._accumulator.add(run.report)
        if pending:
            both = pl.concat(pending)
            merged = merge_contacts(both) if len(pending) > 1 else both
            extra = both.height - merged.height
            if extra and self.on_duplicates is not None:
                self.on_duplicates(merged_contacts(both))
            self.report.valid -= extra
            self.report.duplicates += extra
            yield merged


def _timestamp_hint(inp: PreparedInput, report: ValidationReport) -> str | None:
    """When no timestamp of an input could be read, how to say what format they are in."""
    unreadable = report.by_rule.get("timestamp.unparseable", 0)
    if not unreadable or unreadable != report.rows_read:
        return None
    if inp.detection.connector.timestamp_format:
        return (
            f"{inp.label}: none of its {unreadable:,} timestamps matched the format "
            f"{inp.detection.connector.timestamp_format!r}: check --timestamp-format"
        )
    return (
        f"{inp.label}: none of its {unreadable:,} timestamps could be read: if they are not "
        "ISO 8601, give their format with --timestamp-format (e.g. '%d/%m/%Y %H:%M'; for "
        f"this input alone: --input {inp.label} --timestamp-format ...)"
    )


def read_inputs(
    paths: Sequence[str | Path | ChunkSource | Input],
    options: InputOptions,
    *,
    on_rejects: Callable[[pl.DataFrame], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[Kind, pl.DataFrame, ValidationReport]:
    """Read, map and validate the inputs into one canonical frame (``reconcile``).

    Returns (kind, canonical frame, report). The kind is ``options.kind``, else what
    detection found; inputs of both kinds at once need ``--kind``. Contacts from several
    inputs are merged by email; events are deduplicated by event key.
    """
    with contextlib.ExitStack() as stack:
        inputs = prepare_inputs(paths, options, stack=stack)
        kinds = {inp.kind for inp in inputs}
        if options.kind is not None:
            kind: Kind = options.kind
        elif len(kinds) == 1:
            kind = next(iter(kinds))
        else:
            msg = "the inputs hold both contacts and events: reconcile one kind at a time (--kind)"
            raise InputError(msg)
        run = KindValidation(kind, inputs, options, on_rejects=on_rejects, on_progress=on_progress)
        frames = [f for f in run.run() if f.height]
        report = run.report
    if not frames:
        return kind, empty_frame(kind), report
    return kind, pl.concat(frames, how="diagonal_relaxed"), report
