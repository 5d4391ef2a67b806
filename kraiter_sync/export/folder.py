"""A file export's run: checkpoints in staging, then one file per partition put in place.

A run writes its checkpoints (``spill``) into a hidden staging directory beside the
stream's folder, ``<out>/.<stream>.run-<run id>/``, and records each one in the state
document with the positions it was read up to. Nothing is visible in the folder until
the stream was read to its end; then :meth:`FolderSink.finish` builds one file per
partition, journals the swap (new files, and for a full run the manifest's old ones to
delete) together with the new manifest and watermark in one atomic write, and carries it
out (idempotently: a kill half-way is finished by the next run).

Before a run, the output is checked against the state (``output.verify``): a file of
the manifest missing or changed, or part files the manifest does not list, mean the
folder no longer holds what the state says, and the stream is exported again in full
(``ExportResult.reason`` says why). An interrupted run whose checkpoints are gone (the
output directory was deleted) starts again from the last complete export. Incremental
runs add their files; full runs (``--replace``, snapshots, a missing or damaged output)
replace the manifest's files. A window (``--since``/``--until``) is its own folder with
its own state: it never touches the stream's folder.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from kraiter_sync.errors import StateError, UsageError
from kraiter_sync.export.compaction import finish_compaction
from kraiter_sync.export.options import ExportOptions, ExportResult
from kraiter_sync.export.output import (
    Folder,
    LocalFolder,
    refusal,
    replace_files,
    survey,
    verify,
)
from kraiter_sync.export.runner import Start, begin_run
from kraiter_sync.export.spill import build_files, spill_chunk
from kraiter_sync.export.state import ExportState
from kraiter_sync.export.streams import StreamSpec
from kraiter_sync.export.writers import empty_frame
from kraiter_sync.logs import get_logger

__all__ = ["FolderSink", "new_run_id", "replacement_notice"]

log = get_logger("export")


def new_run_id() -> str:
    import secrets

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def _rows(files: dict[str, Any]) -> int:
    return sum(int(entry.get("rows", 0)) for entry in files.values())


def _write_error(what: str, where: Path, exc: BaseException) -> StateError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return StateError(
        f"cannot write the {what} under {where}: {reason}; check the free space and "
        "permissions of --out, then re-run to resume"
    )


def replacement_notice(state: ExportState, folder: Folder) -> str | None:
    """What ``--replace`` will delete, in words (None: nothing)."""
    files = state.load().get("files") or {}
    if not files:
        return None
    return (
        f"--replace exports {folder.label} again in full and then deletes the "
        f"{len(files):,} files ({_rows(files):,} rows) kraiter-sync wrote in {folder.display}"
    )


class FolderSink:
    """Where a file export's rows go (see the module docstring)."""

    def __init__(
        self,
        spec: StreamSpec,
        options: ExportOptions,
        *,
        folder: Folder,
        state: ExportState,
        result: ExportResult,
        window: str | None = None,
    ) -> None:
        self.spec = spec
        self.options = options
        self.folder = folder
        self.state = state
        self.result = result
        self.window = window
        self.data: dict[str, Any] = {}
        self.run: dict[str, Any] = {}

    # ---- recovery and checks -----------------------------------------------------------

    def _recover(self) -> None:
        """Finish a killed run's last steps: recorded renames, swap, compaction."""
        changed = False
        for tmp, final in self.data.get("pending") or []:  # version 2: a chunk's renames
            if Path(tmp).exists():
                Path(tmp).replace(final)
            changed = True
        self.data["pending"] = []
        if self.data.get("swap"):
            self._finish_swap()
            changed = True
        if self.data.get("compact") and isinstance(self.folder, LocalFolder):
            finish_compaction(self.folder, self.data)
            changed = True
        if changed:
            self.state.save()

    def _finish_swap(self) -> int:
        """Put a run's built files in place (journaled in ``swap``); returns deletions."""
        swap = self.data["swap"]
        staging = Path(swap["staging"])
        if "files" not in swap and isinstance(self.folder, LocalFolder):
            # journaled by a version that swapped whole directories
            old = Path(swap["old"])
            if old.exists() and not self.folder.path.exists():
                old.rename(self.folder.path)
            swap = {
                "staging": str(staging),
                "files": survey(LocalFolder(staging, self.folder.label), {}).adopted,
                "remove": [*(self.data.get("files") or {}), *survey(self.folder, {}).adopted],
            }
            self.data["files"] = dict(swap["files"])
        deleted = replace_files(self.folder, staging, swap["files"], swap["remove"])
        self.data["swap"] = None
        return deleted

    def _checkpoints_missing(self, run: dict[str, Any]) -> list[str]:
        staging = Path(run.get("staging") or "")
        missing = []
        for chunk in run.get("chunks") or []:
            path = staging / chunk["name"]
            if not path.is_file() or path.stat().st_size != chunk["bytes"]:
                missing.append(chunk["name"])
        return missing

    def _survey(self) -> str | None:
        """Claim the folder; why its files do not match the manifest (None: they do)."""
        data = self.data
        files = data.setdefault("files", {})
        found = survey(self.folder, files)
        if found.foreign and not data.get("claimed"):
            if not self.options.overwrite:
                raise refusal(self.folder.display, found.foreign)
            log.warning(
                "exporting into %s beside %d file(s) kraiter-sync did not write; they are "
                "left as they are",
                self.folder.display,
                len(found.foreign),
            )
        problem = verify(self.folder, files)
        adopt = data.pop("adopt", False)  # a state from before manifests knows none
        if found.adopted:
            if (files or data.get("watermark")) and problem is None and not adopt:
                problem = (
                    f"{self.folder.display} holds {len(found.adopted)} part file(s) the last "
                    f"export did not write ({', '.join(sorted(found.adopted)[:3])})"
                )
            files.update(found.adopted)  # ours by name: replaced with the rest
        data["claimed"] = True
        return problem

    # ---- the run -----------------------------------------------------------------------

    def _say(self, reason: str) -> None:
        self.result.reason = reason
        log.warning("%s", reason)

    def _resume(self, run: dict[str, Any]) -> None:
        stored = run.get("options") or {}
        if stored and stored != self.options.layout(with_contacts=True):
            log.warning(
                "the interrupted run is finished with the options it started with (%s); "
                "re-run afterwards for the new ones",
                ", ".join(f"{k}={v}" for k, v in stored.items() if k != "contacts"),
            )
            contacts = stored.get("contacts")
            self.options = replace(
                self.options,
                format=stored["format"],
                custom_only=stored["custom_only"],
                flatten_properties=stored["flatten_properties"],
                raw_csv=stored["raw_csv"],
                contacts=tuple(contacts) if contacts is not None else None,
            )
            self.result.format = self.options.format

    def _new_run(self, problem: str | None) -> dict[str, Any]:
        data, opts = self.data, self.options
        full = opts.replacing or not self.spec.incremental
        if problem is not None:
            self._say(f"{problem}: exporting {self.folder.label} again in full")
            data["watermark"] = None
            full = True
        watermark = data.get("watermark")
        if not full and not watermark and data.get("files"):
            self._say(
                f"{self.folder.display} holds an earlier export this state does not know the "
                "end of: exporting everything and replacing its files"
            )
            full = True
        layout = data.get("layout")
        if not full and watermark and layout and layout != opts.layout():
            differs = ", ".join(
                f"{k}={layout.get(k)}" for k, v in opts.layout().items() if layout.get(k) != v
            )
            msg = (
                f"{self.folder.display} was exported with {differs}; appending with other "
                "options would mix layouts: pass --replace to export it again in full, or "
                "choose another --out"
            )
            raise UsageError(msg)
        run_id = new_run_id()
        return {
            "id": run_id,
            "full": full,
            "seq": 0,
            "rows": 0,
            "staging": str(self.folder.staging(f"run-{run_id}")),
            "options": opts.layout(with_contacts=True),
            "watermark": None if full else watermark,
            "driver": None,
            "chunks": [],
        }

    def _clean_strays(self) -> None:
        """Delete work directories no run refers to, and temporary files of old versions."""
        staging = Path(self.run["staging"])
        for other in self.folder.stagings():
            if other != staging:
                shutil.rmtree(other, ignore_errors=True)
        self.folder.clean_temporary()

    def start(self) -> Start:
        self.data = data = self.state.load()
        self._recover()
        self.folder.check()
        problem = self._survey()
        run = data.get("run")
        if run and problem is None:
            missing = self._checkpoints_missing(run)
            if missing:
                self._say(
                    f"the interrupted {self.folder.label} export's checkpoints are gone "
                    f"({len(missing)} of {len(run['chunks'])} under {run['staging']}): it "
                    "starts again from the last complete export"
                )
                run = None
        resumed = bool(run) and problem is None
        run = run if run and problem is None else self._new_run(problem)
        begin_run(
            self.result, self.spec, run, name=self.folder.label, resumed=resumed, window=self.window
        )
        if resumed:
            self._resume(run)
        data.update(stream=self.spec.name, window=self.window, run=run)
        data["out"] = self.folder.out_display
        self.run = run
        self.state.save()
        self._clean_strays()
        Path(run["staging"]).mkdir(parents=True, exist_ok=True)
        return Start(self.options, run.get("watermark"), run.get("driver"))

    def commit(self, frame: pl.DataFrame, watermark: dict[str, Any], driver: Any) -> None:
        run = self.run
        if frame.height:
            name = f"chunk-{run['seq']:05d}.arrow"
            staging = Path(run["staging"])
            try:
                entry = spill_chunk(frame, staging / name, partition=self.spec.partition)
            except (OSError, pl.exceptions.PolarsError, pa.ArrowException) as exc:
                msg = f"{self.spec.name} checkpoint"
                raise _write_error(msg, staging, exc) from None
            run["seq"] += 1
            run["chunks"].append(entry)
        run["rows"] += frame.height
        run["watermark"] = watermark
        run["driver"] = driver
        self.state.save()

    def _publish(self) -> None:
        """Build one file per partition, journal the swap with the manifest, do it."""
        data, run = self.data, self.run
        staging = Path(run["staging"])
        built = staging / "out"
        if built.exists():
            shutil.rmtree(built)
        empty = None
        if run["full"] and self.spec.partition is None:  # a snapshot keeps its schema
            empty = empty_frame(self.spec.schema).to_arrow().schema
        try:
            files = build_files(
                [staging / chunk["name"] for chunk in run["chunks"]],
                built,
                fmt=self.options.format,
                stem=run["id"],
                raw_csv=self.options.raw_csv,
                empty_schema=empty,
            )
        except (OSError, pl.exceptions.PolarsError, pa.ArrowException) as exc:
            msg = f"{self.spec.name} files"
            raise _write_error(msg, built, exc) from None
        old = data.get("files") or {}
        data["swap"] = {
            "staging": str(built),
            "files": files,
            "remove": sorted(old) if run["full"] else [],
        }
        data["files"] = dict(files) if run["full"] else {**old, **files}
        data["watermark"] = run["watermark"] if self.spec.incremental else None
        data["layout"] = self.options.layout()
        data["run"] = None
        data["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.state.save()
        self.result.replaced = self._finish_swap()
        self.state.save()
        shutil.rmtree(staging, ignore_errors=True)
        self.result.files = len(files)
        self.result.files_total = len(data["files"])
        self.result.rows_total = _rows(data["files"])
        self.result.manifest = self.state.label
        self.result.manifest_files = sorted(data["files"])

    def finish(self) -> None:
        self._publish()

    def stop(self) -> None:
        """Out of retries: an incremental run puts what it read in place (its watermark
        says where that ends); a full run keeps its checkpoints for the next one."""
        if not self.run["full"] and self.spec.incremental:
            self._publish()
