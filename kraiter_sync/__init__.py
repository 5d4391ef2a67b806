"""kraiter-sync: move contacts and event history into and out of Kraiter.

The library API mirrors the CLI: every command is a function of the same verb.
"""

from __future__ import annotations

__version__ = "0.1.0"

from kraiter_sync.config import Settings, resolve_settings
from kraiter_sync.errors import (
    ApiError,
    ConfigError,
    IncompleteError,
    InputError,
    KraiterSyncError,
    UsageError,
)

__all__ = [
    "ApiError",
    "ConfigError",
    "IncompleteError",
    "InputError",
    "KraiterSyncError",
    "Settings",
    "UsageError",
    "__version__",
    "resolve_settings",
]
