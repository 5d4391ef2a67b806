"""The source-row cache of a sync job: hashes of the rows it last pushed completely."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from kraiter_sync.config.file import JobConfig
from kraiter_sync.errors import StateError
from kraiter_sync.logs import get_logger
from kraiter_sync.state.local import StateFiles
from kraiter_sync.state.store import Blobs

__all__ = ["FILES_KEY", "KnownRows", "RowCache", "row_slots"]

log = get_logger("sync")


#: Parquet key-value metadata of a row cache: ``[[file, slots], ...]`` in slot order.
FILES_KEY = "kraiter-sync.files"


class KnownRows:
    """Last complete run's row hashes: by position (per source file, slot = row - 1, null
    where no row was kept) and, built only if needed, as one sorted set."""

    def __init__(self, slots: pl.Series, files: Sequence[tuple[str, int]]) -> None:
        """From every file's slots, one file after the other (see :func:`row_slots`)."""
        self._slots = slots
        self.rows = slots.len() - slots.null_count()
        self._ordered: pl.Series | None = None
        self.by_file: dict[str, pl.Series] = {}
        offset = 0
        for name, length in files:
            self.by_file[name] = slots.slice(offset, length)
            offset += length

    @classmethod
    def from_rows(cls, frame: pl.DataFrame) -> KnownRows:
        """From (source_file, source_row, h) rows, in any order."""
        return cls(*row_slots(frame))

    @property
    def ordered(self) -> pl.Series:
        if self._ordered is None:
            self._ordered = self._slots.drop_nulls().unique().sort()
        return self._ordered


def row_slots(frame: pl.DataFrame) -> tuple[pl.Series, list[tuple[str, int]]]:
    """(source_file, source_row, h) rows → every file's hashes by position (slot
    ``row - 1``, null for a row not kept), one file after the other, and (file, slots)
    pairs: the row cache's layout, read back without rebuilding anything."""
    if not frame.height:
        return pl.Series("h", [], dtype=pl.UInt64), []
    ordered = frame.sort("source_file", "source_row", maintain_order=True)
    single = ordered["source_file"].n_unique() == 1
    parts = [ordered] if single else ordered.partition_by("source_file", maintain_order=True)
    slots: list[pl.Series] = []
    files: list[tuple[str, int]] = []
    for part in parts:
        rows = part["source_row"]
        hashes = part["h"].cast(pl.UInt64)
        if rows[0] != 1 or rows[-1] != part.height:  # gaps: rows not kept last time
            hashes = (
                pl.Series("h", [None], dtype=pl.UInt64)
                .extend_constant(None, int(rows[-1]) - 1)
                .scatter(rows - 1, hashes)
            )
        slots.append(hashes.alias("h"))
        files.append((str(part["source_file"][0]), hashes.len()))
    return pl.concat(slots, rechunk=True), files


class RowCache:
    """Hashes of the source rows a job last pushed completely, in one Parquet file per
    (job, target, configuration): a blob of the state store, named
    ``sync/<job>.rows.<target digest>-<configuration digest>.parquet`` (a file under
    ``<state-dir>/sync/``, or a row of the PostgreSQL store).

    Why a second cache in front of the import engine's per-email one: that one is
    checked *after* validation, and validating a million unchanged rows every night
    costs far more than reading them. Source rows equal to last run's are dropped
    while streaming, so only new or changed rows reach validation. It is only an
    accelerator: the hash (polars ``hash_rows``) is not promised stable across polars
    versions, so the version is part of the file's fingerprint, and a lost or stale
    file just means one slower night in which the engine's own cache still sends
    nothing unchanged. Any change to the job's source, query, mapping or options
    starts a new one.

    Layout (read every night, so made cheap to load): one uncompressed ``h`` column of
    every file's slots (:func:`row_slots`), the files and their slot counts in the
    Parquet metadata. Saving a new one drops the caches of this job and target's older
    configurations (and those named before the target digest was in the name).
    """

    def __init__(self, state: Blobs | Path, job: JobConfig, target: str) -> None:
        """``state``: the state store (or a state directory: its files)."""
        identity = json.dumps(
            {
                "target": target,
                "source": list(job.source),
                "query": job.query,
                "kind": job.kind,
                "connector": job.connector,
                "map": dict(job.mapping),
                # (only when set: fingerprints of jobs without types stay as they were)
                **({"types": dict(job.types)} if job.types else {}),
                "timezone": job.timezone,
                "encoding": job.encoding,
                "polars": pl.__version__,
                "format": 3,
            },
            sort_keys=True,
        )
        digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
        owner = hashlib.sha256(target.encode()).hexdigest()[:8]
        self.store: Blobs = StateFiles(state) if isinstance(state, Path) else state
        self.legacy = f"sync/{job.name}.rows."
        self.prefix = f"{self.legacy}{owner}-"
        self.name = f"{self.prefix}{digest}.parquet"
        self.label = self.store.blob_label(self.name)

    def load(self) -> KnownRows | None:
        try:
            data = self.store.read_blob(self.name)
            if data is None:
                return None
            meta = pl.read_parquet_metadata(io.BytesIO(data))
            files = [(str(name), int(n)) for name, n in json.loads(meta[FILES_KEY])]
            slots = pl.read_parquet(io.BytesIO(data), columns=["h"])["h"]
        except (
            OSError,
            KeyError,
            TypeError,
            ValueError,
            StateError,
            pl.exceptions.PolarsError,
        ) as exc:
            log.warning("ignoring the unreadable row cache %s (%s)", self.label, exc)
            return None  # damaged: rebuilt tonight
        if sum(n for _name, n in files) != slots.len():
            log.warning("ignoring the row cache %s: its layout does not add up", self.label)
            return None
        known = KnownRows(slots, files)
        return known if known.rows else None

    def save(self, rows: pl.DataFrame) -> None:
        """Atomically replace the cache with (source_file, source_row, h) rows, and
        drop the caches of older configurations."""
        slots, files = row_slots(rows)
        # Uncompressed: the hashes are random bits that no codec shrinks, and the file is
        # read every night, where decompressing a million rows costs more than the I/O.
        buffer = io.BytesIO()
        pl.DataFrame({"h": slots}).write_parquet(
            buffer,
            compression="uncompressed",
            statistics=False,
            metadata={FILES_KEY: json.dumps(files)},
        )
        self.store.write_blob(self.name, buffer.getvalue())
        self.store.delete_blobs(self.prefix, keep=self.name)
        for old in self.store.list_blobs(self.legacy):
            if "-" not in old.removeprefix(self.legacy):  # named before the target digest
                self.store.delete_blobs(old)
