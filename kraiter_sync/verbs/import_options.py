"""What an import takes and what it gives back: :class:`ImportOptions`, and the
:class:`ImportResult` with a :class:`KindCounts` per kind of row (its exit code and its
``--json`` document). The import itself is ``verbs.importer``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kraiter_sync.errors import EXIT_INCOMPLETE, EXIT_OK, EXIT_REJECTED, status_for_exit
from kraiter_sync.inputs import InputOptions
from kraiter_sync.upload.context import RunOptions
from kraiter_sync.validate import ValidationReport

__all__ = ["ImportOptions", "ImportResult", "KindCounts"]


@dataclass(frozen=True)
class ImportOptions:
    """Everything ``kraiter-sync import`` takes besides the paths and the target."""

    input: InputOptions = field(default_factory=InputOptions)
    rejects: Path | None = None
    dry_run: bool = False
    concurrency: int = 16
    #: Ceiling in requests/s (None: as fast as Kraiter allows).
    rate: float | None = None
    max_retries: int = 5
    allow_triggers: bool = False
    #: Send again the keys the ledger holds as ``rejected`` (what ``retry`` does).
    resend_rejected: bool = False
    #: Re-send every valid contact even when its hash equals the ledger's (a full pass).
    ignore_contact_cache: bool = False
    #: Worker processes sharing this import through PostgreSQL state (``verbs.workers``;
    #: 0: a plain run, alone on its target). With 1 this process is one worker.
    workers: int = 0
    #: The part of the tenant's rate limit this run and the runs beside it use together.
    max_share: float = 1.0
    #: Seconds a worker's claim on a shard lasts unless renewed (a killed worker's work
    #: is taken over after it).
    lease_seconds: float = 60.0
    #: A worker started by ``import_with_workers``: it works in the round of shards its
    #: parent began, and never begins a new one.
    join_round: bool = False
    #: Look for every event the ledger does not know in Kraiter before sending it (one
    #: listing per contact and name): the way on when the state was lost.
    adopt: bool = False
    #: Rebuild the ledger from what Kraiter holds before anything else (``state rebuild``).
    rebuild: bool = False

    @property
    def run_options(self) -> RunOptions:
        return RunOptions(
            concurrency=self.concurrency, rate=self.rate, max_retries=self.max_retries
        )


@dataclass
class KindCounts:
    """What happened to every row of one kind.

    ``read = duplicates + invalid + already + previously_rejected + sent + verified
    + unchanged + rejected + failed + pending``.
    """

    read: int = 0
    duplicates: int = 0
    invalid: int = 0
    already: int = 0
    previously_rejected: int = 0
    sent: int = 0
    verified: int = 0
    unchanged: int = 0
    rejected: int = 0
    failed: int = 0
    pending: int = 0
    #: Rows of the shards other workers sent (an import run by several workers).
    elsewhere: int = 0

    def absorb(self, report: ValidationReport) -> None:
        self.read += report.rows_read
        self.duplicates += report.duplicates
        self.invalid += report.rejected

    @property
    def accounted(self) -> int:
        return (
            self.duplicates
            + self.invalid
            + self.already
            + self.previously_rejected
            + self.sent
            + self.verified
            + self.unchanged
            + self.rejected
            + self.failed
            + self.pending
            + self.elsewhere
        )


@dataclass
class ImportResult:
    """The outcome of one import run; ``exit_code`` follows design.md §8."""

    run_id: int
    events: KindCounts = field(default_factory=KindCounts)
    contacts: KindCounts = field(default_factory=KindCounts)
    rejects_path: Path | None = None
    duration_s: float = 0.0
    requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    interrupted: bool = False
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)
    #: How each input was mapped (detected or given): one line per field.
    detections: list[str] = field(default_factory=list)
    #: Why the run stopped before sending anything (``max_reject_ratio``), else None.
    stopped: str | None = None
    #: The rows dropped or merged as duplicates, with the row each went into (None:
    #: there were none).
    duplicates_path: Path | None = None
    #: The lost-state check of a target the ledger knew nothing of (``how``: sample or
    #: empty-tenant; sampled, found, requests, events), None when none was needed.
    state_check: dict[str, Any] | None = None
    #: What ``rebuild`` read and cost (``verbs.rebuild.RebuildResult.as_dict``).
    rebuild: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        kinds = (self.events, self.contacts)
        if self.stopped is not None:
            return EXIT_REJECTED
        if self.interrupted or any(c.failed or (c.pending and not self.dry_run) for c in kinds):
            return EXIT_INCOMPLETE
        if any(c.invalid or c.rejected for c in kinds):
            return EXIT_REJECTED
        return EXIT_OK

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def status(self) -> str:
        """``ok``, ``rejected-rows``, ``incomplete`` or ``dry-run`` (:func:`status_for_exit`)."""
        return status_for_exit(self.exit_code, dry_run=self.dry_run)

    def as_dict(self) -> dict[str, Any]:
        """The counts (what the run record keeps)."""
        out = asdict(self)
        del out["detections"]
        out["rejects_path"] = str(self.rejects_path) if self.rejects_path else None
        out["duplicates_path"] = str(self.duplicates_path) if self.duplicates_path else None
        out["exit_code"] = self.exit_code
        out["status"] = self.status
        out["requests_per_s"] = round(self.requests_per_s, 1)
        return out

    def to_json(self, *, command: str = "import") -> dict[str, Any]:
        """The ``--json`` document (docs/schemas/import.schema.json; ``retry`` too)."""
        doc: dict[str, Any] = {"command": command}
        doc.update(self.as_dict())
        doc["files"] = {"rejects": doc["rejects_path"], "duplicates": doc["duplicates_path"]}
        doc["mapping"] = list(self.detections)
        return doc
