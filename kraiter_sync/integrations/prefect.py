"""Prefect: ``kraiter_import``, a task that runs one import and publishes its counts.

```python
@flow
def nightly() -> None:
    kraiter_import(["exports/events/*.parquet"], kind="events")
```

The task returns the summary dict (``integrations.runs.summary``) and publishes a table
artifact (key ``kraiter-import`` unless ``artifact_key`` says otherwise): one row per
kind and a total, with the run id and the rejects file in its description. Rejected
rows are reported, not raised, unless there are more than ``max_rejected``; a run that
did not finish fails the task and Prefect retries it (``retries``), only that case.

The API key is never a task parameter (Prefect stores parameters): it comes from the
environment (``KRAITER_API_KEY``) or from a Prefect ``Secret`` block named by
``api_key_block``.
"""

from collections.abc import Mapping, Sequence
from typing import Any, cast

from prefect import Task, task
from prefect.artifacts import create_table_artifact
from prefect.blocks.system import Secret
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun

from kraiter_sync.config import resolve_settings
from kraiter_sync.frames import Kind
from kraiter_sync.integrations.runs import (
    check_parameter_state,
    check_result,
    import_options,
    is_transient,
    summary,
)
from kraiter_sync.verbs.importer import ImportOptions, import_

__all__ = ["counts_table", "kraiter_import"]

_COLUMNS = ("sent", "skipped", "duplicate", "rejected", "failed", "pending")


def counts_table(counts: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per kind and a total: read, sent, skipped, duplicate, rejected, failed,
    pending."""
    rows: list[dict[str, Any]] = []
    for kind in ("contacts", "events"):
        c = counts[kind]
        rows.append(
            {
                "kind": kind,
                "read": c["read"],
                "sent": c["sent"] + c["verified"],
                "skipped": c["already"] + c["unchanged"] + c["previously_rejected"],
                "duplicate": c["duplicates"],
                "rejected": c["invalid"] + c["rejected"],
                "failed": c["failed"],
                "pending": c["pending"],
            }
        )
    total = {"kind": "total", "read": counts["row_count"]}
    total.update({name: counts[name] for name in _COLUMNS})
    rows.append(total)
    return rows


def _retry_incomplete(_task: Task[..., Any], _run: TaskRun, state: State[Any]) -> bool:
    """Retry only a run that did not finish: rejects over the limit or a mistake
    would fail the same way again."""
    try:
        state.result()
    except Exception as exc:  # the task run's failure, judged
        return is_transient(exc)
    return False


@task(
    name="kraiter-import",
    retries=3,
    retry_delay_seconds=60,
    retry_condition_fn=_retry_incomplete,
    cache_policy=NO_CACHE,
)
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
    api_key_block: str | None = None,
    artifact_key: str = "kraiter-import",
) -> dict[str, Any]:
    """Import ``paths`` (``kraiter-sync import PATHS --kind --connector --map``) and
    publish the counts; returns :func:`kraiter_sync.integrations.runs.summary`."""
    chosen = import_options(options, kind=kind, connector=connector, mapping=mapping)
    # Secret.load is sync in a sync task (typed as either): the block, not a coroutine.
    api_key = cast("Secret[str]", Secret.load(api_key_block)).get() if api_key_block else None
    settings = resolve_settings(
        api_key=api_key,
        base_url=base_url,
        state_dir=state_dir,
        state=check_parameter_state(state),
        tenant=tenant,
    )
    result = import_(list(paths), settings=settings, options=chosen, command="prefect")
    counts = summary(result)
    create_table_artifact(
        table=counts_table(counts),
        key=artifact_key,
        description=(
            f"kraiter-sync run {counts['run_id']}: {counts['sent']} sent, "
            f"{counts['rejected']} rejected (rejects file: {counts['rejects_path']})"
        ),
    )
    check_result(result, max_rejected=max_rejected)  # after the artifact: failures show it
    return counts
