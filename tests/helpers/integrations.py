"""Helpers for the integration tests: the libraries (required in CI), the docs' examples."""

from __future__ import annotations

import importlib
import os
import re
from types import ModuleType

import pytest

from tests.helpers.paths import REPO_ROOT

DOCS = REPO_ROOT / "docs" / "integrations"


def require(module: str) -> ModuleType:
    """The library, or a skip outside CI (.ci/run installs every extra: there, fail)."""
    if os.environ.get("CI") == "true":
        return importlib.import_module(module)
    return pytest.importorskip(module)


def docs_example(name: str) -> str:
    """The one ```python block of docs/integrations/NAME.md, as a user would copy it."""
    text = (DOCS / f"{name}.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 1, f"{name}.md should hold exactly one python example"
    return blocks[0]
