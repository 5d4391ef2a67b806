"""``kraiter-sync emulator``: serve the local Kraiter over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from kraiter_sync.cli.app import main
from kraiter_sync.cli.options import Common, common_options, no_target_options
from kraiter_sync.errors import (
    ConfigError,
)
from kraiter_sync.logs import get_logger

if TYPE_CHECKING:
    from kraiter_sync.emulator.config import ListShape, UnknownEmail


F = TypeVar("F", bound=Callable[..., Any])
log = get_logger("cli")


def _emulator_db(common: Common, db: str | None) -> str:
    """--db, else local-kraiter.db in the state directory (flag > env > toml > default)."""
    if db is not None:
        return db
    state_dir = common.state_dir_only()
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"cannot create the state directory {state_dir}: {exc.strerror}"
        raise ConfigError(msg) from None
    return str(state_dir / "local-kraiter.db")


@main.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8787,
    show_default=True,
    help="Port to listen on (0 picks a free one).",
)
@click.option(
    "--db",
    "db",
    default=None,
    metavar="PATH",
    help="SQLite file to keep the data in, or :memory: "
    "[default: local-kraiter.db in the state directory].",
)
@click.option(
    "--rate-limit",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    metavar="N",
    help="Requests per second per tenant (API key); 0 turns it off.",
)
@click.option(
    "--burst",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Requests a tenant may make at once [default: one second's worth].",
)
@click.option(
    "--latency",
    "latency_ms",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    metavar="MS",
    help="Delay added to every API request.",
)
@click.option(
    "--fail-rate",
    type=click.FloatRange(0, 1),
    default=0,
    show_default=True,
    metavar="P",
    help="Share of API requests answered 5xx without being applied.",
)
@click.option(
    "--drop-rate",
    type=click.FloatRange(0, 1),
    default=0,
    show_default=True,
    metavar="P",
    help="Share of API requests applied, then cut without an answer.",
)
@click.option(
    "--seed", type=int, default=None, help="Seed for the fault draws (reproducible runs)."
)
@click.option(
    "--unknown-email",
    type=click.Choice(["create", "not-found", "link-later"]),
    default="create",
    show_default=True,
    help="An event for an email with no contact: auto-create the contact, answer "
    "404, or store it and link it when the contact appears.",
)
@click.option(
    "--hide-rate-headers",
    is_flag=True,
    help="Send 429s but no X-RateLimit-* headers (an API that says nothing).",
)
@click.option(
    "--list-shape",
    type=click.Choice(["data", "items"]),
    default="data",
    show_default=True,
    help="List envelope: {data, nextCursor} or the SDK's {items, nextCursor}.",
)
@click.option(
    "--strict-contact-ref",
    is_flag=True,
    help="Reject events that carry both contactId and email (400) instead of "
    "letting contactId win.",
)
@no_target_options
@common_options
def emulator_command(
    *,
    common: Common,
    host: str,
    port: int,
    db: str | None,
    rate_limit: float,
    burst: int | None,
    latency_ms: float,
    fail_rate: float,
    drop_rate: float,
    seed: int | None,
    unknown_email: UnknownEmail,
    hide_rate_headers: bool,
    list_shape: ListShape,
    strict_contact_ref: bool,
) -> None:
    """Run a local Kraiter: the full REST API over SQLite, on real HTTP.

    Any bearer key starting with kr_ is accepted; each distinct key is its own tenant.
    Point kraiter-sync (or anything else) at it with
    KRAITER_BASE_URL=http://127.0.0.1:8787 KRAITER_API_KEY=kr_test. Faults and rate
    limits make it behave like a busy, flaky API, for testing what you build on it.
    Stop it with Ctrl-C. With --json, one line on stdout says where it listens
    ({"base_url": …}), and its messages go to stderr.

    \b
    Admin routes (same key, outside the Kraiter API):
      POST /_emulator/tick       deliver due scheduled sends (sends + email.* events)
      POST /_emulator/segments   {"name", "contactIds"}: a segment with members
      POST /_emulator/suppress   {"contactId", "suppressed"}
    """
    import json
    import sys

    from kraiter_sync.cli.render import result_document
    from kraiter_sync.upload.context import serve_local_kraiter

    db_path = _emulator_db(common, db)

    def ready(url: str) -> None:
        # --json: one line on stdout once listening (the port, when --port 0 picked one)
        doc = result_document("emulator", status="serving", base_url=url, db=db_path)
        click.echo(json.dumps(doc))
        sys.stdout.flush()

    serve_local_kraiter(
        db_path=db_path,
        host=host,
        port=port,
        out=sys.stderr if common.json else None,
        on_ready=ready if common.json else None,
        rate_limit=rate_limit,
        burst=burst,
        latency_ms=latency_ms,
        fail_rate=fail_rate,
        drop_rate=drop_rate,
        seed=seed,
        unknown_email=unknown_email,
        hide_rate_headers=hide_rate_headers,
        list_shape=list_shape,
        strict_contact_ref=strict_contact_ref,
    )
