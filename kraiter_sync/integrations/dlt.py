"""A dlt destination for Kraiter: ``pipeline = dlt.pipeline(destination=kraiter())``.

dlt's custom destinations deliver at least once: after a crash, dlt calls the
destination again with the whole batch that was in flight (and with everything, when the
pipeline folder is gone, as on a clean runner). Kraiter has no idempotency key, so each
batch goes through the same path as ``kraiter-sync import``: the table's rows are mapped
by the connector chosen for the table, validated, and sent through the ledger in the
state store (``state_dir``, or a shared store's URL in ``state``; never the dlt pipeline
folder). A replayed batch sends
nothing twice; rows a killed load left in flight are verified before anything is resent.

- A row the validator or Kraiter refuses (4xx) lands in the rejects file of the batch's
  run and the batch goes on (``max_rejected`` turns too many into a terminal failure).
- A batch that did not finish (5xx or network after the retries, a rate limit that did
  not clear) raises, and dlt retries the job; the ledger resumes it.
- A configuration or mapping mistake is terminal: retrying cannot fix it.

Credentials and settings come from dlt's configuration under
``[destination.kraiter]`` (the destination's ``name``): ``api_key`` from
``secrets.toml`` or ``DESTINATION__KRAITER__API_KEY``, and so is ``state`` (a
``postgresql://`` URL may hold a password); ``base_url``, ``state_dir`` and ``tenant``
from ``config.toml`` or the environment.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dlt
from dlt.common.destination.exceptions import DestinationTerminalException
from dlt.common.schema import TTableSchema
from dlt.common.storages.exceptions import CurrentLoadPackageStateNotAvailable
from dlt.common.typing import TDataItems, TSecretStrValue

from kraiter_sync.config import resolve_settings
from kraiter_sync.errors import AuthenticationError, InputError, TooManyRejectsError, UsageError
from kraiter_sync.frames import Kind
from kraiter_sync.integrations.runs import check_result, import_options
from kraiter_sync.sources.memory import FrameSource
from kraiter_sync.verbs.importer import ImportOptions, ImportResult, import_

__all__ = ["Table", "kraiter", "load_batch"]

#: Rows per call of the destination: one import run (one ledger transaction per batch of
#: requests inside it) per batch.
DEFAULT_BATCH_SIZE = 5000


@dataclass(frozen=True)
class Table:
    """How one dlt table maps to Kraiter: its kind, and a connector or column mapping.

    Without a connector the columns are detected as for ``kraiter-sync import``; a table
    named ``contacts`` or ``events`` is that kind unless ``kind`` says otherwise.
    """

    kind: Kind | None = None
    connector: str | None = None
    mapping: Mapping[str, str] = field(default_factory=dict)


def _table_options(name: str, table: Table | None, options: ImportOptions) -> ImportOptions:
    table = table or Table()
    kind = table.kind
    if kind is None and name in ("contacts", "events"):
        kind = name  # type: ignore[assignment]
    return import_options(options, kind=kind, connector=table.connector, mapping=table.mapping)


def _load_id() -> str:
    try:
        return str(dlt.current.load_package_state()["load_id"])
    except CurrentLoadPackageStateNotAvailable:  # called outside a load (directly)
        return "direct"


def load_batch(
    items: Any,
    table_name: str,
    *,
    settings: Any,
    tables: Mapping[str, Table] | None = None,
    options: ImportOptions | None = None,
    max_rejected: int | None = None,
) -> ImportResult:
    """Send one dlt batch (an Arrow table or record batch, or a list of dicts) through
    ``import``; raise as :mod:`kraiter_sync.integrations.runs` says, user mistakes as
    dlt's terminal exception."""
    if isinstance(items, list):
        import polars as pl

        items = pl.DataFrame(items)
    load_id = _load_id()
    source = FrameSource(items, display=f"dlt:{table_name}@{load_id}")
    chosen = _table_options(table_name, (tables or {}).get(table_name), options or ImportOptions())
    try:
        result = import_(
            [source],
            settings=settings,
            options=chosen,
            command="dlt",
            args={"table": table_name, "load_id": load_id, "rows": source.frame.height},
        )
        return check_result(result, max_rejected=max_rejected)
    except (UsageError, AuthenticationError, TooManyRejectsError) as exc:
        hint = (
            f" (in dlt: kraiter(tables={{{table_name!r}: Table(kind=..., connector=..., "
            "mapping={...})}))"
            if isinstance(exc, InputError)
            else ""
        )
        msg = f"dlt table {table_name!r}: {exc}{hint}"
        raise DestinationTerminalException(msg) from exc


def kraiter(
    *,
    name: str = "kraiter",
    tables: Mapping[str, Table] | None = None,
    options: ImportOptions | None = None,
    max_rejected: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Any:
    """The Kraiter destination: ``dlt.pipeline(..., destination=kraiter())``.

    ``tables`` maps dlt table names to :class:`Table`; ``options`` are ``import``'s
    (validation switches, concurrency, rate); ``max_rejected`` makes a batch with more
    rejected rows fail for good. One load job runs at a time: each holds the state lock.
    """

    def send(
        items: TDataItems,
        table: TTableSchema,
        api_key: TSecretStrValue = dlt.secrets.value,
        base_url: str | None = None,
        state_dir: str | None = None,
        state: TSecretStrValue | None = None,
        tenant: str | None = None,
    ) -> None:
        settings = resolve_settings(
            api_key=api_key, base_url=base_url, state_dir=state_dir, state=state, tenant=tenant
        )
        load_batch(
            items,
            str(table["name"]),
            settings=settings,
            tables=tables,
            options=options,
            max_rejected=max_rejected,
        )

    factory = dlt.destination(
        send,
        name=name,
        batch_size=batch_size,
        loader_file_format="parquet",
        naming_convention="direct",
        skip_dlt_columns_and_tables=True,
        max_table_nesting=0,
        max_parallel_load_jobs=1,
    )
    return factory()
