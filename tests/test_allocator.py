"""polars' allocator decay, set by kraiter_sync when it loads before polars."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kraiter_sync.allocator import ENV, POLARS_DEFAULTS, SETTING


def conf_seen_by_polars(code: str, value: str | None) -> str:
    """``_RJEM_MALLOC_CONF`` after ``code`` ran in a fresh interpreter (polars reads it when
    it loads, its own defaults first)."""
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if value is not None:
        env[ENV] = value
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport os\nprint(os.environ[{ENV!r}])"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_set_when_kraiter_sync_loads_first() -> None:
    conf = conf_seen_by_polars("import kraiter_sync, polars", None)
    assert conf == f"{POLARS_DEFAULTS},{SETTING}"  # the last value of an option wins


def test_set_when_only_polars_defaults_were_inherited() -> None:
    """A parent that loaded polars passes its defaults on; they are not the user's choice."""
    conf = conf_seen_by_polars("import kraiter_sync, polars", POLARS_DEFAULTS)
    assert conf.endswith(f",{SETTING}")


@pytest.mark.parametrize(
    ("code", "value"),
    [
        ("import polars, kraiter_sync", None),  # too late: polars has read it
        ("import kraiter_sync, polars", "dirty_decay_ms:700"),  # the user's choice
    ],
)
def test_left_alone(code: str, value: str | None) -> None:
    conf = conf_seen_by_polars(code, value)
    assert SETTING not in conf
    assert conf.startswith(POLARS_DEFAULTS)


def test_other_user_options_are_kept() -> None:
    conf = conf_seen_by_polars("import kraiter_sync, polars", "narenas:2")
    assert conf == f"{POLARS_DEFAULTS},narenas:2,{SETTING}"
