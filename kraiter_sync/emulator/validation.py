"""Request checks with the contract's limits (kraiter-api.md §6, §7, §9).

Every check raises :class:`ApiProblem`, which the app turns into the error envelope
``{"error": {"code", "message", "details": {"field"}}}``. Limits are the emulator's
documented defaults; Kraiter's real limits are unknown (§9).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_EMAIL",
    "MAX_EMAIL_LOCAL",
    "MAX_KEY",
    "MAX_NAME",
    "MAX_PROPERTIES",
    "MAX_STRING",
    "ApiProblem",
    "check_email",
    "check_properties",
    "check_timestamp",
    "format_ts",
    "parse_json_body",
]

MAX_BODY_BYTES = 256 * 1024
MAX_PROPERTIES = 100
MAX_KEY = 128
MAX_STRING = 10_000
MAX_NAME = 255
MAX_EMAIL = 254
MAX_EMAIL_LOCAL = 64

_STATUS_CODES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORISED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    422: "UNPROCESSABLE_ENTITY",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
    504: "GATEWAY_TIMEOUT",
}


class ApiProblem(Exception):
    """An error answer: HTTP status, Kraiter code, message, optional offending field."""

    def __init__(
        self, status: int, message: str, *, field: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _STATUS_CODES.get(status, "ERROR")
        self.message = message
        self.field = field

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["details"] = {"field": self.field}
        return {"error": error}


def invalid(message: str, field: str | None = None) -> ApiProblem:
    return ApiProblem(400, message, field=field)


def _no_constants(token: str) -> Any:
    msg = f"{token} is not valid JSON"
    raise ValueError(msg)


def parse_json_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 naming what is wrong."""
    if len(body) > MAX_BODY_BYTES:
        msg = f"request body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}"
        raise invalid(msg, "body")
    if content_type is None or content_type.split(";", 1)[0].strip().lower() != (
        "application/json"
    ):
        msg = "Content-Type must be application/json"
        raise invalid(msg, "Content-Type")
    try:
        data = json.loads(body, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError) as exc:
        msg = f"request body is not valid JSON: {exc}"
        raise invalid(msg, "body") from None
    if not isinstance(data, dict):
        msg = "request body must be a JSON object"
        raise invalid(msg, "body")
    return data


def check_unknown_fields(data: dict[str, Any], allowed: frozenset[str]) -> None:
    for key in data:
        if key not in allowed:
            msg = f"unknown field {key!r}; allowed: {', '.join(sorted(allowed))}"
            raise invalid(msg, key)


_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL_RE = re.compile(rf"(?:{_LOCAL})@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}")


def check_email(value: Any, field: str = "email") -> str:
    """A syntactically valid address (stripped), else 400. Case is kept."""
    if not isinstance(value, str):
        msg = f"{field} must be a string"
        raise invalid(msg, field)
    email = value.strip()
    if len(email) > MAX_EMAIL:
        msg = f"{field} is longer than {MAX_EMAIL} characters"
        raise invalid(msg, field)
    local, at, _domain = email.rpartition("@")
    if not at or not local:
        msg = f"{field} is not a valid email address"
        raise invalid(msg, field)
    if len(local) > MAX_EMAIL_LOCAL:
        msg = f"{field} has more than {MAX_EMAIL_LOCAL} characters before the @"
        raise invalid(msg, field)
    if _EMAIL_RE.fullmatch(email):
        return email
    if not email.isascii():  # internationalised addresses: the slow, thorough path
        import email_validator  # rare path: no import cost at startup

        try:
            email_validator.validate_email(email, check_deliverability=False)
        except email_validator.EmailNotValidError:
            pass
        else:
            return email
    msg = f"{field} is not a valid email address"
    raise invalid(msg, field)


def check_properties(value: Any, *, allow_null: bool, field: str = "properties") -> dict[str, Any]:
    """A flat object of string / number / boolean values within the limits.

    ``null`` values are allowed only where they mean "remove this key" (updates).
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        msg = f"{field} must be a JSON object"
        raise invalid(msg, field)
    if len(value) > MAX_PROPERTIES:
        msg = f"{field} has {len(value)} keys; the limit is {MAX_PROPERTIES}"
        raise invalid(msg, field)
    for key, item in value.items():
        where = f"{field}.{key}"
        if not key or len(key) > MAX_KEY:
            msg = f"property keys must have 1 to {MAX_KEY} characters"
            raise invalid(msg, where)
        if isinstance(item, str):
            if len(item) > MAX_STRING:
                msg = f"{where} is longer than {MAX_STRING} characters"
                raise invalid(msg, where)
        elif isinstance(item, bool | int | float):
            continue
        elif item is None:
            if not allow_null:
                msg = f"{where} is null; property values must be string, number or boolean"
                raise invalid(msg, where)
        else:
            kind = "an object" if isinstance(item, dict) else "an array"
            msg = f"{where} is {kind}; properties must be flat (string, number or boolean values)"
            raise invalid(msg, where)
    return value


def format_ts(moment: datetime) -> str:
    """``2025-09-15T10:30:00.000Z``: the contract's timestamp format."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def check_timestamp(value: Any, field: str = "timestamp") -> str:
    """An ISO 8601 date-time, normalised to the contract's UTC format (no offset = UTC)."""
    if not isinstance(value, str) or "T" not in value.upper():
        msg = f"{field} must be an ISO 8601 date-time string such as 2025-09-15T10:30:00.000Z"
        raise invalid(msg, field)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        msg = f"{field} {value!r} is not ISO 8601 (e.g. 2025-09-15T10:30:00.000Z)"
        raise invalid(msg, field) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_ts(moment)
