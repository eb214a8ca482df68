from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jinja2
import pytest

from engine.errors import ConfigError
from plugins.review_urls import ReviewUrls, add_review_urls
from plugins.url_templates import compile_template

FIXTURES = Path(__file__).parent / "fixtures"
TEMPLATE = ("https://reviews.example/write?order={{ order_id|urlencode }}&sku={{ line.webProductId|urlencode }}"
            "&name={{ line.productName|urlencode }}")


def plugin(template: str = TEMPLATE) -> ReviewUrls:
    return ReviewUrls({"template": template}, base_dir=FIXTURES)


def test_only_lines_with_a_web_product_get_a_review_url() -> None:
    record = {"id": "1004417", "lines": [
        {"lineNumber": 1, "productId": "A", "webProductId": "77", "productName": "Chair"},
        {"lineNumber": 2, "productId": "B", "productName": "Cushion"},
        {"lineNumber": 3, "productId": "C", "webProductId": "", "productName": "Empty"},
    ]}
    before = copy.deepcopy(record)
    out = plugin().apply(record)
    assert record == before
    assert out["lines"][0] == {**record["lines"][0],
                               "reviewUrl": "https://reviews.example/write?order=1004417&sku=77&name=Chair"}
    assert out["lines"][1:] == record["lines"][1:]


def test_fulfillments_use_their_order_id() -> None:
    record = {"id": "F-88231", "orderId": "1004417", "lines": [{"webProductId": "77", "productName": "Chair"}]}
    assert plugin().apply(record)["lines"][0]["reviewUrl"].startswith("https://reviews.example/write?order=1004417&")


def test_the_template_sees_the_line_and_the_whole_record() -> None:
    template = "https://r.example/{{ record.customer.id }}/{{ line.lineNumber }}"
    record = {"id": "1", "customer": {"id": "C9"}, "lines": [{"lineNumber": 4, "webProductId": "77"}]}
    assert plugin(template).apply(record)["lines"][0]["reviewUrl"] == "https://r.example/C9/4"


@pytest.mark.parametrize("awkward", ["A B", "A&B=1", "12/34", "Chaise été 日本", "100% + more?#"])
def test_awkward_ids_survive_the_round_trip_through_the_url(awkward: str) -> None:
    record = {"id": awkward, "lines": [{"webProductId": awkward, "productName": awkward}]}
    url = plugin().apply(record)["lines"][0]["reviewUrl"]
    assert url.isascii() and " " not in url
    query = parse_qs(urlsplit(url).query, strict_parsing=True)
    assert query == {"order": [awkward], "sku": [awkward], "name": [awkward]}


def test_an_awkward_id_in_a_path_segment_stays_one_segment() -> None:
    url = plugin("https://r.example/p/{{ line.webProductId|urlencode }}/review").apply(
        {"id": "1", "lines": [{"webProductId": "a/b c&é"}]})["lines"][0]["reviewUrl"]
    assert url == "https://r.example/p/a%2Fb%20c%26%C3%A9/review"


def test_a_misspelt_name_fails_the_record() -> None:
    with pytest.raises(jinja2.UndefinedError):
        plugin("https://r.example/{{ line.webProductID }}").apply({"id": "1", "lines": [{"webProductId": "7"}]})


def test_a_record_without_any_id_has_no_order_id() -> None:
    with pytest.raises(jinja2.UndefinedError):
        plugin().apply({"lines": [{"webProductId": "7", "productName": "x"}]})


def test_the_pure_function_works_on_a_compiled_template() -> None:
    record: dict[str, Any] = json.loads((FIXTURES / "sale.json").read_text())
    record["lines"][0]["webProductId"] = "5502001"
    out = add_review_urls(record, compile_template("https://r.example/{{ order_id }}/{{ line.webProductId }}",
                                                   param="template"))
    assert [line.get("reviewUrl") for line in out["lines"]] == ["https://r.example/7000123/5502001", None, None, None]


@pytest.mark.parametrize(("params", "message"), [
    ({}, "template: must be a non-empty template string, got None"),
    ({"template": "https://r/{% if %}"}, "template: template syntax error on line 1"),
    ({"template": "https://r/", "templat": "x"}, "templat: unknown parameter"),
])
def test_bad_params_are_config_errors_naming_the_param(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ReviewUrls(params, base_dir=FIXTURES)
    assert str(info.value).startswith(message)
