"""Same event, same key, whatever the source: text values (CSV) are typed.

``12.50`` in a CSV, ``12.5`` in a Parquet float column and ``12.50`` in a SQL numeric
column are one value; so are ``true`` and a boolean column. Values are typed one by
one (never by the rest of their chunk), declared types win over inference, and ledgers
written when CSV values were sent as text stay valid (``tests/data/legacy_v1``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import shutil
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from kraiter_sync.api.client import KraiterClient
from kraiter_sync.api.ratelimit import RateController
from kraiter_sync.cli import main
from kraiter_sync.config import LOCAL_API_KEY, resolve_settings
from kraiter_sync.config.file import parse_sync_config
from kraiter_sync.emulator import EmulatorConfig, asgi_transport, create_app
from kraiter_sync.errors import ConfigError
from kraiter_sync.inputs import InputOptions, KindValidation, prepare_inputs
from kraiter_sync.sources.sql import SqlSource
from kraiter_sync.state.ledger import KEY_VERSION, Ledger
from kraiter_sync.validate import ValidationOptions, validate_events
from kraiter_sync.validate.properties import canonical_properties
from kraiter_sync.verbs.importer import ImportOptions, import_
from kraiter_sync.verbs.validate import validate_inputs
from tests.helpers.imports import CountingTransport, remote_events, stored_events
from tests.helpers.sql import postgres_url_or_skip

KEY = "kr_typed_test_secret_0123456789"
LEGACY = Path(__file__).resolve().parent.parent / "data" / "legacy_v1"
LEGACY_KEY = "kr_legacy_fixture_key_0001"  # what generate.py used
LEGACY_BASE = "http://127.0.0.1:9"


def typed(values: list[str | None], **options: Any) -> list[str]:
    """Each text value of a CSV column ``v`` as the validator sends it."""
    opts = ValidationOptions(text_properties=frozenset({"v"}), **options)
    out = canonical_properties(pl.Series([{"v": v} for v in values]), opts)
    return [j if r is None else f"rejected: {r}" for j, r in zip(out.json, out.rule, strict=True)]


# -- the rules, as documented in validate/text_types.py -----------------------------------

RULES = [
    ("0", 0),
    ("-12", -12),
    ("2134", 2134),
    ("9007199254740991", 9007199254740991),  # 2**53 - 1
    ("12.50", 12.5),
    ("-0.5", -0.5),
    ("3.0", 3.0),
    ("0.000001", 1e-06),
    ("123456789012.345", 123456789012.345),  # 15 significant digits
    ("1234567890123.456", 1234567890123.456),  # 16, and no digit lost
    ("0.30000000000000004", 0.30000000000000004),  # 17: how a float column is written
    ("0.009000000000000001", 0.009000000000000001),
    ("100000000000000000000.0", 1e20),
    ("1e-05", 1e-05),
    ("-2.5e+16", -2.5e16),
    ("1.2345678901234568e+17", 1.2345678901234568e17),
    ("true", True),
    ("FALSE", False),
    ("True", True),
    # text stays text
    ("02134", "02134"),
    ("+442071234567", "+442071234567"),
    ("-0", "-0"),
    ("1e5", "1e5"),
    ("2E10", "2E10"),
    ("1E-05", "1E-05"),
    ("0.5e-3", "0.5e-3"),
    (".5", ".5"),
    ("12.", "12."),
    (" 12", " 12"),
    ("12 ", "12 "),
    ("1,5", "1,5"),
    ("9007199254740992", "9007199254740992"),  # beyond 2**53 - 1
    ("12345678901234567", "12345678901234567"),
    ("1.000000000000000001", "1.000000000000000001"),  # a float would drop the 1
    ("0.30000000000000005", "0.30000000000000005"),  # reads as ...04: not the same number
    ("00.5", "00.5"),
    ("Nan", "Nan"),  # a name, not a NaN
    ("yes", "yes"),
    ("t", "t"),
    ("", ""),
]


@pytest.mark.parametrize(("text", "value"), RULES)
def test_each_text_value_is_typed_by_the_documented_rules(text: str, value: Any) -> None:
    """Typed as documented, and then sent exactly as a Parquet column of that type."""
    parquet = canonical_properties(pl.Series([{"v": value}]), ValidationOptions()).json[0]
    assert json.loads(parquet) == {"v": value}
    assert type(json.loads(parquet)["v"]) is type(value)
    assert typed([text]) == [parquet]


@pytest.mark.parametrize(
    "text", ["NaN", "nan", "NAN", "inf", "-inf", "+Inf", "INF", "Infinity", "-INFINITY"]
)
def test_nan_and_infinity_in_text_are_rejected_like_a_parquet_nan(text: str) -> None:
    assert typed([text]) == ["rejected: properties.nan"]
    parquet = canonical_properties(pl.Series([{"v": float(text)}]), ValidationOptions())
    assert parquet.rule.to_list() == ["properties.nan"]
    assert typed([text], types={"v": "string"}) == [json.dumps({"v": text}, separators=(",", ":"))]


def test_a_column_that_is_not_from_a_text_source_is_never_inferred() -> None:
    """A Parquet string column holding "12.50" is a string: typed sources keep their keys."""
    out = canonical_properties(pl.Series([{"v": "12.50", "w": "true"}]), ValidationOptions())
    assert out.json.to_list() == ['{"v":"12.50","w":"true"}']


_TEXTS = st.one_of(
    st.sampled_from([r[0] for r in RULES] + ["NaN", "inf", "abc", None]),
    st.integers(-(2**60), 2**60).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
    st.text(alphabet="0123456789.-+eE tTrRuUfFaAlLsS", max_size=8),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_TEXTS, min_size=1, max_size=30), st.data())
def test_a_values_type_does_not_depend_on_its_chunk(values: list[str | None], data: Any) -> None:
    """Typed as one chunk, in two chunks split anywhere, or alone: the same JSON."""
    whole = typed(values)
    cut = data.draw(st.integers(0, len(values)))
    if 0 < cut < len(values):
        assert typed(values[:cut]) + typed(values[cut:]) == whole
    assert [typed([v])[0] for v in values] == whole


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**53) + 1, 2**53 - 1)
        ),
        min_size=1,
        max_size=40,
    )
)
def test_numbers_exported_to_csv_come_back_as_the_same_values(numbers: list[float | int]) -> None:
    """A float or integer column written to CSV by polars (shortest digits, scientific
    notation for extremes) is typed back to the values a Parquet file of it gives."""
    ints = [n for n in numbers if isinstance(n, int)]
    floats = [float(n) for n in numbers if not isinstance(n, int)]
    for column in (pl.Series("v", ints, dtype=pl.Int64), pl.Series("v", floats, dtype=pl.Float64)):
        if not len(column):
            continue
        text = pl.read_csv(column.to_frame().write_csv().encode(), infer_schema=False)["v"]
        parquet = canonical_properties(column.to_frame().to_struct("p"), ValidationOptions())
        outcome = [  # (card-number-like integers are refused on both sides)
            j if r is None else f"rejected: {r}"
            for j, r in zip(parquet.json, parquet.rule, strict=True)
        ]
        assert typed(text.to_list()) == outcome


# -- declared types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "source", "expected"),
    [
        ("string", ["12.50", "true", "02134"], ['"12.50"', '"true"', '"02134"']),
        ("integer", ["007", " 12 ", "+3", "1.5", "x"], ["7", "12", "3", "type", "type"]),
        ("float", ["12", "1e5", ".5", "x", "nan"], ["12.0", "100000.0", "0.5", "type", "nan"]),
        ("boolean", ["yes", "N", "0", "TRUE", "maybe"], ["true", "false", "false", "true", "type"]),
    ],
)
def test_declared_types_win_over_inference(
    declared: str, source: list[str], expected: list[str]
) -> None:
    got = typed(source, types={"v": declared})
    want = [
        f"rejected: properties.{e}" if e in ("type", "nan") else '{"v":' + e + "}" for e in expected
    ]
    assert got == want


def test_declared_types_apply_to_typed_columns_too() -> None:
    """A SQL integer zip declared string, a float column declared integer."""
    frame = pl.Series([{"zip": 2134, "n": 12.0, "flag": 1}, {"zip": 10001, "n": 12.5, "flag": 0}])
    opts = ValidationOptions(types={"zip": "string", "n": "integer", "flag": "boolean"})
    out = canonical_properties(frame, opts)
    assert out.json.to_list()[0] == '{"flag":true,"n":12,"zip":"2134"}'
    assert out.rule.to_list() == [None, "properties.type"]


def test_types_are_read_from_connectors_sync_jobs_and_the_cli(tmp_path: Path) -> None:
    connector = tmp_path / "shop.toml"
    connector.write_text(
        'kind = "events"\n[fields]\nemail = "email"\nname = "event"\ntimestamp = "ts"\n'
        '[properties]\ntypes = {zip = "string", amount = "float"}\n'
    )
    csv = tmp_path / "e.csv"
    csv.write_text(
        "email,event,ts,zip,amount,count\na@example.com,buy,2024-01-01T00:00:00Z,2134,7,3\n"
    )
    state = tmp_path / "st"
    result = CliRunner().invoke(
        main,
        ["import", str(csv), "--connector", str(connector), "--type", "count=string",
         "--state-dir", str(state), "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    app = create_app(EmulatorConfig(db_path=str(state / "local-kraiter.db")))
    try:
        stored = remote_events("http://local", LOCAL_API_KEY, transport=asgi_transport(app))
    finally:
        app.close()
    assert [json.loads(p) for (_e, _n, _t, p) in stored] == [
        {"amount": 7.0, "count": "3", "zip": "2134"}
    ]
    bad = CliRunner().invoke(main, ["validate", str(csv), "--type", "count=number"])
    assert bad.exit_code == 2
    assert "--type.count: the type must be one of string, integer, float, boolean" in bad.output
    config = parse_sync_config(
        '[jobs.shop]\nsource = "e.csv"\nkind = "events"\ntypes = {zip = "string"}\n'
    )
    assert dict(config.jobs[0].types) == {"zip": "string"}
    bad_type = r"toml:3: jobs\.shop\.types\.zip: must be 'string' or 'integer'"
    with pytest.raises(ConfigError, match=bad_type):
        parse_sync_config('[jobs.shop]\nsource = "e.csv"\ntypes = {zip = "text"}\n')


# -- one row, three sources, one event ---------------------------------------------------

ROWS: list[dict[str, Any]] = [
    {"email": "ann@example.com", "event": "order", "amount": "12.50", "count": "3",
     "vip": "true", "zip": "02134", "ratio": "0.25", "plan": "pro"},
    {"email": "bob@example.com", "event": "order", "amount": "7.00", "count": "-1",
     "vip": "false", "zip": "94105", "ratio": "1.0", "plan": "free"},
]  # fmt: skip
STAMPS = [
    dt.datetime(2024, 6, 1, 10, 0, tzinfo=dt.UTC),
    dt.datetime(2024, 6, 2, 11, 30, tzinfo=dt.UTC),
]


def _csv(path: Path) -> Path:
    frame = pl.DataFrame(ROWS).with_columns(timestamp=pl.Series([s.isoformat() for s in STAMPS]))
    frame.write_csv(path)
    return path


def _parquet(path: Path) -> Path:
    frame = pl.DataFrame(
        {
            "email": [r["email"] for r in ROWS],
            "event": [r["event"] for r in ROWS],
            "amount": [12.5, 7.0],
            "count": [3, -1],
            "vip": [True, False],
            "zip": ["02134", "94105"],
            "ratio": [0.25, 1.0],
            "plan": ["pro", "free"],
            "timestamp": STAMPS,
        }
    )
    frame.write_parquet(path)
    return path


def _duckdb(path: Path) -> SqlSource:
    conn = duckdb.connect(str(path))
    conn.execute(
        "CREATE TABLE orders (email VARCHAR, event VARCHAR, amount DECIMAL(10, 2), "
        "count INTEGER, vip BOOLEAN, zip VARCHAR, ratio DOUBLE, plan VARCHAR, "
        "timestamp TIMESTAMPTZ)"
    )
    for r, ts in zip(ROWS, STAMPS, strict=True):
        conn.execute(
            "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [r["email"], r["event"], r["amount"], int(r["count"]), r["vip"] == "true",
             r["zip"], float(r["ratio"]), r["plan"], ts],
        )  # fmt: skip
    conn.close()
    return SqlSource(f"duckdb:///{path}", "SELECT * FROM orders", label="orders")


def _sqlite(path: Path) -> SqlSource:
    """SQLite has no boolean type: vip is stored as 0/1 (declared boolean below)."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE orders (email TEXT, event TEXT, amount REAL, count INTEGER, "
            "vip INTEGER, zip TEXT, ratio REAL, plan TEXT, timestamp TEXT)"
        )
        conn.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (r["email"], r["event"], float(r["amount"]), int(r["count"]),
                 int(r["vip"] == "true"), r["zip"], float(r["ratio"]), r["plan"], ts.isoformat())
                for r, ts in zip(ROWS, STAMPS, strict=True)
            ],
        )  # fmt: skip
    conn.close()
    return SqlSource(f"sqlite:///{path}", "SELECT * FROM orders", label="orders")


