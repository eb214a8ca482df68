"""Fixtures for the fake servers: in-process clients and small STORIS records (``serve`` is in tests/conftest.py)."""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning
from starlette.types import ASGIApp

with warnings.catch_warnings():
    # Starlette 1.x wants the httpx2 package for its TestClient and warns once, on import, when it finds httpx.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient


@pytest.fixture
def make_client() -> Iterator[Callable[[ASGIApp], TestClient]]:
    """Open a TestClient on an app; closed at teardown."""
    with contextlib.ExitStack() as stack:
        yield lambda app: stack.enter_context(TestClient(app))


# A sale, a quote, a fulfillment, customers and a product: the smallest set that exercises every route.
CUSTOMER = {"id": "C-1", "firstName": "Ada", "lastName": "Quill", "emailAddress": "Ada.Quill@Example.com",
            "phones": [], "okToSolicit": True}
EMBEDDED_ONLY = {"id": "C-2", "firstName": "Bo", "lastName": "Reed", "emailAddress": "bo.reed@example.com",
                 "phones": [], "okToSolicit": True}
RECORDS: dict[str, dict[str, Any]] = {
    "orders.json": {"success": True, "message": None, "data": {"orders": [
        {"id": "S-1", "orderType": "Sale", "customer": dict(CUSTOMER), "lines": []},
        {"id": "Q-1", "orderType": "Quote", "customer": dict(EMBEDDED_ONLY), "lines": []},
    ]}},
    "any name.json": {"success": True, "message": None, "data": {"fulfillments": [
        {"id": "F-1", "orderId": "S-1", "type": "Delivery", "customer": dict(CUSTOMER), "lines": []},
    ]}},
    "customers.json": {"success": True, "message": None, "data": {"customers": [dict(CUSTOMER)]}},
    "products.json": {"success": True, "message": None, "data": {"products": [
        {"id": "P-1", "productDescription": "Teak Bench"},
    ]}},
}


@pytest.fixture
def records_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "records"
    folder.mkdir()
    for name, document in RECORDS.items():
        (folder / name).write_text(json.dumps(document), encoding="utf-8")
    return folder
