"""Connectors: declarative mappings from source columns to Kraiter fields.

A :class:`Connector` says which source column (or struct field, ``col.field``) holds
each Kraiter field, how to read the timestamp, which columns become properties, and how
to rename event names. It comes from one of three places:

* a preset shipped with the package (``connectors/*.toml`` in a checkout, installed as
  ``kraiter_sync/presets``), loaded by name: ``load_connector("mixpanel")``;
* a TOML file of the same shape: ``load_connector("my-export.toml")``;
* auto-detection from common column names: :func:`detect_connector`, which also
  reports what it chose and why, so a wrong guess is visible and fixable with
  ``--map FIELD=COLUMN``.

Modules: ``model`` (:class:`Connector`, presets, TOML files), ``detect`` (choosing
columns by name), ``mapping`` (:func:`apply`). :func:`apply` turns a source frame
into the *mapped frame* of docs/internals.md, vectorised and lazily when given a
LazyFrame. It never drops or reorders rows: every row read reaches the validator,
which decides what is rejected.
"""

from __future__ import annotations

from kraiter_sync.connectors.detect import (
    Detection,
    detect_connector,
    parse_overrides,
    resolve_connector,
    with_overrides,
)
from kraiter_sync.connectors.mapping import apply, direct_property_columns, mapped_schema
from kraiter_sync.connectors.model import (
    VALIDATION_SWITCHES,
    Connector,
    KeyValue,
    list_presets,
    load_connector,
    preset_dirs,
)

__all__ = [
    "CONTACT_FIELDS",
    "EVENT_FIELDS",
    "VALIDATION_SWITCHES",
    "Connector",
    "Detection",
    "KeyValue",
    "apply",
    "detect_connector",
    "direct_property_columns",
    "list_presets",
    "load_connector",
    "mapped_schema",
    "parse_overrides",
    "preset_dirs",
    "resolve_connector",
    "with_overrides",
]
