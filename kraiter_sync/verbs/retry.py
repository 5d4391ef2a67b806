"""The ``retry`` verb: re-send the rows Kraiter refused (stage ``rejected``), once their
cause is fixed, through the import of the same run context."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import polars as pl

from kraiter_sync.config import Settings
from kraiter_sync.errors import InputError
from kraiter_sync.sources.objectstore import is_object_url, parse_url, read_object
from kraiter_sync.state.rejects import read_rejects
from kraiter_sync.upload.context import ClientFactory, locked_state
from kraiter_sync.verbs.importer import ImportOptions, ImportResult, Snapshot, import_locked

__all__ = ["retry_"]


def retry_(
    rejects_file: str | Path,
    *,
    settings: Settings,
    options: ImportOptions | None = None,
    client_factory: ClientFactory | None = None,
    on_progress: Callable[[Snapshot], None] | None = None,
) -> ImportResult:
    """Re-send the rows Kraiter refused (stage ``rejected``) after their cause was fixed.

    Rows the validator caught (stage ``invalid``) are not re-sent: fix them in the
    source and import again. Keys the ledger holds as rejected are sent again; keys
    already done are still skipped, so running ``retry`` twice sends nothing twice.
    """
    options = dataclasses.replace(options or ImportOptions(), resend_rejected=True)
    label = str(rejects_file)
    if is_object_url(label):  # a rejects file kept in a bucket: small, read whole
        data = read_object(label, options.input.storage)
        path = Path(parse_url(label).key)
        frame = read_rejects(path, data).filter(pl.col("stage") == "rejected")
    else:
        path = Path(rejects_file)
        frame = read_rejects(path).filter(pl.col("stage") == "rejected")
    work = settings.state_dir / "retry"
    work.mkdir(parents=True, exist_ok=True)
    renamed = frame.rename(
        {"source_file": "original_file", "source_row": "original_row"}, strict=False
    )
    results: list[ImportResult] = []
    with locked_state(settings) as store:
        for kind, subset in (
            ("contacts", renamed.filter(pl.col("name").is_null())),
            ("events", renamed.filter(pl.col("name").is_not_null())),
        ):
            if not subset.height:
                continue
            part = work / f"{path.stem}-{kind}.parquet"
            subset.write_parquet(part)
            kind_options = dataclasses.replace(
                options,
                input=dataclasses.replace(
                    options.input,
                    kind=kind,  # type: ignore[arg-type]
                    connector=f"kraiter_rejects_{kind}",
                ),
            )
            results.append(
                import_locked(
                    store,
                    [part],
                    settings=settings,
                    options=kind_options,
                    client_factory=client_factory,
                    on_progress=on_progress,
                    args={"retry": label, "kind": kind},
                    command="retry",
                )
            )
            part.unlink(missing_ok=True)
    if not results:
        msg = f"{label} holds no rows that Kraiter rejected (stage 'rejected'): nothing to retry"
        raise InputError(msg)
    merged = results[-1]
    for other in results[:-1]:
        merged.contacts = other.contacts if other.contacts.read else merged.contacts
        merged.requests += other.requests
        merged.retries += other.retries
        merged.rate_limited += other.rate_limited
        merged.duration_s += other.duration_s
        merged.interrupted = merged.interrupted or other.interrupted
    return merged
