"""Checking a mapping document against ``schemas/mapping.schema.json``, with messages an analyst can act on.

The schema is the single description of the mapping language: editors use it for completion, and this
module uses it for validation. ``requiredAfterExtends`` is a keyword of ours that works like ``required`` but
only on the merged document, so a retailer file that overrides one property is not asked for the rest.
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Iterator
from typing import Any

import jsonschema
from jsonschema import validators

from engine.errors import Problem
from engine.paths import SCHEMAS
from engine.yaml_source import Source, dotted

SOURCES = ("path", "template", "const", "each")
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
               float: "a number", type(None): "null"}


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / "mapping.schema.json").read_text(encoding="utf-8"))
    base = validators.validator_for(schema)
    merged = validators.extend(base, {"requiredAfterExtends": base.VALIDATORS["required"]})
    return merged(schema)


def check(source: Source) -> list[Problem]:
    """Every schema problem of the merged document in ``source``."""
    problems = []
    for error in _validator().iter_errors(source.data):
        problems.extend(_describe(error, source))
    return problems


def _describe(error: jsonschema.ValidationError, source: Source) -> Iterator[Problem]:
    path = tuple(error.absolute_path)
    instance = error.instance
    kind = error.validator
    if kind == "additionalProperties" and isinstance(instance, dict):
        known = list(error.schema.get("properties", {}))
        for key in instance:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                allowed = f"; allowed here: {', '.join(known)}" if known and not close else ""
                yield _at(source, (*path, key), f"unknown key {key!r}{hint}{allowed}", key=True)
        return
    if kind in ("required", "requiredAfterExtends"):
        known = error.schema.get("properties", {})
        unknown = [key for key in instance if key not in known] if isinstance(instance, dict) else []
        for name in error.validator_value:
            # A misspelt key is reported once, as unknown with a suggestion, not also as missing.
            misspelt = difflib.get_close_matches(name, unknown, n=1)
            if isinstance(instance, dict) and name not in instance and not misspelt:
                yield _at(source, path, f"missing required key {name!r}", key=True)
        return
    if kind == "oneOf" and not isinstance(instance, dict):
        return  # the value is neither string nor object: its "type" error says so
    if kind == "oneOf":
        present = [k for k in SOURCES if k in instance]
        if present:
            message = f"has {' and '.join(present)}: a value takes exactly one of {', '.join(SOURCES)}"
        else:
            message = f"a value needs one of {', '.join(SOURCES)} (or a default)"
        yield _at(source, path, message)
        return
    if kind == "propertyNames":
        yield _at(source, (*path, instance), f"bad name {instance!r}: {error.message}", key=True)
        return
    if kind == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        yield _at(source, path, f"expected {expected}, got {_JSON_TYPES.get(type(instance), 'a value')}"
                                f" {json.dumps(instance, default=str)[:60]}")
        return
    if kind == "enum":
        yield _at(source, path, f"{instance!r} is not one of {', '.join(map(str, error.validator_value))}")
        return
    yield _at(source, path, error.message)


def _at(source: Source, path: tuple[Any, ...], message: str, *, key: bool = False) -> Problem:
    loc = source.where(path, key=key)
    return Problem(loc.file, loc.line, loc.col, dotted(path), message)
