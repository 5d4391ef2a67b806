"""Applying a connector: a source frame becomes the *mapped frame* of docs/internals.md,
vectorised and lazily when given a LazyFrame. It never drops or reorders rows: every
row read reaches the validator, which decides what is rejected."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

import polars as pl

from kraiter_sync.connectors.model import (
    CONTACT_FIELDS,
    EVENT_FIELDS,
    Connector,
    KeyValue,
    list_columns,
    top_column,
)
from kraiter_sync.errors import InputError
from kraiter_sync.frames import SOURCE_FILE, SOURCE_PROBLEM, SOURCE_ROW, Kind, problem_column
from kraiter_sync.jsontypes import (
    BIG,
    FLOAT,
    INT,
    LIST,
    OBJECT,
    decode_json_texts,
    is_mixed,
    mixed_field_names,
    part_type,
)

FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)


def mapped_schema(kind: Kind) -> list[str]:
    """Column names of the mapped frame, in order."""
    if kind == "events":
        return [*EVENT_FIELDS, "properties", SOURCE_FILE, SOURCE_ROW]
    return [*CONTACT_FIELDS, "properties", SOURCE_FILE, SOURCE_ROW]


def _sample(frame: pl.DataFrame | pl.LazyFrame, exprs: list[pl.Expr], n: int) -> pl.DataFrame:
    if isinstance(frame, pl.LazyFrame):
        return frame.select(exprs).head(n).collect()
    return frame.select(exprs).head(n)


def _decode_json(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """Parse a Utf8 column of JSON objects, text by text, into an exact struct
    (``jsontypes``: every value keeps its JSON type, whatever the other rows hold). A
    row whose text is not a JSON object is rejected (``properties.invalid_json``)."""
    if column not in frame.columns or frame.schema[column] != pl.String:
        return frame
    decoded, problems = decode_json_texts(frame[column].to_list())
    if decoded is None:
        decoded = pl.Series(column, [None] * frame.height, dtype=pl.Null)
    frame = frame.with_columns(decoded.alias(column))
    if not problems:
        return frame
    found = {
        row: ("properties.invalid_json", f"column {column!r}: {detail}")
        for row, detail in problems.items()
    }
    return add_problems(frame, found)


def add_problems(frame: pl.DataFrame, problems: Mapping[int, tuple[str, str]]) -> pl.DataFrame:
    """``frame`` with these rows' problems in ``source_problem`` (a problem the source
    found first stays)."""
    new = problem_column(frame.height, dict(problems))
    if SOURCE_PROBLEM in frame.columns:
        new = pl.select(pl.coalesce(pl.lit(frame[SOURCE_PROBLEM]), pl.lit(new))).to_series()
    return frame.with_columns(new.alias(SOURCE_PROBLEM))


def _scalar(expr: pl.Expr, dtype: Any, fld: str, ref: str) -> tuple[pl.Expr, Any]:
    """A field's mixed column (``jsontypes``: values of several types) as one type, as
    the field needs it: numbers for a timestamp of numbers only, else text."""
    names = mixed_field_names(dtype)
    if OBJECT in names or LIST in names:
        msg = (
            f"column {ref!r} (for {fld}) holds objects or lists in some rows, not text: "
            f"map {fld} to a column of single values with --map {fld}=COLUMN, or fix "
            "those rows in the export"
        )
        raise InputError(msg)
    numeric = fld == "timestamp" and set(names) <= {INT, FLOAT, BIG}
    target = pl.Float64 if numeric else pl.String
    return pl.coalesce([expr.struct.field(n).cast(target) for n in names]), target()


_TYPED_SLOTS = ("string_value", "int_value", "double_value", "float_value")


def _key_value_struct(frame: FrameT, kv: KeyValue) -> FrameT:
    """GA4-style ``[{key, value: {string_value, int_value, …}}]`` → ``{key: value}``."""
    schema = frame.collect_schema()
    if kv.column not in schema:
        return frame
    dtype = schema[kv.column]
    if not isinstance(dtype, pl.List) or not isinstance(dtype.inner, pl.Struct):
        msg = f"column {kv.column!r} should be a list of {{{kv.key}, {kv.value}}} structs"
        raise InputError(msg)
    inner = {f.name: f.dtype for f in dtype.inner.fields}
    value_dtype = inner.get(kv.value)
    exploded = (
        pl.col(kv.column).explode().struct.field(kv.key).alias("k"),
        pl.col(kv.column).explode().struct.field(kv.value).alias("v"),
    )
    long = _sample(frame, list(exploded), 2**62).drop_nulls("k")
    keys = sorted(long["k"].unique().to_list())
    if not keys:
        return frame.with_columns(pl.lit(None, dtype=pl.Null).alias(kv.column))
    slots: list[str] = []
    if isinstance(value_dtype, pl.Struct):
        slots = [f.name for f in value_dtype.fields]
    exprs = []
    for key in keys:
        picked = pl.element().filter(pl.element().struct.field(kv.key) == key)
        value = picked.struct.field(kv.value)
        if slots:
            rows = long.filter(pl.col("k") == key)["v"].struct.unnest()
            used = [s for s in slots if rows[s].null_count() < rows.height]
            if not used:
                continue
            if len(used) == 1:
                value = value.struct.field(used[0])
            elif all(s in ("int_value", "double_value", "float_value") for s in used):
                value = pl.coalesce([value.struct.field(s).cast(pl.Float64) for s in used])
            else:
                value = pl.coalesce([value.struct.field(s).cast(pl.String) for s in used])
        exprs.append(pl.col(kv.column).list.eval(value).list.first().alias(key))
    if not exprs:
        return frame.with_columns(pl.lit(None, dtype=pl.Null).alias(kv.column))
    return frame.with_columns(pl.struct(exprs).alias(kv.column))


def _ref_expr(ref: str, schema: pl.Schema) -> pl.Expr | None:
    """Expression for a column or a ``column.field.sub`` path into a struct."""
    if ref in schema:
        return pl.col(ref)
    parts = ref.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:cut])
        if head not in schema:
            continue
        expr = pl.col(head)
        dtype: Any = schema[head]
        rest = parts[cut:]
        # a field name may itself contain dots: greedily match the longest field name
        while rest:
            if is_mixed(dtype) and OBJECT in mixed_field_names(dtype):
                # an object in some rows only: the field is null in the others
                expr = expr.struct.field(OBJECT)
                dtype = part_type(dtype, OBJECT)
            if not isinstance(dtype, pl.Struct):
                return None
            names = {f.name: f.dtype for f in dtype.fields}
            for take in range(len(rest), 0, -1):
                candidate = ".".join(rest[:take])
                if candidate in names:
                    expr = expr.struct.field(candidate)
                    dtype = names[candidate]
                    rest = rest[take:]
                    break
            else:
                return None
        return expr
    return None


def _field_expr(
    connector: Connector, fld: str, schema: pl.Schema
) -> tuple[pl.Expr | None, list[tuple[str, str]]]:
    """The field's expression (coalescing candidates) and the (ref, top column) used."""
    exprs = []
    used = []
    for ref in connector.fields.get(fld, ()):
        expr = _ref_expr(ref, schema)
        top = top_column(ref, list(schema.names()))
        if expr is not None and top is not None:
            exprs.append(expr)
            used.append((ref, top))
    if not exprs:
        return None, []
    if len(exprs) == 1:
        return exprs[0], used
    return pl.coalesce([e.cast(pl.String) for e in exprs]), used


