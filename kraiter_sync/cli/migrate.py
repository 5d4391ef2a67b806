"""``kraiter-sync state migrate``: copy a state directory's SQLite state into PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import click

from kraiter_sync.cli.options import Common, common_options, emit, no_target_options
from kraiter_sync.cli.render import migrate_summary, result_document
from kraiter_sync.cli.state import state_group


@state_group.command("migrate")
@click.option(
    "--to",
    "to",
    required=True,
    metavar="URL",
    help="The PostgreSQL state store to copy into, e.g. postgresql://kraiter@db.internal/"
    "kraiter (?schema=NAME for another schema than kraiter_sync). Put the password in "
    "PGPASSWORD or ~/.pgpass rather than on the command line.",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Overwrite what the destination already holds for the same targets (refused otherwise).",
)
@no_target_options
@common_options
def migrate_command(to: str, replace: bool, common: Common) -> None:
    """Copy the SQLite state of --state-dir into a PostgreSQL state store.

    Every table (ledger, runs, tenants, key versions, contact cache, watermarks) and every
    blob (export state, sync row caches) is copied in one transaction and verified by
    counts per table and target before it commits; the SQLite state is left as it was.
    A destination that already holds state for the same targets is refused unless
    --replace. Then point every machine at the store with --state or KRAITER_SYNC_STATE.

    \b
    Example:
      PGPASSWORD=... kraiter-sync state migrate --to postgresql://kraiter@db.internal/kraiter
    """
    from kraiter_sync.config import check_state_url
    from kraiter_sync.state.migrate import migrate_state

    common.mask_state_url(to)
    state_dir: Path = common.state_dir_only()
    result = migrate_state(state_dir, check_state_url(to, "--to"), replace=replace)
    emit(common, result_document("state migrate", **result.as_dict()), migrate_summary(result))
