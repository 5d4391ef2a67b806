"""``sync --check``: every job's source opened and its first rows read, mapped and
validated the way the run does; one read from Kraiter; nothing sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kraiter_sync.config import Settings
from kraiter_sync.config.file import JobConfig, SyncConfig
from kraiter_sync.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    ConfigError,
    KraiterSyncError,
    status_for_exit,
)
from kraiter_sync.frames import PROVENANCE
from kraiter_sync.inputs import prepare_inputs
from kraiter_sync.logs import get_logger
from kraiter_sync.sync.jobs import CHECK_ROWS, input_options, open_job_source, worst_exit_code
from kraiter_sync.upload.context import ClientFactory, connect

__all__ = ["CheckResult", "JobCheck", "check_jobs"]

log = get_logger("sync")


@dataclass
class JobCheck:
    """One job's check: its source opened, its mapping resolved, its first rows validated."""

    name: str
    ok: bool
    message: str
    exit_code: int = EXIT_OK
    details: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.name,
            "ok": self.ok,
            "message": self.message,
            "exit_code": self.exit_code,
            "details": self.details,
        }


@dataclass
class CheckResult:
    """``sync --check``: every selected job and the target, nothing sent."""

    jobs: list[JobCheck]
    target: JobCheck

    @property
    def exit_code(self) -> int:
        return worst_exit_code([j.exit_code for j in [*self.jobs, self.target]])

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.exit_code == EXIT_OK,
            "exit_code": self.exit_code,
            "target": self.target.as_dict(),
            "jobs": [j.as_dict() for j in self.jobs],
        }

    def to_json(self) -> dict[str, Any]:
        """``sync --check --json`` (docs/schemas/sync-check.schema.json)."""
        return {
            "command": "sync --check",
            "status": status_for_exit(self.exit_code),
            "run_id": None,
            **self.as_dict(),
        }


def _check_code(exc: KraiterSyncError) -> int:
    """A failed check is a usage error (fix the config) or a failure — never "resume"."""
    return EXIT_USAGE if exc.exit_code == EXIT_USAGE else EXIT_FAILED


def _check_job(job: JobConfig) -> JobCheck:
    """Open the job's source as the run does and put its first rows through the same
    mapping and validation (the validator's read-ahead thread included): a source that
    cannot be read the way the run reads it fails here, not at night."""
    from kraiter_sync.validate import ChunkedValidation

    options = input_options(job, kind="contacts" if job.mode == "mirror" else None)
    try:
        with contextlib.ExitStack() as stack:
            source = open_job_source(job, chunk_size=CHECK_ROWS, limit=CHECK_ROWS)
            stack.callback(source.close)
            (prepared,) = prepare_inputs([source], options, stack=stack)
            detection = prepared.detection
            if job.kind is not None and detection.kind != job.kind:
                msg = f"job {job.name}: kind is {job.kind} but the mapping reads {detection.kind}"
                raise ConfigError(msg)
            columns = [n for n in source.schema.names() if n not in PROVENANCE]
            validation = ChunkedValidation(
                kind=detection.kind, options=prepared.validation_options(options)
            )
            for _valid in validation.run(itertools.islice(prepared.mapped_chunks(), 1)):
                pass
            report = validation.report
    except KraiterSyncError as exc:
        return JobCheck(job.name, False, str(exc), _check_code(exc))
    details = [
        f"source: {job.source_label} ({len(columns)} columns)",
        *detection.lines(),
        f"first {report.rows_read:,} row(s) read and validated: {report.valid:,} valid, "
        f"{report.rejected:,} rejected",
    ]
    if job.cursor:
        details.append(f"cursor: {job.cursor!r}")
    return JobCheck(job.name, True, f"{detection.kind} from {job.source_label}", details=details)


def _check_target(settings: Settings, client_factory: ClientFactory | None) -> JobCheck:
    """One read (the first page of contacts, limit 1): the URL answers and the key works."""
    where = "local Kraiter" if settings.local else settings.base_url
    try:

        async def one_read() -> None:
            async with connect(settings, client_factory=client_factory) as conn:
                await conn.client.get_page("contacts.list", limit=1)

        asyncio.run(one_read())
    except KraiterSyncError as exc:
        return JobCheck("target", False, f"{where}: {exc}", _check_code(exc))
    return JobCheck("target", True, f"{where} answers and accepts the key")


def check_jobs(
    config: SyncConfig,
    jobs: Sequence[str] = (),
    *,
    settings: Settings | None = None,
    client_factory: ClientFactory | None = None,
) -> CheckResult:
    """Validate connections without sending anything: each source opened and its first
    :data:`CHECK_ROWS` rows read, mapped and validated as the run does (the same code,
    threads included), the cursor column found, and one read from Kraiter."""
    settings = settings or config.settings()
    selected = config.select(jobs)
    return CheckResult(
        jobs=[_check_job(job) for job in selected],
        target=_check_target(settings, client_factory),
    )
