"""The ``validate`` verb: read, map and validate inputs; write the rejects file and a
JSON report; send nothing."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kraiter_sync.errors import EXIT_OK, EXIT_REJECTED, StateError, os_reason
from kraiter_sync.files import atomic_write
from kraiter_sync.frames import Kind
from kraiter_sync.inputs import InputOptions, KindValidation, prepare_inputs
from kraiter_sync.state.rejects import RejectsWriter
from kraiter_sync.validate import ValidationReport

__all__ = ["ValidateResult", "validate_inputs", "write_report"]


@dataclass
class ValidateResult:
    """What ``validate`` found: one report per kind present, and where the rejects are."""

    reports: list[ValidationReport]
    detections: list[str]
    rejects_path: Path | None

    @property
    def rejected(self) -> int:
        return sum(r.rejected for r in self.reports)

    @property
    def exit_code(self) -> int:
        return EXIT_REJECTED if self.rejected else EXIT_OK


def validate_inputs(
    paths: Sequence[str | Path],
    *,
    options: InputOptions | None = None,
    rejects_path: Path | None = None,
    report_path: Path | None = None,
) -> ValidateResult:
    """The library form of ``kraiter-sync validate``: nothing is sent anywhere."""
    options = options or InputOptions()
    with contextlib.ExitStack() as stack:
        inputs = prepare_inputs(paths, options, stack=stack)
        writer = stack.enter_context(RejectsWriter(rejects_path)) if rejects_path else None
        detections = [f"{inp.label}: {line}" for inp in inputs for line in inp.detection.lines()]
        reports = []
        kinds: tuple[Kind, ...] = ("contacts", "events")
        for kind in kinds:
            if not any(i.kind == kind for i in inputs):
                continue
            run = KindValidation(kind, inputs, options, on_rejects=writer.write if writer else None)
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
    return ValidateResult(reports, detections, rejects_path if writer else None)


def write_report(reports: Sequence[ValidationReport], path: str | Path) -> Path:
    """The report as JSON (atomic): one kind's report, or ``{kind: report}`` for both."""
    doc = reports[0].to_dict() if len(reports) == 1 else {r.kind: r.to_dict() for r in reports}
    return atomic_write(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
