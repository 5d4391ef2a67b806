"""The ``validate`` verb: a whole input (as mapped chunks) → rejects file + report + exit code.

The CLI command ``kraiter-sync validate`` is a thin layer over :func:`validate` (it reads
and maps the files with ``sources``/``connectors`` and renders :func:`summary`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from kraiter_sync.errors import EXIT_OK, EXIT_REJECTED
from kraiter_sync.state.rejects import RejectsWriter
from kraiter_sync.validate.engine import ChunkedValidation, Kind, ValidationReport
from kraiter_sync.validate.options import ValidationOptions

__all__ = ["exit_code", "summary", "validate", "write_report"]


def validate(
    chunks: Iterable[pl.DataFrame],
    *,
    kind: Kind,
    options: ValidationOptions | None = None,
    rejects_path: str | Path | None = None,
    report_path: str | Path | None = None,
) -> ValidationReport:
    """Validate every mapped chunk of one input; write rejects (and a JSON report) if asked.

    Valid rows are counted, not kept: memory stays at one chunk plus the seen event keys
    (contacts are merged across the whole input, so their valid rows are held).
    """
    run = ChunkedValidation(kind=kind, options=options)
    writer = RejectsWriter(rejects_path) if rejects_path is not None else None
    try:
        if writer is not None:
            run.on_rejects = writer.write
        for _valid in run.run(chunks):
            pass
    finally:
        if writer is not None:
            writer.close()
    if report_path is not None:
        write_report(run.report, report_path)
    return run.report


def write_report(report: ValidationReport, path: str | Path) -> None:
    """The report as JSON (atomic: written beside, then renamed)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
    tmp.replace(target)


def exit_code(report: ValidationReport) -> int:
    """0 when nothing was rejected, 3 when rows were rejected (design.md §8)."""
    return EXIT_REJECTED if report.rejected else EXIT_OK


def summary(report: ValidationReport) -> str:
    """A short human summary for stderr."""
    lines = [
        f"{report.rows_read:,} {report.kind} rows read: {report.valid:,} valid, "
        f"{report.duplicates:,} duplicates, {report.rejected:,} rejected"
    ]
    for rule, count in sorted(report.by_rule.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"  {count:>10,}  {rule}")
    if report.timestamp_formats:
        found = ", ".join(f"{k} ({v:,})" for k, v in sorted(report.timestamp_formats.items()))
        lines.append(f"timestamps: {found}")
    lines.extend(f"warning: {w}" for w in report.all_warnings())
    return "\n".join(lines)
