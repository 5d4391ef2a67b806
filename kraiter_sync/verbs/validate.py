"""The ``validate`` verb: read, map and validate inputs; write the rejects file and a
JSON report; send nothing."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kraiter_sync.errors import EXIT_OK, EXIT_REJECTED, StateError, os_reason, status_for_exit
from kraiter_sync.files import atomic_write
from kraiter_sync.frames import Kind
from kraiter_sync.inputs import Input, InputOptions, KindValidation, prepare_inputs
from kraiter_sync.state.rejects import (
    DuplicatesWriter,
    RejectsWriter,
    duplicates_path,
    reuse_identical,
)
from kraiter_sync.validate import ValidationReport

__all__ = ["ValidateResult", "validate_inputs", "write_report"]


@dataclass
class ValidateResult:
    """What ``validate`` found: one report per kind present, and where the rejects are."""

    reports: list[ValidationReport]
    detections: list[str]
    rejects_path: Path | None
    #: Why the input would be refused (``max_reject_ratio``), else None.
    stopped: str | None = None
    #: The rows dropped or merged as duplicates, with the row each went into (None:
    #: none, or no rejects file).
    duplicates_path: Path | None = None

    @property
    def rows_read(self) -> int:
        return sum(r.rows_read for r in self.reports)

    @property
    def rejected(self) -> int:
        return sum(r.rejected for r in self.reports)

    @property
    def exit_code(self) -> int:
        return EXIT_REJECTED if self.rejected else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document (docs/schemas/validate.schema.json)."""
        return {
            "command": "validate",
            "status": status_for_exit(self.exit_code),
            "exit_code": self.exit_code,
            "run_id": None,
            "rows_read": self.rows_read,
            "valid": sum(r.valid for r in self.reports),
            "duplicates": sum(r.duplicates for r in self.reports),
            "rejected": self.rejected,
            "stopped": self.stopped,
            "kinds": {r.kind: r.to_dict() for r in self.reports},
            "mapping": list(self.detections),
            "files": {
                "rejects": str(self.rejects_path) if self.rejects_path else None,
                "duplicates": str(self.duplicates_path) if self.duplicates_path else None,
            },
        }


def validate_inputs(
    paths: Sequence[str | Path | Input],
    *,
    options: InputOptions | None = None,
    rejects_path: Path | None = None,
    report_path: Path | None = None,
    on_progress: Callable[[int], None] | None = None,
    reuse_rejects: str | None = None,
) -> ValidateResult:
    """The library form of ``kraiter-sync validate``: nothing is sent anywhere.

    ``paths`` may hold :class:`~kraiter_sync.inputs.Input` items (an input with its own
    mapping); ``on_progress`` gets the rows validated so far. ``reuse_rejects``: a glob
    of earlier rejects files beside ``rejects_path``; one with the same content is used
    instead of keeping a copy (the default file of ``kraiter-sync validate``)."""
    options = options or InputOptions()
    with contextlib.ExitStack() as stack:
        inputs = prepare_inputs(paths, options, stack=stack)
        writer = stack.enter_context(RejectsWriter(rejects_path)) if rejects_path else None
        dups = (
            stack.enter_context(DuplicatesWriter(duplicates_path(rejects_path)))
            if rejects_path
            else None
        )
        detections = [f"{inp.label}: {line}" for inp in inputs for line in inp.detection.lines()]
        reports = []
        kinds: tuple[Kind, ...] = ("contacts", "events")
        for kind in kinds:
            if not any(i.kind == kind for i in inputs):
                continue
            run = KindValidation(
                kind,
                inputs,
                options,
                on_rejects=writer.write if writer else None,
                on_progress=on_progress,
                on_duplicates=dups.write if dups else None,
            )
            for _valid in run.run():
                pass
            reports.append(run.report)
    if report_path is not None:
        try:
            write_report(reports, report_path)
        except OSError as exc:
            msg = (
                f"cannot write the report {report_path}: {os_reason(exc)}; pass --report "
                "PATH somewhere writable (the rejects file is complete)"
            )
            raise StateError(msg) from exc
    listed = dups.written if dups is not None else None
    if writer is not None and reuse_rejects is not None:
        rejects_path = reuse_identical(writer.path, reuse_rejects)
        if listed is not None:
            listed = reuse_identical(listed, reuse_rejects.replace(".csv", ".duplicates.csv"))
    result = ValidateResult(reports, detections, rejects_path if writer else None)
    result.duplicates_path = listed
    result.stopped = options.reject_ratio_exceeded(
        result.rows_read, sum(r.rejected for r in reports)
    )
    return result


def write_report(reports: Sequence[ValidationReport], path: str | Path) -> Path:
    """The report as JSON (atomic): one kind's report, or ``{kind: report}`` for both."""
    doc = reports[0].to_dict() if len(reports) == 1 else {r.kind: r.to_dict() for r in reports}
    return atomic_write(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
