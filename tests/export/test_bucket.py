"""Exports into object storage (moto S3, fake-gcs-server, azurite on 127.0.0.1): the same
files as a local export, whole objects only, resume and incremental runs as on disk."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

from kraiter_sync.cli import main
from kraiter_sync.emulator import EmulatorApp
from kraiter_sync.errors import UsageError
from kraiter_sync.export import ExportResult, export_async
from kraiter_sync.export.bucket import BucketFolder
from kraiter_sync.export.run import compact_output
from kraiter_sync.sources.objectstore import open_bucket, parse_url, stores
from tests.export.test_resume import Failing, Killed, _no_sleep, _opts
from tests.helpers.cloud import (
    AWS_ENV,
    AZURITE_ACCOUNT,
    S3,
    Azure,
    azurite_server,
)
from tests.helpers.exports import (
    FORMULAS,
    KEY,
    add_events,
    client_for,
    new_app,
    read_output_file,
    row_ids,
    seed,
    seeded_db,
    truth,
)
from tests.helpers.objects import BUCKET, moto_endpoint, s3

__all__ = ["moto_endpoint", "s3"]


def _export(
    app: EmulatorApp, out: str | Path, state: Path, stream: str, *, wrap: Any = None, **kw: Any
) -> ExportResult:
    async def go() -> ExportResult:
        async with client_for(app, wrap=wrap) as client:
            return await export_async(
                client,
                stream,
                out,
                state_dir=state,
                target="test",
                options=_opts(**kw),
                sleep=_no_sleep,
            )

    return asyncio.run(go())


def _objects(url: str) -> dict[str, bytes]:
    """Every object under ``url`` (relative key → bytes), read back through obstore."""
    parsed = parse_url(url)
    bucket = open_bucket(parsed)
    prefix = parsed.key
    return {
        info.key[len(prefix) :]: bytes(bucket.get(info).bytes()) for info in bucket.list(prefix)
    }


def _frame_of(objects: dict[str, bytes], fmt: str, tmp: Path) -> pl.DataFrame:
    frames = []
    for i, (rel, data) in enumerate(sorted(objects.items())):
        assert rel.endswith(f".{fmt}"), rel
        path = tmp / f"{i}.{fmt}"
        path.write_bytes(data)
        frames.append(read_output_file(path, fmt))
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def _local_frame(directory: Path, fmt: str) -> pl.DataFrame:
    files = sorted(p for p in directory.rglob(f"*.{fmt}") if not p.name.startswith("."))
    return pl.concat([read_output_file(f, fmt) for f in files], how="diagonal_relaxed")


def _layout(keys: list[str]) -> list[str]:
    """Keys without the run id in part names: the layout both exports must share."""
    return sorted(str(Path(k).parent) for k in keys)


def _same_rows(stream: str, a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert a.height == b.height
    assert len(set(row_ids(stream, a))) == a.height, "duplicated rows"
    assert a.sort("id").equals(b.sort("id").select(a.columns))


def _seeded(events: int = 60) -> EmulatorApp:
    app = new_app()

    async def fill() -> None:
        async with client_for(app) as client:
            await seed(client, events=events)

    asyncio.run(fill())
    return app


def _truth(app: EmulatorApp, stream: str) -> list[str]:
    async def go() -> list[str]:
        async with client_for(app) as client:
            return await truth(client, stream)

    return asyncio.run(go())


def _holds_exactly(app: EmulatorApp, url: str, result: ExportResult, tmp: Path) -> pl.DataFrame:
    """The stream folder at ``url`` holds the manifest's objects and every row once."""
    objects = _objects(url)
    assert sorted(objects) == result.manifest_files
    got = _frame_of(objects, "parquet", tmp)
    assert sorted(row_ids("events", got)) == sorted(_truth(app, "events"))
    return got


# --------------------------------------------------------------------------------------
# the three stores
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def azurite_endpoint() -> Iterator[str]:
    with azurite_server() as url:
        yield url


# GCS is not here: fake-gcs-server answers obstore's XML-API PUT with 400 "invalid
# uploadType", and object_store asks the metadata server for a token on writes even with
# skip_signature (apache/arrow-rs-object-store#520), so gs:// exports are not tested
# against an emulator (reading gs:// is: tests/sources/test_objectstore_clouds.py).
@pytest.fixture(params=["s3", "azure"])
def store_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A bucket URL in each store, its server pointed at by the cloud's own variables."""
    if request.param == "s3":
        server: S3 = request.getfixturevalue("s3")
        return f"s3://{server.bucket('lake')}/kraiter"
    endpoint: str = request.getfixturevalue("azurite_endpoint")
    monkeypatch.setenv("AZURE_STORAGE_USE_EMULATOR", "true")
    monkeypatch.setenv("AZURITE_BLOB_STORAGE_URL", endpoint.rsplit("/", 1)[0])
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", AZURITE_ACCOUNT)
    stores._bucket.cache_clear()
    return f"az://{Azure(endpoint).bucket('lake')}/kraiter"


