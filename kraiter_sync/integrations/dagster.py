"""Dagster: a resource for the Kraiter target and a factory of import assets.

```python
events = kraiter_import_asset("kraiter_events", ["exports/events/*.parquet"])
defs = dagster.Definitions(assets=[events], resources={"kraiter": KraiterResource(...)})
```

Each materialisation is one ``import`` run and yields a ``MaterializeResult`` whose
metadata holds ``dagster/row_count`` (rows read), the ``sent``, ``skipped``,
``duplicate``, ``rejected``, ``failed`` and ``pending`` counts, the ledger's run id
(``kraiter/run_id``) and the rejects file. Rejected rows are reported, not raised,
unless there are more than ``max_rejected``; a run that did not finish (or could not
start: Kraiter unreachable, the state lock held) asks Dagster to retry the step
(``RetryRequested``), and the ledger makes the retry send only what is
missing.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from kraiter_sync.config import Settings, resolve_settings
from kraiter_sync.errors import KraiterSyncError
from kraiter_sync.frames import Kind
from kraiter_sync.integrations.runs import check_result, import_options, is_transient, summary
from kraiter_sync.verbs.importer import ImportOptions, ImportResult, import_

__all__ = ["KraiterResource", "kraiter_import_asset", "materialize_result"]


class KraiterResource(dg.ConfigurableResource["KraiterResource"]):
    """Where to send and where the state lives: what ``kraiter-sync`` takes as flags.

    Give the key as ``dagster.EnvVar("KRAITER_API_KEY")``, never as a literal: Dagster
    then reads it at run time and never shows it. Unset fields fall back to the
    environment and ``kraiter-sync.toml`` like the CLI's. Keep the state where it outlives
    the run worker: ``state_dir`` on a lasting disk, or ``state``, a shared PostgreSQL
    store's URL (``dagster.EnvVar("KRAITER_SYNC_STATE")``: it may hold a password).
    """

    api_key: str | None = None
    base_url: str | None = None
    state_dir: str | None = None
    #: A shared state store's URL (``postgresql://...``): give it as an EnvVar too.
    state: str | None = None
    tenant: str | None = None

    def settings(self) -> Settings:
        return resolve_settings(
            api_key=self.api_key,
            base_url=self.base_url,
            state_dir=self.state_dir,
            state=self.state,
            tenant=self.tenant,
        )

    def import_(
        self,
        paths: Sequence[str],
        *,
        options: ImportOptions | None = None,
        max_rejected: int | None = None,
    ) -> ImportResult:
        """One import run, with the adapters' semantics (``integrations.runs``)."""
        result = import_(list(paths), settings=self.settings(), options=options, command="dagster")
        return check_result(result, max_rejected=max_rejected)


def materialize_result(result: ImportResult) -> dg.MaterializeResult[None]:
    """The run's counts as materialisation metadata."""
    counts = summary(result)
    metadata: dict[str, Any] = {
        "dagster/row_count": dg.MetadataValue.int(counts["row_count"]),
        "kraiter/run_id": dg.MetadataValue.int(counts["run_id"]),
        "exit_code": dg.MetadataValue.int(counts["exit_code"]),
    }
    for name in ("sent", "skipped", "duplicate", "rejected", "failed", "pending"):
        metadata[name] = dg.MetadataValue.int(counts[name])
    if counts["rejects_path"]:
        metadata["rejects_path"] = dg.MetadataValue.path(counts["rejects_path"])
    return dg.MaterializeResult(metadata=metadata)


def kraiter_import_asset(
    name: str,
    paths: Sequence[str],
    *,
    kind: Kind | None = None,
    connector: str | None = None,
    mapping: Mapping[str, str] | None = None,
    options: ImportOptions | None = None,
    max_rejected: int | None = None,
    retries: int = 3,
    retry_wait_s: float = 60.0,
    **asset_kwargs: Any,
) -> dg.AssetsDefinition:
    """An asset that imports ``paths`` (files, globs, object URLs) with the ``kraiter``
    resource. ``kind``, ``connector`` and ``mapping`` are ``--kind``, ``--connector``
    and ``--map``; ``asset_kwargs`` go to ``dagster.asset`` (``deps``, ``group_name``…).
    A run that did not finish is retried up to ``retries`` times, ``retry_wait_s`` apart."""
    chosen = import_options(options, kind=kind, connector=connector, mapping=mapping)

    @dg.asset(name=name, kinds={"kraiter"}, **asset_kwargs)  # type: ignore[untyped-decorator]
    def _import(kraiter: KraiterResource) -> dg.MaterializeResult[None]:
        try:
            result = kraiter.import_(paths, options=chosen, max_rejected=max_rejected)
        except KraiterSyncError as exc:
            if is_transient(exc):
                raise dg.RetryRequested(max_retries=retries, seconds_to_wait=retry_wait_s) from exc
            raise
        return materialize_result(result)

    return _import  # type: ignore[no-any-return]
