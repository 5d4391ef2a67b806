"""The emulator's journeys: sequences and their triggers, enrolments, scheduled and
delivered sends (``tick``), segments, and each contact's timeline. Mixed into
:class:`~kraiter_sync.emulator.store.Store`, whose connection and clocks it uses."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from kraiter_sync.emulator.ids import IdGenerator
from kraiter_sync.emulator.rows import (
    SCHED_COLS,
    SEND_COLS,
    Page,
    Row,
    dumps,
    page,
    scheduled_row,
    send_row,
    sequence_row,
)
from kraiter_sync.emulator.validation import format_ts

__all__ = ["JourneyStore"]


class JourneyStore:
    """Sequences, sends, segments and timelines over the store's SQLite connection."""

    conn: sqlite3.Connection
    ids: IdGenerator
    _now: Callable[[], datetime]
    _triggers: dict[int, dict[str, list[str]]]

    # Provided by the Store this is mixed into.
    def now(self) -> str:
        raise NotImplementedError

    def require_contact(self, tenant: int, contact_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def _system_event(
        self, tenant: int, contact_id: str, name: str, properties: dict[str, Any], ts: str
    ) -> None:
        raise NotImplementedError

    def list_sends(
        self,
        tenant: int,
        *,
        status: str | None = None,
        contact_id: str | None = None,
        template_id: str | None = None,
        after: str | None,
        limit: int,
    ) -> Page:
        sql = f"SELECT {SEND_COLS} FROM sends WHERE tenant = ?"
        params: list[Any] = [tenant]
        for column, value in (
            ("status", status),
            ("contact_id", contact_id),
            ("template_id", template_id),
        ):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        if after:
            sql += " AND id > ?"
            params.append(after)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit + 1)
        return page(self.conn.execute(sql, params).fetchall(), limit, send_row)

    def list_scheduled(
        self,
        tenant: int,
        *,
        contact_id: str | None = None,
        after: tuple[str, str] | None,
        limit: int,
    ) -> Page:
        """Earliest ``scheduledFor`` first; ``after`` is (scheduledFor, id) of the last row."""
        sql = f"SELECT {SCHED_COLS} FROM scheduled WHERE tenant = ?"
        params: list[Any] = [tenant]
        if contact_id is not None:
            sql += " AND contact_id = ?"
            params.append(contact_id)
        if after:
            sql += " AND (scheduled_for > ? OR (scheduled_for = ? AND id > ?))"
            params.extend([after[0], after[0], after[1]])
        sql += " ORDER BY scheduled_for, id LIMIT ?"
        params.append(limit + 1)
        return page(self.conn.execute(sql, params).fetchall(), limit, scheduled_row)

    def put_sequence(
        self,
        tenant: int,
        sequence_id: str,
        *,
        name: str,
        status: str,
        triggers: list[dict[str, str]],
        steps: list[dict[str, Any]] | None,
    ) -> tuple[dict[str, Any], bool]:
        """Idempotent create-or-update. Returns (sequence, created)."""
        now = self.now()
        if not steps:
            steps = [
                {
                    "templateId": f"tpl_{sequence_id}_1",
                    "templateName": f"{name} (step 1)",
                    "subject": name,
                    "delayMinutes": 0,
                }
            ]
        row = self.conn.execute(
            "SELECT created_at FROM sequences WHERE tenant = ? AND id = ?", (tenant, sequence_id)
        ).fetchone()
        created_at = row[0] if row else now
        self.conn.execute(
            "INSERT OR REPLACE INTO sequences (tenant, id, name, status, triggers, steps, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (tenant, sequence_id, name, status, dumps(triggers), dumps(steps), created_at, now),
        )
        self._triggers.pop(tenant, None)
        sequence = {
            "id": sequence_id,
            "name": name,
            "status": status,
            "triggers": triggers,
            "steps": steps,
            "createdAt": created_at,
            "updatedAt": now,
        }
        return sequence, row is None

    def get_sequence(self, tenant: int, sequence_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT id, name, status, triggers, steps, created_at, updated_at FROM sequences "
            "WHERE tenant = ? AND id = ?",
            (tenant, sequence_id),
        ).fetchone()
        return sequence_row(row) if row else None

    def list_sequences(self, tenant: int, *, after: str | None, limit: int) -> Page:
        sql = (
            "SELECT id, name, status, triggers, steps, created_at, updated_at FROM sequences "
            "WHERE tenant = ?"
        )
        params: list[Any] = [tenant]
        if after:
            sql += " AND id > ?"
            params.append(after)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit + 1)
        return page(self.conn.execute(sql, params).fetchall(), limit, sequence_row)

    def _trigger_map(self, tenant: int) -> dict[str, list[str]]:
        """event name → active sequence ids (cached; see :meth:`_begin`). Writers only."""
        cached = self._triggers.get(tenant)
        if cached is None:
            cached = {}
            for sequence_id, triggers in self.conn.execute(
                "SELECT id, triggers FROM sequences WHERE tenant = ? AND status = 'active' "
                "ORDER BY id",
                (tenant,),
            ):
                for trigger in json.loads(triggers):
                    cached.setdefault(trigger["event"], []).append(sequence_id)
            self._triggers[tenant] = cached
        return cached

    def _log_sequence(
        self, tenant: int, contact_id: str, name: str, data: dict[str, Any], ts: str
    ) -> None:
        self.conn.execute(
            "INSERT INTO sequence_log (tenant, id, contact_id, name, data, timestamp) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (tenant, self.ids.new("tle"), contact_id, name, dumps(data), ts),
        )

    def _enrol(self, tenant: int, contact_id: str, sequence_id: str) -> None:
        """Enrol once per (contact, sequence) and schedule the first step."""
        now = self.now()
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO enrolments (tenant, contact_id, sequence_id, status, "
            "current_step, enrolled_at, updated_at) VALUES (?, ?, ?, 'active', 1, ?, ?)",
            (tenant, contact_id, sequence_id, now, now),
        )
        if cur.rowcount != 1:
            return
        sequence = self.get_sequence(tenant, sequence_id)
        assert sequence is not None  # noqa: S101 - came from the trigger map of this tenant
        self._log_sequence(
            tenant,
            contact_id,
            "sequence.enrolled",
            {"sequenceId": sequence_id, "sequenceName": sequence["name"], "step": 1},
            now,
        )
        self._schedule_step(tenant, contact_id, sequence, 1)

    def _schedule_step(
        self, tenant: int, contact_id: str, sequence: dict[str, Any], step: int
    ) -> None:
        spec = sequence["steps"][step - 1]
        contact = self.conn.execute(
            "SELECT email FROM contacts WHERE tenant = ? AND id = ?", (tenant, contact_id)
        ).fetchone()
        moment = self._now() + timedelta(minutes=float(spec.get("delayMinutes", 0)))
        self.conn.execute(
            f"INSERT INTO scheduled (tenant, {SCHED_COLS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'sequence', ?, ?, ?)",
            (
                tenant,
                self.ids.new("sch"),
                contact_id,
                contact[0],
                spec["templateId"],
                spec.get("templateName"),
                spec.get("subject"),
                format_ts(moment),
                sequence["id"],
                step,
                self.now(),
            ),
        )

    def contact_sequences(self, tenant: int, contact_id: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT sequence_id, status, current_step, enrolled_at, updated_at FROM enrolments "
            "WHERE tenant = ? AND contact_id = ? ORDER BY enrolled_at, sequence_id",
            (tenant, contact_id),
        ).fetchall()
        keys = ("sequenceId", "status", "currentStep", "enrolledAt", "updatedAt")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def tick(self, tenant: int, *, until: str | None, rng: random.Random) -> dict[str, Any]:
        """Deliver every scheduled send due by ``until`` (default now).

        Each becomes a Send (delivered; about half opened) with ``email.sent``,
        ``email.delivered`` and maybe ``email.opened`` system events, and the
        enrolment moves to its next step or completes.
        """
        due = self.conn.execute(
            f"SELECT {SCHED_COLS} FROM scheduled WHERE tenant = ? AND scheduled_for <= ? "
            "ORDER BY scheduled_for, id",
            (tenant, until or self.now()),
        ).fetchall()
        delivered: list[str] = []
        for row in due:
            item = scheduled_row(row)
            now = self.now()
            opened = rng.random() < 0.5
            send_id = self.ids.new("snd")
            self.conn.execute(
                f"INSERT INTO sends (tenant, {SEND_COLS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'delivered', ?, ?, ?, ?, ?, NULL)",
                (
                    tenant,
                    send_id,
                    item["contactId"],
                    item["email"],
                    item["templateId"],
                    item["templateName"],
                    item["subject"],
                    item["source"],
                    item["sourceId"],
                    now,
                    now,
                    now if opened else None,
                ),
            )
            props = {
                "sendId": send_id,
                "templateId": item["templateId"],
                "templateName": item["templateName"] or "",
                "sequenceId": item["sourceId"] or "",
                "subject": item["subject"] or "",
            }
            names = ["email.sent", "email.delivered"] + (["email.opened"] if opened else [])
            for name in names:
                self._system_event(tenant, item["contactId"], name, props, now)
            self.conn.execute(
                "DELETE FROM scheduled WHERE tenant = ? AND id = ?", (tenant, item["id"])
            )
            self._advance(tenant, item, now)
            delivered.append(send_id)
        return {"delivered": len(delivered), "sendIds": delivered}

    def _advance(self, tenant: int, item: dict[str, Any], now: str) -> None:
        if item["source"] != "sequence" or not item["sourceId"]:
            return
        sequence = self.get_sequence(tenant, item["sourceId"])
        step = int(item["step"])
        if sequence is not None and step < len(sequence["steps"]):
            self._schedule_step(tenant, item["contactId"], sequence, step + 1)
            self.conn.execute(
                "UPDATE enrolments SET current_step = ?, updated_at = ? "
                "WHERE tenant = ? AND contact_id = ? AND sequence_id = ?",
                (step + 1, now, tenant, item["contactId"], item["sourceId"]),
            )
            return
        self.conn.execute(
            "UPDATE enrolments SET status = 'completed', updated_at = ? "
            "WHERE tenant = ? AND contact_id = ? AND sequence_id = ?",
            (now, tenant, item["contactId"], item["sourceId"]),
        )
        self._log_sequence(
            tenant,
            item["contactId"],
            "sequence.completed",
            {
                "sequenceId": item["sourceId"],
                "sequenceName": sequence["name"] if sequence else "",
                "step": step,
            },
            now,
        )

    def add_segment(self, tenant: int, name: str, contact_ids: list[str]) -> dict[str, Any]:
        """Create a segment with these members (the emulator's only way to get memberships)."""
        now = self.now()
        segment_id = self.ids.new("seg")
        self.conn.execute(
            "INSERT INTO segments (tenant, id, name, created_at) VALUES (?, ?, ?, ?)",
            (tenant, segment_id, name, now),
        )
        members = [self.require_contact(tenant, cid)["id"] for cid in contact_ids]
        self.conn.executemany(
            "INSERT OR IGNORE INTO memberships (tenant, contact_id, segment_id, joined_at) "
            "VALUES (?, ?, ?, ?)",
            [(tenant, cid, segment_id, now) for cid in members],
        )
        return {"id": segment_id, "name": name, "createdAt": now, "members": len(members)}

    def contact_segments(self, tenant: int, contact_id: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT m.segment_id, s.name, m.joined_at FROM memberships m "
            "JOIN segments s ON s.tenant = m.tenant AND s.id = m.segment_id "
            "WHERE m.tenant = ? AND m.contact_id = ? ORDER BY m.segment_id",
            (tenant, contact_id),
        ).fetchall()
        return [{"segmentId": r[0], "segmentName": r[1], "joinedAt": r[2]} for r in rows]

    def contact_timeline(
        self, tenant: int, contact_id: str, *, after: str | None, limit: int
    ) -> Page:
        """Events (``event``/``email``) and enrolment changes (``sequence``), oldest first."""
        after_key = after.split("_", 1)[-1] if after else ""
        rows = self.conn.execute(
            "SELECT id, substr(id, 5) AS k, 'e' AS kind, name, timestamp, properties "
            "FROM events WHERE tenant = ? AND contact_id = ? AND substr(id, 5) > ? "
            "UNION ALL "
            "SELECT id, substr(id, 5) AS k, 's' AS kind, name, timestamp, data "
            "FROM sequence_log WHERE tenant = ? AND contact_id = ? AND substr(id, 5) > ? "
            "ORDER BY k LIMIT ?",
            (tenant, contact_id, after_key, tenant, contact_id, after_key, limit + 1),
        ).fetchall()

        def entry(row: Row) -> dict[str, Any]:
            if row[2] == "s":
                kind = "sequence"
            else:
                kind = "email" if row[3].startswith("email.") else "event"
            return {
                "id": row[0],
                "type": kind,
                "name": row[3],
                "timestamp": row[4],
                "data": json.loads(row[5]),
            }

        return page(rows, limit, entry)
