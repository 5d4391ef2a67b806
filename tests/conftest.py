"""Shared fixtures. Tests that start servers bind 127.0.0.1 on free ports and stop them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import REPO_ROOT
from tests.helpers.respx import anyio_backend, router

__all__ = ["anyio_backend", "router"]  # fixtures for the client tests


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running ``python -m kraiter_sync`` as a subprocess.

    The checkout comes first on PYTHONPATH so a subprocess runs the code under test;
    Kraiter settings from the developer's shell are removed.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRAITER")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    env["KRAITER_SYNC_STATE_DIR"] = str(tmp_path / "state")
    return env


@pytest.fixture
def python() -> str:
    return sys.executable


@pytest.fixture(autouse=True)
def _no_kraiter_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Tests never pick up a developer's real Kraiter settings, nor their user-level
    kraiter-sync config (trusted hosts): XDG_CONFIG_HOME is an empty directory."""
    for name in list(os.environ):
        if name.startswith("KRAITER"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
