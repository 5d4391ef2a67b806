"""Naming and compiling the native validator library; standard library only.

Shared by the loader (``kraiter_sync/validate/native.py``, which compiles into the user
cache on first use) and the wheel build hook (``hatch_build.py``, which ships it
prebuilt), so both agree on the file name: a digest of the sources plus the machine, so
an upgrade or another architecture never loads a stale library.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path

__all__ = ["SOURCE_DIR", "compile_library", "library_name"]

SOURCE_DIR = Path(__file__).resolve().parent
_SOURCES = ("kraiter_native.c", "xxhash.h")


def library_name() -> str:
    """File name of the compiled library for these sources on this platform."""
    h = hashlib.sha256()
    for name in _SOURCES:
        h.update((SOURCE_DIR / name).read_bytes())
    suffix = sysconfig.get_config_var("SHLIB_SUFFIX") or ".so"
    return f"kraiter_native-{h.hexdigest()[:16]}-{platform.machine()}{suffix}"


def compile_library(target: Path) -> None:
    """Compile the sources into ``target`` atomically (concurrent builds are safe).

    Uses ``$CC``, else the compiler Python was built with, else ``cc``. Raises OSError
    (naming the compiler, or quoting its error) when it can't.
    """
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    if shutil.which(cc.split()[0]) is None:
        msg = f"no C compiler found ({cc!r})"
        raise OSError(msg)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    os.close(fd)
    cmd = [*cc.split(), "-O3", "-shared", "-fPIC", "-std=c99", "-o", tmp]
    try:
        done = subprocess.run(  # noqa: S603 - the user's own compiler on our own source
            [*cmd, str(SOURCE_DIR / "kraiter_native.c")],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            msg = f"compiling the native validator failed: {done.stderr.strip()[-500:]}"
            raise OSError(msg)
        Path(tmp).replace(target)
    finally:
        Path(tmp).unlink(missing_ok=True)
