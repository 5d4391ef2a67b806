"""All text the CLI prints: summaries, plans, tables. The library returns data; this
module turns it into lines."""

from __future__ import annotations

from kraiter_sync.validate import ValidationReport

__all__ = ["validation_summary"]


def validation_summary(report: ValidationReport) -> str:
    """A short human summary of one kind's validation."""
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
