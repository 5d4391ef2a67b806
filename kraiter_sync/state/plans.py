"""Saving and loading reconcile plans: JSON or Parquet, chosen by the file extension.

A plan file holds every row of :data:`~kraiter_sync.frames.PLAN_SCHEMA` and the
plan-level facts (:meth:`ContactPlan.meta`). JSON is one document
``{"meta": {...}, "rows": [...]}`` with ``changes`` as a nested object, easy to read and
review; Parquet keeps the rows as a table and the facts in the file's key-value
metadata (key ``kraiter_sync.plan``), for big plans and for analysis in SQL.

Files are written atomically (beside, then renamed): a half-written plan can never be
applied.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from kraiter_sync.errors import InputError
from kraiter_sync.files import atomic_write
from kraiter_sync.frames import PLAN_SCHEMA

__all__ = ["PLAN_FORMAT", "PlanFile", "read_plan_file", "write_plan_file"]

PLAN_FORMAT = "kraiter-sync.plan"
_META_KEY = "kraiter_sync.plan"
_SUFFIXES = (".json", ".parquet")

#: A saved plan: its facts (``ContactPlan.meta()``) and its rows.
PlanFile = tuple[dict[str, Any], pl.DataFrame]


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        msg = f"plan file {path} must end in .json or .parquet (the extension picks the format)"
        raise InputError(msg)
    return suffix


def write_plan_file(rows: pl.DataFrame, meta: dict[str, Any], path: str | Path) -> Path:
    """Write a plan's rows and facts to ``path`` (.json or .parquet); returns the path."""
    target = Path(path)
    suffix = _suffix(target)
    if suffix == ".parquet":
        metadata = {_META_KEY: json.dumps(meta)}
        atomic_write(target, lambda tmp: rows.write_parquet(tmp, metadata=metadata))
    else:
        records = []
        for row in rows.iter_rows(named=True):
            if row["changes"] is not None:
                row["changes"] = json.loads(row["changes"])
            if row["properties"] is not None:
                row["properties"] = json.loads(row["properties"])
            records.append({k: v for k, v in row.items() if v is not None})
        doc = json.dumps({"meta": meta, "rows": records}, ensure_ascii=False, indent=1)
        atomic_write(target, doc + "\n")
    return target


def _checked(meta: dict[str, Any], rows: pl.DataFrame, path: Path) -> PlanFile:
    if meta.get("format") != PLAN_FORMAT or meta.get("kind") != "contacts":
        msg = f"{path} is not a kraiter-sync contacts plan (write one with reconcile --plan-out)"
        raise InputError(msg)
    if meta.get("version") != 1:
        msg = f"{path} is a plan of version {meta.get('version')}; this kraiter-sync reads 1"
        raise InputError(msg)
    return meta, rows


def _dump(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _load_parquet(source: Path) -> PlanFile:
    raw_meta = pl.read_parquet_metadata(source).get(_META_KEY)
    if raw_meta is None:
        msg = f"{source} has no kraiter-sync plan metadata (write it with --plan-out)"
        raise InputError(msg)
    rows = pl.read_parquet(source).select(list(PLAN_SCHEMA)).cast(PLAN_SCHEMA)  # type: ignore[arg-type]
    return _checked(json.loads(raw_meta), rows, source)


def _load_json(source: Path) -> PlanFile:
    doc = json.loads(source.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        msg = f"{source} is not a kraiter-sync plan (no rows)"
        raise InputError(msg)
    records = [
        {
            **{k: row.get(k) for k in PLAN_SCHEMA},
            "changes": _dump(row.get("changes")),
            "properties": _dump(row.get("properties")),
        }
        for row in doc["rows"]
    ]
    frame = pl.DataFrame(records, schema=PLAN_SCHEMA)
    return _checked(doc.get("meta") or {}, frame, source)


def read_plan_file(path: str | Path) -> PlanFile:
    """(facts, rows) of a plan written by :func:`write_plan_file`; InputError when it is
    not one."""
    source = Path(path)
    suffix = _suffix(source)
    if not source.is_file():
        msg = f"plan file {source} does not exist"
        raise InputError(msg)
    try:
        return _load_parquet(source) if suffix == ".parquet" else _load_json(source)
    except InputError:
        raise
    except (ValueError, OSError, pl.exceptions.PolarsError) as exc:
        msg = f"cannot read plan file {source}: {exc}"
        raise InputError(msg) from None
