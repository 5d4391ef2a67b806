"""A database export's run: a table per stream, upserted, with its cursor beside the rows.

``export STREAM --to URL`` writes ``<prefix><stream>`` (``kraiter_events``, …): one
column per field of the stream's schema (timestamps ``TIMESTAMPTZ``, objects ``JSONB``
in PostgreSQL / ``JSON`` in DuckDB), the stream's keys as the primary key, and
``_kraiter_run`` (the run that last wrote the row). Each checkpoint is one transaction:
the rows are staged (DuckDB: registered Arrow data; PostgreSQL: a temporary table
filled by ``COPY``), upserted with ``INSERT … ON CONFLICT (keys) DO UPDATE``, and the
export's state document (watermark, unfinished run) is written to
``<prefix>export_state`` in the same transaction. A crash anywhere leaves rows and cursor
together: resume is exact by construction.

Before a run the table is checked against its state: the state row records the table's
row count after every transaction, so a table that is missing or does not hold that
many rows is exported again in full (upserted; ``ExportResult.reason`` says why).
Snapshot streams (and ``--replace``) delete, when the run is complete and in the same
transaction, the rows that run did not write. A window (``--since``/``--until``) upserts
into the same table with its own cursor and never deletes anything.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import polars as pl

from kraiter_sync.errors import UsageError
from kraiter_sync.export.database import Database, quote
from kraiter_sync.export.folder import new_run_id
from kraiter_sync.export.options import ExportOptions, ExportResult
from kraiter_sync.export.runner import Start, begin_run
from kraiter_sync.export.streams import StreamSpec
from kraiter_sync.logs import get_logger

__all__ = ["RUN_COLUMN", "TableSink", "table_notice"]

log = get_logger("export")

#: The column naming the run that last wrote a row (a snapshot deletes the others).
RUN_COLUMN = "_kraiter_run"
_STAGE = "_kraiter_stage"
DOC_VERSION = 1


def _state_table(options: ExportOptions) -> str:
    return f"{options.table_prefix}export_state"


class TableSink:
    """Where a database export's rows go (see the module docstring)."""

    def __init__(
        self,
        spec: StreamSpec,
        options: ExportOptions,
        *,
        db: Database,
        target: str,
        result: ExportResult,
        window: str | None = None,
    ) -> None:
        if options.flatten_properties:
            msg = (
                "--flatten-properties writes files; a table keeps properties as one JSON "
                "column: query a key with properties->>'plan' (PostgreSQL) or "
                "properties->>'$.plan' (DuckDB)"
            )
            raise UsageError(msg)
        if window is not None and options.replacing:
            msg = (
                "--replace with --since/--until: a window never deletes rows from a table; "
                "run --replace without a window to export the whole stream again"
            )
            raise UsageError(msg)
        self.spec = spec
        self.options = options
        self.db = db
        self.target = target
        self.result = result
        self.window = window
        self.table = f"{options.table_prefix}{spec.name}"
        self.state_table = _state_table(options)
        self.name = self.table if window is None else f"{self.table}#{window}"
        self.doc: dict[str, Any] = {}
        self.run: dict[str, Any] = {}

    # ---- the state row -----------------------------------------------------------------

    def _ensure_state_table(self) -> None:
        with self.db.transaction("creating the export state table"):
            self.db.execute(
                f"CREATE TABLE IF NOT EXISTS {quote(self.state_table)} ("
                '"name" TEXT PRIMARY KEY, "target" TEXT NOT NULL, "document" TEXT NOT NULL, '
                '"table_rows" BIGINT, "updated_at" TIMESTAMPTZ)'
            )

    def _load(self, name: str) -> tuple[str, dict[str, Any], int | None] | None:
        rows = self.db.execute(
            f'SELECT "target", "document", "table_rows" FROM {quote(self.state_table)} '
            'WHERE "name" = $1',
            [name],
        )
        if not rows:
            return None
        target, document, count = rows[0]
        return str(target), json.loads(document), count

    def _save(self, count: int | None) -> None:
        """(inside a transaction) The document, and the table's row count on the main
        row (a window's rows count there too)."""
        self.db.execute(
            f"INSERT INTO {quote(self.state_table)} "
            '("name", "target", "document", "table_rows", "updated_at") '
            'VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP) ON CONFLICT ("name") DO UPDATE SET '
            '"target" = EXCLUDED."target", "document" = EXCLUDED."document", '
            '"updated_at" = EXCLUDED."updated_at"',
            [self.name, self.target, json.dumps(self.doc, sort_keys=True), count],
        )
        if count is not None:
            self.db.execute(
                f'UPDATE {quote(self.state_table)} SET "table_rows" = $1 WHERE "name" = $2',
                [count, self.table],
            )

    def _count(self) -> int:
        rows = self.db.execute(f"SELECT count(*) FROM {quote(self.table)}")
        return int(rows[0][0])

    # ---- the table ---------------------------------------------------------------------

    def _columns(self) -> list[tuple[str, str]]:
        objects = set(self.spec.object_columns)
        cols = [
            (name, self.db.sql_type(dtype, json=name in objects))
            for name, dtype in self.spec.schema.items()
        ]
        return [*cols, (RUN_COLUMN, "TEXT")]

    def _ensure_table(self) -> None:
        columns = self._columns()
        if self.db.table_exists(self.table):
            have = self.db.columns(self.table)
            want = [name for name, _ in columns]
            if have != want:
                msg = (
                    f"{self.table} in {self.db.display} has other columns than a "
                    f"{self.spec.name} export writes ({', '.join(have[:6])}…); drop it, or "
                    "choose another --table-prefix"
                )
                raise UsageError(msg)
            return
        body = ", ".join(
            f"{quote(name)} {kind}{' NOT NULL' if name in self.spec.keys else ''}"
            for name, kind in columns
        )
        keys = ", ".join(quote(k) for k in self.spec.keys)
        with self.db.transaction(f"creating {self.table}"):
            self.db.execute(
                f"CREATE TABLE IF NOT EXISTS {quote(self.table)} ({body}, PRIMARY KEY ({keys}))"
            )

    # ---- the run -----------------------------------------------------------------------

    def _problem(self, stored: dict[str, Any], count: int | None) -> str | None:
        """Why the table does not hold what its state says (None: it does)."""
        if not (stored.get("watermark") or stored.get("run")):
            return None
        if not self.db.table_exists(self.table):
            return f"{self.table} is missing in {self.db.display}"
        if self.window is None and count is not None:
            have = self._count()
            if have != count:
                return (
                    f"{self.table} in {self.db.display} holds {have:,} rows where the "
                    f"export state recorded {count:,}"
                )
        return None

    def start(self) -> Start:
        db = self.db
        with db.translated("reading the export state"):
            self._ensure_state_table()
            loaded = self._load(self.name)
            main = self._load(self.table) if self.window is not None else loaded
        if loaded is not None and loaded[0] != self.target:
            msg = (
                f"{self.table} in {db.display} holds the export of another Kraiter account "
                "or base URL; choose another --table-prefix or another database"
            )
            raise UsageError(msg)
        self.doc = loaded[1] if loaded else {"version": DOC_VERSION}
        with db.translated("checking the table"):
            problem = self._problem(self.doc, main[2] if main else None)
            self._ensure_table()
        run: dict[str, Any] = self.doc.get("run") or {}
        opts = self.options
        resumed = bool(run) and problem is None
        if not resumed:
            full = opts.replacing or not self.spec.incremental
            if problem is not None:
                self.result.reason = f"{problem}: exporting {self.spec.name} again in full"
                log.warning("%s", self.result.reason)
                self.doc["watermark"] = None
                full = True
            layout = self.doc.get("layout")
            if not full and self.doc.get("watermark") and layout and layout != _layout(opts):
                msg = (
                    f"{self.table} was exported with custom_only={layout.get('custom_only')}; "
                    "appending with other options would mix rows: pass --replace, or choose "
                    "another --table-prefix"
                )
                raise UsageError(msg)
            run = {
                "id": new_run_id(),
                "full": full,
                "delete": (not self.spec.incremental or opts.replacing) and self.window is None,
                "rows": 0,
                "watermark": None if full else self.doc.get("watermark"),
                "driver": None,
            }
            self.doc["run"] = run
            with db.transaction("saving the export state"):
                self._save(None)
        self.run = run
        begin_run(self.result, self.spec, run, name=self.name, resumed=resumed, window=self.window)
        self.result.table = f"{db.display}#{self.table}"
        return Start(opts, run.get("watermark"), run.get("driver"))

    def commit(self, frame: pl.DataFrame, watermark: dict[str, Any], driver: Any) -> None:
        run = self.run
        with self.db.transaction(f"writing {self.table}"):
            if frame.height:
                self._upsert(frame)
            run["rows"] += frame.height
            run["watermark"] = watermark
            run["driver"] = driver
            self._save(self._count())

    def _upsert(self, frame: pl.DataFrame) -> None:
        keys = list(self.spec.keys)
        rows = frame.select(list(self.spec.schema)).unique(
            subset=keys, keep="last", maintain_order=True
        )
        rows = rows.with_columns(pl.lit(self.run["id"]).alias(RUN_COLUMN))
        self.db.stage(_STAGE, rows)
        objects = set(self.spec.object_columns)
        names = [name for name, _ in self._columns()]
        select = ", ".join(
            f"{quote(n)}{self.db.json_cast}" if n in objects else quote(n) for n in names
        )
        updates = ", ".join(f"{quote(n)} = EXCLUDED.{quote(n)}" for n in names if n not in keys)
        self.db.execute(
            f"INSERT INTO {quote(self.table)} ({', '.join(quote(n) for n in names)}) "
            f"SELECT {select} FROM {quote(_STAGE)} "
            f"ON CONFLICT ({', '.join(quote(k) for k in keys)}) DO UPDATE SET {updates}"
        )
        self.db.unstage(_STAGE)

    def finish(self) -> None:
        run = self.run
        with self.db.transaction(f"finishing {self.table}"):
            before = self._count()
            if run.get("delete"):
                self.db.execute(
                    f"DELETE FROM {quote(self.table)} WHERE {quote(RUN_COLUMN)} IS NULL "
                    f"OR {quote(RUN_COLUMN)} <> $1",
                    [run["id"]],
                )
            count = self._count()
            if self.spec.incremental:
                self.doc["watermark"] = run["watermark"]
            self.doc["layout"] = _layout(self.options)
            self.doc["run"] = None
            self.doc["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
            self._save(count)
        self.result.replaced = before - count
        self.result.rows_total = count

    def stop(self) -> None:
        return None  # every checkpoint is already in the table, with its cursor


def _layout(options: ExportOptions) -> dict[str, Any]:
    return {"custom_only": options.custom_only}


def table_notice(db: Database, spec: StreamSpec, options: ExportOptions) -> str | None:
    """What ``--replace`` will delete from a table, in words (None: nothing)."""
    table = f"{options.table_prefix}{spec.name}"
    with db.translated("reading the table"):
        if not db.table_exists(table):
            return None
        count = int(db.execute(f"SELECT count(*) FROM {quote(table)}")[0][0])
    if not count:
        return None
    return (
        f"--replace exports {spec.name} again in full and then deletes the rows of {table} "
        f"in {db.display} ({count:,} rows now) that it does not find again in Kraiter"
    )
