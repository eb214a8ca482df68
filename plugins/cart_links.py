"""Give a quote a ``cartUrl`` that re-creates it as an online cart, when every line maps to a web product.

The template sees ``lines`` (the record's lines, each with ``webProductId`` and ``quantity`` after ``catalog``)
and ``record``. When any line lacks a ``webProductId``, or there are no lines, the record has no ``cartUrl``
at all: a cart missing items would misquote the customer. Escaping rules and the sandbox are described in
:mod:`plugins.url_templates`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from engine.templates import Template
from plugins.url_templates import render, template_param


def add_cart_url(record: dict[str, Any], template: Template) -> dict[str, Any]:
    """Return a copy of ``record`` with ``cartUrl`` set, or without that key when the cart would be incomplete."""
    out = dict(record)
    out.pop("cartUrl", None)
    lines = out.get("lines") or []
    if lines and all(line.get("webProductId") not in (None, "") for line in lines):
        out["cartUrl"] = render(template, lines=lines, record=out)
    return out


class CartLinks:
    """Plugin adapter for :func:`add_cart_url`. Params: ``template`` (Jinja2)."""

    name: ClassVar[str] = "cart_links"

    def __init__(self, params: dict[str, Any], *, base_dir: Path) -> None:
        self.template = template_param(params, plugin=self.name)

    def apply(self, record: dict[str, Any]) -> dict[str, Any]:
        return add_cart_url(record, self.template)
