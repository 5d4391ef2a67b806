"""The local Kraiter: an emulator of Kraiter's REST API over SQLite.

One ASGI implementation (:func:`create_app`), two mountings: in-process through
:func:`asgi_transport` (tests, the offline default) or served over real HTTP by
:func:`serve_in_thread` / :func:`run_server` (``kraiter-sync emulator``). It plays
every rule of ``kraiter-api.md``, each documented variant behind a setting of
:class:`EmulatorConfig`, plus rate limiting and injected faults.

Outside the Kraiter API, under ``/_emulator`` (same bearer auth, same tenant):

- ``POST /_emulator/tick`` ``{"until"?: ISO}`` delivers due scheduled sends: each
  becomes a Send with ``email.sent`` / ``email.delivered`` (and about half the time
  ``email.opened``) system events, and its sequence enrolment advances or completes.
- ``POST /_emulator/segments`` ``{"name", "contactIds": [...]}`` creates a segment
  with members (segment memberships have no API of their own).
- ``POST /_emulator/suppress`` ``{"contactId", "suppressed"}`` sets the flag a bounce
  would set.
- ``GET|POST /_emulator/noop`` answers ``{}`` doing nothing: the benchmark's baseline.
"""

from __future__ import annotations

from kraiter_sync.emulator.app import EmulatorApp, ResponseDropped, create_app
from kraiter_sync.emulator.config import EmulatorConfig
from kraiter_sync.emulator.server import asgi_transport, run_server, serve_in_thread

__all__ = [
    "EmulatorApp",
    "EmulatorConfig",
    "ResponseDropped",
    "asgi_transport",
    "create_app",
    "run_server",
    "serve_in_thread",
]
