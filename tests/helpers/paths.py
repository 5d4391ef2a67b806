"""Where things are in the checkout."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLE_DATA = REPO_ROOT / "sample_data"
TEST_DATA = REPO_ROOT / "tests" / "data"
