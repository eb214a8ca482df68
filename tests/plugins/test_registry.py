from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from plugins import REGISTRY
from plugins.catalog import load

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared"
FIXTURES = Path(__file__).parent / "fixtures"
PARAMS: dict[str, dict[str, Any]] = {
    "soft_kits": {},
    "catalog": {"file": "catalog.csv"},
    "review_urls": {"template": "https://r.example/{{ order_id|urlencode }}/{{ line.webProductId|urlencode }}"},
    "cart_links": {
        "template": "https://c.example/{% for l in lines %}{{ l.webProductId }}:{{ l.quantity }};{% endfor %}"},
}


def chain(names: list[str], base_dir: Path, **overrides: dict[str, Any]) -> list[Any]:
    return [REGISTRY[name]({**PARAMS[name], **overrides.get(name, {})}, base_dir=base_dir) for name in names]


def run(plugins: list[Any], record: dict[str, Any]) -> dict[str, Any]:
    for plugin in plugins:
        record = plugin.apply(record)
    return record


def test_registry_names_every_plugin_by_its_name() -> None:
    assert set(REGISTRY) == {"soft_kits", "catalog", "review_urls", "cart_links"}
    assert all(cls.name == name for name, cls in REGISTRY.items())


@pytest.mark.parametrize("name", ["sunrise-patio.csv", "harbor-home.json", "demo.csv"])
def test_the_projects_catalogs_load(name: str) -> None:
    assert load(REPO / "catalogs" / name)


def test_sale_chain_collapses_enriches_and_links_reviews() -> None:
    record = json.loads((FIXTURES / "sale.json").read_text())
    out = run(chain(["soft_kits", "catalog", "review_urls"], FIXTURES), record)
    assert [(line["productId"], line["productName"], line.get("reviewUrl")) for line in out["lines"]] == [
        ("HAM-ROPE-01", "Rope Hammock", "https://r.example/7000123/5502001"),
        ("PAL-3PC", "Palma 3-Piece Bistro Set", "https://r.example/7000123/5501001"),
        ("PAL-DC-02", "Palma Dining Chair", "https://r.example/7000123/5501002"),
        ("CUSH-XYZ-20", "Seat Cushion 20in", None),
    ]


def test_the_shared_samples_through_the_project_catalog() -> None:
    storis = SHARED / "storis"
    if not storis.is_dir():
        pytest.skip("the shared STORIS samples (../shared beside the repo) are not present")
    project = {"catalog": {"file": "../catalogs/sunrise-patio.csv"}}
    sale = json.loads((storis / "orders-detail.sale.json").read_text())["data"]["orders"][0]
    lines = run(chain(["soft_kits", "catalog", "review_urls"], REPO / "mappings", **project), sale)["lines"]
    assert [(line["productId"], line.get("webProductId"), line["productName"]) for line in lines] == [
        ("BRM-5PC", "7712000", "Bermuda 5-Piece Dining Set"), ("CUSH-SUN-18", None, "Sunbrella Seat Cushion 18in")]
    assert lines[1]["brand"] == "Sunbrella" and "reviewUrl" not in lines[1]

    delivery = json.loads((storis / "fulfillments-detail.delivery.json").read_text())["data"]["fulfillments"][0]
    lines = run(chain(["soft_kits", "catalog", "review_urls"], REPO / "mappings", **project), delivery)["lines"]
    assert lines[0]["reviewUrl"] == "https://r.example/1004417/7712000"
    assert "unitPrice" not in lines[0]

    quote = json.loads((storis / "orders-detail.quote.json").read_text())["data"]["orders"][0]
    out = run(chain(["soft_kits", "catalog", "cart_links"], REPO / "mappings", **project), quote)
    assert out["cartUrl"] == "https://c.example/7712001:2;7713010:2;"
