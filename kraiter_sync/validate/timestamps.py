"""Timestamp parsing: ISO 8601 strings, native datetimes and dates, epoch numbers.

Output is always ``Datetime("us", "UTC")``. Naive values (no offset) take
``options.timezone``; numeric values are epochs whose unit is given or detected per value
from its magnitude (seconds < 1e11 ≤ milliseconds < 1e14 ≤ microseconds < 1e17 ≤
nanoseconds), and the units seen are reported.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cache

import polars as pl

from kraiter_sync.validate._series import full, overrule, without_huge
from kraiter_sync.validate.options import EpochUnit, ValidationOptions

__all__ = ["ISO_FORMAT", "ParsedTimestamps", "parse_timestamps", "to_iso"]

#: The canonical wire form: UTC with milliseconds and ``Z``.
ISO_FORMAT = "%Y-%m-%dT%H:%M:%S%.3fZ"
_UTC = pl.Datetime("us", "UTC")
#: The Unix epoch, aware (UTC).
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_SCALE = {"s": 1e6, "ms": 1e3, "us": 1.0, "ns": 1e-3}


@dataclass
class ParsedTimestamps:
    """Parsed values, the rule per row (null = ok) and what was detected."""

    timestamp: pl.Series
    rule: pl.Series
    formats: dict[str, int] = field(default_factory=dict)
    naive: int = 0


def _localise(s: pl.Series, timezone: str) -> pl.Series:
    """Naive → ``timezone`` → UTC; non-existent local times (DST gaps) become null."""
    return (
        s.cast(pl.Datetime("us"))
        .dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone("UTC")
    )


def _from_epoch(num: pl.Series, unit: EpochUnit | None) -> tuple[pl.Series, dict[str, int]]:
    """Epoch numbers → UTC, unit given or detected per value by magnitude."""
    f = num.cast(pl.Float64)
    mag = f.abs()
    if unit is None:
        units = pl.select(
            pl.when(mag < 1e11)
            .then(pl.lit("s"))
            .when(mag < 1e14)
            .then(pl.lit("ms"))
            .when(mag < 1e17)
            .then(pl.lit("us"))
            .otherwise(pl.lit("ns"))
        ).to_series()
        units = pl.select(pl.when(f.is_not_null()).then(units)).to_series()
    else:
        units = pl.select(pl.when(f.is_not_null()).then(pl.lit(unit))).to_series()
    scale = units.replace_strict(_SCALE, return_dtype=pl.Float64, default=None)
    if num.dtype.is_integer() and (unit in (None, "s", "ms", "us")):
        # exact integer path: no float rounding for realistic magnitudes
        iscale = units.replace_strict(
            {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 1}, return_dtype=pl.Int64, default=None
        )
        micros = pl.select(
            pl.when(pl.lit(units) == "ns")
            .then(pl.lit(num).cast(pl.Int64) // 1000)
            .otherwise(pl.lit(num).cast(pl.Int64) * pl.lit(iscale))
        ).to_series()
    else:
        micros = pl.select(
            pl.when(pl.lit(f).is_finite()).then((pl.lit(f) * pl.lit(scale)).round(0))
        ).to_series()
        micros = micros.cast(pl.Int64, strict=False)
    counts = units.drop_nulls().value_counts()
    found = {f"epoch_{u}": int(c) for u, c in counts.iter_rows()}
    return micros.cast(_UTC), found


def _from_strings(s: pl.Series, options: ValidationOptions) -> ParsedTimestamps:
    s = s.str.strip_chars()
    s = s.str.replace(r"^(\d{4}-\d{2}-\d{2})[ t]", "${1}T").str.replace(r"[Zz]$", "+00:00")
    has_offset = s.str.contains(r"T.*[+-]\d{2}:?\d{2}$")
    aware = s.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_zone="UTC")
    aware_min = s.str.to_datetime("%Y-%m-%dT%H:%M%z", strict=False, time_zone="UTC")
    naive = pl.select(
        pl.coalesce(
            pl.lit(s).str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us"),
            pl.lit(s).str.to_datetime("%Y-%m-%dT%H:%M", strict=False, time_unit="us"),
            pl.lit(s).str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("us")),
        )
    ).to_series()
    is_number = s.str.contains(r"^-?\d+(?:\.\d+)?$")
    formats: dict[str, int] = {}
    epoch = full(len(s), None, _UTC)
    if is_number.any():
        nums = s.cast(pl.Float64, strict=False)
        ints = s.cast(pl.Int64, strict=False)
        src = ints if ints.null_count() == s.null_count() else nums
        epoch, formats = _from_epoch(
            pl.select(pl.when(is_number).then(src)).to_series(), options.epoch_unit
        )
    with_offset = pl.select(
        pl.when(pl.lit(has_offset)).then(pl.coalesce(pl.lit(aware), pl.lit(aware_min)))
    ).to_series()
    naive_ok = (~has_offset) & naive.is_not_null() & ~is_number
    localised = _localise(naive, options.timezone)
    ts = pl.select(
        pl.coalesce(
            pl.lit(with_offset),
            pl.when(pl.lit(naive_ok)).then(pl.lit(localised)),
            pl.lit(epoch),
        )
    ).to_series()
    n_offset = int(with_offset.is_not_null().sum())
    n_naive = int((naive_ok & localised.is_not_null()).sum())
    if n_offset:
        formats["iso8601_offset"] = n_offset
    if n_naive:
        formats["iso8601_naive"] = n_naive
    missing = s.is_null() | (s == "")
    return ParsedTimestamps(ts, _rules(ts, missing, options), formats, n_naive)


def _micros(moment: dt.datetime) -> int:
    """An aware datetime as microseconds since the epoch (as polars stores it)."""
    return (moment - EPOCH) // dt.timedelta(microseconds=1)


def _rules(ts: pl.Series, missing: pl.Series, options: ValidationOptions) -> pl.Series:
    limit = options.current_time() + options.future_tolerance
    # the bounds as integers: a datetime literal costs more than the comparison itself
    # on a chunk of a few thousand rows
    us = pl.lit(ts).cast(_UTC).dt.epoch("us")
    return pl.select(
        pl.when(pl.lit(missing))
        .then(pl.lit("timestamp.missing"))
        .when(us.is_null())
        .then(pl.lit("timestamp.unparseable"))
        .when(us > _micros(limit))
        .then(pl.lit("timestamp.future"))
        .when(us < _micros(options.floor))
        .then(pl.lit("timestamp.too_old"))
        .otherwise(pl.lit(None, pl.String))
    ).to_series()


def parse_timestamps(values: pl.Series, options: ValidationOptions) -> ParsedTimestamps:
    """Parse one column of any supported dtype; never raises for bad values (they get a rule)."""
    dtype = values.dtype
    n_present = len(values) - values.null_count()
    if dtype == pl.String:
        # no timestamp is longer than this: longer text is not parsed (each step copies it)
        text, huge = without_huge(values, 1024)
        parsed = _from_strings(text, options)
        parsed.rule = overrule(parsed.rule, huge, "timestamp.unparseable")
        return parsed
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            ts = _localise(values, options.timezone)
            fmt, naive = "datetime_naive", n_present
        else:
            ts = values.dt.convert_time_zone("UTC").cast(_UTC)
            fmt, naive = "datetime", 0
        formats = {fmt: n_present} if n_present else {}
        return ParsedTimestamps(
            ts.cast(_UTC), _rules(ts, values.is_null(), options), formats, naive
        )
    if dtype == pl.Date:
        ts = _localise(values.cast(pl.Datetime("us")), options.timezone)
        formats = {"date": n_present} if n_present else {}
        return ParsedTimestamps(ts, _rules(ts, values.is_null(), options), formats, n_present)
    if dtype.is_numeric():
        ts, formats = _from_epoch(values, options.epoch_unit)
        return ParsedTimestamps(ts, _rules(ts, values.is_null(), options), formats, 0)
    if dtype == pl.Null:
        ts = full(len(values), None, _UTC)
        return ParsedTimestamps(ts, _rules(ts, values.is_null(), options), {}, 0)
    try:
        text = values.cast(pl.String, strict=False)
    except pl.exceptions.PolarsError:  # no text form (durations): none of them is a time
        ts = full(len(values), None, _UTC)
        return ParsedTimestamps(ts, _rules(ts, values.is_null(), options), {}, 0)
    return _from_strings(text, options)


_DAY_US = 86_400_000_000
_MAX_TABLE_DAYS = 100_000  # ~270 years of distinct days: beyond that, plain strftime


@cache
def _time_tables() -> tuple[pl.Series, pl.Series]:
    """``THH:MM:SS.`` for the 86,400 seconds of a day, ``mmmZ`` for the 1,000 milliseconds."""
    times = [f"T{h:02d}:{m:02d}:{s:02d}." for h in range(24) for m in range(60) for s in range(60)]
    return pl.Series(times, dtype=pl.String), pl.Series([f"{i:03d}Z" for i in range(1000)])


def to_iso(ts: pl.Series) -> pl.Series:
    """``YYYY-MM-DDTHH:MM:SS.sssZ`` for UTC datetimes (identical to ``strftime(ISO_FORMAT)``).

    Formatting is three gathers from small tables (the chunk's distinct days, the seconds
    of a day, the milliseconds) joined once: about 2.5x less than chrono's ``strftime``
    per row. Chunks whose days span more than ``_MAX_TABLE_DAYS`` use ``strftime``.
    """
    us = ts.cast(_UTC).to_physical().alias("us")
    parts = us.to_frame().select(day=pl.col("us") // _DAY_US, rem=pl.col("us") % _DAY_US)
    first, last = parts["day"].min(), parts["day"].max()
    if not isinstance(first, int) or not isinstance(last, int) or (last - first >= _MAX_TABLE_DAYS):
        return ts.dt.strftime(ISO_FORMAT)
    days = (
        pl.int_range(first, last + 1, dtype=pl.Int32, eager=True)
        .cast(pl.Date)
        .dt.strftime("%Y-%m-%d")
    )
    times, millis = _time_tables()
    return (
        parts.lazy()
        .select(
            pl.concat_str(
                pl.lit(days).gather(pl.col("day") - first),
                pl.lit(times).gather(pl.col("rem") // 1_000_000),
                pl.lit(millis).gather((pl.col("rem") // 1000) % 1000),
            ).alias(ts.name)
        )
        .collect()
        .to_series()
    )