def _keys(source: Path | SqlSource, **options: Any) -> list[tuple[str, str]]:
    """(event_key, properties) per row, through the import's own read/map/validate."""
    with contextlib.ExitStack() as stack:
        inputs = prepare_inputs([source], InputOptions(**options), stack=stack)
        frames = list(KindValidation("events", inputs, InputOptions(**options)).run())
    valid = pl.concat(frames).sort("source_row")
    return list(zip(valid["event_key"], valid["properties"], strict=True))


#: Zip codes are text in Parquet and SQL; in a CSV, 94105 would be inferred an integer
#: (02134 stays text: leading zero), so a connector declares them.
ZIP = {"zip": "string"}


def test_the_same_rows_from_csv_parquet_and_sql_have_the_same_keys(tmp_path: Path) -> None:
    csv = _keys(_csv(tmp_path / "o.csv"), types=ZIP)
    assert [p for _k, p in csv] == [
        '{"amount":12.5,"count":3,"plan":"pro","ratio":0.25,"vip":true,"zip":"02134"}',
        '{"amount":7.0,"count":-1,"plan":"free","ratio":1.0,"vip":false,"zip":"94105"}',
    ]
    assert _keys(_parquet(tmp_path / "o.parquet")) == csv
    assert _keys(_duckdb(tmp_path / "o.duckdb")) == csv
    assert _keys(_sqlite(tmp_path / "o.sqlite"), types={"vip": "boolean"}) == csv
    # undeclared, a CSV's 94105 is a number where SQL's is text: a different event
    assert _keys(_csv(tmp_path / "o.csv"))[1] != csv[1]


