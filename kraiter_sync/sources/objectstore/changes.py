"""What a sync job read last time, so a re-run reads only new or changed objects.

A job over a bucket prefix (a nightly export folder that only grows) remembers each
object it read completely by URL and *version*: its size and ETag (or, where a store
gives no ETag, its last-modified time). On the next run an object whose URL and version
are both known is skipped; a new key, or a key rewritten in place, is read. The record
is saved only after a run that completed, so a failed night is read again in full.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kraiter_sync.sources.objectstore.readers import ObjectPath
from kraiter_sync.sources.objectstore.stores import ObjectInfo

__all__ = ["SeenObjects"]

_VERSION = 1
T = TypeVar("T")


def _info(file: Any) -> ObjectInfo | None:
    path = getattr(file, "path", None)
    return path.info if isinstance(path, ObjectPath) else None


@dataclass
class SeenObjects:
    """URL → version of every object a job has read completely."""

    versions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def decode(cls, text: str | None) -> SeenObjects:
        if not text:
            return cls()
        doc = json.loads(text)
        if not isinstance(doc, Mapping) or doc.get("version") != _VERSION:
            return cls()  # an unknown layout: read everything once more
        return cls(dict(doc.get("objects", {})))

    def encode(self) -> str:
        return json.dumps(
            {"version": _VERSION, "objects": dict(sorted(self.versions.items()))},
            separators=(",", ":"),
        )

    def is_new(self, info: ObjectInfo) -> bool:
        return self.versions.get(info.url) != info.version

    def unread(self, files: Sequence[T]) -> list[T]:
        """The source files to read: local files, and objects new or changed since."""
        kept = []
        for file in files:
            info = _info(file)
            if info is None or self.is_new(info):
                kept.append(file)
        return kept

    @staticmethod
    def listed(files: Sequence[Any]) -> list[ObjectInfo]:
        """The objects among ``files`` (``sources.SourceFile``s)."""
        return [info for info in map(_info, files) if info is not None]

    def add(self, infos: Iterable[ObjectInfo]) -> None:
        for info in infos:
            self.versions[info.url] = info.version
