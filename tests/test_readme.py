"""The README's annotated mapping example is a valid mapping that maps what it says it maps."""

from __future__ import annotations

import re
from pathlib import Path

from engine import load_file, map_record

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_annotated_example_validates_and_maps(tmp_path: Path) -> None:
    example = re.search(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)[1]
    path = tmp_path / "lakeside.yaml"
    path.write_text(example, encoding="utf-8")
    retailer = load_file(path)
    assert retailer.webhooks["OrderWrittenQuote"].enabled is False
    order = {"id": "77", "dateWritten": "06/01/2026", "currency": None, "type": "CustomerPickup",
             "financePlan": None, "totals": {"grandTotal": 10.0},
             "customer": {"id": "C1", "emailAddress": " A@B.example ", "phones": []},
             "lines": [{"lineNumber": 1, "productId": "P", "brand": "X", "quantity": 2, "extendedPrice": 10.0,
                        "softKit": None}]}
    events = map_record(retailer, "OrderWrittenSale", order).events
    assert [e.unique_id for e in events] == ["order:77", "order:77:line:1"]
    sale = events[0].body["data"]["attributes"]
    assert sale["time"] == "2026-06-01T00:00:00-05:00"
    assert sale["value_currency"] == "USD"
    assert sale["properties"] == {"orderId": "77", "brands": ["X"], "channel": "In-Store", "method": "Pickup",
                                  "items": [{"productId": "P", "quantity": 2, "isKit": False}]}
    assert sale["profile"]["data"]["attributes"] == {"email": "a@b.example", "external_id": "C1"}