def test_postgresql_numeric_and_csv_text_have_the_same_keys(tmp_path: Path) -> None:
    url = postgres_url_or_skip()
    from tests.helpers.sql import pg_execute

    table = f"typed_{tmp_path.name[-8:].replace('-', '_')}"
    pg_execute(
        url,
        f"DROP TABLE IF EXISTS {table}",
        f"CREATE TABLE {table} (email text, event text, amount numeric(10, 2), "
        "count integer, vip boolean, zip text, ratio double precision, plan text, "
        "timestamp timestamptz)",
        *(
            f"INSERT INTO {table} VALUES ('{r['email']}', '{r['event']}', {r['amount']}, "
            f"{r['count']}, {r['vip']}, '{r['zip']}', {r['ratio']}, '{r['plan']}', "
            f"'{ts.isoformat()}')"
            for r, ts in zip(ROWS, STAMPS, strict=True)
        ),
    )
    try:
        sql = _keys(SqlSource(url, f"SELECT * FROM {table}", label="orders"))
    finally:
        pg_execute(url, f"DROP TABLE IF EXISTS {table}")
    assert sql == _keys(_csv(tmp_path / "o.csv"), types=ZIP)


def _factory(db: Path, key: str, base: str, counters: list[CountingTransport]) -> Any:
    def factory(controller: RateController) -> KraiterClient:
        transport = CountingTransport(
            asgi_transport(create_app(EmulatorConfig(db_path=str(db))), close_app=True)
        )
        counters.append(transport)
        return KraiterClient(base, key, transport=transport, observer=controller)

    return factory


