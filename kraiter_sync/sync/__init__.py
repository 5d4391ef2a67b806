"""``kraiter-sync sync``: the jobs of kraiter-sync.toml, run unattended (cron, systemd, Airflow).

Each job reads a source (files or a SQL query), maps it with a connector and goes
through the same import engine as ``kraiter-sync import``, so the ledger guarantees
that nothing is lost or sent twice. What sync adds:

- **Incremental events.** A job with ``cursor = "column"`` keeps a *watermark* (the
  largest cursor value of the last complete run). The next run reads only rows with
  ``cursor >= watermark - lag`` (pushed into the SQL as a bound parameter; filtered
  while streaming for files); rows re-read inside the lag window are de-duplicated
  by the ledger, so late arrivals are caught and nothing is sent twice. Rows whose
  cursor is NULL are always read (the ledger skips them once sent). The watermark
  moves only after a run that left nothing pending.
- **Contacts** cost nothing when unchanged: the import engine keeps a hash of what it
  last wrote per email (the ledger's contact cache) and skips equal rows. A full
  pass (``--full``, or ``full_every = "7d"``) re-checks every contact.
- **One lock per state directory** for the whole run, a run record per job, a
  machine summary (``--json``) and an exit code for cron: a failing job does not stop
  the others, and the run exits with the most severe code of all jobs.

Modules: ``jobs`` (a job's source and mapping, watermark names, exit codes), ``cursor``
(windows, typed cursor values), ``changes`` (the source-row filter), ``check``
(``--check``), ``run`` (jobs under one lock).
"""

from __future__ import annotations

from kraiter_sync.sync.check import CheckResult, JobCheck, check_jobs
from kraiter_sync.sync.cursor import CursorWindow, decode_cursor, encode_cursor
from kraiter_sync.sync.jobs import cursor_stream, objects_stream, open_job_source, worst_exit_code
from kraiter_sync.sync.run import JobResult, SyncResult, run_job, run_sync

__all__ = [
    "CheckResult",
    "CursorWindow",
    "JobCheck",
    "JobResult",
    "SyncResult",
    "check_jobs",
    "cursor_stream",
    "decode_cursor",
    "encode_cursor",
    "objects_stream",
    "open_job_source",
    "run_job",
    "run_sync",
    "worst_exit_code",
]
