"""Golden files: every case maps to exactly its expected output, which Klaviyo would accept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from engine import golden, klaviyo_schema, loader
from engine.compile import Retailer

CASES = golden.cases()
_RETAILERS: dict[str, Retailer] = {}


def _retailer(name: str) -> Retailer:
    if name not in _RETAILERS:
        _RETAILERS[name] = loader.load_retailer(name)
    return _RETAILERS[name]


def _expected(case: golden.Case) -> list[dict]:
    return json.loads((case.folder / golden.EXPECTED).read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case_matches_expected_output(case: golden.Case) -> None:
    diff = golden.compare(case, _retailer(case.retailer))
    assert not diff, f"golden case differs (run `engine golden --update` if intended):\n{diff}"


def test_each_retailer_has_six_cases_covering_every_enabled_webhook_type() -> None:
    for name in {c.retailer for c in CASES}:
        cases = [c for c in CASES if c.retailer == name]
        enabled = {t for t, plan in _retailer(name).webhooks.items() if plan.enabled}
        assert len(cases) >= 6, name
        assert enabled <= {c.webhook_type for c in cases}, name
    assert {p.stem for p in loader.mapping_files()} - {"base", "demo"} <= {c.retailer for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_every_golden_body_passes_the_projects_klaviyo_schema(case: golden.Case) -> None:
    for body in _expected(case):
        assert klaviyo_schema.errors("create_event", body) == []


def _openapi_schema(shared: Path) -> dict:
    """Klaviyo's published Create Event request schema as plain JSON Schema (nullable -> null type)."""
    spec = json.loads((shared / "klaviyo-openapi" / "create_event.json").read_text(encoding="utf-8"))

    def convert(node: object) -> object:
        if isinstance(node, dict):
            out = {k: convert(v) for k, v in node.items() if k != "nullable"}
            if node.get("nullable") and "type" in out:
                out["type"] = [out["type"], "null"]
            if "$ref" in out:
                out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/$defs/")
            return out
        if isinstance(node, list):
            return [convert(v) for v in node]
        return node

    schemas = convert(spec["components"]["schemas"])
    return {"$ref": "#/$defs/EventCreateQueryV2", "$defs": schemas}


def test_every_golden_body_validates_against_klaviyos_published_schema(shared: Path) -> None:
    validator = Draft202012Validator(_openapi_schema(shared), format_checker=klaviyo_schema.FORMAT_CHECKER)
    checked = 0
    for case in CASES:
        for body in _expected(case):
            errors = [f"{case.id}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
                      for e in validator.iter_errors(body)]
            assert errors == []
            checked += 1
    assert checked >= 20
