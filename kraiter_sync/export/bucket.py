"""A stream's folder in object storage (``--out s3://…``, ``gs://``, ``az://``, ``abfss://``).

:class:`BucketFolder` is an ``output.Folder`` over a bucket prefix: the export builds
its files locally exactly as for a local ``--out`` (checkpoints and finished files in a
work directory under the state directory, ``<state dir>/export-work/<digest>/``), and
:meth:`BucketFolder.put` uploads each finished file whole (one PUT, or a multipart
upload that only becomes visible when completed), so a reader listing the prefix never
sees a partial object. The manifest (in the state document) is journaled before the
puts and the puts are idempotent, as on local disk, so a kill half-way is finished by
the next run; the checks before a run (``output.verify``: every manifest file exists
with its size) list the prefix.

Credentials come only from each cloud's standard chain (``sources.objectstore``); the
URL shown and stored never carries a query string (one is refused).

Why ``export`` imports ``sources.objectstore``: the layers put ``export`` above
``sources`` (pyproject's import-linter contract), so the one ``Bucket`` (settings,
credentials, error translation) serves both reading and writing; nothing moved.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from kraiter_sync.config.storage import StorageOptions
from kraiter_sync.errors import InputError, StateError, UsageError
from kraiter_sync.export.output import PART_NAME, count_rows
from kraiter_sync.sources.objectstore import Bucket, ObjectUrl, open_bucket, parse_url

__all__ = ["BucketFolder", "OutputUrl", "parse_output"]


class OutputUrl:
    """A parsed ``--out`` URL: the bucket, the prefix, what to show and store."""

    def __init__(self, url: ObjectUrl, storage: StorageOptions | None) -> None:
        self.url = url
        self.storage = storage
        self.prefix = url.key.strip("/")
        #: The output's identity (no query string: one is refused), for the state name.
        self.display = url.child(self.prefix + "/" if self.prefix else "")

    def bucket(self) -> Bucket:
        return open_bucket(self.url, self.storage)

    def folder(self, label: str, state_dir: Path, target: str) -> BucketFolder:
        key = f"{self.prefix}/{label}/" if self.prefix else f"{label}/"
        digest = hashlib.sha256(f"{target}\n{self.display}".encode()).hexdigest()[:16]
        work = state_dir / "export-work" / digest
        return BucketFolder(self.bucket(), key, label, work=work, out=self.display)


def parse_output(out: str, storage: StorageOptions | None = None) -> OutputUrl:
    """``--out`` as an object URL; https:// (read only) is a clear error."""
    url = parse_url(out)
    if url.cloud == "http":
        msg = (
            f"{url.root}/…: https:// locations are read only; export to s3://, gs://, az:// "
            "or abfss://, or to a local --out DIR"
        )
        raise UsageError(msg)
    return OutputUrl(url, storage)


class BucketFolder:
    """A stream's folder under a bucket prefix (see the module docstring)."""

    def __init__(self, bucket: Bucket, prefix: str, label: str, *, work: Path, out: str) -> None:
        self.bucket = bucket
        self.prefix = prefix  # ends with "/"
        self.label = label
        self.work = work
        self._out = out
        #: rel → size, as last listed (and kept up to date by put and delete)
        self._listed: dict[str, int] | None = None

    @property
    def display(self) -> str:
        return self.bucket.url.child(self.prefix)

    @property
    def out_display(self) -> str:
        return self._out

    def check(self) -> None:
        """The bucket must exist and be readable (the clear error otherwise)."""
        self.bucket.check_bucket(self.prefix)

    def exists(self) -> bool:
        return bool(self.walk()[0])

    def walk(self) -> tuple[dict[str, int], list[str]]:
        files = {
            info.key[len(self.prefix) :]: info.size
            for info in self.bucket.list(self.prefix)
            if info.key.startswith(self.prefix) and not info.key.endswith("/")
        }
        self._listed = dict(files)
        return files, []

    def size(self, rel: str) -> int | None:
        if self._listed is not None:
            return self._listed.get(rel)
        info = self.bucket.head(self.prefix + rel)
        return info.size if info is not None else None

    def rows(self, rel: str) -> int:
        """Rows of one object (downloaded to the work directory to count them)."""
        self.work.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.work) as tmp:
            local = Path(tmp) / Path(rel).name
            info = self.bucket.head(self.prefix + rel)
            if info is None:
                return 0
            local.write_bytes(bytes(self.bucket.get(info).bytes()))
            return count_rows(local)

    def _write_error(self, rel: str, exc: InputError) -> StateError:
        return StateError(
            f"writing the export failed: {exc} (writing needs put and delete access on "
            f"{self.display}); fix that, then re-run to resume: nothing is lost"
        )

    def put(self, rel: str, source: Path) -> None:
        """Upload a finished file whole, then drop the local copy."""
        try:
            info = self.bucket.put(self.prefix + rel, source)
        except InputError as exc:
            raise self._write_error(rel, exc) from None
        if self._listed is not None:
            self._listed[rel] = info.size
        source.unlink()

    def delete(self, rel: str) -> bool:
        """Delete one of kraiter-sync's part files; anything else is never touched."""
        parts = Path(rel).parts
        if not parts or ".." in parts or rel.startswith("/") or not PART_NAME.match(parts[-1]):
            return False
        if self._listed is not None and rel not in self._listed:
            return False
        try:
            self.bucket.delete(self.prefix + rel)
        except InputError as exc:
            raise self._write_error(rel, exc) from None
        if self._listed is not None:
            self._listed.pop(rel, None)
        return True

    def staging(self, name: str) -> Path:
        """A local work directory (the files are built here, then put)."""
        return self.work / f".{self.label}.{name}"

    def stagings(self) -> list[Path]:
        if not self.work.is_dir():
            return []
        return sorted(p for p in self.work.glob(f".{self.label}.*") if p.is_dir())

    def clean_temporary(self) -> None:
        """Nothing: object uploads leave no temporary objects behind."""
