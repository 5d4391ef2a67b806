"""What a run report holds: a run record (plus its rejects file) → :class:`RunReport`.

Pure data, no HTML: the header (run id, command, target as host and tenant
fingerprint, never a key; times, status, exit code, arguments), every row's outcome per
kind grouped as the report's chart draws it (sent / skipped / duplicate / rejected /
not sent), the request totals and timeline, and the rejects by rule with a few sample
rows.

Samples come from the run's rejects file, the file the run told the user about, and
only while it still holds what the run recorded (the same count per rule); otherwise
the counts recorded with the run are shown without samples, and a note says why.
Property values under secret-looking keys and card numbers are masked in the samples,
as an HTML report travels further than a rejects file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import polars as pl

from kraiter_sync.state.runs import RunRecord
from kraiter_sync.validate.properties import is_card_number, looks_secret

__all__ = [
    "GROUPS",
    "OUTCOMES",
    "RuleRejects",
    "RunReport",
    "build_report",
    "mask_properties",
    "read_reject_samples",
]

#: (field of the run's per-kind counts, label, group), in the order the table lists them.
OUTCOMES: tuple[tuple[str, str, str], ...] = (
    ("sent", "sent", "sent"),
    ("verified", "verified already in Kraiter", "sent"),
    ("unchanged", "unchanged", "skipped"),
    ("already", "already imported", "skipped"),
    ("previously_rejected", "previously rejected", "skipped"),
    ("duplicates", "duplicates", "duplicate"),
    ("invalid", "invalid", "rejected"),
    ("rejected", "rejected by Kraiter", "rejected"),
    ("failed", "failed", "not sent"),
    ("pending", "not sent", "not sent"),
)
#: The chart's groups, in drawing order.
GROUPS = ("sent", "skipped", "duplicate", "rejected", "not sent")
KINDS = ("contacts", "events")
#: Columns of a rejects file shown in samples (others are left out).
SAMPLE_COLUMNS = (
    "source_file",
    "source_row",
    "field",
    "message",
    "email",
    "contact_id",
    "name",
    "timestamp",
    "properties",
)
_MAX_CHARS = 160
_MASK = "***"


@dataclass(frozen=True)
class RuleRejects:
    """Rejected rows of one rule: how many, at which stage, and a few of them."""

    rule: str
    count: int
    #: ``invalid`` (caught before sending) or ``rejected`` (refused by Kraiter).
    stage: str
    samples: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class RunReport:
    """Everything one run's report shows (see the module docstring)."""

    run_id: int
    command: str
    status: str
    host: str
    tenant: str
    started_at: float
    finished_at: float | None
    exit_code: int | None
    args: dict[str, Any]
    #: kind → outcome field → rows, for runs that count rows per kind (import, retry, sync).
    kinds: dict[str, dict[str, int]]
    #: Other numeric counts (reconcile, restore), name → value.
    other_counts: dict[str, float]
    #: requests, rate_limited, retries as the run counted them (None: not counted).
    requests: int | None
    rate_limited: int | None
    retries: int | None
    duration_s: float | None
    dry_run: bool
    timeline: dict[str, Any] | None
    rejects: list[RuleRejects]
    rejects_file: str | None
    #: Why samples (or recorded counts) are missing, if they are.
    rejects_note: str | None

    def group_totals(self) -> dict[str, dict[str, int]]:
        """kind → group → rows (the chart's links), groups with no rows left out."""
        out: dict[str, dict[str, int]] = {}
        for kind, counts in self.kinds.items():
            groups: dict[str, int] = {}
            for name, _label, group in OUTCOMES:
                if counts.get(name):
                    groups[group] = groups.get(group, 0) + counts[name]
            out[kind] = groups
        return out