@pytest.mark.parametrize("stream", ["events", "timelines"])
def test_export_to_each_store_matches_a_local_export_and_reruns_incrementally(
    store_url: str, stream: str, tmp_path: Path
) -> None:
    app = _seeded()
    local = _export(app, tmp_path / "local", tmp_path / "state", stream)
    remote = _export(app, store_url, tmp_path / "state", stream)
    assert remote.rows == local.rows > 0
    assert remote.url == f"{store_url}/{stream}/"
    assert remote.directory is None
    objects = _objects(f"{store_url}/{stream}/")
    assert _layout(list(objects)) == _layout(local.manifest_files)
    assert sorted(objects) == remote.manifest_files
    _same_rows(
        stream, _frame_of(objects, "parquet", tmp_path), _local_frame(local.directory, "parquet")
    )  # type: ignore[arg-type]

    again = _export(app, store_url, tmp_path / "state", stream)
    assert (again.rows, again.files) == (0, 0)

    async def more() -> None:
        async with client_for(app) as client:
            await add_events(client, 25, start=1000)

    asyncio.run(more())
    local2 = _export(app, tmp_path / "local", tmp_path / "state", stream)
    remote2 = _export(app, store_url, tmp_path / "state", stream)
    assert remote2.mode == "incremental"
    assert remote2.rows == local2.rows == 25
    objects = _objects(f"{store_url}/{stream}/")
    assert len(objects) == remote2.files_total
    got = _frame_of(objects, "parquet", tmp_path)
    _same_rows(stream, got, _local_frame(local2.directory, "parquet"))  # type: ignore[arg-type]
    assert sorted(row_ids(stream, got)) == sorted(_truth(app, stream))


# --------------------------------------------------------------------------------------
# S3: resume, readers, formulas, credentials, errors
# --------------------------------------------------------------------------------------


def test_killed_export_to_s3_resumes_to_exactly_a_clean_local_export(
    s3: S3, tmp_path: Path
) -> None:
    app = _seeded(events=120)
    url = f"s3://{BUCKET}/killed"
    with pytest.raises(Killed):
        _export(app, url, tmp_path / "state", "events", wrap=lambda t: Failing(t, 7))
    assert _objects(f"{url}/events/") == {}, "a killed run showed files"
    resumed = _export(app, url, tmp_path / "state", "events")
    assert resumed.resumed
    clean = _export(app, tmp_path / "clean", tmp_path / "clean-state", "events")
    got = _holds_exactly(app, f"{url}/events/", resumed, tmp_path)
    _same_rows("events", got, _local_frame(clean.directory, "parquet"))  # type: ignore[arg-type]


