"""Real read-only and full file systems for tests of what a run does when it cannot write.

As root, a tmpfs is mounted (read-only, or tiny) under the test's directory and unmounted
afterwards; as another user, a read-only directory is a ``chmod 0o555`` one (root ignores
that), and a full disk is skipped unless tmpfs can be mounted.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["full_disk", "read_only"]


def _mount(target: Path, options: str) -> bool:
    if os.geteuid() != 0:
        return False
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def _umount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


@contextlib.contextmanager
def read_only(base: Path, *, holding: str | None = None) -> Iterator[Path]:
    """A read-only directory; with ``holding``, it holds an (empty) read-only subdirectory
    of that name (an existing state directory that cannot be written)."""
    target = base / "read-only"
    if _mount(target, "size=1m"):
        try:
            if holding:
                (target / holding).mkdir()
            subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True)
            yield target
        finally:
            _umount(target)
        return
    if os.geteuid() == 0:
        pytest.skip("running as root without permission to mount a read-only tmpfs")
    target.mkdir(parents=True)
    if holding:
        (target / holding).mkdir()
        (target / holding).chmod(0o555)
    target.chmod(0o555)
    try:
        yield target
    finally:
        if holding:
            (target / holding).chmod(0o755)
        target.chmod(0o755)


@contextlib.contextmanager
def full_disk(base: Path, size: str) -> Iterator[Path]:
    """A directory on a file system of ``size`` (tmpfs: needs root)."""
    target = base / "small-disk"
    if not _mount(target, f"size={size}"):
        pytest.skip("a small file system needs root (mount -t tmpfs)")
    try:
        yield target
    finally:
        _umount(target)
