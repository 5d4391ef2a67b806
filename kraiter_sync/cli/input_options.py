"""The options for reading inputs (validate, import, reconcile; retry takes the validator's
switches): ``--input PATH [options]`` groups (:class:`InputsCommand`), the mapping
options and the validator's switches."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from kraiter_sync.cli.options import Common, chunk_size_option

if TYPE_CHECKING:
    from kraiter_sync.inputs import Input
    from kraiter_sync.validate import ValidationOptions


__all__ = ["PER_INPUT_OPTIONS", "InputsCommand", "input_options", "validation_flags"]

F = TypeVar("F", bound=Callable[..., Any])


#: The validator's switches: flag and help. The switch is the ValidationOptions field of
#: the flag's name (``--allow-smtputf8``: ``allow_smtputf8``), as in a connector's or a
#: sync job's ``[validation]`` keys (``connectors.VALIDATION_SWITCHES``).
_VALIDATION_FLAGS = (
    (
        "--allow-smtputf8",
        "Accept non-ASCII local parts (off: Kraiter sends through Amazon SES, which refuses them).",
    ),
    (
        "--allow-special-use-domains",
        "Accept addresses under special-use and reserved domains (.test, .invalid, "
        ".localhost, .local, .onion, .arpa, .alt, .internal), e.g. for a test tenant; none "
        "of them can receive mail.",
    ),
    (
        "--allow-secret-keys",
        "Send properties whose keys look like secrets (password, token, secret, api_key), "
        "which are refused by default.",
    ),
    (
        "--allow-card-numbers",
        "Send property values that hold what looks like a payment card number (13-19 "
        "digits passing the Luhn check, alone or inside text), refused by default.",
    ),
)


def _switch(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def validation_flags(func: F) -> F:
    """The validator's switches; the command receives ``validation: ValidationOptions``
    (a connector's or a sync job's ``[validation]`` keys can turn them on too)."""
    for flag, text in reversed(_VALIDATION_FLAGS):
        func = click.option(flag, is_flag=True, help=text)(func)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from kraiter_sync.validate import ValidationOptions

        switches = {_switch(flag): kwargs.pop(_switch(flag)) for flag, _text in _VALIDATION_FLAGS}
        kwargs["validation"] = ValidationOptions(**switches)
        return func(*args, **kwargs)

    return cast(F, wrapper)


#: The options an ``--input PATH`` may be followed by, for that input alone.
PER_INPUT_OPTIONS = (
    "--kind",
    "--connector",
    "--map",
    "--type",
    "--timezone",
    "--timestamp-format",
    "--encoding",
)
_GROUPS_KEY = "kraiter_sync.input_groups"


class InputsCommand(click.Command):
    """A command whose inputs may each carry their own mapping.

    ``--input PATH`` starts an input; the per-input options that follow it (up to the
    next ``--input``) apply to that input alone; options before the first ``--input``,
    and PATH arguments, use the command's options. A grouping rather than a separator
    inside the argument, because any character a separator could use (``:``, ``::``,
    ``#``, ``@``, ``,``) appears in object URLs, SQL URLs or file names.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest: list[str] = []
        groups: list[tuple[str, list[tuple[str, str]]]] = []
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                rest.extend(args[i:])
                break
            name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
            if name == "--input" or (groups and name in PER_INPUT_OPTIONS):
                if not eq:
                    if i + 1 >= len(args):
                        msg = f"{name} needs a value"
                        raise click.UsageError(msg, ctx=ctx)
                    value = args[i + 1]
                    i += 1
                i += 1
                if name == "--input":
                    groups.append((value, []))
                else:
                    groups[-1][1].append((name, value))
                continue
            rest.append(arg)
            i += 1
        ctx.meta[_GROUPS_KEY] = groups
        return super().parse_args(ctx, rest)


def _given_inputs(ctx: click.Context) -> list[Input]:
    """The ``--input PATH [options]`` groups as :class:`~kraiter_sync.inputs.Input`."""
    from kraiter_sync.connectors import parse_overrides
    from kraiter_sync.inputs import Input
    from kraiter_sync.proptypes import parse_type_overrides

    given: list[Input] = []
    for path, options in ctx.meta.get(_GROUPS_KEY, []):
        values: dict[str, list[str]] = {}
        for name, value in options:
            values.setdefault(name, []).append(value)

        def one(name: str, values: dict[str, list[str]] = values, path: str = path) -> str | None:
            found = values.get(name, [])
            if len(found) > 1:
                msg = f"--input {path}: {name} given {len(found)} times"
                raise click.UsageError(msg, ctx=ctx)
            return found[0] if found else None

        kind = one("--kind")
        if kind not in (None, "events", "contacts"):
            msg = f"--input {path}: --kind must be events or contacts, not {kind!r}"
            raise click.UsageError(msg, ctx=ctx)
        given.append(
            Input(
                path,
                kind=cast(Any, kind),
                connector=one("--connector"),
                mapping=parse_overrides(tuple(values.get("--map", []))),
                types=parse_type_overrides(tuple(values.get("--type", []))),
                timezone=one("--timezone"),
                timestamp_format=one("--timestamp-format"),
                encoding=one("--encoding"),
            )
        )
    return given


def input_options(func: F) -> F:
    """Options for reading and mapping inputs, shared by validate, import and reconcile
    (their command class is :class:`InputsCommand`).

    The command receives them as ``inputs: InputOptions``; its ``paths`` get the
    ``--input PATH [options]`` groups appended, as :class:`~kraiter_sync.inputs.Input`.
    """

    @click.option(
        "--input",
        "input_groups",
        metavar="PATH",
        multiple=True,
        help="One input with its own options: the per-input options after it (--kind "
        "--connector --map --type --timezone --timestamp-format --encoding) apply to it "
        "alone, e.g. --input hubspot.csv --connector hubspot --input eu.csv --map "
        "email='Work Email'. Repeatable; PATH arguments use the options given before.",
    )
    @click.option(
        "--timestamp-format",
        default=None,
        metavar="FORMAT",
        help="strftime format of text timestamps that are not ISO 8601, e.g. "
        "'%d/%m/%Y %H:%M' (values without an offset take --timezone).",
    )
    @click.option(
        "--max-reject-ratio",
        type=click.FloatRange(0, 1),
        default=None,
        metavar="R",
        help="Stop before anything is sent (exit 3, with the reason) when more than this "
        "share of the rows is invalid, e.g. 0.05 [default: never stop for that].",
    )
    @click.option(
        "--kind",
        type=click.Choice(["events", "contacts"]),
        default=None,
        help="What the files hold [default: detected from the columns].",
    )
    @click.option(
        "--connector",
        metavar="NAME|FILE",
        default=None,
        help="A preset (see `kraiter-sync connectors`) or a connector .toml file.",
    )
    @click.option(
        "--map",
        "mapping",
        metavar="FIELD=COLUMN",
        multiple=True,
        help="Use COLUMN for FIELD (email, contact_id, user_id, name, timestamp); "
        "repeatable. Wins over detection and connectors.",
    )
    @click.option(
        "--type",
        "types",
        metavar="PROPERTY=TYPE",
        multiple=True,
        help="Send PROPERTY as string, integer, float or boolean, whatever the typing of "
        "text values (CSV) would do, e.g. --type zip=string; repeatable. Wins over "
        "the connector's types.",
    )
    @click.option(
        "--timezone",
        default=None,
        metavar="ZONE",
        help="IANA zone for timestamps without an offset [default: UTC, reported].",
    )
    @click.option(
        "--encoding", default="utf-8", show_default=True, help="Text encoding of CSV/JSON inputs."
    )
    @validation_flags
    @chunk_size_option(
        100_000,
        "Rows read and validated at a time: the memory bound. Larger chunks run faster "
        "and hold more memory.",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from kraiter_sync.connectors import parse_overrides
        from kraiter_sync.inputs import InputOptions
        from kraiter_sync.proptypes import parse_type_overrides

        timezone = kwargs.pop("timezone")
        validation: ValidationOptions = kwargs.pop("validation")
        if timezone:
            validation = dataclasses.replace(validation, timezone=timezone)
        kwargs.pop("input_groups")
        kwargs["inputs"] = InputOptions(
            storage=Common(config_path=kwargs.get("config_path")).storage(),
            kind=kwargs.pop("kind"),
            connector=kwargs.pop("connector"),
            mapping=parse_overrides(kwargs.pop("mapping")),
            types=parse_type_overrides(kwargs.pop("types")),
            encoding=kwargs.pop("encoding"),
            chunk_size=kwargs.pop("chunk_size"),
            timezone=timezone,
            validation=validation,
            timestamp_format=kwargs.pop("timestamp_format"),
            max_reject_ratio=kwargs.pop("max_reject_ratio"),
        )
        kwargs["paths"] = (*kwargs["paths"], *_given_inputs(click.get_current_context()))
        return func(*args, **kwargs)

    return cast(F, wrapper)