def test_kill_between_puts_is_finished_by_the_next_run(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest is journaled before the puts: a kill after the first put is finished
    by the next run, which neither re-reads nor duplicates anything."""
    app = _seeded(events=120)
    url = f"s3://{BUCKET}/halfput"
    real_put = BucketFolder.put
    calls = {"n": 0}

    def put_once_then_die(self: BucketFolder, rel: str, source: Path) -> None:
        calls["n"] += 1
        if calls["n"] > 1:
            raise Killed
        real_put(self, rel, source)

    monkeypatch.setattr(BucketFolder, "put", put_once_then_die)
    with pytest.raises(Killed):
        _export(app, url, tmp_path / "state", "events")
    assert len(_objects(f"{url}/events/")) == 1
    monkeypatch.setattr(BucketFolder, "put", real_put)
    finished = _export(app, url, tmp_path / "state", "events")
    assert finished.rows == 0  # nothing read again: the journal finished the puts
    _holds_exactly(app, f"{url}/events/", finished, tmp_path)


def test_a_reader_listing_during_the_run_sees_only_whole_objects(s3: S3, tmp_path: Path) -> None:
    app = _seeded(events=300)
    url = f"s3://{BUCKET}/watched"
    _export(app, url, tmp_path / "state", "events", chunk_rows=40)
    seen: dict[tuple[str, int], bytes] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            listed = s3.client.list_objects_v2(Bucket=BUCKET, Prefix="watched/")
            for item in listed.get("Contents", []):
                key = (item["Key"], item["Size"])
                if key not in seen:
                    body = s3.client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
                    seen[key] = body

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        replaced = _export(app, url, tmp_path / "state", "events", replace=True, chunk_rows=40)
    finally:
        stop.set()
        watcher.join()
    assert replaced.replaced > 0
    new = {f"watched/events/{rel}" for rel in replaced.manifest_files}
    assert new & {key for key, _ in seen}, "the reader saw none of the run's objects"
    for (key, size), body in seen.items():
        assert len(body) == size, f"{key} was read partially"
        path = tmp_path / "seen.parquet"
        path.write_bytes(body)
        assert pl.read_parquet(path).height > 0  # a whole Parquet file (footer included)


def test_csv_to_s3_neutralises_formulas_as_locally(s3: S3, tmp_path: Path) -> None:
    app = _seeded()
    url = f"s3://{BUCKET}/csv"
    _export(app, url, tmp_path / "state", "events", format="csv")
    local = _export(app, tmp_path / "local", tmp_path / "state", "events", format="csv")
    remote = _frame_of(_objects(f"{url}/events/"), "csv", tmp_path)
    _same_rows("events", remote, _local_frame(local.directory, "csv"))  # type: ignore[arg-type]
    names = set(remote["name"])
    assert not names & set(FORMULAS)
    assert "'" + FORMULAS[0] in names


def test_no_credential_in_output_state_or_logs(
    s3: S3, tmp_path: Path, cli_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    from kraiter_sync.emulator import EmulatorConfig, serve_in_thread

    db = seeded_db(tmp_path / "kraiter.db", events=40)
    env = {
        **cli_env,
        **AWS_ENV,
        "AWS_ENDPOINT_URL": s3.endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        "KRAITER_API_KEY": KEY,
    }
    url = f"s3://{BUCKET}/creds"
    with serve_in_thread(EmulatorConfig(db_path=db)) as base:
        env["KRAITER_BASE_URL"] = base
        result = CliRunner().invoke(
            main, ["export", "events", "--out", url, "--json", "-v"], env=env
        )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["files"]["directory"] == f"{url}/events/"
    secrets = (AWS_ENV["AWS_SECRET_ACCESS_KEY"], KEY)
    state_text = "".join(
        p.read_text(errors="replace") for p in (tmp_path / "state").rglob("*") if p.is_file()
    )
    assert f"{url}/" in state_text
    for secret in secrets:
        assert secret not in result.output
        assert secret not in state_text
        assert secret not in caplog.text


def test_https_out_and_compact_on_a_bucket_are_clear_errors(
    s3: S3, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    result = CliRunner().invoke(
        main, ["export", "events", "--out", "https://example.com/x?sig=abc"], env=cli_env
    )
    assert result.exit_code == 2
    assert "https:// locations are read only" in result.stderr
    assert "sig=abc" not in result.output
    assert "Traceback" not in result.output
    with pytest.raises(UsageError, match="local --out DIR only"):
        compact_output(f"s3://{BUCKET}/x", state_dir=tmp_path / "state", target="test")
    compacted = CliRunner().invoke(
        main, ["export", "compact", "--out", f"s3://{BUCKET}/x"], env=cli_env
    )
    assert compacted.exit_code == 2
    assert "export compact works on a local --out DIR only" in compacted.stderr


def test_missing_bucket_is_a_clear_error_before_anything_is_read(s3: S3, tmp_path: Path) -> None:
    app = _seeded(events=5)
    with pytest.raises(UsageError, match="does not exist"):
        _export(app, "s3://no-such-bucket/x", tmp_path / "state", "events")


def test_an_object_deleted_from_the_bucket_means_a_full_export_again(
    s3: S3, tmp_path: Path
) -> None:
    """The check before a run lists the prefix: a manifest file missing is noticed."""
    app = _seeded()
    url = f"s3://{BUCKET}/checked"
    first = _export(app, url, tmp_path / "state", "events")
    gone = first.manifest_files[0]
    s3.client.delete_object(Bucket=BUCKET, Key=f"checked/events/{gone}")
    again = _export(app, url, tmp_path / "state", "events")
    assert again.reason is not None
    assert "1 of" in again.reason
    assert gone in again.reason
    assert again.rows == first.rows
    _holds_exactly(app, f"{url}/events/", again, tmp_path)


def test_a_prefix_holding_someone_elses_objects_is_refused_and_left_alone(
    s3: S3, tmp_path: Path
) -> None:
    app = _seeded(events=5)
    s3.put(BUCKET, "shared/events/README.txt", b"theirs")
    with pytest.raises(UsageError, match="refusing to export into s3://warehouse/shared/events/"):
        _export(app, f"s3://{BUCKET}/shared", tmp_path / "state", "events")
    assert set(_objects(f"s3://{BUCKET}/shared/events/")) == {"README.txt"}
    done = _export(app, f"s3://{BUCKET}/shared", tmp_path / "state", "events", overwrite=True)
    assert done.rows > 0
    assert _objects(f"s3://{BUCKET}/shared/events/")["README.txt"] == b"theirs"


def test_lost_state_adopts_the_bucket_files_and_replaces_them_without_duplicates(
    s3: S3, tmp_path: Path
) -> None:
    import shutil

    app = _seeded()
    url = f"s3://{BUCKET}/lost"
    first = _export(app, url, tmp_path / "state", "events")
    shutil.rmtree(tmp_path / "state")
    again = _export(app, url, tmp_path / "state", "events")
    assert again.reason is not None
    assert "does not know the end of" in again.reason
    assert again.replaced == first.files  # adopted by name (rows counted), then replaced
    _holds_exactly(app, f"{url}/events/", again, tmp_path)
