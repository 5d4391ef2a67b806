"""Declared property types: their names, and reading them from connector files, sync
jobs and ``--type`` (what each type does to a value: ``validate.text_types``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal, cast

from kraiter_sync.errors import ConfigError

__all__ = ["PROPERTY_TYPES", "PropertyType", "check_types", "parse_type_overrides"]

PropertyType = Literal["string", "integer", "float", "boolean"]
PROPERTY_TYPES: tuple[PropertyType, ...] = ("string", "integer", "float", "boolean")


def check_types(raw: object, where: str) -> dict[str, PropertyType]:
    """A ``types`` table (``{zip = "string"}``) checked; the error names ``where``."""
    if not isinstance(raw, Mapping):
        msg = f'{where}: must be a table like {{ zip = "string" }}, not {type(raw).__name__}'
        raise ConfigError(msg)
    out: dict[str, PropertyType] = {}
    for key, value in raw.items():
        if value not in PROPERTY_TYPES:
            msg = (
                f"{where}.{key}: the type must be one of {', '.join(PROPERTY_TYPES)}, not {value!r}"
            )
            raise ConfigError(msg)
        out[str(key)] = cast(PropertyType, value)
    return out


def parse_type_overrides(pairs: Iterable[str]) -> dict[str, PropertyType]:
    """``["zip=string", "amount=float"]`` (the CLI's ``--type``) → a types mapping."""
    raw: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            msg = f"--type {pair!r}: write PROPERTY=TYPE, e.g. --type zip=string"
            raise ConfigError(msg)
        raw[key.strip()] = value.strip()
    return check_types(raw, "--type")