def _split_target(target: str) -> tuple[str, str]:
    """(host, tenant) of a run's target: ``base URL#tenant`` (a fingerprint or a name)."""
    base, _, tenant = target.rpartition("#")
    if not base:
        base, tenant = target, ""
    if base.startswith("local:"):
        return f"local Kraiter ({base.removeprefix('local:')})", tenant
    return urlsplit(base).netloc or base, tenant


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _kinds(counts: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    kinds: dict[str, dict[str, int]] = {}
    for kind in KINDS:
        raw = counts.get(kind)
        if isinstance(raw, Mapping) and _int(raw.get("read")):
            kinds[kind] = {"read": int(raw["read"])} | {
                name: _int(raw.get(name)) or 0 for name, _label, _group in OUTCOMES
            }
    return kinds


def _other_counts(counts: Mapping[str, Any]) -> dict[str, float]:
    skip = {"run_id", "exit_code", "duration_s", "requests_per_s", "requests", "rate_limited"}
    skip |= {"retries", *KINDS}
    return {
        name: float(value)
        for name, value in counts.items()
        if name not in skip and isinstance(value, int | float) and not isinstance(value, bool)
    }


# -- rejects ---------------------------------------------------------------------------


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _MASK if looks_secret(str(k)) else _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if isinstance(value, str | int) and not isinstance(value, bool):
        text = str(value)
        if is_card_number(text):
            return f"{_MASK}{text[-4:]}"
    return value


def mask_properties(text: str) -> str:
    """A properties JSON object with values under secret-looking keys and card numbers
    masked; text that is not a JSON object is returned as is."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if not isinstance(value, dict):
        return text
    return json.dumps(_mask(value), ensure_ascii=False, separators=(",", ":"))


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_CHARS else text[: _MAX_CHARS - 1] + "…"


def _scan(path: Path) -> pl.LazyFrame:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pl.scan_parquet(path)
    if suffix in (".ndjson", ".jsonl"):
        return pl.scan_ndjson(path, infer_schema_length=None)
    return pl.scan_csv(path, infer_schema=False)


def read_reject_samples(
    path: Path, *, per_rule: int = 3
) -> tuple[dict[str, int], dict[str, str], dict[str, list[dict[str, str]]]]:
    """From a rejects file: rows per rule, the stage of each rule, and the first
    ``per_rule`` rows of each (as shown: strings, shortened, properties masked).

    Raises ``OSError`` or a polars error when the file cannot be read.
    """
    lazy = _scan(path)
    columns = lazy.collect_schema().names()
    if "rule" not in columns:
        return {}, {}, {}
    rule = pl.col("rule").cast(pl.String).fill_null("")
    stage = pl.col("stage").cast(pl.String) if "stage" in columns else pl.lit("")
    summary = (
        lazy.select(rule.alias("rule"), stage.alias("stage"))
        .group_by("rule")
        .agg(pl.len().alias("n"), pl.col("stage").first())
        .collect(engine="streaming")
    )
    counts = {str(r): int(n) for r, n in summary.select("rule", "n").iter_rows()}
    stages = {str(r): str(s or "") for r, s in summary.select("rule", "stage").iter_rows()}
    shown = [c for c in SAMPLE_COLUMNS if c in columns]
    samples: dict[str, list[dict[str, str]]] = {}
    for name in counts:  # a few dozen rules at most; each read stops after per_rule rows
        head = (
            lazy.filter(rule == name)
            .head(per_rule)
            .select([pl.col(c).cast(pl.String) for c in shown])
            .collect(engine="streaming")
        )
        samples[name] = [
            {
                column: _shorten(mask_properties(value) if column == "properties" else value)
                for column, value in row.items()
                if value is not None
            }
            for row in head.iter_rows(named=True)
        ]
    return counts, stages, samples


def _stage_of(rule: str) -> str:
    return "rejected" if rule.startswith("api.") else "invalid"


def _rejects(
    record: RunRecord, details: Mapping[str, Any], per_rule: int
) -> tuple[list[RuleRejects], str | None, str | None]:
    """(rejects by rule, the rejects file, a note when samples or counts are missing)."""
    info = details.get("rejects") if isinstance(details.get("rejects"), Mapping) else {}
    recorded = info.get("by_rule") if isinstance(info, Mapping) else None
    name = (info.get("file") if isinstance(info, Mapping) else None) or record.counts.get(
        "rejects_path"
    )
    path = Path(name) if isinstance(name, str) and name else None
    note: str | None = None
    found: tuple[dict[str, int], dict[str, str], dict[str, list[dict[str, str]]]] | None = None
    if path is not None:
        try:
            found = read_reject_samples(path, per_rule=per_rule)
        except (OSError, pl.exceptions.PolarsError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            note = f"the rejects file cannot be read ({reason}): no sample rows"
    if isinstance(recorded, Mapping):
        counts = {str(rule): int(n) for rule, n in recorded.items() if int(n)}
        if found is not None and found[0] != counts:
            note = (
                f"the rejects file now holds {sum(found[0].values()):,} rows, not the "
                f"{sum(counts.values()):,} this run wrote (another run wrote to it since): "
                "no sample rows"
            )
            found = None
    elif found is not None:
        counts = found[0]
        note = "counted from the rejects file (this run recorded no counts by rule)"
    else:
        counts = {}
        if path is None and not note:
            note = "this run recorded no rejects by rule"
    stages = found[1] if found is not None else {}
    samples = found[2] if found is not None else {}
    rows = [
        RuleRejects(rule, n, stages.get(rule) or _stage_of(rule), samples.get(rule, []))
        for rule, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]
    return rows, None if path is None else str(path), note


def build_report(record: RunRecord, *, samples_per_rule: int = 3) -> RunReport:
    """The report of one run (a record from :meth:`Ledger.get_run`, with its details)."""
    counts = record.counts
    details = record.details or {}
    host, tenant = _split_target(record.target)
    rejects, rejects_file, note = _rejects(record, details, samples_per_rule)
    timeline = details.get("timeline")
    duration = counts.get("duration_s")
    return RunReport(
        run_id=record.id,
        command=record.command,
        status=record.status,
        host=host,
        tenant=tenant,
        started_at=record.started_at,
        finished_at=record.finished_at,
        exit_code=_int(counts.get("exit_code")),
        args=dict(record.args),
        kinds=_kinds(counts),
        other_counts=_other_counts(counts),
        requests=_int(counts.get("requests")),
        rate_limited=_int(counts.get("rate_limited")),
        retries=_int(counts.get("retries")),
        duration_s=float(duration) if isinstance(duration, int | float) else None,
        dry_run=bool(counts.get("dry_run")),
        timeline=dict(timeline)
        if isinstance(timeline, Mapping) and timeline.get("series")
        else None,
        rejects=rejects,
        rejects_file=rejects_file,
        rejects_note=note,
    )
