from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ConfigError
from plugins.cart_links import CartLinks, add_cart_url
from plugins.url_templates import compile_template

FIXTURES = Path(__file__).parent / "fixtures"
PERMALINK = ('https://www.sunrisepatio.example/cart/{% for l in lines %}{{ l.webProductId|urlencode }}:'
             '{{ l.quantity }}{{ "," if not loop.last }}{% endfor %}')


def plugin(template: str = PERMALINK) -> CartLinks:
    return CartLinks({"template": template}, base_dir=FIXTURES)


def quote(*lines: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": "Q-558210", "orderType": "Quote", "lines": list(lines), **extra}


def test_a_quote_whose_lines_all_map_gets_a_cart_permalink() -> None:
    record = quote({"productId": "BRM-DC-01", "webProductId": "7712001", "quantity": 2},
                   {"productId": "LOUNGE-KAL-01", "webProductId": "7713010", "quantity": 2})
    before = copy.deepcopy(record)
    out = plugin().apply(record)
    assert record == before
    assert out == {**record, "cartUrl": "https://www.sunrisepatio.example/cart/7712001:2,7713010:2"}


@pytest.mark.parametrize("lines", [
    [{"webProductId": "7712001", "quantity": 2}, {"productId": "CUSH", "quantity": 4}],
    [{"webProductId": "7712001", "quantity": 2}, {"webProductId": None, "quantity": 4}],
    [],
])
def test_no_cart_url_unless_every_line_maps(lines: list[dict[str, Any]]) -> None:
    assert "cartUrl" not in plugin().apply(quote(*lines, cartUrl="https://stale.example/"))
    assert "cartUrl" not in plugin().apply({"id": "Q-1"})


def test_ids_are_escaped_so_each_stays_one_cart_item() -> None:
    record = quote({"webProductId": "A/B", "quantity": 1}, {"webProductId": "C,D é&", "quantity": 3})
    assert plugin().apply(record)["cartUrl"] == "https://www.sunrisepatio.example/cart/A%2FB:1,C%2CD%20%C3%A9%26:3"


def test_the_template_sees_the_record() -> None:
    template = "https://shop.example/cart?quote={{ record.id|urlencode }}&n={{ lines|length }}"
    out = add_cart_url(quote({"webProductId": "1", "quantity": 1}), compile_template(template, param="template"))
    assert out["cartUrl"] == "https://shop.example/cart?quote=Q-558210&n=1"


@pytest.mark.parametrize(("params", "message"), [
    ({"template": None}, "template: must be a non-empty template string, got None"),
    ({"template": "{{ lines|nosuchfilter }}"}, "template: template syntax error on line 1: No filter named"),
    ({"template": "x", "url": "y"}, "url: unknown parameter"),
])
def test_bad_params_are_config_errors_naming_the_param(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        CartLinks(params, base_dir=FIXTURES)
    assert str(info.value).startswith(message)
