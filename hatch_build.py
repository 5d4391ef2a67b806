"""Wheel build hook: ship the native validator library prebuilt.

Compiles ``kraiter_sync/native/kraiter_native.c`` with the build machine's C compiler and
puts the library in the wheel next to its sources, under the name the loader looks for.
Without a compiler the wheel is built without it (pure Python); the loader then compiles
on first use, or the validator runs on polars alone. Only the standard library and
hatchling are available here, so the naming and compiling code is loaded by path.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


def _build_module() -> Any:
    path = Path(__file__).resolve().parent / "kraiter_sync" / "native" / "build.py"
    spec = importlib.util.spec_from_file_location("_kraiter_native_build", path)
    if spec is None or spec.loader is None:
        msg = f"cannot load {path}"
        raise ImportError(msg)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class NativeLibraryHook(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        build = _build_module()
        name = build.library_name()
        out = Path(tempfile.mkdtemp(prefix="kraiter-native-")) / name
        try:
            build.compile_library(out)
        except OSError as exc:
            print(f"kraiter-sync: native validator not prebuilt ({exc})", file=sys.stderr)
            return
        build_data["force_include"][str(out)] = f"kraiter_sync/native/{name}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
