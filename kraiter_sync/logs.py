"""Logging to stderr as text or JSON lines, with a filter that keeps secrets out.

Data goes to stdout; every diagnostic goes through the ``kraiter_sync`` logger to
stderr. :class:`RedactingFilter` replaces any registered secret (the API key) that
slipped into a message, as a last line of defence: code should never log it at all.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Literal

__all__ = ["LOGGER_NAME", "RedactingFilter", "configure_logging", "get_logger"]

LOGGER_NAME = "kraiter_sync"
LogFormat = Literal["text", "json"]

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def get_logger(name: str = "") -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


class RedactingFilter(logging.Filter):
    """Replaces every registered secret in a record's message and extra fields."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        self.secrets = [s for s in (secrets or []) if s]

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self.secrets:
                value = value.replace(secret, "***")
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg = self._clean(record.getMessage())
            record.args = None
            for key, value in list(vars(record).items()):
                if key not in _RESERVED:
                    setattr(record, key, self._clean(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, plus any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED:
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


def configure_logging(
    *,
    verbose: int = 0,
    quiet: bool = False,
    log_format: LogFormat = "text",
    secrets: list[str] | None = None,
) -> None:
    """Route the package logger to stderr; idempotent (replaces our previous handler)."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        if getattr(handler, "_kraiter_sync", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._kraiter_sync = True  # type: ignore[attr-defined]
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    logger.addHandler(handler)
    logger.propagate = False
    if quiet:
        logger.setLevel(logging.WARNING)
    elif verbose >= 2:
        logger.setLevel(logging.DEBUG)
    elif verbose == 1:
        logger.setLevel(logging.INFO)
    else:
        logger.setLevel(logging.INFO if log_format == "json" else logging.WARNING)
