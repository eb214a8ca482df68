"""What a retailer's mapping makes of one STORIS record, as Klaviyo Create Event request bodies.

Shared by ``engine preview``, ``engine golden`` and the golden-file tests, so all three print the same bytes.
"""

from __future__ import annotations

import json
from typing import Any

from engine.apply import Result, map_record
from engine.compile import Retailer
from engine.errors import MappingError


def record_of(retailer: Retailer, webhook_type: str, document: Any) -> Any:
    """The record inside a STORIS Detail response (selected as the mapping's fetch declares), or ``document``
    itself when it is a bare record."""
    plan = retailer.webhooks.get(webhook_type)
    if plan is None:
        known = ", ".join(sorted(retailer.webhooks))
        raise MappingError(f"webhook type {webhook_type!r} is not mapped (mapped: {known})",
                           retailer=retailer.name)
    if plan.fetch is not None and isinstance(document, dict) and "data" in document:
        record = plan.fetch.record(document)
        if record is None:
            raise MappingError("the Detail response holds no record where the mapping's fetch.record looks",
                               retailer=retailer.name, webhook=webhook_type)
        return record
    return document


def preview(retailer: Retailer, webhook_type: str, document: Any) -> Result:
    return map_record(retailer, webhook_type, record_of(retailer, webhook_type, document))


def dumps(bodies: list[dict[str, Any]]) -> str:
    """The stable text form: key order as mapped, two-space indent, UTF-8, newline at the end."""
    return json.dumps(bodies, indent=2, ensure_ascii=False) + "\n"
