"""The canonical frames every layer passes on (design.md §2), and their vocabulary.

* :data:`Kind` — what an input holds: ``contacts`` or ``events``.
* :data:`SOURCE_FILE` / :data:`SOURCE_ROW` (:data:`PROVENANCE`) — the columns every row
  read carries from its source to the rejects file: the file (or query label) and the
  1-based data row within it.
* :data:`SOURCE_PROBLEM` — present in a chunk when some of its rows could not be read
  (:func:`problem_column`); the validator rejects those rows with the rule and message
  it holds.
* :data:`CONTACTS_SCHEMA` / :data:`EVENTS_SCHEMA` — the validator's canonical frames.
* :data:`PLAN_SCHEMA` — one row per contact of a reconcile plan (saved as is).
* :data:`REJECT_SCHEMA` — every rejects frame, whether the validator or Kraiter refused
  the row (``stage`` says which).
"""

from __future__ import annotations

from typing import Literal

import polars as pl

__all__ = [
    "CONTACTS_SCHEMA",
    "EVENTS_SCHEMA",
    "PLAN_SCHEMA",
    "PROVENANCE",
    "REJECT_SCHEMA",
    "SOURCE_FILE",
    "SOURCE_PROBLEM",
    "SOURCE_ROW",
    "Kind",
    "empty_frame",
    "problem_column",
]

Kind = Literal["events", "contacts"]

SOURCE_FILE = "source_file"
SOURCE_ROW = "source_row"
PROVENANCE = (SOURCE_FILE, SOURCE_ROW)
#: Why a row could not be read (a line that is not a JSON object, too large or nested
#: too deep; a CSV record with more or fewer fields than its header): null for rows that
#: were read, whose other columns then hold nothing. A reserved name, like the two above.
SOURCE_PROBLEM = "source_problem"
PROBLEM_TYPE = pl.Struct({"rule": pl.String(), "message": pl.String()})


def problem_column(n: int, problems: dict[int, tuple[str, str]]) -> pl.Series:
    """A :data:`SOURCE_PROBLEM` column of ``n`` rows: ``{row index: (rule, message)}``."""
    rules: list[str | None] = [None] * n
    messages: list[str | None] = [None] * n
    for index, (rule, message) in problems.items():
        rules[index], messages[index] = rule, message
    built = pl.struct(
        pl.Series("rule", rules, pl.String), pl.Series("message", messages, pl.String), eager=True
    )
    where = pl.Series([r is not None for r in rules], dtype=pl.Boolean)
    return pl.select(pl.when(pl.lit(where)).then(pl.lit(built))).to_series().alias(SOURCE_PROBLEM)


#: The validator's canonical contacts frame.
CONTACTS_SCHEMA: dict[str, pl.DataType] = {
    "email": pl.String(),
    "user_id": pl.String(),
    "properties": pl.String(),
    SOURCE_FILE: pl.String(),
    SOURCE_ROW: pl.Int64(),
}

#: The validator's canonical events frame (``timestamp`` Datetime is dropped once the
#: ISO text is made; what the upload needs is listed here).
EVENTS_SCHEMA: dict[str, pl.DataType] = {
    "email": pl.String(),
    "contact_id": pl.String(),
    "name": pl.String(),
    "timestamp_iso": pl.String(),
    "properties": pl.String(),
    "event_key": pl.String(),
    SOURCE_FILE: pl.String(),
    SOURCE_ROW: pl.Int64(),
}

#: Column order and types of every rejects frame (design.md §2).
REJECT_SCHEMA: dict[str, pl.DataType] = {
    SOURCE_FILE: pl.String(),
    SOURCE_ROW: pl.Int64(),
    "field": pl.String(),
    "rule": pl.String(),
    "message": pl.String(),
    "stage": pl.String(),
    "email": pl.String(),
    "contact_id": pl.String(),
    "name": pl.String(),
    "timestamp": pl.String(),
    "properties": pl.String(),
}


#: One row per contact in a plan; saved as is to JSON or Parquet.
PLAN_SCHEMA: dict[str, pl.DataType] = {
    "action": pl.String(),
    "email": pl.String(),  # normalised (local) email; Kraiter's for remote-only rows
    "id": pl.String(),  # Kraiter's contact id (null for create)
    "user_id": pl.String(),  # create: the user id; update: the new one (null = unchanged)
    "properties": pl.String(),  # create: all properties; update: the patch (null removes)
    "changes": pl.String(),  # update: {"properties": {k: [old, new]}, "userId": [old, new]}
    "remote_updated_at": pl.String(),
    "remote_hash": pl.String(),  # guards a saved plan against later remote edits
    "source_file": pl.String(),
    "source_row": pl.Int64(),
}


def empty_frame(kind: Kind) -> pl.DataFrame:
    """A canonical frame of ``kind`` with no rows."""
    return pl.DataFrame(schema=CONTACTS_SCHEMA if kind == "contacts" else EVENTS_SCHEMA)
