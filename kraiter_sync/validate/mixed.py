"""Property columns whose values have several JSON types (``kraiter_sync.jsontypes``).

An NDJSON key or a JSON column may hold ``1`` in one row, ``1.5`` or
``"x"`` in another: the readers give such a column one part per type rather than
coerce the values to a common type, so each value keeps the type it has in the source
whatever chunk it sits in. Here a mixed column is taken apart for the property checks
(:mod:`.properties` checks and encodes each part as a plain column of its type, and
joins the parts' JSON texts): the same value gives the same JSON text as it would in a
column of its own type. With ``legacy``, the parts are cast to the type an earlier
version coerced them to (``WAS``), to compute the key that version wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from kraiter_sync.jsontypes import (
    BIG,
    BYTES,
    LIST,
    OBJECT,
    WAS,
    is_mixed,
    mixed_field_names,
    part_type,
)

__all__ = ["MixedLeaf", "has_legacy_type", "object_part", "take_apart"]

_VALUE_PARTS = (BIG, BYTES, LIST, OBJECT, WAS)


@dataclass
class MixedLeaf:
    """A mixed column taken apart: ``parts`` (plain columns, one type each, at most one
    set per row), ``raw`` (JSON texts to emit as they are: integers beyond 64 bits),
    ``unsupported`` (rows holding a list or binary), and whether an earlier version
    wrote these values otherwise (``legacy_differs``)."""

    parts: list[pl.Series] = field(default_factory=list)
    raw: list[pl.Series] = field(default_factory=list)
    unsupported: pl.Series | None = None
    legacy_differs: bool = False


def has_legacy_type(dtype: pl.DataType) -> bool:
    """Whether an earlier version coerced a mixed column's values (it has ``WAS``)."""
    return part_type(dtype, WAS) is not None


def object_part(s: pl.Series) -> pl.Series | None:
    """The objects of a mixed column (a Struct), or None when it holds none."""
    if is_mixed(s.dtype) and OBJECT in mixed_field_names(s.dtype):
        return s.struct.field(OBJECT)
    return None


def take_apart(s: pl.Series, *, legacy: bool) -> MixedLeaf:
    """A mixed column's parts, named after the column (objects are left to the caller,
    see :func:`object_part`)."""
    names = mixed_field_names(s.dtype)
    was = part_type(s.dtype, WAS)
    out = MixedLeaf(legacy_differs=was is not None)
    if legacy and was is not None:
        # what an earlier version made of them: every scalar part coerced to one type
        scalars = [s.struct.field(n) for n in names if n not in (OBJECT, LIST)]
        if scalars:
            coerced = pl.select(
                pl.coalesce([pl.lit(p).cast(was, strict=False) for p in scalars])
            ).to_series()
            out.parts.append(coerced.alias(s.name))
        return out
    unsupported = []
    for name in names:
        part = s.struct.field(name).alias(s.name)
        if name == BIG:
            out.raw.append(part)
        elif name in (LIST, BYTES):
            unsupported.append(part.is_not_null())
        elif name not in _VALUE_PARTS:
            out.parts.append(part)
    if unsupported:
        mask = pl.select(pl.any_horizontal([pl.lit(u) for u in unsupported])).to_series()
        if mask.any():
            out.unsupported = mask
    return out
