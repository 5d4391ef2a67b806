"""Airflow 3: ``kraiter_import``, ready to call in a ``@task`` (``airflow.sdk``).

```python
@task(retries=3)
def import_events() -> dict:
    return kraiter_import(["exports/events/*.parquet"], kind="events")
```

It runs one import and returns the summary dict (``integrations.runs.summary``), which
Airflow stores as the task's XCom. ``asset_metadata(counts)`` is the part to attach to an
asset (``yield Metadata(asset, asset_metadata(counts))``). Rejected rows are reported,
not raised, unless there are more than ``max_rejected``: then, as for a configuration or
mapping mistake, the task fails without retries (``AirflowFailException``). A run that
did not finish raises ``IncompleteError``, which Airflow retries (the task's
``retries``); the ledger makes the retry send only what is missing.

The API key comes from the worker's environment (``KRAITER_API_KEY``), never from a task
argument (Airflow renders and stores those).
"""

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from kraiter_sync.errors import TooManyRejectsError, UsageError
from kraiter_sync.frames import Kind
from kraiter_sync.integrations.runs import (
    check_parameter_state,
    import_options,
    run_import,
    summary,
)
from kraiter_sync.verbs.importer import ImportOptions

__all__ = ["asset_metadata", "kraiter_import"]


def asset_metadata(counts: Mapping[str, Any]) -> dict[str, Any]:
    """The counts worth keeping on an asset event: rows read, sent, skipped, duplicate,
    rejected, and the ledger's run id."""
    keep = ("row_count", "sent", "skipped", "duplicate", "rejected", "run_id")
    return {name: counts[name] for name in keep}


def kraiter_import(
    paths: Sequence[str],
    *,
    kind: Kind | None = None,
    connector: str | None = None,
    mapping: Mapping[str, str] | None = None,
    options: ImportOptions | None = None,
    max_rejected: int | None = None,
    base_url: str | None = None,
    state_dir: str | None = None,
    state: str | None = None,
    tenant: str | None = None,
) -> dict[str, Any]:
    """Import ``paths`` (``kraiter-sync import PATHS --kind --connector --map``); the
    summary dict, JSON-ready for XCom."""
    chosen = import_options(options, kind=kind, connector=connector, mapping=mapping)
    try:
        result = run_import(
            list(paths),
            options=chosen,
            max_rejected=max_rejected,
            command="airflow",
            base_url=base_url,
            state_dir=state_dir,
            state=check_parameter_state(state),
            tenant=tenant,
        )
    except (UsageError, TooManyRejectsError) as exc:  # retrying cannot fix these
        raise AirflowFailException(str(exc)) from exc
    return summary(result)
