"""What a user asks an export for: a stream by name, ``--since``, ``--contacts``.

Light on purpose (no polars): the CLI builds its choices from :data:`STREAM_NAMES`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from kraiter_sync.errors import InputError, UsageError

__all__ = ["STREAM_NAMES", "parse_since", "read_contacts_file"]

#: Every stream, in the order ``--help`` lists them (``streams.STREAMS`` holds the specs).
STREAM_NAMES = (
    "contacts",
    "events",
    "timelines",
    "sends",
    "scheduled",
    "enrolments",
    "memberships",
)


def parse_since(value: str) -> datetime:
    """``--since``: an ISO 8601 date or date-time; without an offset it is UTC."""
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        msg = f"--since {value!r} is not an ISO 8601 date or date-time (e.g. 2025-01-31)"
        raise UsageError(msg) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def read_contacts_file(path: str | Path) -> tuple[str, ...]:
    """``--contacts FILE``: one contact id or email per line; blank lines, ``#`` comments
    and a header line are skipped; a CSV line counts by its first cell."""
    source = Path(path)
    try:
        lines = source.read_text(encoding="utf-8-sig").splitlines()
    except OSError as exc:
        msg = f"--contacts {source}: cannot read it ({exc.strerror})"
        raise InputError(msg) from None
    refs = [ln.split(",")[0].strip().strip('"') for ln in lines]
    refs = [r for r in refs if r and not r.startswith("#")]
    if refs and refs[0].lower() in {"email", "id", "contact_id", "contactid"}:
        refs = refs[1:]
    if not refs:
        msg = f"--contacts {source}: no contact ids or emails in it (one per line)"
        raise InputError(msg)
    return tuple(dict.fromkeys(refs))
