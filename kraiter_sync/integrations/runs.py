"""What every adapter shares: one import run, its counts, and the exit-code semantics.

- Rejected rows are reported, not raised (the CLI's exit code 3), unless more than
  ``max_rejected`` were rejected: then :class:`~kraiter_sync.errors.TooManyRejectsError`.
- A run that did not finish (the CLI's exit code 4: retries ran out, interrupted) raises
  :class:`~kraiter_sync.errors.IncompleteError`, so the orchestrator retries it; the
  ledger makes the retry send only what is missing.

``target`` is what :func:`kraiter_sync.config.resolve_settings` takes (``api_key``,
``base_url``, ``state_dir``, ``state``, ``tenant``), so an adapter takes the state location
the library takes: a state directory, or a shared store's URL (``postgresql://...``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kraiter_sync.config import Settings, resolve_settings
from kraiter_sync.errors import (
    EXIT_BUSY,
    EXIT_INCOMPLETE,
    IncompleteError,
    KraiterSyncError,
    TooManyRejectsError,
    UsageError,
)
from kraiter_sync.frames import Kind
from kraiter_sync.inputs import ChunkSource
from kraiter_sync.verbs.importer import ImportOptions, ImportResult, KindCounts, import_

__all__ = [
    "check_parameter_state",
    "check_result",
    "import_options",
    "is_transient",
    "run_import",
    "settings_for",
    "summary",
]


def check_parameter_state(state: str | None) -> str | None:
    """A state URL given as a task parameter, which orchestrators store and show: one
    with a password is refused (the password goes in PGPASSWORD or ~/.pgpass, or the
    whole URL in the worker's KRAITER_SYNC_STATE)."""
    if state and urlsplit(state.strip()).password is not None:
        msg = (
            "state: a task parameter is stored and shown by the orchestrator, so the state "
            "URL must not hold a password: set PGPASSWORD or ~/.pgpass on the worker, or the "
            "whole URL in its KRAITER_SYNC_STATE environment variable"
        )
        raise UsageError(msg)
    return state


def is_transient(exc: BaseException) -> bool:
    """A failure a later attempt gets past, which the orchestrator should retry: the CLI
    would exit 4 (incomplete: a run that did not finish, Kraiter unreachable or failing
    after the retries) or 5 (the state lock is held by another run)."""
    return isinstance(exc, KraiterSyncError) and exc.exit_code in (EXIT_INCOMPLETE, EXIT_BUSY)


def import_options(
    options: ImportOptions | None = None,
    *,
    kind: Kind | None = None,
    connector: str | None = None,
    mapping: Mapping[str, str] | None = None,
) -> ImportOptions:
    """``options`` with ``--kind``, ``--connector`` and ``--map`` set where given."""
    base = options or ImportOptions()
    chosen = replace(
        base.input,
        kind=kind or base.input.kind,
        connector=connector or base.input.connector,
        mapping={**base.input.mapping, **(mapping or {})},
    )
    return replace(base, input=chosen)


def settings_for(settings: Settings | None, target: Mapping[str, Any]) -> Settings:
    """``settings`` as given, else resolved from ``target`` (flags > environment > toml)."""
    if settings is not None:
        if target:
            msg = f"pass either settings or {', '.join(sorted(target))}, not both"
            raise UsageError(msg)
        return settings
    return resolve_settings(**target)


def _kinds(result: ImportResult) -> tuple[KindCounts, KindCounts]:
    return result.contacts, result.events


def summary(result: ImportResult) -> dict[str, Any]:
    """The counts an orchestrator shows, JSON-ready (Airflow's XCom, Dagster's metadata).

    ``row_count`` rows were read; each is counted once in ``sent`` (sent now, or verified
    as having arrived from a killed run), ``skipped`` (already in Kraiter by the ledger,
    unchanged contacts, rows Kraiter refused before), ``duplicate`` (repeated in the
    input), ``rejected`` (by the validator or by Kraiter: see ``rejects_path``),
    ``failed`` or ``pending`` (what a retry sends).
    """
    kinds = _kinds(result)
    return {
        "run_id": result.run_id,
        "row_count": sum(k.read for k in kinds),
        "sent": sum(k.sent + k.verified for k in kinds),
        "skipped": sum(k.already + k.unchanged + k.previously_rejected for k in kinds),
        "duplicate": sum(k.duplicates for k in kinds),
        "rejected": sum(k.invalid + k.rejected for k in kinds),
        "failed": sum(k.failed for k in kinds),
        "pending": sum(k.pending for k in kinds),
        "exit_code": result.exit_code,
        "rejects_path": str(result.rejects_path) if result.rejects_path else None,
        "contacts": asdict(result.contacts),
        "events": asdict(result.events),
    }


def check_result(result: ImportResult, *, max_rejected: int | None = None) -> ImportResult:
    """Raise for an incomplete run, or for more rejects than ``max_rejected``."""
    counts = summary(result)
    if result.exit_code == EXIT_INCOMPLETE:
        msg = (
            f"run {result.run_id} did not finish ({counts['failed']} failed, "
            f"{counts['pending']} pending{', interrupted' if result.interrupted else ''}): "
            "run it again; the ledger sends only what is missing, nothing twice"
        )
        raise IncompleteError(msg)
    if max_rejected is not None and counts["rejected"] > max_rejected:
        msg = (
            f"run {result.run_id}: {counts['rejected']} rows rejected, more than the "
            f"{max_rejected} allowed; the valid rows were sent. Fix the rows listed in "
            f"{counts['rejects_path']} and run again"
        )
        raise TooManyRejectsError(msg)
    return result


def run_import(
    inputs: Sequence[str | Path | ChunkSource],
    *,
    settings: Settings | None = None,
    options: ImportOptions | None = None,
    max_rejected: int | None = None,
    command: str = "import",
    **target: Any,
) -> ImportResult:
    """:func:`kraiter_sync.verbs.importer.import_` with the adapters' semantics
    (:func:`check_result`); ``target`` as for :func:`settings_for`."""
    result = import_(
        inputs, settings=settings_for(settings, target), options=options, command=command
    )
    return check_result(result, max_rejected=max_rejected)
