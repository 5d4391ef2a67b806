"""The public library API and the docs that describe it cannot drift apart."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

import kraiter_sync
from kraiter_sync.cli import main
from tests.helpers.paths import REPO_ROOT


def test_every_public_name_resolves() -> None:
    for name in kraiter_sync.__all__:
        assert getattr(kraiter_sync, name) is not None, name


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        kraiter_sync.no_such_thing  # noqa: B018


def test_import_has_no_side_effects() -> None:
    """``import kraiter_sync`` changes nothing a child process would inherit (it once set
    an allocator variable in os.environ) and loads neither polars nor the HTTP stack."""
    code = (
        "import json, os, sys; before = dict(os.environ); import kraiter_sync; "
        "print(json.dumps([dict(os.environ) == before, "
        "sorted(m for m in ('polars', 'httpx', 'aiohttp') if m in sys.modules)]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == [True, []]


def test_readme_documents_every_command() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `([a-z]+)[ `]", readme, flags=re.M))
    assert set(main.commands) <= documented, set(main.commands) - documented


def test_readme_setup_commands_are_the_ci_commands() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    test_command = '.venv/bin/pip install ".[test]" && .venv/bin/python -m pytest'
    assert test_command in readme
    assert '.venv/bin/pip install -q ".[test]"' in ci
    assert ".venv/bin/python -m pytest" in ci
    assert "kraiter-sync import sample_data/contacts.csv sample_data/events.parquet" in readme