def _timestamp_expr(connector: Connector, expr: pl.Expr, dtype: Any) -> pl.Expr:
    """Apply the connector's unit / format / zone; anything unparsed keeps its raw value."""
    unit = connector.timestamp_unit
    tz = connector.timezone
    if dtype.is_numeric() and unit != "auto":
        return pl.from_epoch(expr.cast(pl.Int64), time_unit=unit).dt.replace_time_zone("UTC")
    if dtype == pl.String and connector.timestamp_format:
        parsed = expr.str.strptime(pl.Datetime("us"), connector.timestamp_format, strict=False)
        if tz:
            parsed = parsed.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
            iso = parsed.dt.to_string("%Y-%m-%dT%H:%M:%S%.6f%:z")
        else:
            iso = parsed.dt.to_string("%Y-%m-%dT%H:%M:%S%.6f")
        return pl.coalesce(iso, expr)
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None and tz:
        return expr.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
    return expr


def _missing_error(connector: Connector, fld: str, schema: pl.Schema) -> InputError:
    refs = connector.fields.get(fld, ())
    wanted = f"column {refs[0]!r}" if len(refs) == 1 else f"any of {list(refs)}"
    if not refs:
        wanted = "a column for it"
    source = "auto-detection" if connector.name == "auto" else f"connector {connector.name!r}"
    kind_hint = (
        " (or --kind contacts if these are contacts)"
        if connector.kind == "events"
        else " (or --kind events if these are events)"
    )
    return InputError(
        f"no {fld} column: {source} looked for {wanted}. Available columns: "
        f"{list_columns(schema.names())}. Pass --map {fld}=COLUMN, or --connector NAME|FILE"
        f"{kind_hint}"
    )


