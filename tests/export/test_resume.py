"""Incremental runs, killed runs, out-of-retries and replacement: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.emulator import EmulatorApp
from kraiter_sync.errors import IncompleteError, LockHeldError, UsageError
from kraiter_sync.export import ExportOptions, ExportResult, export_async
from kraiter_sync.export.state import ExportState, state_path
from tests.helpers.exports import (
    EMAILS,
    add_events,
    admin,
    client_for,
    new_app,
    read_output,
    read_output_file,
    row_ids,
    seed,
    truth,
)


class Killed(BaseException):
    """Stands for SIGKILL: nothing in the exporter may catch it."""


class Failing(httpx.AsyncBaseTransport):
    """Passes ``ok`` API GETs through, then raises ``Killed`` or answers 503 for good."""

    def __init__(self, inner: httpx.AsyncBaseTransport, ok: int, *, mode: str = "kill") -> None:
        self.inner = inner
        self.ok = ok
        self.mode = mode
        self.seen = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.startswith("/api"):
            self.seen += 1
            if self.seen > self.ok:
                if self.mode == "kill":
                    raise Killed
                return httpx.Response(
                    503, json={"error": {"code": "SERVICE_UNAVAILABLE", "message": "down"}}
                )
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _no_sleep(_: float) -> None:
    return None


def _opts(**kw: Any) -> ExportOptions:
    base: dict[str, Any] = {"chunk_rows": 30, "page_size": 10, "retries": 1}
    base.update(kw)
    return ExportOptions(**base)


async def _run(
    app: EmulatorApp,
    tmp_path: Path,
    stream: str,
    *,
    wrap: Callable[[httpx.AsyncBaseTransport], Any] | None = None,
    **kw: Any,
) -> ExportResult:
    async with client_for(app, wrap=wrap) as client:
        return await export_async(
            client,
            stream,
            tmp_path / "out",
            state_dir=tmp_path / "state",
            target="test",
            options=_opts(**kw),
            sleep=_no_sleep,
        )


async def _with_client(app: EmulatorApp, fn: Callable[[KraiterClient], Awaitable[Any]]) -> Any:
    async with client_for(app) as client:
        return await fn(client)


def _files(tmp_path: Path, stream: str, fmt: str = "parquet") -> pl.DataFrame:
    return read_output(tmp_path / "out" / stream, fmt)


def _assert_exact(tmp_path: Path, app: EmulatorApp, stream: str, fmt: str = "parquet") -> None:
    expected = asyncio.run(_with_client(app, lambda c: truth(c, stream)))
    got = row_ids(stream, _files(tmp_path, stream, fmt))
    assert len(got) == len(set(got)), "duplicated rows in the output"
    assert sorted(got) == sorted(expected)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "ndjson"])
def test_incremental_run_exports_only_new_events(tmp_path: Path, fmt: str) -> None:
    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=40)))
    first = asyncio.run(_run(app, tmp_path, "events", format=fmt))
    assert first.mode == "incremental"
    again = asyncio.run(_run(app, tmp_path, "events", format=fmt))
    assert again.rows == 0
    assert again.files == 0
    assert again.files_total == first.files_total
    asyncio.run(_with_client(app, lambda c: add_events(c, 25, start=1000)))
    second = asyncio.run(_run(app, tmp_path, "events", format=fmt))
    assert second.rows == 25
    new = read_output(tmp_path / "out" / "events", fmt).filter(
        pl.col("properties").str.contains('"i":1')
    )
    assert new.height >= 25
    _assert_exact(tmp_path, app, "events", fmt)
    app.close()


def test_incremental_timelines_and_sends_follow_each_contact(tmp_path: Path) -> None:
    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=30)))
    asyncio.run(_run(app, tmp_path, "timelines"))
    asyncio.run(_run(app, tmp_path, "sends"))

    async def more(client: KraiterClient) -> None:
        await client.create_contact("late@example.com")
        for email in (*EMAILS[3:], "late@example.com"):
            await client.track_event("signed_up", email=email)
        await admin(client, "tick", {})
        await add_events(client, 12, start=500)

    asyncio.run(_with_client(app, more))
    timelines = asyncio.run(_run(app, tmp_path, "timelines"))
    sends = asyncio.run(_run(app, tmp_path, "sends"))
    # 3 signed_up + 12 events + for 3 contacts: enrolled + email.sent + email.delivered (+opened)
    assert timelines.rows >= 15 + 3 * 3
    assert sends.rows == 3
    _assert_exact(tmp_path, app, "timelines")
    _assert_exact(tmp_path, app, "sends")
    app.close()


@pytest.mark.parametrize(
    ("stream", "ok", "page"),
    [
        ("events", 6, 10),
        ("timelines", 9, 10),
        ("contacts", 2, 2),
        ("enrolments", 3, 10),
        ("memberships", 8, 1),
        ("sends", 2, 1),
        ("scheduled", 1, 1),
    ],
)
def test_killed_export_resumes_without_duplicates(
    tmp_path: Path, stream: str, ok: int, page: int
) -> None:
    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=90)))
    with pytest.raises(Killed):
        asyncio.run(
            _run(
                app,
                tmp_path,
                stream,
                page_size=page,
                chunk_rows=1,
                wrap=lambda t: Failing(t, ok),
            )
        )
    # nothing temporary is visible; the run is recorded as unfinished
    visible = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert not [p for p in visible if ".tmp" in p.name and not p.name.startswith(".")]
    resumed = asyncio.run(_run(app, tmp_path, stream, page_size=page, chunk_rows=1))
    assert resumed.resumed
    _assert_exact(tmp_path, app, stream)
    total = len(asyncio.run(_with_client(app, lambda c: truth(c, stream))))
    clean = asyncio.run(_run(app, tmp_path / "clean", stream, page_size=page, chunk_rows=1))
    # it continued; it did not start over
    assert resumed.rows < total
    assert resumed.requests < clean.requests
    assert not list((tmp_path / "out").rglob(".*"))
    app.close()


def test_killed_incremental_run_shows_nothing_then_resumes_from_its_checkpoints(
    tmp_path: Path,
) -> None:
    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=90)))
    with pytest.raises(Killed):
        asyncio.run(_run(app, tmp_path, "events", wrap=lambda t: Failing(t, 7)))
    # checkpoints stay in the run's hidden staging folder; the stream folder shows nothing
    assert not (tmp_path / "out" / "events").exists()
    assert list((tmp_path / "out").glob(".events.run-*/chunk-*.arrow"))
    resumed = asyncio.run(_run(app, tmp_path, "events"))
    assert resumed.resumed
    total = len(asyncio.run(_with_client(app, lambda c: truth(c, "events"))))
    assert 0 < resumed.rows < total  # it continued from the last checkpoint
    assert resumed.rows_total == total
    _assert_exact(tmp_path, app, "events")
    app.close()


def test_killed_snapshot_leaves_the_previous_snapshot_in_place(tmp_path: Path) -> None:
    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=0)))
    asyncio.run(_run(app, tmp_path, "contacts", page_size=2, chunk_rows=2))
    before = sorted(_files(tmp_path, "contacts")["id"])

    async def more(client: KraiterClient) -> None:
        for i in range(6):
            await client.create_contact(f"new{i}@example.com")

    asyncio.run(_with_client(app, more))
    with pytest.raises(Killed):
        asyncio.run(
            _run(app, tmp_path, "contacts", page_size=2, chunk_rows=2, wrap=lambda t: Failing(t, 3))
        )
    assert sorted(_files(tmp_path, "contacts")["id"]) == before
    asyncio.run(_run(app, tmp_path, "contacts", page_size=2, chunk_rows=2))
    _assert_exact(tmp_path, app, "contacts")
    assert len(_files(tmp_path, "contacts")) == len(before) + 6
    app.close()


def test_kill_between_journal_and_rename_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=90)))
    real_replace = Path.replace
    calls = {"n": 0}

    def dying_replace(self: Path, target: Any) -> Path:
        if ".events.run-" in str(self) and self.name.startswith("part-"):
            calls["n"] += 1
            if calls["n"] == 2:  # in the middle of putting the run's files in place
                raise Killed
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", dying_replace)
    with pytest.raises(Killed):
        asyncio.run(_run(app, tmp_path, "events"))
    monkeypatch.setattr(Path, "replace", real_replace)
    assert len(list((tmp_path / "out" / "events").rglob("part-*"))) == 1
    asyncio.run(_run(app, tmp_path, "events"))
    _assert_exact(tmp_path, app, "events")
    assert not list((tmp_path / "out").glob(".events.*"))
    app.close()


def test_out_of_retries_stops_resumably_with_exit_code_4(tmp_path: Path) -> None:
    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=90)))
    with pytest.raises(IncompleteError, match="re-run the same command") as info:
        asyncio.run(_run(app, tmp_path, "events", wrap=lambda t: Failing(t, 8, mode="503")))
    assert info.value.exit_code == 4
    kept = _files(tmp_path, "events").height
    assert kept > 0  # what was read before the failure was committed
    asyncio.run(_run(app, tmp_path, "events"))
    _assert_exact(tmp_path, app, "events")
    app.close()


def test_retries_ride_out_a_short_outage(tmp_path: Path) -> None:
    class Blip(httpx.AsyncBaseTransport):
        def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
            self.inner, self.n = inner, 0

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            self.n += 1
            if self.n in (3, 4) and request.url.path.startswith("/api"):
                return httpx.Response(
                    429,
                    headers={"Retry-After": "1"},
                    json={"error": {"code": "RATE_LIMITED", "message": "slow"}},
                )
            return await self.inner.handle_async_request(request)

        async def aclose(self) -> None:
            await self.inner.aclose()

    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=40)))
    result = asyncio.run(_run(app, tmp_path, "events", retries=3, wrap=Blip))
    assert result.retries == 2
    _assert_exact(tmp_path, app, "events")
    app.close()


def test_replace_replaces_the_output_and_a_window_never_touches_it(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=60)))
    asyncio.run(_run(app, tmp_path, "events"))
    full = asyncio.run(_run(app, tmp_path, "events", replace=True))
    assert full.mode == "full"
    assert full.replaced > 0
    _assert_exact(tmp_path, app, "events")  # replaced, not appended
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "out" / "events").rglob("*"))

    since, until = datetime(2025, 3, 2, tzinfo=UTC), datetime(2025, 3, 4, tzinfo=UTC)
    window = asyncio.run(_run(app, tmp_path, "events", since=since, until=until))
    assert window.mode == "window"
    assert window.window == "since-2025-03-02-until-2025-03-04"
    rows = read_output(tmp_path / "out" / "events-since-2025-03-02-until-2025-03-04", "parquet")
    assert rows.height == window.rows > 0
    assert rows["timestamp"].min() >= since  # type: ignore[operator]
    assert rows["timestamp"].max() < until  # type: ignore[operator]
    # the stream's own folder and its history are untouched
    after = sorted(p.relative_to(tmp_path) for p in (tmp_path / "out" / "events").rglob("*"))
    assert after == before
    _assert_exact(tmp_path, app, "events")
    # the stream's incremental runs go on from where they were: only new rows
    asyncio.run(_with_client(app, lambda c: add_events(c, 3, start=900)))
    nxt = asyncio.run(_run(app, tmp_path, "events"))
    assert nxt.rows == 3
    app.close()


def test_changing_format_needs_replace(tmp_path: Path) -> None:
    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=5)))
    asyncio.run(_run(app, tmp_path, "events"))
    with pytest.raises(UsageError, match="--replace"):
        asyncio.run(_run(app, tmp_path, "events", format="csv"))
    asyncio.run(_run(app, tmp_path, "events", format="csv", replace=True))
    assert not list((tmp_path / "out" / "events").rglob("*.parquet"))
    _assert_exact(tmp_path, app, "events", "csv")
    app.close()


def test_deleted_output_is_exported_again_in_full(tmp_path: Path) -> None:
    import shutil

    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=5)))
    asyncio.run(_run(app, tmp_path, "events"))
    shutil.rmtree(tmp_path / "out" / "events")
    result = asyncio.run(_run(app, tmp_path, "events"))
    assert result.mode == "full"
    _assert_exact(tmp_path, app, "events")
    app.close()


def test_watermarks_are_per_output_directory(tmp_path: Path) -> None:
    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=5)))
    asyncio.run(_run(app, tmp_path / "a", "events"))
    other = asyncio.run(_run(app, tmp_path / "b", "events"))
    assert other.rows > 0
    app.close()


def test_state_holds_no_secret_and_a_version(tmp_path: Path) -> None:
    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=5)))
    asyncio.run(_run(app, tmp_path, "events"))
    files = list((tmp_path / "state" / "export").glob("*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert data["version"] == 3
    assert data["run"] is None
    assert data["watermark"]["pos"]["last_id"].startswith("evt_")
    assert "kr_" not in files[0].read_text()
    app.close()


def test_a_second_export_of_the_same_stream_waits_for_the_lock(tmp_path: Path) -> None:
    state = ExportState(state_path(tmp_path / "state", "test", "events", tmp_path / "out"))
    app = new_app()
    with state.locked(), pytest.raises(LockHeldError):
        asyncio.run(_run(app, tmp_path, "events"))
    app.close()


def test_resume_finishes_with_the_options_the_run_started_with(tmp_path: Path) -> None:
    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=90)))
    with pytest.raises(Killed):
        asyncio.run(_run(app, tmp_path, "events", custom_only=True, wrap=lambda t: Failing(t, 5)))
    resumed = asyncio.run(_run(app, tmp_path, "events"))  # flag forgotten on re-run
    assert resumed.resumed
    names = _files(tmp_path, "events")["name"]
    assert not names.str.starts_with("email.").any()
    assert names.len() == 90 + 3
    app.close()


def test_appending_with_other_layout_options_needs_full(tmp_path: Path) -> None:
    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=5)))
    asyncio.run(_run(app, tmp_path, "events", custom_only=True))
    with pytest.raises(UsageError, match="custom_only=True"):
        asyncio.run(_run(app, tmp_path, "events"))
    asyncio.run(_run(app, tmp_path, "events", custom_only=True))  # same options: fine
    app.close()


def test_unusable_output_or_state_paths_are_clear_errors(tmp_path: Path) -> None:
    from kraiter_sync.errors import ConfigError, StateError

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    app = new_app()

    async def run(out: Path, state: Path) -> None:
        async with client_for(app) as client:
            await export_async(client, "events", out, state_dir=state, target="t")

    with pytest.raises(ConfigError, match="cannot create --out"):
        asyncio.run(run(blocker / "out", tmp_path / "state"))
    with pytest.raises(StateError, match="cannot use the state directory"):
        asyncio.run(run(tmp_path / "out", blocker / "state"))
    app.close()


# -- exports touch only what they wrote ---------------------------------------------------


def _plant(directory: Path) -> None:
    """What a user keeps in a folder they point --out at."""
    (directory / "sub").mkdir(parents=True)
    (directory / "thesis.docx").write_text("hi")
    (directory / "sub" / "notes.txt").write_text("mine")


def _planted_intact(directory: Path) -> bool:
    return (directory / "thesis.docx").read_text() == "hi" and (
        directory / "sub" / "notes.txt"
    ).read_text() == "mine"


@pytest.mark.parametrize(("stream", "kw"), [("contacts", {}), ("events", {"full": True})])
def test_a_folder_holding_other_files_is_refused_then_shared_with_overwrite(
    tmp_path: Path, stream: str, kw: dict[str, Any]
) -> None:
    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=20)))
    target = tmp_path / "out" / stream
    _plant(target)
    with pytest.raises(UsageError) as caught:
        asyncio.run(_run(app, tmp_path, stream, **kw))
    assert str(caught.value) == (
        f"refusing to export into {target}: it holds 2 files kraiter-sync did not write "
        "(sub/notes.txt, thesis.docx). Choose another --out, or pass --overwrite to export "
        "there anyway: kraiter-sync only ever replaces or deletes the files it wrote"
    )
    assert _planted_intact(target)
    assert not list(target.rglob("part-*"))
    for _ in range(2):  # the second run replaces the first one's files, and only those
        asyncio.run(_run(app, tmp_path, stream, overwrite=True, **kw))
        assert _planted_intact(target)
        _assert_exact(tmp_path, app, stream)
    app.close()


def test_symlinks_and_files_where_the_stream_folder_goes_are_refused(tmp_path: Path) -> None:
    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=5)))
    out = tmp_path / "out"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out.mkdir()
    (out / "contacts").symlink_to(elsewhere)
    with pytest.raises(UsageError, match=r"contacts is a symbolic link: kraiter-sync does not"):
        asyncio.run(_run(app, tmp_path, "contacts"))
    (out / "contacts").unlink()
    (out / "contacts").write_text("a file")
    with pytest.raises(UsageError, match=r"contacts is a file, where the contacts export"):
        asyncio.run(_run(app, tmp_path, "contacts", overwrite=True))
    (out / "contacts").unlink()
    (out / "events" / "date=2025-03-01").parent.mkdir()
    (out / "events" / "date=2025-03-01").symlink_to(elsewhere)
    with pytest.raises(UsageError, match=r"date=2025-03-01 is a symbolic link"):
        asyncio.run(_run(app, tmp_path, "events", overwrite=True))
    assert list(elsewhere.iterdir()) == []
    app.close()


def _manifest(tmp_path: Path) -> dict[str, Any]:
    (doc,) = (tmp_path / "state" / "export").glob("*.json")
    files: dict[str, Any] = json.loads(doc.read_text())["files"]
    return files


@pytest.mark.parametrize("fmt", ["parquet", "csv", "ndjson"])
def test_the_manifest_lists_every_file_with_its_row_count(tmp_path: Path, fmt: str) -> None:
    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=40)))
    first = asyncio.run(_run(app, tmp_path, "events", format=fmt))
    asyncio.run(_with_client(app, lambda c: add_events(c, 7, start=700)))
    second = asyncio.run(_run(app, tmp_path, "events", format=fmt))
    target = tmp_path / "out" / "events"
    on_disk = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}
    manifest = _manifest(tmp_path)
    assert set(manifest) == on_disk
    for rel, entry in manifest.items():
        assert entry["rows"] == read_output_file(target / rel, fmt).height, rel
    assert sum(e["rows"] for e in manifest.values()) == first.rows + second.rows
    full = asyncio.run(_run(app, tmp_path, "events", format=fmt, full=True))
    after = _manifest(tmp_path)
    assert not set(after) & set(manifest)  # every earlier file replaced
    assert sum(e["rows"] for e in after.values()) == full.rows
    app.close()


def test_files_of_an_export_whose_state_was_lost_are_still_replaced(tmp_path: Path) -> None:
    """Part files carry the run id in their names: a new state directory recognises them
    (and counts their rows) instead of calling them foreign or leaving duplicates."""
    import shutil

    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=30)))
    asyncio.run(_run(app, tmp_path, "events"))
    shutil.rmtree(tmp_path / "state")
    again = asyncio.run(_run(app, tmp_path, "events"))
    assert again.mode == "full"
    _assert_exact(tmp_path, app, "events")
    assert sum(e["rows"] for e in _manifest(tmp_path).values()) == again.rows
    app.close()


def test_a_kill_while_replacing_the_files_is_finished_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=60)))
    target = tmp_path / "out" / "events"
    _plant(target)
    asyncio.run(_run(app, tmp_path, "events", overwrite=True))
    real_replace = Path.replace
    calls = {"n": 0}

    def dying_replace(self: Path, to: Any) -> Path:
        if ".events.run-" in str(self) and self.name.startswith("part-"):
            calls["n"] += 1
            if calls["n"] == 2:  # old files gone, new ones half moved in
                raise Killed
        return real_replace(self, to)

    monkeypatch.setattr(Path, "replace", dying_replace)
    with pytest.raises(Killed):
        asyncio.run(_run(app, tmp_path, "events", full=True))
    monkeypatch.setattr(Path, "replace", real_replace)
    asyncio.run(_run(app, tmp_path, "events"))  # finishes the replacement first
    _assert_exact(tmp_path, app, "events")
    assert _planted_intact(target)
    assert not list((tmp_path / "out").glob(".events.*"))
    app.close()


def test_state_from_before_manifests_keeps_exporting_into_its_directory(tmp_path: Path) -> None:
    """A version-1 state (no manifest) whose incremental directory also gathered a user's
    file: the directory stays claimed, its part files are adopted with their rows."""
    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=30)))
    asyncio.run(_run(app, tmp_path, "events"))
    (doc,) = (tmp_path / "state" / "export").glob("*.json")
    data = json.loads(doc.read_text())
    for key in ("files", "claimed"):
        del data[key]
    doc.write_text(json.dumps({**data, "version": 1}))
    (tmp_path / "out" / "events" / "README.txt").write_text("what this folder is")
    asyncio.run(_with_client(app, lambda c: add_events(c, 4, start=800)))
    assert asyncio.run(_run(app, tmp_path, "events")).rows == 4
    _assert_exact(tmp_path, app, "events")
    manifest = _manifest(tmp_path)
    assert "README.txt" not in manifest
    assert sum(e["rows"] for e in manifest.values()) == _files(tmp_path, "events").height
    asyncio.run(_run(app, tmp_path, "events", full=True))
    assert (tmp_path / "out" / "events" / "README.txt").exists()
    _assert_exact(tmp_path, app, "events")
    app.close()


def test_a_tampered_manifest_cannot_make_an_export_delete_other_files(tmp_path: Path) -> None:
    app = new_app()
    asyncio.run(_with_client(app, lambda c: seed(c, events=5)))
    asyncio.run(_run(app, tmp_path, "contacts"))
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "out" / "contacts" / "notes.txt").write_text("mine")
    (doc,) = (tmp_path / "state" / "export").glob("*.json")
    data = json.loads(doc.read_text())
    data["files"].update({"../../victim.txt": {"rows": 1}, "notes.txt": {"rows": 1}})
    doc.write_text(json.dumps(data))
    asyncio.run(_run(app, tmp_path, "contacts"))  # a snapshot: replaces the manifest's files
    assert victim.read_text() == "keep me"
    assert (tmp_path / "out" / "contacts" / "notes.txt").read_text() == "mine"
    _assert_exact(tmp_path, app, "contacts")
    app.close()
