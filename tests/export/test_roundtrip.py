"""Round trip: `export events` output → the kraiter_export preset → a fresh tenant.

End to end through ``importer.import_`` (the real engine) into an empty local Kraiter,
and at the mapping level (preset → validator) for the details. The comparison is on
what matters: the same events (email, name, timestamp, properties) end up in the empty
tenant, none missing, none extra.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.config import resolve_settings
from kraiter_sync.connectors import apply, load_connector
from kraiter_sync.export import ExportOptions, export, export_async, read_stream_async
from kraiter_sync.inputs import InputOptions
from kraiter_sync.sources import read_source
from kraiter_sync.upload.context import client_for as settings_client
from kraiter_sync.validate import validate_events
from kraiter_sync.verbs.importer import ImportOptions, import_
from tests.helpers.exports import FORMULAS, client_for, new_app, seed

Event = tuple[str | None, str, str, str]


async def _events(client: KraiterClient) -> Counter[Event]:
    """The tenant's custom events as comparable tuples (ids differ between tenants)."""
    frame = await read_stream_async(client, "events", options=ExportOptions(custom_only=True))
    iso = frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
    return Counter(
        (email, name, ts, json.dumps(json.loads(props), sort_keys=True))
        for email, name, ts, props in zip(
            frame["email"], frame["name"], iso, frame["properties"], strict=True
        )
    )


def _mapped(directory: Path) -> pl.DataFrame:
    return apply(load_connector("kraiter_export"), read_source(directory))


@pytest.mark.parametrize("fmt", ["parquet", "csv", "ndjson"])
def test_export_feeds_back_into_an_empty_tenant(tmp_path: Path, fmt: str) -> None:
    source, target = new_app(), new_app()

    async def main() -> tuple[Counter[Event], Counter[Event], int]:
        async with client_for(source) as client:
            await seed(client, events=80)
            await export_async(
                client,
                "events",
                tmp_path / "out",
                state_dir=tmp_path / "state",
                target="source",
                options=ExportOptions(format=fmt, custom_only=True, raw_csv=True, chunk_rows=50),  # type: ignore[arg-type]
            )
            before = await _events(client)
        result = validate_events(_mapped(tmp_path / "out" / "events"))
        assert result.rejects.height == 0, result.rejects.to_dicts()[:3]
        async with client_for(target) as empty:
            for row in result.valid.iter_rows(named=True):
                await empty.track_event(
                    row["name"],
                    email=row["email"],
                    properties=row["properties"],
                    timestamp=row["timestamp_iso"],
                )
            after = await _events(empty)
        return before, after, result.valid.height

    before, after, sent = asyncio.run(main())
    source.close()
    target.close()
    assert sent == sum(before.values()) == 80 + 3
    assert after == before  # nothing missing, nothing extra, values intact


def test_system_events_come_back_as_reserved_rejects(tmp_path: Path) -> None:
    app = new_app()

    async def main() -> None:
        async with client_for(app) as client:
            await seed(client, events=10)
            await export_async(
                client,
                "events",
                tmp_path / "out",
                state_dir=tmp_path / "state",
                target="t",
                options=ExportOptions(format="ndjson"),
            )

    asyncio.run(main())
    app.close()
    result = validate_events(_mapped(tmp_path / "out" / "events"))
    rules = set(result.rejects["rule"])
    assert rules == {"name.reserved"}
    assert (
        result.rejects.height
        == 3 * 2 + result.rejects.filter(pl.col("name") == "email.opened").height
    )  # email.sent + email.delivered per delivered send, some opened
    assert result.valid.height == 10 + 3


def test_neutralised_csv_changes_only_formula_cells(tmp_path: Path) -> None:
    app = new_app()

    async def main() -> None:
        async with client_for(app) as client:
            await seed(client, events=80)  # every formula name appears at least once
            await export_async(
                client,
                "events",
                tmp_path / "out",
                state_dir=tmp_path / "state",
                target="t",
                options=ExportOptions(format="csv", custom_only=True),
            )

    asyncio.run(main())
    app.close()
    mapped = _mapped(tmp_path / "out" / "events")
    names = set(mapped["name"])
    assert {"'" + f for f in FORMULAS} <= names
    assert {n for n in names if n.startswith("'")} == {"'" + f for f in FORMULAS}
    # properties (JSON text starting with "{") and timestamps survive untouched
    assert validate_events(mapped).rejects.height == 0


@pytest.mark.parametrize("fmt", ["parquet", "csv", "ndjson"])
def test_round_trip_through_the_importer_into_an_empty_tenant(tmp_path: Path, fmt: str) -> None:
    source = resolve_settings(state_dir=tmp_path / "source", env={})
    empty = resolve_settings(state_dir=tmp_path / "empty", env={})
    assert source.local
    assert empty.local
    assert source.target != empty.target

    async def fill() -> Counter[Event]:
        async with settings_client(source) as client:
            await seed(client, events=60)
            return await _events(client)

    before = asyncio.run(fill())
    out = tmp_path / "export"
    options = ExportOptions(format=fmt, custom_only=True, raw_csv=True)  # type: ignore[arg-type]
    export("events", out, settings=source, options=options)
    result = import_(
        [out / "events"],
        settings=empty,
        options=ImportOptions(input=InputOptions(connector="kraiter_export")),
    )
    assert result.exit_code == 0, result.as_dict()
    assert result.events.sent == sum(before.values())

    async def read() -> Counter[Event]:
        async with settings_client(empty) as client:
            return await _events(client)

    assert asyncio.run(read()) == before