def _check_field_type(fld: str, ref: str, dtype: Any) -> None:
    """A field's column must hold single values: lists, structs and bytes cannot be an
    email, an id, an event name or a timestamp, and the text fields must be of a type
    that has a text form (a duration has none)."""
    unusable = dtype.is_nested() or dtype in (pl.Binary, pl.Object)
    if fld != "timestamp":  # (the validator rejects odd timestamps itself)
        unusable = unusable or isinstance(dtype, pl.Duration)
    if unusable:
        msg = (
            f"column {ref!r} (for {fld}) holds {dtype} values, not text: map {fld} to a "
            f"column of single values with --map {fld}=COLUMN (or a struct field, "
            "COLUMN.FIELD), or flatten it in the export"
        )
        raise InputError(msg)


def apply(connector: Connector, frame: FrameT) -> FrameT:
    """Map a source frame onto the mapped frame of docs/internals.md (same rows, same order).

    Works on a DataFrame (one chunk) or lazily on a LazyFrame (JSON columns are decoded
    text by text, so a LazyFrame with any is collected first). Raises InputError when a
    required field has no column, listing the columns that exist. A row the source
    could not read, or whose JSON column or spread column holds no object, carries its
    reason in ``source_problem``.
    """
    present = frame.collect_schema()
    if any(c in present and present[c] == pl.String for c in connector.json_columns):
        eager = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
        for column in connector.json_columns:
            eager = _decode_json(eager, column)
        eager = _spread_problems(eager, connector)
        mapped = apply(dataclasses.replace(connector, json_columns=()), eager)
        return mapped.lazy() if isinstance(frame, pl.LazyFrame) else mapped
    if isinstance(frame, pl.DataFrame):
        frame = _spread_problems(frame, connector)
    for kv in connector.key_values:
        frame = _key_value_struct(frame, kv)
    schema = frame.collect_schema()

    used_tops: set[str] = set()
    out: dict[str, pl.Expr] = {}
    consumed_fields: dict[str, set[str]] = {}
    resolved: set[str] = set()
    for fld in connector.field_names:
        expr, tops = _field_expr(connector, fld, schema)
        if expr is None:
            if fld in connector.required:
                raise _missing_error(connector, fld, schema)
            out[fld] = pl.lit(None, dtype=pl.String).alias(fld)
            continue
        for ref, top in tops:
            if ref == top:
                used_tops.add(top)
            else:
                consumed_fields.setdefault(top, set()).add(ref[len(top) + 1 :].split(".")[0])
        resolved.add(fld)
        dtype = frame.select(expr).collect_schema().dtypes()[0]
        if is_mixed(dtype):
            expr, dtype = _scalar(expr, dtype, fld, tops[0][0])
        _check_field_type(fld, tops[0][0], dtype)
        if fld == "timestamp":
            out[fld] = _timestamp_expr(connector, expr, dtype).alias(fld)
        elif fld == "name":
            named = expr.cast(pl.String)
            if connector.renames:
                named = named.replace(dict(connector.renames))
            out[fld] = named.alias(fld)
        else:
            out[fld] = expr.cast(pl.String).alias(fld)
    if connector.kind == "events" and not resolved & {"email", "contact_id"}:
        # Kraiter tracks an event against an email or a contact id: one must exist.
        raise _missing_error(connector, "email", schema)

    out["properties"] = _properties_expr(connector, schema, used_tops, consumed_fields)
    out[SOURCE_FILE] = (
        pl.col(SOURCE_FILE).cast(pl.String)
        if SOURCE_FILE in schema
        else pl.lit("<frame>", dtype=pl.String)
    ).alias(SOURCE_FILE)
    out[SOURCE_ROW] = (
        pl.col(SOURCE_ROW).cast(pl.Int64)
        if SOURCE_ROW in schema
        else pl.int_range(1, pl.len() + 1, dtype=pl.Int64)
    ).alias(SOURCE_ROW)
    names = mapped_schema(connector.kind)
    if SOURCE_PROBLEM in schema:
        out[SOURCE_PROBLEM] = pl.col(SOURCE_PROBLEM)
        names.append(SOURCE_PROBLEM)
    return frame.select([out[name] for name in names])


