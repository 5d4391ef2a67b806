"""``kraiter-sync reconcile``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from kraiter_sync.cli.app import main
from kraiter_sync.cli.input_options import InputsCommand, input_options
from kraiter_sync.cli.options import (
    Common,
    SendFlags,
    common_options,
    emit,
    note,
    send_options,
    target_options,
)
from kraiter_sync.cli.render import apply_summary, events_summary, plan_summary, snapshot_line
from kraiter_sync.errors import (
    ConfigError,
)
from kraiter_sync.logs import get_logger

if TYPE_CHECKING:
    from kraiter_sync.inputs import InputOptions


F = TypeVar("F", bound=Callable[..., Any])
log = get_logger("cli")


@main.command("reconcile", cls=InputsCommand)
@click.argument("paths", nargs=-1)
@input_options
@click.option(
    "--plan-out",
    type=click.Path(path_type=Path),
    default=None,
    metavar="PATH",
    help="Write the full plan (every contact and its action) to PATH: .json or .parquet.",
)
@click.option(
    "--apply", "do_apply", is_flag=True, help="Carry the plan out (default: only show it)."
)
@click.option(
    "--plan",
    "plan_path",
    type=click.Path(path_type=Path),
    default=None,
    metavar="PLAN",
    help="Show a plan saved by --plan-out (no PATHs; nothing is read from Kraiter); with "
    "--apply, carry it out, refusing if the affected contacts changed in Kraiter since it "
    "was computed.",
)
@click.option(
    "--mirror",
    is_flag=True,
    help="Delete contacts that are in Kraiter but not in the input (guarded: see below).",
)
@click.option(
    "--mirror-properties",
    is_flag=True,
    help="Remove properties Kraiter has but the input lacks (default: leave them alone).",
)
@click.option(
    "--max-delete-ratio",
    type=click.FloatRange(0, 1),
    default=0.05,
    show_default=True,
    metavar="R",
    help="With --mirror: refuse to delete more than this share of Kraiter's contacts.",
)
@click.option(
    "--tombstone",
    type=click.Path(path_type=Path),
    default=None,
    metavar="PATH",
    help="With --mirror: where to save the deleted contacts "
    "[default: STATE_DIR/tombstones/tombstone-TIME.json].",
)
@click.option(
    "--remote",
    "strategy",
    type=click.Choice(["auto", "listing", "lookups"]),
    default="auto",
    show_default=True,
    help="How to read Kraiter: list every contact, look each local email up, or pick "
    "the cheaper from the counts.",
)
@click.option(
    "--sample",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    metavar="N",
    help="Changes shown per action.",
)
@send_options
@target_options
@common_options
def reconcile_command(
    *,
    common: Common,
    paths: tuple[str, ...],
    inputs: InputOptions,
    sending: SendFlags,
    plan_out: Path | None,
    do_apply: bool,
    plan_path: Path | None,
    mirror: bool,
    mirror_properties: bool,
    max_delete_ratio: float,
    tombstone: Path | None,
    strategy: str,
    sample: int,
) -> None:
    """Show what differs between the input and Kraiter, right now; optionally fix it.

    Contacts are matched by normalised email (case-insensitive). Each lands in one of:
    create (not in Kraiter), update (properties or userId differ: old → new shown),
    unchanged, or only-in-Kraiter (left alone unless --mirror). Changes made directly
    in Kraiter show up too. A property Kraiter has but the input lacks is left alone
    unless --mirror-properties.

    \b
    --mirror deletes only-in-Kraiter contacts, with guards (exit 2 when refused):
      * an empty input, or one with rejected rows, is refused;
      * deleting more than --max-delete-ratio of Kraiter's contacts is refused;
      * a tombstone file with every deleted contact is written first;
        `kraiter-sync restore TOMBSTONE` recreates them.

    \b
    Examples:
      kraiter-sync reconcile contacts.csv
      kraiter-sync reconcile contacts.csv --plan-out plan.json
      kraiter-sync reconcile --plan plan.json            # show it again
      kraiter-sync reconcile --plan plan.json --apply
      kraiter-sync reconcile contacts.parquet --mirror --apply
      kraiter-sync reconcile --kind events events.parquet --apply

    With events, the count of valid local events per contact and event name is
    compared with Kraiter's; --apply sends the missing ones through the import engine
    (events are never deleted).
    """
    from kraiter_sync.verbs.reconcile import (
        ReconcileOptions,
        apply_saved_plan,
        reconcile,
    )

    if plan_path is not None and not do_apply:
        _show_saved_plan(common, plan_path, paths, sample)
        return
    settings = common.settings()
    options = ReconcileOptions(
        mirror=mirror,
        mirror_properties=mirror_properties,
        max_delete_ratio=max_delete_ratio,
        strategy=cast("Any", strategy),
        apply=do_apply,
        plan_out=plan_out,
        tombstone=tombstone,
        rejects=sending.rejects,
        concurrency=sending.concurrency,
        max_retries=sending.max_retries,
        rate=sending.rate,
        allow_triggers=sending.allow_triggers,
    )
    if plan_path is not None:
        if paths:
            msg = "pass either PATHs to compare or --plan PLAN to apply, not both"
            raise ConfigError(msg)
        with common.progress() as progress:
            result = apply_saved_plan(
                plan_path, settings=settings, options=options, on_progress=progress.sending
            )
    else:
        if not paths:
            msg = "no input given: pass one or more files (or --plan PLAN [--apply])"
            raise ConfigError(msg)
        with common.progress() as progress:
            result = reconcile(
                paths,
                settings=settings,
                inputs=inputs,
                options=options,
                on_progress=progress.reading(),
                on_compared=progress.comparing(),
                on_validated=progress.validating(),
            )
    if result.report is not None:
        r = result.report
        what = "contacts" if result.events is None else "valid events"
        note(
            common,
            f"input: {r.rows_read:,} rows, {r.valid:,} {what}, {r.duplicates:,} "
            f"{'merged ' if result.events is None else ''}duplicates, {r.rejected:,} rejected",
        )
    if result.snapshot is not None:
        note(common, snapshot_line(result.snapshot))
    if result.events is not None:
        emit(common, result.to_json(), events_summary(result.events, sample=sample))
        sys.exit(result.exit_code)
    assert result.plan is not None  # noqa: S101 (contacts)
    text = plan_summary(result.plan, sample=sample)
    if result.plan_path is not None:
        note(common, f"plan written to {result.plan_path}")
    if result.applied is not None:
        text += "\n" + apply_summary(result.applied)
    elif do_apply:
        text += "\nnothing to apply: Kraiter already matches the input"
    emit(common, result.to_json(), text)
    sys.exit(result.exit_code)


def _show_saved_plan(
    common: Common, plan_path: Path, paths: tuple[object, ...], sample: int
) -> None:
    """``reconcile --plan FILE``: the saved plan, as ``reconcile`` showed it; Kraiter is
    not read (``--apply`` checks it is still current before carrying it out)."""
    from kraiter_sync.verbs.reconcile import show_saved_plan

    if paths:
        msg = "pass either PATHs to compare or --plan PLAN, not both"
        raise ConfigError(msg)
    result = show_saved_plan(plan_path)
    assert result.plan is not None  # noqa: S101 (a saved plan)
    text = plan_summary(result.plan, sample=sample)
    text += f"\n(saved plan {plan_path}; carry it out with --plan {plan_path} --apply)"
    emit(common, result.to_json(), text)
