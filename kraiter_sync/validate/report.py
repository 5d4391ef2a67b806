"""What validation reports: one chunk's :class:`ValidationResult` (valid rows, rejects,
duplicates) and the :class:`ValidationReport` of counts and warnings, merged over an
input's chunks by :class:`ReportAccumulator`. The validator itself is ``engine``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from kraiter_sync.frames import Kind
from kraiter_sync.validate.names import name_variants

__all__ = [
    "DUPLICATE_SCHEMA",
    "MAX_NAMES",
    "ReportAccumulator",
    "ValidationReport",
    "ValidationResult",
]

MAX_NAMES = 10_000  # distinct names remembered for the case/separator warning


@dataclass
class ValidationReport:
    """Counts per outcome and per rule, what was detected, and warnings. JSON-ready."""

    kind: Kind
    rows_read: int = 0
    valid: int = 0
    duplicates: int = 0
    rejected: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)
    timestamp_formats: dict[str, int] = field(default_factory=dict)
    naive_timestamps: int = 0
    timezone_assumed: str | None = None
    names: set[str] = field(default_factory=set, repr=False)
    warnings: list[str] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        """The accounting invariant: every row read is valid, a duplicate or rejected."""
        return self.valid + self.duplicates + self.rejected == self.rows_read

    def name_variant_groups(self) -> list[list[str]]:
        return name_variants(self.names)

    def all_warnings(self) -> list[str]:
        out = list(self.warnings)
        for group in self.name_variant_groups():
            out.append(
                "event names differ only by case or separator (Kraiter treats them as "
                f"different events): {', '.join(group)}"
            )
        if self.naive_timestamps:
            out.append(
                f"{self.naive_timestamps} timestamps had no offset and were read as "
                f"{self.timezone_assumed} (set --timezone if that is wrong)"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "rows_read": self.rows_read,
            "valid": self.valid,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "by_rule": dict(sorted(self.by_rule.items())),
            "timestamp_formats": dict(sorted(self.timestamp_formats.items())),
            "naive_timestamps": self.naive_timestamps,
            "timezone_assumed": self.timezone_assumed,
            "warnings": self.all_warnings(),
        }


@dataclass
class ValidationResult:
    """One chunk's outcome: rows to send, rejected rows, and its report."""

    valid: pl.DataFrame
    rejects: pl.DataFrame
    report: ValidationReport
    #: The rows dropped or merged as duplicates, and the row each went into
    #: (:data:`DUPLICATE_SCHEMA`); None: none.
    duplicates: pl.DataFrame | None = None


#: The duplicates file's columns: the row that was dropped (events) or merged (contacts)
#: and the row it went into (null: a row of an earlier chunk of the input).
DUPLICATE_SCHEMA = {
    "kind": pl.String,
    "key": pl.String,
    "source_file": pl.String,
    "source_row": pl.Int64,
    "kept_file": pl.String,
    "kept_row": pl.Int64,
}


class ReportAccumulator:
    """Merges per-chunk reports into one report for the whole input."""

    def __init__(self, kind: Kind) -> None:
        self.report = ValidationReport(kind=kind)

    def add(self, part: ValidationReport) -> ValidationReport:
        r = self.report
        r.rows_read += part.rows_read
        r.valid += part.valid
        r.duplicates += part.duplicates
        r.rejected += part.rejected
        for src, dst in (
            (part.by_rule, r.by_rule),
            (part.timestamp_formats, r.timestamp_formats),
        ):
            for k, v in src.items():
                dst[k] = dst.get(k, 0) + v
        r.naive_timestamps += part.naive_timestamps
        r.timezone_assumed = r.timezone_assumed or part.timezone_assumed
        if len(r.names) < MAX_NAMES:
            r.names |= part.names
        r.warnings.extend(w for w in part.warnings if w not in r.warnings)
        return r
