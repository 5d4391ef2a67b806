"""A URL → the objects it names: one object, a prefix ("directory"), a glob, a manifest.

The same rules as local paths (``sources._expand``): a prefix or a glob skips warehouse
markers (``_SUCCESS``, names starting with ``_`` or ``.``, ``.crc`` files, zero-byte
"folder" keys, Redshift manifests); ``key=value`` segments between the prefix (or the
glob's fixed part) and the file name become hive partition columns; objects come in key
order. A Redshift ``UNLOAD ... MANIFEST`` file given as the input stands for the parts it
lists, each checked against the manifest's ``content_length``.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from kraiter_sync.errors import InputError
from kraiter_sync.sources.objectstore.stores import ObjectInfo, StorageOptions, open_bucket
from kraiter_sync.urls import is_object_url, parse_url, redact

__all__ = ["Found", "ObjectInfo", "expand", "is_manifest_name", "read_manifest", "read_object"]

_GLOB_CHARS = frozenset("*?[")
_MANIFEST_MAX = 64 << 20

Hive = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Found:
    """One object an input URL names, with its hive partition pairs."""

    info: ObjectInfo
    hive: Hive = ()
    #: The size a manifest promised (checked when the object is read).
    expected_size: int | None = None


def is_manifest_name(name: str) -> bool:
    """Redshift names its manifest ``<prefix>manifest``; others use ``.manifest``."""
    return name.endswith("manifest")


def _is_data_key(info: ObjectInfo) -> bool:
    name = info.key.rsplit("/", 1)[-1]
    if not name or info.key.endswith("/"):
        return False
    if name.startswith((".", "_")) or name.endswith(".crc"):
        return False
    return not is_manifest_name(name)


def _hive(key: str, root: str) -> Hive:
    rest = key[len(root) :] if key.startswith(root) else key
    pairs = []
    for part in rest.split("/")[:-1]:
        name, sep, value = part.partition("=")
        if sep and name:
            pairs.append((name, unquote(value)))
    return tuple(pairs)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """``*`` and ``?`` stay within one path segment; ``**/`` spans any number of them."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape("["))
                i += 1
            else:
                out.append(fnmatch.translate(pattern[i : end + 1])[4:-3])
                i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def expand(text: str, options: StorageOptions | None = None) -> list[Found]:
    """The objects ``text`` names (an InputError when none, or when it cannot be read)."""
    url = parse_url(text)
    bucket = open_bucket(url, options)
    key = url.key
    display = url.display
    if url.cloud == "http":
        if _GLOB_CHARS & set(key) or not key or key.endswith("/"):
            msg = (
                f"{display}: an https:// source must be one file; globs and directories "
                "need a bucket URL (s3://, gs://, az://)"
            )
            raise InputError(msg)
        info = bucket.head(key)
        if info is None:
            msg = f"{display}: no such object (HTTP 404); check the URL"
            raise InputError(msg)
        return _maybe_manifest(info, options)
    if _GLOB_CHARS & set(key):
        fixed = re.split(r"[*?\[]", key, maxsplit=1)[0]
        root = fixed[: fixed.rfind("/") + 1]
        pattern = _glob_regex(key)
        found = [
            Found(info, _hive(info.key, root))
            for info in bucket.list(root)
            if pattern.match(info.key) and _is_data_key(info)
        ]
        if not found:
            msg = (
                f"{display}: no object matches this pattern; check the path and quoting "
                f"(listed {url.child(root)})"
            )
            raise InputError(msg)
        return found
    if key and not key.endswith("/"):
        info = bucket.head(key)
        if info is not None:
            return _maybe_manifest(info, options)
    root = key if not key or key.endswith("/") else key + "/"
    found = [Found(info, _hive(info.key, root)) for info in bucket.list(root) if _is_data_key(info)]
    if not found:
        if key and not key.endswith("/"):
            msg = f"{display}: no such object or prefix; check the URL"
        else:
            msg = f"{display}: the prefix holds no data files; point at the files to read"
        raise InputError(msg)
    return found


def read_object(text: str, options: StorageOptions | None = None, *, limit: int = 1 << 30) -> bytes:
    """The whole of one small object (a rejects file, a manifest); larger inputs stream."""
    url = parse_url(text)
    bucket = open_bucket(url, options)
    info = bucket.head(url.key)
    if info is None:
        msg = f"{url.display}: no such object; check the URL"
        raise InputError(msg)
    if info.size > limit:
        msg = f"{url.display}: {info.size:,} bytes is too large to read whole"
        raise InputError(msg)
    return bytes(bucket.get(info).bytes()) if info.size else b""


def _maybe_manifest(info: ObjectInfo, options: StorageOptions | None) -> list[Found]:
    name = info.key.rsplit("/", 1)[-1]
    if not is_manifest_name(name) or info.size > _MANIFEST_MAX:
        return [Found(info)]
    bucket = open_bucket(parse_url(info.url), options)
    data = bytes(bucket.get(info).bytes())
    return [_manifest_entry(entry, info.url, options) for entry in read_manifest(data, info.url)]


def read_manifest(data: bytes, display: str) -> list[dict[str, Any]]:
    """The entries of a Redshift manifest: ``{"entries": [{"url", "mandatory", "meta":
    {"content_length"}}]}`` (an InputError naming the problem otherwise)."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        msg = f"{display}: not a valid manifest (JSON with an 'entries' list): {exc}"
        raise InputError(msg) from None
    entries = doc.get("entries") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("url"), str) for e in entries
    ):
        msg = f"{display}: not a valid manifest: expected {{'entries': [{{'url': ...}}, ...]}}"
        raise InputError(msg)
    if not entries:
        msg = f"{display}: the manifest lists no files; the unload wrote no rows"
        raise InputError(msg)
    return entries


def _manifest_entry(entry: dict[str, Any], manifest: str, options: StorageOptions | None) -> Found:
    target = str(entry["url"])
    if not is_object_url(target):
        msg = f"{manifest}: entry {redact(target)} is not an object URL"
        raise InputError(msg)
    url = parse_url(target)
    info = open_bucket(url, options).head(url.key)
    if info is None:
        msg = (
            f"{manifest}: lists {url.display}, which does not exist; the unload is incomplete "
            "or was moved"
        )
        raise InputError(msg)
    meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
    length = meta.get("content_length") if meta else None
    expected = int(length) if isinstance(length, int) else None
    if expected is not None and expected != info.size:
        msg = (
            f"{url.display}: {info.size} bytes, but the manifest {manifest} says {expected}; "
            "the object is truncated or was replaced: unload it again"
        )
        raise InputError(msg)
    return Found(info, (), expected)
