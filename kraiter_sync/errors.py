"""The whole exception tree of kraiter-sync.

Per-row problems are data (the rejects frame), never exceptions. Exceptions are for
failures of a whole request or a whole run, and each says whether retrying can help
(``retriable``), whether the request may already have taken effect (``ambiguous``), and
which exit code the CLI uses for it (``exit_code``)::

    KraiterSyncError                    exit 1
    ├── UsageError                      exit 2   bad options, flags or input the user must fix
    │   ├── ConfigError                          settings / kraiter-sync.toml
    │   ├── InputError                           unusable input (missing file, no email column)
    │   └── GuardError                           a safety guard refused (triggers, mirror ratio)
    ├── TransportError                  exit 4   retriable: the HTTP exchange itself failed
    │   ├── ConnectError                         never reached Kraiter: safe to resend
    │   ├── ResponseLostError           ambiguous: request sent, connection cut before the answer
    │   └── RequestTimeoutError         ambiguous unless it timed out before sending
    ├── ApiError                        Kraiter answered with an error body
    │   ├── BadRequestError        400  VALIDATION_ERROR
    │   ├── AuthenticationError    401  UNAUTHORISED            (exit 2: fix the key)
    │   ├── PermissionDeniedError  403  FORBIDDEN               (exit 2)
    │   ├── NotFoundError          404  NOT_FOUND
    │   ├── ConflictError          409  CONFLICT
    │   ├── UnprocessableError     422  UNPROCESSABLE_ENTITY
    │   ├── RateLimitError         429  RATE_LIMITED            retriable (exit 4)
    │   └── ServerError            5xx                          retriable, ambiguous (exit 4)
    ├── StateError                      the state directory / ledger / state store cannot be used
    │   ├── StateConnectError           exit 2: the state store is unreachable or refused the login
    │   └── LockHeldError               exit 5: busy, another run holds the lock; nothing started
    └── IncompleteError                 exit 4: interrupted or out of retries; resumable

Foreign exceptions (httpx, sqlite3, psycopg, polars) are translated at one boundary each
(``api.failures.translate_transport_error`` for httpx, ``state.ledger`` for sqlite3,
``state.pgerrors`` for psycopg, ``sources.reading`` for polars/pyarrow), so callers only
ever catch this tree.

Messages never contain the API key or bulk personal data, and name the next step.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "ApiError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigError",
    "ConflictError",
    "ConnectError",
    "GuardError",
    "IncompleteError",
    "InputError",
    "KraiterSyncError",
    "LockHeldError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTimeoutError",
    "ResponseLostError",
    "ServerError",
    "StateConnectError",
    "StateError",
    "TooManyRejectsError",
    "TransportError",
    "UnprocessableError",
    "UsageError",
    "api_error_class",
    "is_disk_full",
    "os_reason",
    "outcome_exit_code",
    "status_for_exit",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3
EXIT_INCOMPLETE = 4
EXIT_BUSY = 5


class KraiterSyncError(Exception):
    """Root of every error kraiter-sync raises."""

    #: Whether sending the same request again can succeed.
    retriable: bool = False
    #: Whether the request may already have taken effect on Kraiter's side.
    ambiguous: bool = False
    #: The CLI's exit code for this failure (design.md §8).
    exit_code: ClassVar[int] = EXIT_FAILED


class UsageError(KraiterSyncError):
    """The user must change an option, a setting or the input; retrying cannot help."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A setting (flag, environment variable or kraiter-sync.toml entry) is wrong."""


class InputError(UsageError):
    """An input file cannot be used as a whole (missing, unreadable, no usable column)."""


class GuardError(UsageError):
    """A safety guard refused to go on (live sequence triggers, mirror deletion ratio)."""


class TransportError(KraiterSyncError):
    """The HTTP exchange failed before a complete answer arrived."""

    retriable = True
    #: Reaching the CLI means retries ran out: re-running resumes (design.md §8).
    exit_code = EXIT_INCOMPLETE

    def __init__(self, message: str, *, method: str = "", path: str = "") -> None:
        super().__init__(message)
        self.method = method
        self.path = path


class ConnectError(TransportError):
    """Kraiter could not be reached; the request never left, so resending is safe."""


class ResponseLostError(TransportError):
    """The request was sent but the connection broke before the answer: it may have applied."""

    ambiguous = True


class RequestTimeoutError(TransportError):
    """No answer in time. Ambiguous when the request had been sent (read/write timeout)."""

    def __init__(
        self, message: str, *, method: str = "", path: str = "", sent: bool = True
    ) -> None:
        super().__init__(message, method=method, path=path)
        self.sent = sent
        self.ambiguous = sent


