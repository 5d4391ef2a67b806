"""Tombstones: every contact a mirror run deletes, saved (fsynced) before the first
delete, so ``restore`` can recreate them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kraiter_sync.errors import InputError
from kraiter_sync.files import atomic_write

__all__ = ["TOMBSTONE_FORMAT", "read_tombstone", "write_tombstone"]

TOMBSTONE_FORMAT = "kraiter-sync.tombstone"


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def write_tombstone(path: str | Path, contacts: Iterable[Mapping[str, Any]]) -> Path:
    """Every contact about to be deleted, with all its fields, fsynced before any delete."""
    doc = {
        "format": TOMBSTONE_FORMAT,
        "version": 1,
        "created_at": _now_iso(),
        "contacts": [dict(c) for c in contacts],
    }
    return atomic_write(path, json.dumps(doc, ensure_ascii=False, indent=1) + "\n")


def read_tombstone(path: str | Path) -> list[dict[str, Any]]:
    """The contacts a tombstone file holds; InputError when it is not one."""
    source = Path(path)
    try:
        doc = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f"tombstone file {source} does not exist"
        raise InputError(msg) from None
    except OSError as exc:
        msg = f"cannot read tombstone file {source}: {exc.strerror}"
        raise InputError(msg) from None
    except ValueError as exc:
        msg = f"{source} is not a kraiter-sync tombstone (not JSON: {exc})"
        raise InputError(msg) from None
    if not isinstance(doc, dict) or doc.get("format") != TOMBSTONE_FORMAT:
        msg = f"{source} is not a kraiter-sync tombstone (reconcile --mirror writes them)"
        raise InputError(msg)
    contacts = doc.get("contacts")
    if not isinstance(contacts, list) or not all(
        isinstance(c, dict) and isinstance(c.get("email"), str) for c in contacts
    ):
        msg = f"{source} is damaged: every contact needs an email"
        raise InputError(msg)
    return contacts
