"""psycopg errors → kraiter-sync's tree, at one boundary, never quoting a password.

* cannot connect (server down, wrong host or port, wrong password, no such database) →
  :class:`~kraiter_sync.errors.StateConnectError` (exit 2: nothing was sent);
* out of space (SQLSTATE class 53) or read-only (a standby, ``default_transaction_read_only``,
  a role without write rights) → :class:`~kraiter_sync.errors.StateError` saying which;
* a connection lost mid-run → StateError: re-run to resume (the ledger recorded every key
  before it was sent);
* anything else → StateError with PostgreSQL's own words.
"""

from __future__ import annotations

from collections.abc import Sequence

from kraiter_sync.errors import StateConnectError, StateError

__all__ = ["connect_error", "scrub", "translate"]

#: SQLSTATEs of a server or role that refuses writes.
_READ_ONLY = frozenset({"25006", "42501"})


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` without any of ``secrets`` in it, on one line."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "…")
    return " ".join(text.split())


def _reason(exc: BaseException, secrets: Sequence[str]) -> str:
    text = str(exc).strip() or type(exc).__name__
    return scrub(text.removeprefix("connection failed: "), secrets)


def connect_error(exc: BaseException, display: str, secrets: Sequence[str]) -> StateConnectError:
    """The first connection failed: a setting to fix before anything is sent."""
    reason = _reason(exc, secrets)
    if "password authentication failed" in reason or "no password supplied" in reason:
        hint = (
            "check the user and the password (PGPASSWORD, ~/.pgpass, or in the URL given "
            "through KRAITER_SYNC_STATE)"
        )
    elif "does not exist" in reason:
        hint = "create that database (or role), or fix the URL"
    else:
        hint = (
            "check the host, port and database of the state URL (--state, "
            "KRAITER_SYNC_STATE or [target].state) and that the server runs"
        )
    msg = f"cannot connect to the state store {display}: {reason}; {hint}. Nothing was sent"
    return StateConnectError(msg)


def translate(
    exc: BaseException, display: str, secrets: Sequence[str], *, schema: str
) -> StateError:
    """A failed statement or a lost connection, with the next step to take."""
    reason = _reason(exc, secrets)
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if sqlstate.startswith("53"):
        msg = (
            f"the state store {display} is out of space ({reason}): free space on the "
            "PostgreSQL server (or raise the quota), then re-run the same command to resume"
        )
    elif sqlstate in _READ_ONLY:
        msg = (
            f"cannot write the state store {display} ({reason}): the server is read-only (a "
            f"standby?) or this role may not write the schema {schema}; point the state URL "
            "at the primary, with a role that may create and write that schema"
        )
    elif not sqlstate or sqlstate.startswith(("08", "57P")):
        msg = (
            f"lost the connection to the state store {display} ({reason}); re-run the same "
            "command once it is reachable: nothing is lost, every key is recorded before it "
            "is sent"
        )
    else:
        msg = f"state store error in {display}: {reason}"
    return StateError(msg)
