"""What the engine sends and what it reports back: one row per record, one outcome each."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import polars as pl

from kraiter_sync.state.rejects import reject_row, rejects_frame
from kraiter_sync.validate.keys import same_event

__all__ = [
    "ContactRow",
    "EventRow",
    "Outcome",
    "RejectSink",
    "event_matches",
    "outcome_rejects",
    "rows_of_events",
]

T = TypeVar("T")


@dataclass(frozen=True)
class EventRow:
    """One event ready to send (a row of the canonical events frame).

    ``contact_id`` is None for an event known by email whose contact id is not known
    yet: the engine finds it, or sends the event by email (``upload.links``).
    """

    key: str
    contact_id: str | None
    name: str
    timestamp: str
    properties: str
    source_file: str
    source_row: int
    email: str | None = None


@dataclass(frozen=True)
class ContactRow:
    """One contact ready to write (a row of the canonical contacts frame, or of a plan).

    For a create-or-update, ``properties`` is the whole object and ``contact_id`` is
    Kraiter's id when known (the ledger's contact cache, or a reconcile plan): the write
    is then one PATCH by id instead of create → CONFLICT → look-up → PATCH. For an update
    by id (a plan's ``update``), ``properties`` is the patch (a null value removes a key);
    for a delete only ``email`` and ``contact_id`` matter.
    """

    email: str
    properties: str | None
    user_id: str | None
    source_file: str | None
    source_row: int | None
    props_hash: str | None = None
    contact_id: str | None = None


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What happened to one record: ``done`` (remote id) | ``rejected`` | ``failed``."""

    row: T
    status: str
    remote_id: str | None = None
    code: str | None = None
    message: str | None = None


class RejectSink(Protocol):
    def __call__(self, outcomes: Sequence[Outcome[Any]]) -> None: ...


def outcome_rejects(outcomes: Sequence[Outcome[Any]], *, field: str = "api") -> pl.DataFrame:
    """Outcomes refused by Kraiter as rows of the rejects frame (stage ``rejected``)."""
    rows = []
    for o in outcomes:
        row = o.row
        is_event = isinstance(row, EventRow)
        rows.append(
            reject_row(
                source_file=row.source_file,
                source_row=row.source_row,
                field=field,
                rule=f"api.{o.code}",
                message=o.message,
                email=row.email,
                contact_id=row.contact_id if is_event else None,
                name=row.name if is_event else None,
                timestamp=row.timestamp if is_event else None,
                properties=row.properties,
            )
        )
    return rejects_frame(rows)


def event_matches(row: EventRow, remote: Mapping[str, Any]) -> bool:
    """Whether a remote event is this row: same name, instant (to the ms) and properties
    (the same canonical form: types count, ``1`` is neither ``1.0`` nor ``true``)."""
    return same_event(row.name, row.timestamp, row.properties, remote)


def rows_of_events(frame: pl.DataFrame) -> Iterator[EventRow]:
    """Iterate a canonical events frame (with ``contact_id`` resolved) as EventRows."""
    emails = (
        frame["email"] if "email" in frame.columns else pl.repeat(None, frame.height, eager=True)
    )
    for key, cid, name, ts, props, sfile, srow, email in zip(
        frame["event_key"],
        frame["contact_id"],
        frame["name"],
        frame["timestamp_iso"],
        frame["properties"],
        frame["source_file"],
        frame["source_row"],
        emails,
        strict=True,
    ):
        yield EventRow(key, cid, name, ts, props, sfile, int(srow), email)
