"""kraiter-sync.toml validation: every error names the file, the line and the key."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from kraiter_sync.config.file import load_sync_config, parse_duration, parse_sync_config
from kraiter_sync.errors import ConfigError

GOOD = '''\
# nightly jobs
[target]
base_url = "https://api.kraiter.com"
api_key_file = "secrets/key"
state_dir = "state"

[jobs.crm]
source = "postgresql://etl:pw@warehouse/crm"
query = """
SELECT email, first_name
FROM contacts
WHERE kind = 'x = 1'
"""
kind = "contacts"
mode = "mirror"
full_every = "7d"
map = { email = "Email Address" }

[jobs.events]
source = ["exports/a/*.parquet", "/abs/b.csv"]
kind = "events"
connector = "segment"
cursor = "received_at"
lag = "1d12h"
chunk_size = 5000
'''


def parse(text: str, name: str = "kraiter-sync.toml") -> object:
    return parse_sync_config(text, Path("/etc/ks") / name)


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return str(info.value)


def test_a_good_file_parses_in_order_with_paths_relative_to_it() -> None:
    cfg = parse_sync_config(GOOD, Path("/etc/ks/kraiter-sync.toml"))
    assert [j.name for j in cfg.jobs] == ["crm", "events"]
    crm, events = cfg.jobs
    assert crm.is_sql
    assert crm.source_label == "postgresql://etl@warehouse/crm"
    assert crm.query is not None
    assert "WHERE kind = 'x = 1'" in crm.query
    assert crm.mode == "mirror"
    assert crm.full_every == dt.timedelta(days=7)
    assert dict(crm.mapping) == {"email": "Email Address"}
    assert crm.line == 7
    assert events.line == 19
    assert events.paths() == ["/etc/ks/exports/a/*.parquet", "/abs/b.csv"]
    assert events.lag == dt.timedelta(days=1, hours=12)
    assert events.chunk_size == 5000
    assert cfg.target["state_dir"] == "/etc/ks/state"
    assert cfg.target["api_key_file"] == "/etc/ks/secrets/key"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # unknown key, with the line of the key and a suggestion
        (
            '[jobs.a]\nsource = "x.csv"\nfullevery = "7d"\n',
            "kraiter-sync.toml:3: jobs.a.fullevery: unknown key; did you mean 'full_every'?",
        ),
        (
            '[jobs.a]\nsource = "x.csv"\n\n\nmode = 3\n',
            ":5: jobs.a.mode: must be a string, not an integer",
        ),
        (
            '[jobs.a]\nsource = "x.csv"\nmode = "merge"\n',
            ":3: jobs.a.mode: must be 'upsert' or 'mirror'",
        ),
        ('[jobs.a]\nkind = "events"\n', ':1: jobs.a: missing "source"'),
        ("[jobs.a]\nsource = 12\n", ":2: jobs.a.source: must be a string or an array of strings"),
        ("[jobs.a]\nsource = []\n", ":2: jobs.a.source: must name at least one"),
        ('[jobs.a]\nsource = "sqlite:///x.db"\n', ':1: jobs.a: missing "query"'),
        (
            '[jobs.a]\nsource = "x.csv"\nquery = "select 1"\n',
            ":3: jobs.a.query: a query needs a database URL",
        ),
        (
            '[jobs.a]\nsource = "ftp://b/x.csv"\n',
            ":2: jobs.a.source: ftp:// is not a supported source",
        ),
        (
            '[jobs.a]\nsource = "x.csv"\nkind = "events"\ncursor = "t"\nlag = "2 hours"\n',
            ":5: jobs.a.lag: '2 hours' is not a duration",
        ),
        ('[jobs.a]\nsource = "x.csv"\nlag = 5\n', ":3: jobs.a.lag: lag only applies with a cursor"),
        (
            '[jobs.a]\nsource = "x.csv"\nkind = "contacts"\ncursor = "t"\n',
            ":4: jobs.a.cursor: cursor applies to events jobs",
        ),
        (
            '[jobs.a]\nsource = "x.csv"\nkind = "events"\nmode = "mirror"\n',
            ":4: jobs.a.mode: mirror applies to contacts jobs only",
        ),
        ('[jobs.a]\nsource = "x.csv"\ncursor = "t"\n', ':3: jobs.a.cursor: set kind = "events"'),
        (
            '[jobs.a]\nsource = "x.csv"\nchunk_size = "big"\n',
            ":3: jobs.a.chunk_size: must be an integer",
        ),
        (
            '[jobs.a]\nsource = "x.csv"\nenabled = "yes"\n',
            ":3: jobs.a.enabled: must be true or false",
        ),
        ('[jobs.a]\nsource = "x.csv"\nrate = 0\n', ":3: jobs.a.rate: must be more than 0"),
        (
            '[jobs.a]\nsource = "x.csv"\nkind = "contacts"\nmax_delete_ratio = 0.2\n',
            ':4: jobs.a.max_delete_ratio: only applies with mode = "mirror"',
        ),
        (
            '[jobs.a]\nsource = "x.csv"\nkind = "contacts"\nmode = "mirror"\n'
            "max_delete_ratio = 5\n",
            ":5: jobs.a.max_delete_ratio: must be a share between 0 and 1",
        ),
        ('[jobs.a]\nsource = "x.csv"\nrate = "fast"\n', ":3: jobs.a.rate: must be a number"),
        (
            '[jobs.a]\nsource = "x.csv"\nconcurrency = 0\n',
            ":3: jobs.a.concurrency: must be between",
        ),
        (
            '[jobs.a]\nsource = "x.csv"\nmax_retries = 1.5\n',
            ":3: jobs.a.max_retries: must be an integer",
        ),
        (
            '[jobs.a]\nsource = "x.csv"\nallow_triggers = 1\n',
            ":3: jobs.a.allow_triggers: must be true",
        ),
        (
            '[jobs.a]\nsource = "x.csv"\nallow_card_numbers = "yes"\n',
            ":3: jobs.a.allow_card_numbers: must be true or false, not",
        ),
        (
            '[jobs.a]\nsource = "x.csv"\nmap = { email = 3 }\n',
            ":3: jobs.a.map.email: must be a string",
        ),
        ('[jobs."a b"]\nsource = "x.csv"\n', ':1: jobs."a b": job names may use'),
        ('[target]\napi_key = "kr_live_123"\n', ":2: target.api_key: keys do not belong in files"),
        ('[target]\nurl = "https://x"\n[jobs.a]\nsource="x"\n', ":2: target.url: unknown key"),
        ('[targets]\nbase_url = "https://x"\n', ":1: targets: unknown key"),
        ("", "no jobs"),
        ('[jobs.a]\nsource = "x.csv"\nkind = ', "is not valid TOML"),
    ],
)
def test_errors_name_key_and_line(text: str, expected: str) -> None:
    assert expected in error_of(text)


def test_an_inline_api_key_is_never_echoed() -> None:
    message = error_of('[target]\napi_key = "kr_live_s3cret"\n[jobs.a]\nsource = "x"\n')
    assert "kr_live_s3cret" not in message


def test_lines_are_found_past_multiline_strings_and_dotted_keys() -> None:
    # `kind = 1` inside the query string is not a key; the real one is on line 6
    text = '[jobs.a]\nsource = "sqlite:///x.db"\nquery = """\nkind = 1\n"""\nkind = 5\n'
    assert ":6: jobs.a.kind: must be a string" in error_of(text)
    dotted = '[jobs]\na.source = "x.csv"\n\nb.source = 5\n'
    assert ":4: jobs.b.source: must be a string" in error_of(dotted)


def test_select_jobs_by_name_and_skip_disabled() -> None:
    cfg = parse_sync_config(
        '[jobs.a]\nsource = "a.csv"\n[jobs.b]\nsource = "b.csv"\nenabled = false\n'
        '[jobs.c]\nsource = "c.csv"\n',
        Path("k.toml"),
    )
    assert [j.name for j in cfg.select()] == ["a", "c"]
    assert [j.name for j in cfg.select(["c", "b"])] == ["c", "b"]
    with pytest.raises(ConfigError, match=r"no job named nope in k.toml \(jobs: a, b, c\)"):
        cfg.select(["nope"])


def test_settings_come_from_target_but_flags_and_env_win(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("kr_from_file\n")
    cfg = parse_sync_config(
        '[target]\nbase_url = "https://api.example.com"\napi_key_file = "key"\n'
        '[jobs.a]\nsource = "a.csv"\n',
        tmp_path / "kraiter-sync.toml",
    )
    settings = cfg.settings(env={})
    assert settings.api_key == "kr_from_file"
    assert settings.base_url == "https://api.example.com"
    assert cfg.settings(env={"KRAITER_API_KEY": "kr_env"}).api_key == "kr_env"
    assert cfg.settings(api_key="kr_flag", env={"KRAITER_API_KEY": "kr_env"}).api_key == "kr_flag"


def test_missing_file_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist; create it"):
        load_sync_config(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("2h", 7200), ("7d", 604800), ("1w", 604800), ("1d12h", 129600)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "7", "d", "1.5h", "2 hours", "-1d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_validator_switches_are_job_keys_and_reach_the_validator() -> None:
    from kraiter_sync.sync.jobs import input_options as _input_options

    text = (
        '[jobs.a]\nsource = "x.csv"\nallow_special_use_domains = true\nallow_card_numbers = true\n'
    )
    (job,) = parse_sync_config(text, Path("/srv/k.toml")).jobs
    assert (job.allow_special_use_domains, job.allow_card_numbers) == (True, True)
    assert (job.allow_secret_keys, job.allow_smtputf8) == (False, False)
    validation = _input_options(job).validation
    assert validation.allow_special_use_domains
    assert validation.allow_card_numbers
    assert not validation.allow_secret_keys