def _spread_problems(frame: pl.DataFrame, connector: Connector) -> pl.DataFrame:
    """Rows whose spread column (``[properties].spread``) holds something other than an
    object there (its other rows do): rejected as ``properties.invalid_json``."""
    found: dict[int, tuple[str, str]] = {}
    for column in connector.spread:
        if column not in frame.columns or not is_mixed(frame.schema[column]):
            continue
        s = frame[column]
        objects = s.struct.field(OBJECT) if OBJECT in mixed_field_names(s.dtype) else None
        other = s.is_not_null() & (objects.is_null() if objects is not None else True)
        for row in other.fill_null(False).arg_true().to_list():
            found.setdefault(
                row,
                ("properties.invalid_json", f"column {column!r} holds no object in this row"),
            )
    return add_problems(frame, found) if found else frame


def _properties_expr(
    connector: Connector,
    schema: pl.Schema,
    used_tops: set[str],
    consumed: Mapping[str, set[str]],
) -> pl.Expr:
    skip = {SOURCE_FILE, SOURCE_ROW, *connector.exclude}
    if connector.properties == "rest":
        columns = [c for c in schema.names() if c not in skip and c not in used_tops]
    else:
        missing = [c for c in connector.properties if c not in schema]
        if missing:
            msg = (
                f"connector {connector.name!r} lists property column {missing[0]!r}, which "
                f"is not in the input. Available columns: {list_columns(schema.names())}"
            )
            raise InputError(msg)
        columns = [c for c in connector.properties if c not in skip]
    members: dict[str, pl.Expr] = {}
    spread_cols = [c for c in columns if c in connector.spread]
    for column in columns:
        if column in connector.spread:
            continue
        dtype = schema[column]
        if dtype == pl.Null:
            continue
        taken = consumed.get(column, set())
        if is_mixed(dtype) and taken and OBJECT in mixed_field_names(dtype):
            inner = part_type(dtype, OBJECT)
            objects = pl.col(column).struct.field(OBJECT)
            keep = [f.name for f in inner.fields if f.name not in taken]
            parts = [
                pl.col(column).struct.field(n) for n in mixed_field_names(dtype) if n != OBJECT
            ]
            if keep:
                parts.append(pl.struct([objects.struct.field(f) for f in keep]).alias(OBJECT))
            members[column] = pl.struct(parts)
            continue
        if isinstance(dtype, pl.Struct) and taken:
            # a field already mapped (e.g. GA4 user_properties.email) is not repeated
            keep = [f.name for f in dtype.fields if f.name not in taken]
            if not keep:
                continue
            members[column] = pl.struct([pl.col(column).struct.field(f) for f in keep])
            continue
        members[column] = pl.col(column)
    for column in spread_cols:
        dtype = schema[column]
        base = pl.col(column)
        if is_mixed(dtype):  # objects in some rows only (the others are rejected)
            if OBJECT not in mixed_field_names(dtype):
                continue
            base = base.struct.field(OBJECT)
            dtype = part_type(dtype, OBJECT)
        if not isinstance(dtype, pl.Struct):
            continue
        for fld in dtype.fields:
            if fld.name in consumed.get(column, set()) or fld.name in connector.exclude:
                continue
            members[fld.name] = base.struct.field(fld.name)
    if not members:
        return pl.lit(None, dtype=pl.Null).alias("properties")
    return pl.struct([expr.alias(name) for name, expr in members.items()]).alias("properties")


def direct_property_columns(connector: Connector, schema: pl.Schema) -> frozenset[str]:
    """The source columns :func:`apply` makes properties under their own name: not mapped
    to a field, excluded, spread, or decoded from JSON / key-value lists (the columns
    whose text values the validator types, for a CSV)."""
    used = {ref for refs in connector.fields.values() for ref in refs if ref in schema}
    skip = {
        SOURCE_FILE,
        SOURCE_ROW,
        *connector.exclude,
        *connector.spread,
        *connector.json_columns,
        *(kv.column for kv in connector.key_values),
    }
    if connector.properties == "rest":
        return frozenset(c for c in schema.names() if c not in skip and c not in used)
    return frozenset(c for c in connector.properties if c not in skip and c in schema)
