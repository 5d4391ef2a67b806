"""The emulator's knobs: one dataclass, so tests, the CLI and the client build it alike."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

__all__ = ["EmulatorConfig", "ListShape", "UnknownEmail"]

UnknownEmail = Literal["create", "not-found", "link-later"]
ListShape = Literal["data", "items"]

_UNKNOWN_EMAIL = ("create", "not-found", "link-later")
_LIST_SHAPES = ("data", "items")


@dataclass
class EmulatorConfig:
    """How the local Kraiter behaves.

    Each documented variant of the contract that Kraiter's docs disagree on is a
    setting here (``unknown_email``, ``list_shape``, ``strict_contact_ref``), so the
    client can be tested against every one. Faults (``latency_ms``, ``fail_rate``,
    ``drop_rate``) draw from one RNG seeded by ``seed``: a run is reproducible.
    """

    #: SQLite file, or ``":memory:"`` (one connection, lives as long as the app).
    db_path: str | os.PathLike[str] = ":memory:"
    #: Requests per second per tenant; 0 turns rate limiting off.
    rate_limit: float = 0
    #: Bucket capacity; ``None`` means one second's worth (at least 1).
    burst: int | None = None
    #: Added to every API request before it is handled.
    latency_ms: float = 0
    #: Share of API requests answered 5xx *without* being applied.
    fail_rate: float = 0
    #: Share of API requests applied and committed, then cut without an answer.
    drop_rate: float = 0
    seed: int | None = None
    #: Tracking an event for an email with no contact: auto-create the contact (the
    #: guide), answer 404 (the SDK reference), or store it and link it when the contact
    #: appears (the API reference).
    unknown_email: UnknownEmail = "create"
    #: Answer 429s but send no ``X-RateLimit-*`` headers (an API that says nothing).
    hide_rate_headers: bool = False
    #: ``data`` → ``{data, nextCursor}`` (API reference); ``items`` → ``{items,
    #: nextCursor}`` (the shipped SDK's types).
    list_shape: ListShape = "data"
    #: Both ``contactId`` and ``email`` on an event: 400 instead of "contactId wins".
    strict_contact_ref: bool = False

    def __post_init__(self) -> None:
        if self.rate_limit < 0:
            msg = f"rate_limit must be >= 0, got {self.rate_limit}"
            raise ValueError(msg)
        if self.burst is not None and self.burst < 1:
            msg = f"burst must be >= 1, got {self.burst}"
            raise ValueError(msg)
        if self.latency_ms < 0:
            msg = f"latency_ms must be >= 0, got {self.latency_ms}"
            raise ValueError(msg)
        for name in ("fail_rate", "drop_rate"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                msg = f"{name} must be between 0 and 1, got {value}"
                raise ValueError(msg)
        if self.unknown_email not in _UNKNOWN_EMAIL:
            msg = f"unknown_email must be one of {', '.join(_UNKNOWN_EMAIL)}"
            raise ValueError(msg)
        if self.list_shape not in _LIST_SHAPES:
            msg = f"list_shape must be one of {', '.join(_LIST_SHAPES)}"
            raise ValueError(msg)

    @property
    def bucket_size(self) -> int:
        """The effective burst: given, or one second's worth of requests."""
        if self.burst is not None:
            return self.burst
        return max(1, int(self.rate_limit + 0.999999))
