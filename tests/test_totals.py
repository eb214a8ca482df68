"""After soft-kit collapsing, the money still adds up to what STORIS says, for every order we map."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from engine import golden, load_retailer
from engine.paths import ROOT
from engine.preview import preview

ORDER_TYPES = ("OrderWrittenSale", "OrderWrittenQuote")
GOLDEN_ORDERS = [c for c in golden.cases() if c.webhook_type in ORDER_TYPES]
DEMO_ORDERS = sorted((ROOT / "demo" / "records").glob("orders-*.json"))


def _cents(values: list[float]) -> Decimal:
    return sum((Decimal(str(v)) for v in values), Decimal(0))


def _check(retailer_name: str, webhook_type: str, document: dict) -> None:
    retailer = load_retailer(retailer_name)
    result = preview(retailer, webhook_type, document)
    if not result.events:
        assert result.skipped, "an order without events must report why"
        return
    orders = document["data"]["orders"] if "data" in document else [document]
    merchandise = Decimal(str(orders[0]["totals"]["merchandise"]))
    head = result.events[0].body["data"]["attributes"]["properties"]
    assert _cents([item["lineTotal"] for item in head["items"]]) == merchandise
    products = [e.body["data"]["attributes"]["value"] for e in result.events if e.metric == "Purchased Product"]
    if webhook_type == "OrderWrittenSale":
        assert _cents(products) == merchandise
        assert len(products) == head["itemCount"]


@pytest.mark.parametrize("case", GOLDEN_ORDERS, ids=lambda c: c.id)
def test_golden_orders_add_up(case: golden.Case) -> None:
    _check(case.retailer, case.webhook_type, json.loads(case.input.read_text(encoding="utf-8")))


@pytest.mark.parametrize("path", DEMO_ORDERS, ids=lambda p: p.stem)
def test_demo_orders_add_up(path: Path) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    kind = "OrderWrittenQuote" if document["data"]["orders"][0]["orderType"] == "Quote" else "OrderWrittenSale"
    _check("demo", kind, document)


def test_the_shared_sample_sale_previews_as_one_kit_and_the_cushions(shared: Path) -> None:
    document = json.loads((shared / "storis" / "orders-detail.sale.json").read_text(encoding="utf-8"))
    result = preview(load_retailer("sunrise-patio"), "OrderWrittenSale", document)
    purchase = result.events[0].body["data"]["attributes"]["properties"]
    assert (purchase["itemCount"], purchase["totalItemQuantity"]) == (2, 5)
    assert [(i["productId"], i["quantity"], i["lineTotal"], i["isKit"]) for i in purchase["items"]] == [
        ("BRM-5PC", 1, 1895.0, True), ("CUSH-SUN-18", 4, 300.0, False)]
    products = [(e.unique_id, e.body["data"]["attributes"]["value"]) for e in result.events[1:]]
    assert products == [("order:1004417:kit:BRM-5PC", 1895.0), ("order:1004417:line:3", 300.0)]
    assert _cents([value for _, value in products]) == Decimal("2195.00")
