"""The demo store's sample STORIS records: consistent money, the soft-kit cases the demo shows, and the shapes
of the shared STORIS model, served by the fake STORIS."""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from engine.fakes.storis import load_records

REPO = Path(__file__).resolve().parents[2]
RECORDS = REPO / "demo" / "records"
SHARED_STORIS = REPO / ".." / "shared" / "storis"


@pytest.fixture(scope="module")
def records() -> dict[str, dict[str, dict[str, Any]]]:
    return load_records(RECORDS)


def kits(lines: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """kitId -> (complete kits, leftover component units), by the README's soft-kit rules."""
    by_kit: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        if line["softKit"]:
            by_kit[line["softKit"]["kitId"]].append(line)
    out = {}
    for kit_id, components in by_kit.items():
        if len({c["productId"] for c in components}) < components[0]["softKit"]["componentCount"]:
            out[kit_id] = (0, sum(c["quantity"] for c in components))
            continue
        complete = min(c["quantity"] // c["softKit"]["quantityPerKit"] for c in components)
        out[kit_id] = (complete, sum(c["quantity"] - complete * c["softKit"]["quantityPerKit"] for c in components))
    return out


def test_the_demo_store_has_every_record_the_demo_uses(records: dict[str, dict[str, Any]]) -> None:
    assert set(records["orders"]) == {"2001001", "2001002", "Q-700100"}
    assert set(records["fulfillments"]) == {"F-90001", "F-90002"}
    assert set(records["customers"]) == {"0000500101", "0000500102", "0000500103"}


def test_money_adds_up(records: dict[str, dict[str, Any]]) -> None:
    for order in records["orders"].values():
        for line in order["lines"]:
            assert math.isclose(line["extendedPrice"], line["unitPrice"] * line["quantity"]), (order["id"], line)
        totals = order["totals"]
        assert math.isclose(totals["merchandise"], sum(line["extendedPrice"] for line in order["lines"]))
        assert math.isclose(totals["grandTotal"], totals["merchandise"] + totals["delivery"] + totals["tax"])


def test_soft_kit_cases(records: dict[str, dict[str, Any]]) -> None:
    orders = records["orders"]
    assert kits(orders["2001001"]["lines"]) == {"CAY-5PC": (1, 0)}       # complete, plus ordinary lines
    assert any(line["softKit"] is None for line in orders["2001001"]["lines"])
    assert kits(orders["2001002"]["lines"]) == {"MAR-4PC": (1, 1)}       # one lounge chair left over
    assert kits(orders["Q-700100"]["lines"]) == {"CAY-5PC": (0, 2)}      # table missing: no kit at all


def test_fulfillments_ship_lines_of_their_order(records: dict[str, dict[str, Any]]) -> None:
    for fulfillment in records["fulfillments"].values():
        order = records["orders"][fulfillment["orderId"]]
        ordered = {line["productId"]: line["quantity"] for line in order["lines"]}
        assert all(ordered[line["productId"]] >= line["quantity"] for line in fulfillment["lines"])


def test_customers_are_fictional(records: dict[str, dict[str, Any]]) -> None:
    everyone = [*records["customers"].values(), *(r["customer"] for c in ("orders", "fulfillments")
                                                  for r in records[c].values())]
    assert all(c["emailAddress"].strip().lower().endswith("@example.com") for c in everyone)
    # 555-0100 to 555-0199 are reserved for fiction.
    digits = [re.sub(r"\D", "", p["number"]) for c in everyone for p in c["phones"]]
    assert digits and all(d[3:8] == "55501" for d in digits)


def _keys(document: dict[str, Any]) -> dict[str, set[str]]:
    (collection, (record, *_)), = document["data"].items()
    keys = {"envelope": set(document), collection: set(record)}
    if "lines" in record:
        keys["line"] = set(record["lines"][0])
    if "customer" in record:
        keys["customer"] = set(record["customer"])
    return keys


@pytest.mark.parametrize(("ours", "shared"), [
    ("orders-detail.sale.json", "orders-detail.sale.json"),
    ("orders-detail.sale-leftover-kit.json", "orders-detail.sale.json"),
    ("orders-detail.quote.json", "orders-detail.quote.json"),
    ("fulfillments-detail.delivery.json", "fulfillments-detail.delivery.json"),
    ("fulfillments-detail.directship.json", "fulfillments-detail.directship.json"),
    ("customers-detail.json", "customers-detail.json"),
])
def test_shapes_match_the_shared_storis_model(ours: str, shared: str) -> None:
    if not SHARED_STORIS.is_dir():
        pytest.skip(f"the shared STORIS model is not beside the repository ({SHARED_STORIS})")
    assert _keys(_read(RECORDS / ours)) == _keys(_read(SHARED_STORIS / shared))


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))
