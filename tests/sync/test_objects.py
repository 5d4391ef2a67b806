"""Sync jobs over a bucket prefix: each night reads only the objects that are new or
changed since the last complete run (key, size, ETag), against moto's S3 server and the
emulator over real HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from kraiter_sync.config.file import parse_sync_config
from kraiter_sync.errors import ConfigError
from kraiter_sync.sources.objectstore import SeenObjects
from kraiter_sync.state.ledger import Ledger
from kraiter_sync.sync import objects_stream, run_sync
from tests.helpers.cloud import S3
from tests.helpers.objects import csv_gz_bytes, events, parquet_bytes
from tests.helpers.sync import CountingApp, remote, settings_for

BUCKET = "nightly"


def job_config(tmp_path: Path, source: str, extra: str = "") -> Path:
    path = tmp_path / "kraiter-sync.toml"
    path.write_text(
        f'[jobs.events]\nsource = "{source}"\nkind = "events"\nallow_triggers = true\n{extra}'
    )
    return path


@pytest.fixture
def bucket(s3: S3) -> S3:
    s3.bucket(BUCKET)
    return s3


def test_rerun_reads_only_new_objects(
    bucket: S3, kraiter: tuple[CountingApp, str], tmp_path: Path
) -> None:
    app, url = kraiter
    settings = settings_for(url, tmp_path)
    config = parse_sync_config(
        job_config(tmp_path, f"s3://{BUCKET}/events/").read_text(), tmp_path / "k.toml"
    )
    bucket.put(BUCKET, "events/date=2025-03-01/data_0_0_0.parquet", parquet_bytes(events(10)))
    bucket.put(BUCKET, "events/date=2025-03-01/data_0_1_0.csv.gz", csv_gz_bytes(events(5, 10)))

    first = run_sync(config, settings=settings).jobs[0]
    assert first.exit_code == 0, first.message
    assert first.counts["events"]["read"] == 15
    assert len(remote(url)[1]) == 15

    # nothing new: no object is read, nothing is sent
    app.reset()
    second = run_sync(config, settings=settings).jobs[0]
    assert second.exit_code == 0
    assert second.message == "no new or changed objects since the last run"
    assert second.rows_read == 0
    assert app.writes() == []

    # the next night's part: only it is read
    bucket.put(BUCKET, "events/date=2025-03-02/data_0_0_0.parquet", parquet_bytes(events(7, 100)))
    third = run_sync(config, settings=settings).jobs[0]
    assert third.exit_code == 0, third.message
    assert third.counts["events"]["read"] == 7
    assert len(remote(url)[1]) == 22

    # a part rewritten in place (new ETag) is read again; its old rows are not re-sent
    bucket.put(BUCKET, "events/date=2025-03-01/data_0_1_0.csv.gz", csv_gz_bytes(events(6, 10)))
    fourth = run_sync(config, settings=settings).jobs[0]
    assert fourth.counts["events"]["read"] == 6
    assert fourth.counts["events"]["already"] == 5
    assert len(remote(url)[1]) == 23

    with Ledger(settings.ledger_path) as ledger:
        seen = SeenObjects.decode(ledger.get_watermark(settings.target, objects_stream("events")))
    assert sorted(seen.versions) == [
        f"s3://{BUCKET}/events/date=2025-03-01/data_0_0_0.parquet",
        f"s3://{BUCKET}/events/date=2025-03-01/data_0_1_0.csv.gz",
        f"s3://{BUCKET}/events/date=2025-03-02/data_0_0_0.parquet",
    ]


def test_dry_run_and_full_reread(
    bucket: S3, kraiter: tuple[CountingApp, str], tmp_path: Path
) -> None:
    _app, url = kraiter
    settings = settings_for(url, tmp_path)
    config = parse_sync_config(
        job_config(tmp_path, f"s3://{BUCKET}/dry/").read_text(), tmp_path / "k.toml"
    )
    bucket.put(BUCKET, "dry/part-0.parquet", parquet_bytes(events(4)))
    dry = run_sync(config, settings=settings, dry_run=True).jobs[0]
    assert dry.status == "dry-run"
    # a dry run records nothing: the real run still reads the object
    real = run_sync(config, settings=settings).jobs[0]
    assert real.counts["events"]["read"] == 4
    again = run_sync(config, settings=settings, full=True).jobs[0]  # --full reads every object
    assert again.counts["events"]["read"] == 4
    assert again.counts["events"]["already"] == 4


def test_storage_table_in_the_sync_file(tmp_path: Path) -> None:
    config = parse_sync_config(
        '[storage.s3]\nendpoint = "http://127.0.0.1:9000"\nprofile = "etl"\n\n'
        '[jobs.e]\nsource = ["s3://b/exports/", "local/*.csv"]\nkind = "events"\n',
        tmp_path / "kraiter-sync.toml",
    )
    job = config.jobs[0]
    assert job.reads_objects
    assert job.paths() == ["s3://b/exports/", str(tmp_path / "local/*.csv")]
    assert job.storage.get("s3", "profile", env={}) == "etl"
    with pytest.raises(ConfigError, match=r"kraiter-sync\.toml.*s3\.session_token is not allowed"):
        parse_sync_config(
            '[storage.s3]\nsession_token = "x"\n[jobs.e]\nsource = "s3://b/x/"\n',
            tmp_path / "kraiter-sync.toml",
        )
    with pytest.raises(ConfigError, match=r"ftp:// is not a supported source"):
        parse_sync_config('[jobs.e]\nsource = "ftp://h/x.csv"\n', tmp_path / "k.toml")
