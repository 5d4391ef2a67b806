"""Export against a seeded emulator: every stream and format, schemas, CSV safety, frames."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from kraiter_sync.api.blocking import SyncKraiterClient
from kraiter_sync.emulator import asgi_transport
from kraiter_sync.export import (
    SCHEMAS,
    STREAMS,
    ExportOptions,
    ExportResult,
    export_async,
    export_events,
    read_stream_async,
)
from kraiter_sync.files import neutralise_frame
from tests.helpers.exports import (
    BASE,
    EMAILS,
    FORMULAS,
    KEY,
    client_for,
    new_app,
    read_output,
    row_ids,
    seed,
    truth,
)

FORMATS = ("parquet", "csv", "ndjson")


def _export(
    tmp_path: Path, stream: str, fmt: str, **opts: Any
) -> tuple[ExportResult, pl.DataFrame, list[str], pl.DataFrame]:
    """Seed a fresh emulator, export ``stream``; return result, files read back, truth, frame."""

    async def main() -> tuple[ExportResult, list[str], pl.DataFrame]:
        app = new_app()
        async with client_for(app) as client:
            await seed(client, events=60)
            result = await export_async(
                client,
                stream,
                tmp_path / "out",
                state_dir=tmp_path / "state",
                target="test",
                options=ExportOptions(format=fmt, chunk_rows=40, page_size=25, **opts),  # type: ignore[arg-type]
            )
            expected = await truth(client, stream)
            frame = await read_stream_async(client, stream)
        app.close()
        return result, expected, frame

    result, expected, frame = asyncio.run(main())
    return result, read_output(tmp_path / "out" / stream, fmt), expected, frame


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("stream", list(STREAMS))
def test_every_stream_and_format_exports_exactly_what_kraiter_holds(
    tmp_path: Path, stream: str, fmt: str
) -> None:
    result, files, expected, frame = _export(tmp_path, stream, fmt)
    assert expected, f"the seed left {stream} empty: the test would prove nothing"
    got = row_ids(stream, files)
    assert sorted(got) == sorted(expected)
    assert len(set(got)) == len(got)
    assert result.rows == len(expected)
    assert sorted(row_ids(stream, frame)) == sorted(expected)
    # same columns in the same order in every format
    assert files.columns[: len(SCHEMAS[stream])] == list(SCHEMAS[stream])
    # nothing hidden or temporary is left behind
    out = tmp_path / "out"
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]
    paths = result.paths()
    assert paths
    assert len(paths) == result.files == result.files_total
    assert all(f.exists() and f.is_relative_to(out / stream) for f in paths)
    # one file per partition (per date for events and timelines; one for the others)
    assert len({p.parent for p in paths}) == len(paths)
    assert result.rows_total == result.rows
    assert result.manifest is not None
    manifest = json.loads(Path(result.manifest).read_text())["files"]  # a local state dir
    assert sorted(manifest) == [p.relative_to(out / stream).as_posix() for p in paths]
    assert "paths" not in repr(result)
    assert str(paths[0]) not in repr(result)  # the summary never lists every file


@pytest.mark.parametrize("stream", list(STREAMS))
def test_parquet_has_the_documented_types(tmp_path: Path, stream: str) -> None:
    _, files, _, frame = _export(tmp_path, stream, "parquet")
    assert dict(files.schema) == dict(SCHEMAS[stream])
    assert dict(frame.schema) == dict(SCHEMAS[stream])


@pytest.mark.parametrize("stream", ["events", "timelines"])
def test_events_and_timelines_are_hive_partitioned_by_utc_date(tmp_path: Path, stream: str) -> None:
    _export(tmp_path, stream, "parquet")
    root = tmp_path / "out" / stream
    dirs = sorted(p.name for p in root.iterdir())
    assert {"date=2025-03-01", "date=2025-03-02", "date=2025-03-03"} <= set(dirs)
    scanned = pl.scan_parquet(root, hive_partitioning=True).collect()
    mismatched = scanned.filter(
        pl.col("timestamp").dt.strftime("%Y-%m-%d") != pl.col("date").cast(pl.String)
    )
    assert mismatched.height == 0
    assert scanned.height == pl.read_parquet(list(root.rglob("*.parquet"))).height


def test_events_carry_the_contact_email_and_exact_values(tmp_path: Path) -> None:
    _, files, _, _ = _export(tmp_path, "events", "parquet")
    custom = files.filter(pl.col("name").str.starts_with("page_view"))
    assert custom["email"].null_count() == 0
    assert set(custom["email"]) <= set(EMAILS)
    row = custom.filter(pl.col("properties").str.contains('"i":7,')).row(0, named=True)
    assert json.loads(row["properties"]) == {"i": 7, "path": "/p/7", "ratio": 1.75, "flag": False}
    assert row["timestamp"].isoformat() == "2025-03-02T07:15:00.250000+00:00"
    assert row["email"] == EMAILS[7 % 5]
    # system events are in the feed (analysts want sends/opens) unless --custom-only
    assert files.filter(pl.col("name") == "email.sent").height == 3


def test_custom_only_leaves_out_system_events(tmp_path: Path) -> None:
    result, files, expected, _ = _export(tmp_path, "events", "ndjson", custom_only=True)
    assert files.height == result.rows
    assert not files.filter(pl.col("name").str.starts_with("email.")).height
    assert files.height == 60 + 3  # 60 seeded custom events + 3 signed_up
    assert len(expected) > files.height  # the feed itself also holds system events


def test_text_formats_write_iso_timestamps(tmp_path: Path) -> None:
    _, files, _, _ = _export(tmp_path, "sends", "ndjson")
    assert files["sent_at"].str.contains(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$").all()


def test_csv_neutralises_formulas(tmp_path: Path) -> None:
    _, files, _, _ = _export(tmp_path, "events", "csv")
    names = set(files["name"])
    for formula in FORMULAS:
        assert formula not in names
        assert "'" + formula in names
    # JSON text starts with "{": untouched, still valid JSON
    assert all(json.loads(p) is not None for p in files["properties"])


def test_raw_csv_keeps_cells_as_they_are(tmp_path: Path) -> None:
    _, files, _, _ = _export(tmp_path, "events", "csv", raw_csv=True)
    assert set(FORMULAS) <= set(files["name"])


def test_parquet_and_ndjson_are_never_neutralised(tmp_path: Path) -> None:
    _, files, _, _ = _export(tmp_path, "contacts", "ndjson")
    notes = {json.loads(p)["note"] for p in files["properties"]}
    assert notes == set(FORMULAS)


def test_neutralise_frame_covers_every_owasp_prefix() -> None:
    frame = pl.DataFrame(
        {
            "s": ["=1", "+1", "-1", "@a", "\tx", "\rx", "ok", "a=b", None],
            "n": [-1, 2, 3, 4, 5, 6, 7, 8, 9],
        }
    )
    out = neutralise_frame(frame)
    assert out["s"].to_list() == [
        "'=1",
        "'+1",
        "'-1",
        "'@a",
        "'\tx",
        "'\rx",
        "ok",
        "a=b",
        None,
    ]
    assert out["n"].to_list() == frame["n"].to_list()


def test_flatten_properties_adds_text_columns(tmp_path: Path) -> None:
    _, files, _, _ = _export(tmp_path, "events", "parquet", flatten_properties=True)
    row = files.filter(pl.col("properties").str.contains('"i":7,')).row(0, named=True)
    assert row["properties.i"] == "7"
    assert row["properties.path"] == "/p/7"
    assert row["properties.flag"] == "false"
    assert row["properties.ratio"] == "1.75"
    assert files.schema["properties.i"] == pl.String
    assert "properties" in files.columns  # the lossless JSON column stays


def test_contacts_limit_per_contact_streams(tmp_path: Path) -> None:
    async def main() -> tuple[ExportResult, pl.DataFrame, dict[str, str]]:
        app = new_app()
        async with client_for(app) as client:
            ids = await seed(client, events=20)
            result = await export_async(
                client,
                "timelines",
                tmp_path / "out",
                state_dir=tmp_path / "state",
                target="test",
                options=ExportOptions(
                    contacts=(EMAILS[0], ids[EMAILS[3]], "nobody@example.com", "cnt_missing")
                ),
            )
            frame = await read_stream_async(
                client, "memberships", options=ExportOptions(contacts=(EMAILS[1],))
            )
        app.close()
        return result, frame, ids

    result, memberships, ids = asyncio.run(main())
    files = read_output(tmp_path / "out" / "timelines", "parquet")
    assert set(files["contact_id"]) == {ids[EMAILS[0]], ids[EMAILS[3]]}
    assert set(files["email"]) == {EMAILS[0], EMAILS[3]}
    assert result.contacts_not_found == ["nobody@example.com", "cnt_missing"]
    assert memberships["segment_name"].to_list() == ["Trial"]


def test_contacts_option_is_refused_for_feed_streams(tmp_path: Path) -> None:
    from kraiter_sync.errors import UsageError

    async def main() -> None:
        app = new_app()
        async with client_for(app) as client:
            await export_async(
                client,
                "events",
                tmp_path,
                state_dir=tmp_path / "s",
                target="t",
                options=ExportOptions(contacts=("a@example.com",)),
            )

    with pytest.raises(UsageError, match="per-contact streams"):
        asyncio.run(main())


def test_sync_frame_functions_work_with_the_sync_client() -> None:
    app = new_app()
    with SyncKraiterClient(BASE, KEY, transport=asgi_transport(app)) as client:
        client.create_contact("a@example.com")
        client.track_event("opened_app", email="a@example.com", properties={"v": 1})
        frame = export_events(client)
    app.close()
    assert frame.select("name", "email").rows() == [("opened_app", "a@example.com")]
    assert frame.schema["timestamp"] == pl.Datetime("us", "UTC")


def test_export_to_with_the_sync_client_and_progress_reports(tmp_path: Path) -> None:
    from kraiter_sync.export import export_to

    app = new_app()
    with SyncKraiterClient(BASE, KEY, transport=asgi_transport(app)) as client:
        client.create_contact("a@example.com", user_id="u-1")
        for i in range(7):
            client.track_event("opened_app", email="a@example.com", properties={"i": i})
        result = export_to(
            client, "events", tmp_path / "out", state_dir=tmp_path / "s", target="t", format="csv"
        )
    app.close()
    assert result.rows == 7
    files = read_output(tmp_path / "out" / "events", "csv")
    assert set(files["user_id"]) == {"u-1"}

    reports: list[dict[str, Any]] = []

    async def main() -> ExportResult:
        app2 = new_app()
        async with client_for(app2) as client:
            await seed(client, events=30)
            done = await export_async(
                client,
                "events",
                tmp_path / "out2",
                state_dir=tmp_path / "s",
                target="t",
                progress=reports.append,
            )
        app2.close()
        return done

    done = asyncio.run(main())
    assert reports[-1]["done"] is True
    assert reports[-1]["rows"] == done.rows > 30
    assert reports[-1]["requests"] == done.requests
    assert {"rows_per_s", "requests_per_s", "retries", "stream"} <= set(reports[-1])


def test_emails_come_as_kraiter_holds_them_and_in_unicode_to_join_back() -> None:
    async def main() -> tuple[pl.DataFrame, pl.DataFrame]:
        app = new_app()
        async with client_for(app) as client:
            await client.create_contact("anna@xn--bcher-kva.de")
            await client.create_contact("bob@example.com")
            await client.track_event("page_view", email="anna@xn--bcher-kva.de")
            contacts = await read_stream_async(client, "contacts")
            events = await read_stream_async(client, "events")
        app.close()
        return contacts, events

    contacts, events = asyncio.run(main())
    for frame in (contacts, events.filter(pl.col("name") == "page_view")):
        anna = frame.filter(pl.col("email") == "anna@xn--bcher-kva.de")
        assert anna["email_unicode"].to_list() == ["anna@bücher.de"]
    bob = contacts.filter(pl.col("email") == "bob@example.com")
    assert bob["email_unicode"].to_list() == ["bob@example.com"]


def test_unicode_emails_leave_invalid_labels_as_kraiter_holds_them() -> None:
    from kraiter_sync.export.streams import unicode_emails

    given = pl.Series(["a@XN--BCHER-KVA.DE", "b@xn--zz.example", None, "c@plain.org"])
    assert unicode_emails(given).to_list() == [
        "a@bücher.DE",  # only the encoded label changes
        "b@xn--zz.example",
        None,
        "c@plain.org",
    ]
