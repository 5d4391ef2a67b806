"""SQLite rows → the contract's JSON objects, and the column lists that produce them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = [
    "CONTACT_COLS",
    "EVENT_COLS",
    "SCHED_COLS",
    "SEND_COLS",
    "Page",
    "Row",
    "contact_row",
    "dumps",
    "event_row",
    "like_escape",
    "page",
    "scheduled_row",
    "send_row",
    "sequence_row",
]

Row = tuple[Any, ...]
Page = tuple[list[dict[str, Any]], bool]  # (items, more after these?)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def contact_row(row: Row) -> dict[str, Any]:
    return {
        "id": row[0],
        "email": row[1],
        "properties": json.loads(row[2]),
        "userId": row[3],
        "suppressed": bool(row[4]),
        "unsubscribed": bool(row[5]),
        "createdAt": row[6],
        "updatedAt": row[7],
    }


CONTACT_COLS = "id, email, properties, user_id, suppressed, unsubscribed, created_at, updated_at"
EVENT_COLS = "id, name, contact_id, properties, timestamp, created_at, email"
SEND_COLS = (
    "id, contact_id, email, template_id, template_name, subject, status, source, source_id, "
    "sent_at, delivered_at, opened_at, clicked_at"
)
SCHED_COLS = (
    "id, contact_id, email, template_id, template_name, subject, scheduled_for, source, "
    "source_id, step, created_at"
)


def event_row(row: Row) -> dict[str, Any]:
    event = {
        "id": row[0],
        "name": row[1],
        "contactId": row[2],
        "properties": json.loads(row[3]),
        "timestamp": row[4],
        "createdAt": row[5],
    }
    if row[2] is None:  # link-later, not linked yet: say whom it is waiting for
        event["email"] = row[6]
    return event


def send_row(row: Row) -> dict[str, Any]:
    keys = [
        "id",
        "contactId",
        "email",
        "templateId",
        "templateName",
        "subject",
        "status",
        "source",
        "sourceId",
        "sentAt",
        "deliveredAt",
        "openedAt",
        "clickedAt",
    ]
    return dict(zip(keys, row, strict=True))


def scheduled_row(row: Row) -> dict[str, Any]:
    keys = [
        "id",
        "contactId",
        "email",
        "templateId",
        "templateName",
        "subject",
        "scheduledFor",
        "source",
        "sourceId",
        "step",
        "createdAt",
    ]
    return dict(zip(keys, row, strict=True))


def sequence_row(row: Row) -> dict[str, Any]:
    return {
        "id": row[0],
        "name": row[1],
        "status": row[2],
        "triggers": json.loads(row[3]),
        "steps": json.loads(row[4]),
        "createdAt": row[5],
        "updatedAt": row[6],
    }


def page(rows: list[Row], limit: int, convert: Callable[[Row], dict[str, Any]]) -> Page:
    return [convert(r) for r in rows[:limit]], len(rows) > limit
