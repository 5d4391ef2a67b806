"""What a user asks an export for: a stream by name, a window, a destination, ``--contacts``.

Light on purpose (no polars): the CLI builds its choices from :data:`STREAM_NAMES`.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path

from kraiter_sync.errors import InputError, UsageError

__all__ = [
    "DATABASE_SCHEMES",
    "STREAM_NAMES",
    "is_database_url",
    "parse_since",
    "read_contacts_file",
    "window_label",
]

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


def parse_since(value: str, *, flag: str = "--since") -> datetime:
    """``--since`` / ``--until``: an ISO 8601 date or date-time; without an offset, UTC."""
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        msg = f"{flag} {value!r} is not an ISO 8601 date or date-time (e.g. 2025-01-31)"
        raise UsageError(msg) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _moment_label(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    if utc.time() == time(0):
        return utc.strftime("%Y-%m-%d")
    if utc.microsecond:
        return utc.strftime("%Y-%m-%dT%H%M%S.%fZ")
    return utc.strftime("%Y-%m-%dT%H%M%SZ")


def window_label(since: datetime | None, until: datetime | None) -> str | None:
    """How a window names its folder and its state: ``since-2026-11-01``,
    ``since-2026-11-01-until-2026-12-01``, ``until-2026-12-01`` (UTC; a time of day only
    when it is not midnight); None without a window."""
    parts = []
    if since is not None:
        parts.append(f"since-{_moment_label(since)}")
    if until is not None:
        parts.append(f"until-{_moment_label(until)}")
    return "-".join(parts) or None


def is_database_url(out: object) -> bool:
    """Whether an export destination names a database (``duckdb://``, ``postgresql://``)
    rather than a folder."""
    if not isinstance(out, str) or "://" not in out:
        return False
    return out.split("://", 1)[0].lower() in DATABASE_SCHEMES


#: Database targets (``--to``) by URL scheme.
DATABASE_SCHEMES = {"duckdb": "duckdb", "postgresql": "postgresql", "postgres": "postgresql"}


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