class ApiError(KraiterSyncError):
    """Kraiter answered with an error status and (usually) an ``{error: {code, message}}`` body."""

    status: ClassVar[int] = 0
    default_code: ClassVar[str] = "ERROR"
    hint: ClassVar[str] = ""

    def __init__(
        self,
        message: str,
        *,
        method: str,
        path: str,
        status: int | None = None,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.http_status = status if status is not None else self.status
        self.code = code or self.default_code
        self.api_message = message
        self.details = dict(details or {})
        self.retry_after = retry_after
        text = f"{self.http_status} {self.code} from Kraiter on {method} {path}: {message}"
        if self.hint:
            text = f"{text} ({self.hint})"
        super().__init__(text)


class BadRequestError(ApiError):
    status = 400
    default_code = "VALIDATION_ERROR"


class AuthenticationError(ApiError):
    status = 401
    default_code = "UNAUTHORISED"
    exit_code = EXIT_USAGE
    hint = "set KRAITER_API_KEY or pass --api-key with a valid key"


class PermissionDeniedError(ApiError):
    status = 403
    default_code = "FORBIDDEN"
    exit_code = EXIT_USAGE
    hint = "this API key may not do this; use a key with more permissions"


class NotFoundError(ApiError):
    status = 404
    default_code = "NOT_FOUND"


class ConflictError(ApiError):
    status = 409
    default_code = "CONFLICT"


class UnprocessableError(ApiError):
    status = 422
    default_code = "UNPROCESSABLE_ENTITY"


class RateLimitError(ApiError):
    status = 429
    default_code = "RATE_LIMITED"
    retriable = True
    exit_code = EXIT_INCOMPLETE  # out of retries: re-running resumes


class ServerError(ApiError):
    status = 500
    default_code = "INTERNAL_ERROR"
    retriable = True
    ambiguous = True
    exit_code = EXIT_INCOMPLETE  # out of retries: re-running resumes


class StateError(KraiterSyncError):
    """The state directory or the ledger cannot be used."""


class StateConnectError(StateError):
    """The shared state store (PostgreSQL) cannot be reached, or refused the login: a
    setting to fix (or a server to start) before anything is sent."""

    exit_code = EXIT_USAGE


class LockHeldError(StateError):
    """Another kraiter-sync run holds the lock on this state directory (or on this export):
    nothing was started, so there is nothing to resume; run again once it has finished."""

    exit_code = EXIT_BUSY


class IncompleteError(KraiterSyncError):
    """The run stopped before finishing (interrupted, out of retries); re-running resumes."""

    exit_code = EXIT_INCOMPLETE


class TooManyRejectsError(KraiterSyncError):
    """More rows were rejected than an unattended run allows (``max_rejected``): the rows
    that were valid are sent; the rejects file says what to fix."""

    exit_code = EXIT_REJECTED


def outcome_exit_code(*, failed: int, rejected: int) -> int:
    """The exit code of a run from what happened to its records: 4 when some failed
    (re-running resumes), else 3 when Kraiter rejected some, else 0."""
    if failed:
        return EXIT_INCOMPLETE
    return EXIT_REJECTED if rejected else EXIT_OK


#: A run's status for its exit code (``runs``, ``sync``, every ``--json`` document).
_STATUS = {
    EXIT_OK: "ok",
    EXIT_FAILED: "failed",
    EXIT_USAGE: "error",
    EXIT_REJECTED: "rejected-rows",
    EXIT_INCOMPLETE: "incomplete",
    EXIT_BUSY: "busy",
}


def status_for_exit(exit_code: int, *, dry_run: bool = False) -> str:
    """``ok``, ``rejected-rows``, ``incomplete``, ``failed``, ``error`` (usage or
    configuration: nothing was sent) or ``busy``; a dry run that finished is ``dry-run``."""
    if dry_run and exit_code in (EXIT_OK, EXIT_REJECTED):
        return "dry-run"
    return _STATUS.get(exit_code, "failed")


_BY_STATUS: dict[int, type[ApiError]] = {
    cls.status: cls
    for cls in (
        BadRequestError,
        AuthenticationError,
        PermissionDeniedError,
        NotFoundError,
        ConflictError,
        UnprocessableError,
        RateLimitError,
    )
}


def api_error_class(status: int) -> type[ApiError]:
    """The exception class for an HTTP error status (the one status → class table)."""
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, ApiError)


_OS_ERROR_SUFFIX = re.compile(r"\s*\(os error \d+\)\s*$")


def os_reason(exc: BaseException) -> str:
    """What the OS said, for a message: ``strerror``, or the text of an error polars or
    pyarrow built from it (without its ``(os error N)`` tail)."""
    strerror = getattr(exc, "strerror", None)
    if strerror:
        return str(strerror)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return _OS_ERROR_SUFFIX.sub("", text)


def is_disk_full(exc: BaseException) -> bool:
    """Whether a write failed for lack of space (or quota)."""
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return "no space left" in text or "disk quota" in text or "os error 28" in text
