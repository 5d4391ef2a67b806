"""The compiled validator (kraiter_sync/native) against the polars path it stands in for.

Every native function must give byte-identical output to the polars code on any input,
including the inputs it hands back (non-ASCII emails, far-away years, unusual dtypes).
Hypothesis drives the inputs; the golden regression tests run both paths as well.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal, assert_series_equal

from kraiter_sync.validate import native
from kraiter_sync.validate.emails import normalise_emails
from kraiter_sync.validate.keys import SeenKeys, key_parts
from kraiter_sync.validate.properties import _encode
from kraiter_sync.validate.timestamps import to_iso

pytestmark = pytest.mark.skipif(
    not native.available() and not os.environ.get("CI"),
    reason="no C compiler: the native validator is unavailable",
)
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def both(fn, *args):  # type: ignore[no-untyped-def]
    """(native result, polars result) of ``fn(*args)``."""
    fast = fn(*args)
    real = native.library
    try:
        native.library = lambda: None  # type: ignore[assignment]
        slow = fn(*args)
    finally:
        native.library = real  # type: ignore[assignment]
    return fast, slow


def test_library_loads_in_ci() -> None:
    """CI must exercise the native path, not silently fall back to polars."""
    if os.environ.get("CI"):
        assert native.available()
    assert native.library() is None or native.library().ks_abi() == native.ABI


# --- emails -----------------------------------------------------------------------------

_EMAIL_ALPHABET = st.sampled_from(
    [*list("abcXYZ019.-_+@@@.."), " ", "\t", ":", ">", "<", '"', "(", "é", "\xa0", "\u200b"]
)
_emails = st.one_of(
    st.none(),
    st.text(_EMAIL_ALPHABET, max_size=30),
    st.from_regex(
        r"[A-Za-z0-9._%+-]{1,20}@[A-Za-z0-9-]{1,10}(\.[A-Za-z0-9-]{1,8}){1,3}", fullmatch=True
    ),
    st.just("a" * 64 + "@example.com"),
    st.just("a" * 65 + "@example.com"),
    st.just("x@" + "b" * 63 + ".com"),
    st.just("x@" + "b" * 64 + ".com"),
    st.just("x@" + ".".join(["c" * 60] * 4) + ".com"),
    st.just("mailto:Ann@Example.com"),
    st.just("Ann <ANN@example.com>"),
)


@SETTINGS
@given(values=st.lists(_emails, max_size=40))
def test_emails_match_polars(values: list[str | None]) -> None:
    series = pl.Series("email", values, dtype=pl.String)
    fast, slow = both(normalise_emails, series)
    assert_frame_equal(fast, slow)


def test_emails_status_codes() -> None:
    out = native.emails(pl.Series(["  A@Example.COM ", "bad", None, "é@x.com", "mailto:a@b.co"]))
    assert out is not None
    text, status = out
    assert status.to_list() == [0, 1, 3, 2, 2]
    assert text[0] == "a@example.com"
    assert text[1] == "bad"


# --- timestamps ---------------------------------------------------------------------------

_DAY_US = 86_400_000_000
_micros = st.one_of(
    st.integers(-62_135_596_800_000_000, 253_402_300_799_999_999),  # years 1..9999
    st.integers(1_500_000_000_000_000, 1_800_000_000_000_000),
    st.integers(-(2**62), 2**62),  # far outside: the C side hands these back
)


@SETTINGS
@given(values=st.lists(_micros, min_size=1, max_size=40), sort=st.booleans())
def test_iso_matches_polars(values: list[int], sort: bool) -> None:
    if sort:
        values.sort()
    ts = pl.Series("ts", values, dtype=pl.Int64).cast(pl.Datetime("us", "UTC"))
    fast, slow = both(to_iso, ts)
    assert_series_equal(fast, slow)


def test_iso_hands_back_nulls_and_far_years() -> None:
    assert native.iso_ms(pl.Series([0, None], dtype=pl.Int64)) is None
    assert native.iso_ms(pl.Series([-62_135_596_800_000_001], dtype=pl.Int64)) is None  # year 0
    out = native.iso_ms(pl.Series([0, _DAY_US - 1, -1], dtype=pl.Int64))
    assert out is not None
    assert out.to_list() == [
        "1970-01-01T00:00:00.000Z",
        "1970-01-01T23:59:59.999Z",
        "1969-12-31T23:59:59.999Z",
    ]


# --- properties JSON --------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)
_floats = st.floats(allow_nan=False, allow_infinity=False)
_COLUMN_TYPES = {
    "s": (pl.String, _text),
    "f": (pl.Float64, _floats),
    "b": (pl.Boolean, st.booleans()),
    "i8": (pl.Int8, st.integers(-(2**7), 2**7 - 1)),
    "i64": (pl.Int64, st.integers(-(2**63), 2**63 - 1)),
    "u32": (pl.UInt32, st.integers(0, 2**32 - 1)),
    "u64": (pl.UInt64, st.integers(0, 2**64 - 1)),
}


@st.composite
def _flat_frames(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(1, 12))
    kinds = draw(st.lists(st.sampled_from(sorted(_COLUMN_TYPES)), min_size=1, max_size=5))
    cols = {}
    for j, kind in enumerate(kinds):
        dtype, values = _COLUMN_TYPES[kind]
        name = draw(st.sampled_from(["a", "b.c", 'q"uote', "é", "tab\t", f"k{j}"])) + str(j)
        cols[name] = pl.Series(
            name, draw(st.lists(st.one_of(st.none(), values), min_size=n, max_size=n)), dtype
        )
    return pl.DataFrame(dict(sorted(cols.items())))


@SETTINGS
@given(frame=_flat_frames())
def test_json_objects_match_polars(frame: pl.DataFrame) -> None:
    fast = native.json_objects(frame)
    assert fast is not None
    assert_series_equal(fast, _encode(frame), check_names=False)


def test_json_float_text_matches_json_encode_on_many_values() -> None:
    """Floats are written as polars' String cast: it must equal json_encode's text."""
    import random

    rnd = random.Random(7)
    values = [0.0, -0.0, 1e16, 1e21, 5e-324, 1.7976931348623157e308, 0.1, 1 / 3]
    values += [rnd.uniform(-1e9, 1e9) for _ in range(20_000)]
    values += [math.ldexp(rnd.random(), rnd.randint(-1070, 1020)) for _ in range(20_000)]
    frame = pl.DataFrame({"f": values})
    fast = native.json_objects(frame)
    assert fast is not None
    assert_series_equal(fast, _encode(frame), check_names=False)


def test_json_hands_back_other_types() -> None:
    frame = pl.DataFrame({"d": pl.Series([1.5], dtype=pl.Float32)})
    assert native.json_objects(frame) is None


# --- event keys and the seen-key set ------------------------------------------------------


@st.composite
def _canon(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(1, 15))
    ids = st.text(min_size=1, max_size=12)
    rows = [
        {
            "email": draw(ids),
            "contact_id": draw(st.one_of(st.none(), ids)),
            "name": draw(ids),
            "timestamp_iso": draw(st.sampled_from(["2024-01-01T00:00:00.000Z", "x" * 40])),
            "properties": draw(st.sampled_from(["{}", '{"a":1}', '{"long":"' + "z" * 300 + '"}'])),
        }
        for _ in range(n)
    ]
    return pl.DataFrame(rows, schema=dict.fromkeys(rows[0], pl.String))


@SETTINGS
@given(frame=_canon())
def test_event_keys_match_polars_hash(frame: pl.DataFrame) -> None:
    fast, slow = both(key_parts, frame)
    assert_frame_equal(fast.select("event_key", "hi", "lo"), slow.select("event_key", "hi", "lo"))


@SETTINGS
@given(frame=_canon(), data=st.data())
def test_skipped_rows_are_not_read_and_the_rest_keep_their_keys(
    frame: pl.DataFrame, data: st.DataObject
) -> None:
    """Rejected rows stay in the frame until the last filter: their key is zeros whatever
    they hold (here: nothing at all), on both paths."""
    skip = pl.Series(
        data.draw(st.lists(st.booleans(), min_size=frame.height, max_size=frame.height))
    )
    holes = frame.with_columns(
        [pl.when(skip).then(None).otherwise(pl.col(c)).alias(c) for c in frame.columns]
    )
    fast, slow = both(key_parts, holes, skip)
    assert_frame_equal(fast.select("event_key", "hi", "lo"), slow.select("event_key", "hi", "lo"))
    live = key_parts(frame.filter(~skip))
    assert_frame_equal(fast.filter(~skip).select(live.columns), live)
    skipped = fast.filter(skip)
    assert skipped["event_key"].eq("0" * 32).all()
    assert skipped["hi"].eq(0).all()
    assert skipped["lo"].eq(0).all()


@SETTINGS
@given(keys=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.booleans()), max_size=40))
def test_seen_set_skips_rows_on_both_paths(keys: list[tuple[int, int, bool]]) -> None:
    """A skipped row is never first and not remembered: a later equal key is still first."""
    hi = pl.Series([k[0] for k in keys], dtype=pl.UInt64)
    lo = pl.Series([k[1] for k in keys], dtype=pl.UInt64)
    skip = pl.Series([k[2] for k in keys], dtype=pl.Boolean)
    remembered: set[tuple[int, int]] = set()
    expected = []
    for h, l_, skipped in keys:
        expected.append(not skipped and (h, l_) not in remembered)
        if not skipped:
            remembered.add((h, l_))
    fast, slow = both(lambda: SeenKeys().mark(hi, lo, skip))
    assert fast.to_list() == slow.to_list() == expected


def test_event_keys_hand_back_missing_identity() -> None:
    frame = pl.DataFrame(
        {"email": [None], "contact_id": [None], "name": ["n"], "timestamp_iso": ["t"]},
        schema=dict.fromkeys(["email", "contact_id", "name", "timestamp_iso"], pl.String),
    ).with_columns(properties=pl.lit("{}"))
    assert native.event_keys(frame) is None


@SETTINGS
@given(
    batches=st.lists(
        st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=30), max_size=5
    )
)
def test_seen_set_marks_first_occurrences_in_order(batches: list[list[tuple[int, int]]]) -> None:
    """Small key values collide in the table on purpose, and (0, 0) is a key like any other."""
    lib = native.library()
    assert lib is not None
    fast = native.NativeKeySet(lib)
    remembered: set[tuple[int, int]] = set()
    for batch in batches:
        expected = []
        for key in batch:
            expected.append(key not in remembered)
            remembered.add(key)
        hi = pl.Series([k[0] for k in batch], dtype=pl.UInt64)
        lo = pl.Series([k[1] for k in batch], dtype=pl.UInt64)
        assert fast.mark(hi, lo).to_list() == expected
        assert fast.contains(hi, lo).all()
    assert fast.count == len(remembered)


def test_seen_set_grows_and_agrees_with_the_polars_tracker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = pl.int_range(0, 300_000, eager=True).cast(pl.UInt64)
    # small, structured halves (real ones are hashes): the table must still spread them
    # (with the raw top bits as home slot every key landed in slot 0: quadratic)
    hi = keys * 7919
    lo = keys % 5
    hi, lo = pl.concat([hi, hi.head(1000)]), pl.concat([lo, lo.head(1000)])
    fast = SeenKeys()
    assert fast._native is not None
    monkeypatch.setattr(native, "library", lambda: None)
    slow = SeenKeys()
    starts = range(0, len(hi), 50_000)
    first_fast = pl.concat([fast.mark(hi.slice(i, 50_000), lo.slice(i, 50_000)) for i in starts])
    first_slow = pl.concat([slow.mark(hi.slice(i, 50_000), lo.slice(i, 50_000)) for i in starts])
    assert_series_equal(first_fast, first_slow, check_names=False)
    assert int(first_fast.sum()) == 300_000
    assert fast.count == slow.count == 300_000
    assert fast._native.nbytes <= 16 * 2 * 2**19  # at most 3/4 full, doubling: < 64 B a key


def test_reserved_set_does_not_grow_and_marks_the_same() -> None:
    keys = pl.int_range(0, 100_000, eager=True).cast(pl.UInt64)
    hi, lo = pl.concat([keys * 104729, keys.head(500) * 104729]), pl.concat([keys, keys.head(500)])
    plain, reserved = SeenKeys(), SeenKeys()
    assert reserved._native is not None
    reserved.reserve(100_000)
    size = reserved._native.nbytes
    assert size >= 16 * 100_000 * 4 // 3  # room for all of them at most 3/4 full
    starts = range(0, len(hi), 25_000)
    a = pl.concat([plain.mark(hi.slice(i, 25_000), lo.slice(i, 25_000)) for i in starts])
    b = pl.concat([reserved.mark(hi.slice(i, 25_000), lo.slice(i, 25_000)) for i in starts])
    assert_series_equal(a, b)
    assert int(b.sum()) == reserved.count == 100_000
    assert reserved._native.nbytes == size  # no doubling on the way
    capped = SeenKeys()
    capped.reserve(10**12)  # a hint, capped: not a terabyte table
    assert capped._native is not None
    assert capped._native.nbytes <= 16 * 2 * 2**25


# --- loading ------------------------------------------------------------------------------


def _load_in_subprocess(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = (
        "from kraiter_sync.validate import native\n"
        "print('available' if native.available() else 'unavailable')\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_builds_into_the_user_cache_once(tmp_path: Path) -> None:
    done = _load_in_subprocess({"XDG_CACHE_HOME": str(tmp_path)})
    assert done.stdout.strip() == "available", done.stderr
    built = list((tmp_path / "kraiter-sync" / "native").glob("kraiter_native-*"))
    assert [p.name for p in built] == [native.library_name()]
    stamp = built[0].stat().st_mtime_ns
    assert _load_in_subprocess({"XDG_CACHE_HOME": str(tmp_path)}).stdout.strip() == "available"
    assert built[0].stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_turned_off_by_environment(tmp_path: Path) -> None:
    done = _load_in_subprocess({"KRAITER_SYNC_NATIVE": "0", "XDG_CACHE_HOME": str(tmp_path)})
    assert done.stdout.strip() == "unavailable"
    assert not (tmp_path / "kraiter-sync").exists()


def test_without_a_compiler_falls_back_unless_required(tmp_path: Path) -> None:
    env = {"CC": str(tmp_path / "no-such-cc"), "XDG_CACHE_HOME": str(tmp_path)}
    assert _load_in_subprocess(env).stdout.strip() == "unavailable"
    required = _load_in_subprocess({**env, "KRAITER_SYNC_NATIVE": "require"})
    assert required.returncode != 0
    assert "KRAITER_SYNC_NATIVE=require" in required.stderr
    assert "no C compiler" in required.stderr


def test_json_sizes_exactly_when_the_bound_is_too_big(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outputs are addressed with int32 offsets: a generous bound over 2 GiB falls back to
    an exact sizing pass, and an output that really is too big to the polars path."""
    frame = pl.DataFrame({"s": ["ab", "c\nd", None], "i": [1, None, -30]})
    expected = _encode(frame)
    exact = len("".join(expected.to_list()))
    monkeypatch.setattr(native, "_MAX_DATA", exact)  # below the bound, at the exact size
    fast = native.json_objects(frame)
    assert fast is not None
    assert_series_equal(fast, expected, check_names=False)
    monkeypatch.setattr(native, "_MAX_DATA", exact - 1)
    assert native.json_objects(frame) is None


