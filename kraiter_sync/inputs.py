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
)

__all__ = [
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
    paths: Sequence[str | Path | ChunkSource],
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
    for item in paths:
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
        detection = resolve_connector(
            source.schema.names(),
            connector=options.connector,
            kind=options.kind,
            overrides=options.mapping,
        )
        prepared.append(PreparedInput(label, source, detection))
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
    ) -> None:
        self.kind = kind
        self.inputs = [i for i in inputs if i.kind == kind]
        self.options = options
        self.on_rejects = on_rejects
        self._accumulator = ReportAccumulator(kind)

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
            for valid in run.run(inp.mapped_chunks()):
                if self.kind == "events":
                    yield valid
                else:
                    pending.append(valid)
            self._accumulator.add(run.report)
        if pending:
            both = pl.concat(pending)
            merged = merge_contacts(both) if len(pending) > 1 else both
            extra = both.height - merged.height
            self.report.valid -= extra
            self.report.duplicates += extra
            yield merged


def read_inputs(
    paths: Sequence[str | Path | ChunkSource],
    options: InputOptions,
    *,
    on_rejects: Callable[[pl.DataFrame], None] | None = None,
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
        run = KindValidation(kind, inputs, options, on_rejects=on_rejects)
        frames = [f for f in run.run() if f.height]
        report = run.report
    if not frames:
        return kind, empty_frame(kind), report
    return kind, pl.concat(frames, how="diagonal_relaxed"), report
