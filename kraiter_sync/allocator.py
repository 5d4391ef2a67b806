"""polars' allocator setting, made before polars loads.

polars allocates through jemalloc, whose background thread hands freed pages back to the
system along a 10-second decay curve. The validator frees and reallocates about the same
hundred MiB for every chunk, so each chunk took fresh page faults for memory it had just
given back: half the faults of a validation run, about 7% of its CPU. A 30-second decay
keeps those pages for the length of a run and still returns them after it.

jemalloc reads ``_RJEM_MALLOC_CONF`` once, when polars loads (polars puts its own defaults
first and the variable's value after them); so this takes effect only when kraiter_sync is
imported before polars (the CLI is), and never overrides a decay the user has set. A value
that is only polars' defaults was inherited from a parent process that loaded polars.
"""

from __future__ import annotations

import os
import sys

ENV = "_RJEM_MALLOC_CONF"
SETTING = "dirty_decay_ms:30000"
POLARS_DEFAULTS = "dirty_decay_ms:500,muzzy_decay_ms:1000"


def tune_polars_allocator() -> bool:
    """Set polars' jemalloc decay unless polars is loaded or the user set one; True if set."""
    if "polars" in sys.modules:
        return False
    user = os.environ.get(ENV, "").removeprefix(POLARS_DEFAULTS).strip(",")
    if "dirty_decay_ms" in user:
        return False
    os.environ[ENV] = f"{user},{SETTING}" if user else SETTING
    return True
