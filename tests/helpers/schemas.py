"""Check a command's --json document against its JSON schema in docs/schemas/."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from referencing import Registry, Resource

from tests.helpers.paths import REPO_ROOT

SCHEMAS = REPO_ROOT / "docs" / "schemas"


def _registry() -> Registry:
    resources = [
        (p.name, Resource.from_contents(json.loads(p.read_text())))
        for p in SCHEMAS.glob("*.schema.json")
    ]
    return Registry().with_resources(resources)


def check_schema(doc: dict[str, Any], name: str) -> None:
    """Raise when ``doc`` does not follow docs/schemas/NAME.schema.json."""
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator(schema, registry=_registry()).validate(doc)
