"""Runs: one record per command run, and how a run whose process died is told apart.

A record holds the command, its arguments (scrubbed of secrets), the final counts, and the
process that ran it (pid, host, and the process's start identity, so a run whose process
died is told apart from a live one even when its pid was reused).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kraiter_sync.urls import redact

__all__ = [
    "NEW_RUN_COLUMNS",
    "RUN_COLUMNS",
    "RunRecord",
    "finished_run",
    "new_run",
    "process_gone",
    "process_identity",
    "run_record",
    "run_with_details",
    "runs_query",
    "scrub_args",
]

#: Argument names never written to the ledger.
_SECRET_ARGS = frozenset({"api_key", "apikey", "key", "token", "password", "secret"})


def scrub_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of command arguments safe to store: secrets dropped, paths as strings,
    URLs without their query strings (signed URLs carry credentials there)."""
    clean: dict[str, Any] = {}
    for name, value in args.items():
        if name.lower() in _SECRET_ARGS:
            continue
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple | list):
            value = [str(v) if isinstance(v, Path) else v for v in value]
            value = [redact(v) if isinstance(v, str) and "://" in v else v for v in value]
        if isinstance(value, str) and "://" in value:
            value = redact(value)
        clean[name] = value
    return clean


@dataclass(frozen=True)
class RunRecord:
    id: int
    command: str
    target: str
    args: dict[str, Any]
    started_at: float
    finished_at: float | None
    #: running, ok, rejected-rows, incomplete, failed, error (usage: nothing sent),
    #: dry-run, or killed (its process is gone): ``errors.status_for_exit``
    status: str
    counts: dict[str, Any]
    pid: int | None = None
    host: str | None = None
    #: What the run's report draws besides the counts: ``timeline`` (api.timeline's
    #: recorded form) and ``rejects`` (``by_rule`` counts, the rejects ``file``). Loaded by
    #: ``Ledger.get_run`` only; None when not recorded (runs of older versions).
    details: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int | None:
        """The command's exit code, as recorded with its counts (None: still running,
        killed, or recorded by a version that did not keep it)."""
        code = self.counts.get("exit_code")
        return code if isinstance(code, int) else None


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def process_identity(pid: int) -> str | None:
    """Who a pid is: the boot and the start time of the process holding it (Linux
    ``/proc``), so a pid reused by another process later reads differently. None where
    the system does not say (then only whether the pid is alive is known)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    boot = _boot_id()
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces and parens
    if boot is None or len(fields) < 20:
        return None
    return f"{boot}:{fields[19]}"  # field 22 of proc(5): start time in clock ticks


def process_gone(pid: int, identity: str | None) -> bool:
    """Whether the process that recorded (pid, identity) on this host has ended."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    if identity is None:
        return False
    now = process_identity(pid)
    return now is not None and now != identity


RUN_COLUMNS = "id, command, target, args, started_at, finished_at, status, counts, pid, host"


def run_record(row: tuple[Any, ...]) -> RunRecord:
    return RunRecord(
        id=int(row[0]),
        command=row[1],
        target=row[2],
        args=json.loads(row[3] or "{}"),
        started_at=float(row[4]),
        finished_at=None if row[5] is None else float(row[5]),
        status=row[6],
        counts=json.loads(row[7] or "{}"),
        pid=None if row[8] is None else int(row[8]),
        host=row[9],
    )


#: The columns :func:`new_run` fills, in its order.
NEW_RUN_COLUMNS = "command, target, args, started_at, pid, host, proc_start"


def new_run(command: str, target: str, args: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """The values of a new run's row (:data:`NEW_RUN_COLUMNS`): arguments scrubbed of
    secrets, this process's pid, host and start identity."""
    pid = os.getpid()
    payload = json.dumps(scrub_args(args or {}), default=str, sort_keys=True)
    return (command, target, payload, time.time(), pid, socket.gethostname(), process_identity(pid))


def finished_run(
    status: str, counts: Mapping[str, Any] | None, details: Mapping[str, Any] | None
) -> tuple[Any, ...]:
    """(finished_at, status, counts, details) of a run that ends, as stored."""
    return (
        time.time(),
        status,
        json.dumps(dict(counts or {}), default=str),
        None if details is None else json.dumps(dict(details), default=str),
    )


def run_with_details(row: tuple[Any, ...]) -> RunRecord:
    """A record from :data:`RUN_COLUMNS` followed by ``details``."""
    details = row[-1]
    return dataclasses.replace(
        run_record(row[:-1]), details=None if details is None else json.loads(details)
    )


def runs_query(table: str, mark: str, target: str | None, limit: int) -> tuple[str, list[Any]]:
    """The statement listing runs, most recent first (``mark``: the driver's placeholder)."""
    sql = f"SELECT {RUN_COLUMNS} FROM {table}"
    params: list[Any] = []
    if target is not None:
        sql += f" WHERE target = {mark}"
        params.append(target)
    sql += f" ORDER BY id DESC LIMIT {mark}"
    params.append(limit)
    return sql, params
