"""Give every line that maps to a web product a ``reviewUrl`` rendered from the retailer's template.

Runs after ``catalog``: a line has a ``webProductId`` only when the catalog matched it. The template sees
``line`` (the line), ``record`` (the whole record) and ``order_id`` (``record.orderId`` on a fulfillment, else
``record.id``). Escaping rules and the sandbox are described in :mod:`plugins.url_templates`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from engine.templates import Template
from plugins.url_templates import render, template_param


def add_review_urls(record: dict[str, Any], template: Template) -> dict[str, Any]:
    """Return a copy of ``record`` whose web-product lines carry ``reviewUrl``; other lines are unchanged."""
    out = dict(record)
    if isinstance(out.get("lines"), list):
        out["lines"] = [dict(line) if isinstance(line, dict) else line for line in out["lines"]]
    # The template sees the record as it arrived, not the copy being filled in line by line.
    context: dict[str, Any] = {"record": record}
    order_id = record["orderId"] if record.get("orderId") is not None else record.get("id")
    # Left out when unknown, so a template that needs it fails under StrictUndefined instead of printing "None".
    if order_id is not None:
        context["order_id"] = order_id
    for line in out.get("lines") or []:
        if line.get("webProductId") not in (None, ""):
            line["reviewUrl"] = render(template, line=line, **context)
    return out


class ReviewUrls:
    """Plugin adapter for :func:`add_review_urls`. Params: ``template`` (Jinja2)."""

    name: ClassVar[str] = "review_urls"

    def __init__(self, params: dict[str, Any], *, base_dir: Path) -> None:
        self.template = template_param(params, plugin=self.name)

    def apply(self, record: dict[str, Any]) -> dict[str, Any]:
        return add_review_urls(record, self.template)