# --- names --------------------------------------------------------------------------------


@SETTINGS
@given(
    values=st.lists(
        st.one_of(
            st.none(),
            st.sampled_from(
                ["signup", " signup ", "Page View", "", "email.sent", "x\x01", "a" * 300]
            ),
            st.text(max_size=6),
        ),
        max_size=60,
    ),
    rename=st.booleans(),
)
def test_names_match_polars(values: list[str | None], rename: bool) -> None:
    from kraiter_sync.validate.names import check_names
    from kraiter_sync.validate.options import ValidationOptions

    options = ValidationOptions(rename={"signup": "sign_up"} if rename else {})
    # repeated, so that the distinct values are few enough for the numbering
    series = pl.Series("name", values * 5, dtype=pl.String)
    fast, slow = both(check_names, series, options)
    assert_frame_equal(fast, slow)


def test_distinct_numbers_by_first_appearance() -> None:
    out = native.distinct(pl.Series(["b", None, "a", "b", "long value over twelve", "a"]), 3)
    assert out is not None
    codes, first = out
    assert codes.to_list() == [0, 3, 1, 0, 2, 1]
    assert first.to_list() == [0, 2, 4]
    assert native.distinct(pl.Series(["a", "b", "c"]), 2) is None  # too many


def test_outputs_sized_by_rows_not_buffers_when_views_share_bytes() -> None:
    """A gather repeats one long string through many views over the same bytes: outputs
    that copy strings must be sized by the rows (sizing by the data buffers overflowed)."""
    emails = pl.Series(["  " + "A" * 40 + "@Example.com", None]).gather([0] * 3000 + [1])
    direct = native.emails(emails)  # None if the C side found its output too small
    assert direct is not None
    assert direct[1].head(3000).eq(0).all()
    fast, slow = both(normalise_emails, emails)
    assert_frame_equal(fast, slow)
    assert fast["email"][0] == "a" * 40 + "@example.com"
    text = pl.Series(['say "hi"\n' * 8]).gather([0] * 3000)
    frame = pl.DataFrame({"s": text, "i": pl.int_range(0, 3000, eager=True)})
    encoded = native.json_objects(frame)
    assert encoded is not None
    assert_series_equal(encoded, _encode(frame), check_names=False)


def test_output_blocks_are_reused_only_after_polars_drops_them() -> None:
    """Large outputs come from a pool of blocks kept across chunks (page faults); a block
    goes back only when nothing made of it is alive, so outputs never share memory."""
    pool = native._BlockPool(limit=64 << 20)
    size = 3 * pool.STEP + 5
    first = pool.get(size)
    series = pl.Series("x", pa.Array.from_buffers(pa.uint8(), size, [None, first]))
    address = first.address
    del first
    second = pool.get(size)  # `series` still holds the first block
    assert second.address != address
    assert series.len() == size
    second_address = second.address
    del series, second
    idle = {b.address for b in pool._idle[4 * pool.STEP]}
    assert idle == {address, second_address}
    third = pool.get(size)
    assert third.address in idle
    assert third.size == size
    small = pool.get(100)  # small outputs are plain allocations
    assert small.size >= 100