def test_a_csv_backfill_then_a_sql_sync_then_parquet_send_each_event_once(tmp_path: Path) -> None:
    """The issue's scenario: the overlapping window of a nightly SQL sync after a CSV
    backfill, and a Parquet export of the same rows, add nothing."""
    db, counters = tmp_path / "kraiter.db", []
    factory = _factory(db, KEY, "http://127.0.0.1:9", counters)
    st = resolve_settings(
        api_key=KEY, base_url="http://127.0.0.1:9", state_dir=tmp_path / "s", env={}
    )
    options = ImportOptions(input=InputOptions(types=ZIP))  # (the jobs' `types`)
    first = import_(
        [_csv(tmp_path / "o.csv")], settings=st, client_factory=factory, options=options
    )
    assert (first.exit_code, first.events.sent) == (0, 2)
    for source in (_duckdb(tmp_path / "o.duckdb"), _parquet(tmp_path / "o.parquet")):
        again = import_([source], settings=st, client_factory=factory, options=options)
        assert (again.exit_code, again.events.sent, again.events.already) == (0, 0, 2)
    stored = stored_events(db, KEY)
    assert sum(stored.values()) == 2
    assert {json.loads(p)["amount"] for (_e, _n, _t, p) in stored} == {12.5, 7.0}


def test_validate_reports_a_csv_nan_as_rejected(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text(
        "email,event,timestamp,score\n"
        "a@example.com,x,2024-01-01T00:00:00Z,NaN\n"
        "b@example.com,x,2024-01-01T00:00:00Z,1.5\n"
    )
    result = validate_inputs([path], options=InputOptions())
    (report,) = result.reports
    assert report.by_rule == {"properties.nan": 1}
    assert report.valid == 1


# -- ledgers written before: key version 1 ----------------------------------------------


def _legacy_state(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the fixture made by kraiter-sync before typing (generate.py)."""
    state = tmp_path / "state"
    shutil.copytree(LEGACY / "state", state)
    db = tmp_path / "kraiter.db"
    shutil.copy(LEGACY / "kraiter.db", db)
    return state, db


def test_a_csv_imported_before_typing_is_not_sent_again(tmp_path: Path) -> None:
    """56 events done, 4 left inflight by a kill (2 applied in Kraiter, 2 not), and 12
    contacts cached, all under the untyped (version 1) keys and hashes. Re-importing the
    same CSVs sends only the 2 events Kraiter never got, writes no contact, and the next
    run finds every event under its new key."""
    state, db = _legacy_state(tmp_path)
    before = stored_events(db, LEGACY_KEY)
    assert sum(before.values()) == 58
    st = resolve_settings(api_key=LEGACY_KEY, base_url=LEGACY_BASE, state_dir=state, env={})
    counters: list[CountingTransport] = []
    factory = _factory(db, LEGACY_KEY, LEGACY_BASE, counters)
    inputs = [LEGACY / "contacts.csv", LEGACY / "events.csv"]
    result = import_(inputs, settings=st, client_factory=factory)
    assert result.exit_code == 0, result.as_dict()
    assert result.events.already == 56
    assert result.events.verified == 2
    assert result.events.sent == 2
    assert result.contacts.unchanged == 12
    assert counters[-1].methods["POST"] == 2  # the two events Kraiter never got
    assert counters[-1].methods["PATCH"] == 0
    after = stored_events(db, LEGACY_KEY)
    assert sum(after.values()) == 60
    # one event per (contact, name, time): nothing duplicated
    assert max(Counter((e, n, t) for (e, n, t, _p) in after.elements()).values()) == 1
    resent = [json.loads(p) for (_e, _n, _t, p) in after.elements() if '"vip": "' not in p]
    assert len(resent) == 2
    assert all(isinstance(p["count"], int) for p in resent)  # sent typed, under the new key

    again = import_(inputs, settings=st, client_factory=factory)
    assert (again.events.already, again.events.sent, again.events.verified) == (60, 0, 0)
    assert counters[-1].writes == 0
    with Ledger(state / "ledger.db") as ledger:
        # 58 under their old keys (the 2 never applied were dropped), 60 under new ones
        assert ledger.count_states(st.target) == {"done": 58 + 60}


def test_legacy_keys_cost_nothing_for_a_target_with_none(tmp_path: Path) -> None:
    """A target first used after typing never gets the earlier keys computed."""
    state = tmp_path / "s"
    st = resolve_settings(api_key=KEY, base_url="http://127.0.0.1:9", state_dir=state, env={})
    counters: list[CountingTransport] = []
    result = import_(
        [_csv(tmp_path / "o.csv")],
        settings=st,
        client_factory=_factory(tmp_path / "k.db", KEY, "http://127.0.0.1:9", counters),
        options=ImportOptions(),
    )
    assert result.events.sent == 2
    with Ledger(state / "ledger.db") as ledger:
        assert ledger.oldest_key_version(st.target) == KEY_VERSION


def test_the_pinned_corpus_gets_no_legacy_keys() -> None:
    """Typed sources' keys did not change: asking for earlier keys finds none to give."""
    from tests.helpers.key_corpus import corpus

    for frame, opts in corpus().values():
        result = validate_events(frame, options=dataclasses.replace(opts, legacy_keys=True))
        assert "legacy_key" not in result.valid.columns


def test_reconcile_events_finds_events_sent_before_typing(tmp_path: Path) -> None:
    """Kraiter holds 58 events an earlier version sent with CSV values as text (2 of the
    60 were never applied): reconcile counts those 2 missing, not 60, and --apply sends 2."""
    from kraiter_sync.emulator import serve_in_thread
    from kraiter_sync.verbs.reconcile import ReconcileOptions, reconcile

    _state, db = _legacy_state(tmp_path)
    inputs = InputOptions(kind="events")
    with serve_in_thread(EmulatorConfig(db_path=str(db))) as url:
        st = resolve_settings(api_key=LEGACY_KEY, base_url=url, state_dir=tmp_path / "s", env={})
        seen = reconcile([LEGACY / "events.csv"], settings=st, inputs=inputs).events
        assert seen is not None
        assert (int(seen.counts["missing"].sum()), int(seen.counts["extra"].sum())) == (2, 0)
        applied = reconcile(
            [LEGACY / "events.csv"],
            settings=st,
            inputs=inputs,
            options=ReconcileOptions(apply=True, allow_triggers=True),
        ).events
        assert applied is not None
        assert applied.sent == 2
    after = stored_events(db, LEGACY_KEY)
    assert sum(after.values()) == 60
    assert max(Counter((e, n, t) for (e, n, t, _p) in after.elements()).values()) == 1


def test_a_sync_config_backfill_then_nightly_sql_job_sends_the_overlap_once(
    tmp_path: Path,
) -> None:
    """The issue's scenario through `sync`: a CSV backfill job, then the nightly DuckDB job
    over an overlapping window. The jobs declare zip as text (`types`)."""
    from kraiter_sync.emulator import serve_in_thread
    from kraiter_sync.sync import run_sync

    _csv(tmp_path / "orders.csv")
    _duckdb(tmp_path / "orders.duckdb").close()
    config = parse_sync_config(
        '[jobs.backfill]\nsource = "orders.csv"\nkind = "events"\ntypes = { zip = "string" }\n'
        '[jobs.nightly]\nsource = "duckdb:///orders.duckdb"\n'
        'query = "SELECT * FROM orders"\nkind = "events"\ncursor = "timestamp"\n'
        'types = { zip = "string" }\n',
        tmp_path / "kraiter-sync.toml",
    )
    db = tmp_path / "kraiter.db"
    with serve_in_thread(EmulatorConfig(db_path=str(db))) as url:
        st = resolve_settings(api_key=KEY, base_url=url, state_dir=tmp_path / "s", env={})
        result = run_sync(config, settings=st)
    assert result.exit_code == 0, result.as_dict()
    backfill, nightly = result.jobs
    sent = (backfill.counts["events"]["sent"], nightly.counts["events"]["sent"])
    assert sent == (2, 0), result.as_dict()
    assert nightly.counts["events"]["already"] == 2
    assert sum(stored_events(db, KEY).values()) == 2


def test_json_values_and_directory_values_are_not_retyped(tmp_path: Path) -> None:
    """Only a CSV's own columns are typed: a JSON string "12" spread from a JSON column
    stays a string (a rejects file also has a column named like that key), and a
    ``key=value`` directory's value stays text."""
    rejects = tmp_path / "rejects.csv"
    pl.DataFrame(
        {
            "original_file": ["a.csv"],
            "original_row": ["1"],
            "field": ["api"],
            "rule": ["api.VALIDATION_ERROR"],
            "message": ["bad"],
            "stage": ["rejected"],
            "email": ["ann@example.com"],
            "contact_id": [None],
            "name": ["order"],
            "timestamp": ["2024-06-01T10:00:00.000Z"],
            "properties": ['{"message":"12","n":3,"ok":"true"}'],
        },
        schema_overrides={"contact_id": pl.String},
    ).write_csv(rejects)
    ((_key, props),) = _keys(rejects, connector="kraiter_rejects_events")
    assert props == '{"message":"12","n":3,"ok":"true"}'
    part = tmp_path / "orders" / "shop=7" / "o.csv"
    part.parent.mkdir(parents=True)
    _csv(part)
    keyed = _keys(tmp_path / "orders", types=ZIP)
    assert all('"shop":"7"' in p for _k, p in keyed)
    assert all('"count":' in p and '"count":"' not in p for _k, p in keyed)


@pytest.mark.parametrize(
    ("values", "changed"),
    [([1, 1.5], [True, False]), ([3, "x"], [True, False]), ([2.5, 7, "y"], [True, True, False])],
)
def test_ndjson_values_an_earlier_version_coerced_keep_their_old_key(
    tmp_path: Path, values: list[Any], changed: list[bool]
) -> None:
    """Key version 2 read NDJSON with polars, which coerced a key's values to one type
    per chunk (1 → 1.0 next to 1.5, 3 → "3" next to text). Now each
    value keeps its type, so its key changes: with ``legacy_keys`` (a target whose ledger
    may hold version-2 keys) the old key is computed, and equals what version 2 wrote."""
    from kraiter_sync.connectors import apply, resolve_connector
    from kraiter_sync.sources import read_source

    path = tmp_path / "e.ndjson"
    head = {"email": "ada@example.com", "event": "e", "timestamp": "2024-01-01T00:00:00Z"}
    path.write_text("".join(json.dumps({**head, "v": v}) + "\n" for v in values))

    def validated(frame: pl.DataFrame, *, legacy: bool) -> pl.DataFrame:
        connector = resolve_connector(frame.columns, kind="events").connector
        options = ValidationOptions(legacy_keys=legacy)
        return validate_events(apply(connector, frame), options=options).valid

    old = validated(
        pl.read_ndjson(path).with_columns(
            pl.lit(str(path)).alias("source_file"),
            pl.int_range(1, len(values) + 1).alias("source_row"),
        ),
        legacy=False,
    )
    new = validated(read_source(path), legacy=True)
    assert [json.loads(p)["v"] for p in new["properties"]] == values
    assert [a != b for a, b in zip(new["event_key"], old["event_key"], strict=True)] == changed
    assert new["legacy_key"].to_list() == [
        o if c else None for o, c in zip(old["event_key"], changed, strict=True)
    ]
