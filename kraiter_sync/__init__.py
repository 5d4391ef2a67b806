"""kraiter-sync: move contacts and event history into and out of Kraiter.

The library API mirrors the CLI: every command is a function of the same verb
(``validate_inputs``, ``import_``, ``retry_``, …). Heavy modules (polars, the HTTP
stack) load on first use, so ``import kraiter_sync`` and ``kraiter-sync --help`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from kraiter_sync.config import Settings, resolve_settings
from kraiter_sync.errors import (
    ApiError,
    ConfigError,
    GuardError,
    IncompleteError,
    InputError,
    KraiterSyncError,
    StateError,
    UsageError,
)

if TYPE_CHECKING:
    from kraiter_sync.api.blocking import SyncKraiterClient
    from kraiter_sync.api.client import KraiterClient
    from kraiter_sync.config.file import load_sync_config
    from kraiter_sync.connectors import Connector, list_presets, load_connector
    from kraiter_sync.emulator import EmulatorConfig, create_app, serve_in_thread
    from kraiter_sync.export import ExportOptions, ExportResult, export, export_to, read_stream
    from kraiter_sync.inputs import InputOptions
    from kraiter_sync.plan.contacts import ContactPlan, diff_contacts
    from kraiter_sync.sources import iter_chunks, open_source, read_source, scan_source
    from kraiter_sync.state.ledger import Ledger
    from kraiter_sync.sync import SyncResult, check_jobs, run_sync
    from kraiter_sync.upload.context import blocking_client_for, client_for
    from kraiter_sync.validate import ValidationOptions, validate_contacts, validate_events
    from kraiter_sync.verbs.importer import ImportOptions, ImportResult, import_
    from kraiter_sync.verbs.reconcile import (
        ReconcileOptions,
        ReconcileResult,
        apply_saved_plan,
        reconcile,
    )
    from kraiter_sync.verbs.restore import restore
    from kraiter_sync.verbs.retry import retry_
    from kraiter_sync.verbs.runs import runs
    from kraiter_sync.verbs.validate import validate_inputs

_LAZY = {
    "KraiterClient": "kraiter_sync.api.client",
    "SyncKraiterClient": "kraiter_sync.api.blocking",
    "client_for": "kraiter_sync.upload.context",
    "blocking_client_for": "kraiter_sync.upload.context",
    "runs": "kraiter_sync.verbs.runs",
    "Connector": "kraiter_sync.connectors",
    "list_presets": "kraiter_sync.connectors",
    "load_connector": "kraiter_sync.connectors",
    "EmulatorConfig": "kraiter_sync.emulator",
    "create_app": "kraiter_sync.emulator",
    "serve_in_thread": "kraiter_sync.emulator",
    "ExportOptions": "kraiter_sync.export",
    "ExportResult": "kraiter_sync.export",
    "export": "kraiter_sync.export",
    "export_to": "kraiter_sync.export",
    "read_stream": "kraiter_sync.export",
    "ContactPlan": "kraiter_sync.plan.contacts",
    "diff_contacts": "kraiter_sync.plan.contacts",
    "ReconcileOptions": "kraiter_sync.verbs.reconcile",
    "ReconcileResult": "kraiter_sync.verbs.reconcile",
    "apply_saved_plan": "kraiter_sync.verbs.reconcile",
    "reconcile": "kraiter_sync.verbs.reconcile",
    "restore": "kraiter_sync.verbs.restore",
    "SyncResult": "kraiter_sync.sync",
    "check_jobs": "kraiter_sync.sync",
    "run_sync": "kraiter_sync.sync",
    "load_sync_config": "kraiter_sync.config.file",
    "ImportOptions": "kraiter_sync.verbs.importer",
    "ImportResult": "kraiter_sync.verbs.importer",
    "import_": "kraiter_sync.verbs.importer",
    "retry_": "kraiter_sync.verbs.retry",
    "Ledger": "kraiter_sync.state.ledger",
    "InputOptions": "kraiter_sync.inputs",
    "validate_inputs": "kraiter_sync.verbs.validate",
    "iter_chunks": "kraiter_sync.sources",
    "open_source": "kraiter_sync.sources",
    "read_source": "kraiter_sync.sources",
    "scan_source": "kraiter_sync.sources",
    "ValidationOptions": "kraiter_sync.validate",
    "validate_contacts": "kraiter_sync.validate",
    "validate_events": "kraiter_sync.validate",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'kraiter_sync' has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(module), name)


__all__ = [
    "ApiError",
    "ConfigError",
    "Connector",
    "ContactPlan",
    "EmulatorConfig",
    "ExportOptions",
    "ExportResult",
    "GuardError",
    "ImportOptions",
    "ImportResult",
    "IncompleteError",
    "InputError",
    "InputOptions",
    "KraiterClient",
    "KraiterSyncError",
    "Ledger",
    "ReconcileOptions",
    "ReconcileResult",
    "Settings",
    "StateError",
    "SyncKraiterClient",
    "SyncResult",
    "UsageError",
    "ValidationOptions",
    "__version__",
    "apply_saved_plan",
    "blocking_client_for",
    "check_jobs",
    "client_for",
    "create_app",
    "diff_contacts",
    "export",
    "export_to",
    "import_",
    "iter_chunks",
    "list_presets",
    "load_connector",
    "load_sync_config",
    "open_source",
    "read_source",
    "read_stream",
    "reconcile",
    "resolve_settings",
    "restore",
    "retry_",
    "run_sync",
    "runs",
    "scan_source",
    "serve_in_thread",
    "validate_contacts",
    "validate_events",
    "validate_inputs",
]
