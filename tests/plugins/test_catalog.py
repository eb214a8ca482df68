from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ConfigError
from plugins.catalog import Catalog, CatalogItem, enrich, load

FIXTURES = Path(__file__).parent / "fixtures"
HEADER = "storis_product_id,web_product_id,title,url,image_url\n"

CHAIR = CatalogItem("PAL-DC-02", "5501002", "Palma Dining Chair", "https://shop.example/products/palma-dining-chair",
                    "https://cdn.shop.example/palma-dining-chair.jpg")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, text: str, *, mtime: int) -> None:
    # Explicit mtimes: two writes within one filesystem timestamp tick must still look different.
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(mtime * 10**9, mtime * 10**9))


@pytest.mark.parametrize("name", ["catalog.csv", "catalog.json"])
def test_csv_and_json_exports_load_the_same_catalog(name: str) -> None:
    items = load(FIXTURES / name)
    assert set(items) == {"PAL-DC-02", "PAL-DT-48", "PAL-3PC", "HAM-ROPE-01"}
    assert items["PAL-DC-02"] == CHAIR
    assert items["PAL-DT-48"].title == 'Palma 48" Table, Teak'
    assert items["HAM-ROPE-01"].image_url == ""


def test_a_byte_order_mark_and_padded_cells_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(("\ufeff" + HEADER + " A1 , 9, Title ,https://u,https://i\n\n").encode())
    assert load(path) == {"A1": CatalogItem("A1", "9", "Title", "https://u", "https://i")}


def test_id_field_names_the_column_with_the_storis_id(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("sku,web_product_id,title,url,image_url\nA1,9,T,https://u,https://i\n")
    assert set(load(path, id_field="sku")) == {"A1"}
    catalog = Catalog({"file": "c.csv", "id_field": "sku"}, base_dir=tmp_path)
    assert catalog.lookup("A1") is not None


BAD_FILES: list[tuple[str, str, list[str]]] = [
    ("missing-column.csv", "storis_product_id,web_product_id,title,url\nA,1,T,U\n",
     ["line 1: missing column(s) image_url"]),
    ("empty.csv", "", ["line 1: missing column(s) storis_product_id, web_product_id, title, url, image_url"]),
    ("duplicate.csv", HEADER + "A,1,T,U,I\nB,2,T,U,I\nA,3,T,U,I\n",
     ["line 4: duplicate storis_product_id 'A' (first at line 2)"]),
    ("empty-id.csv", HEADER + "A,1,T,U,I\n ,2,T,U,I\n", ["line 3: empty storis_product_id"]),
    ("ragged.csv", HEADER + "A,1,Table, Teak,U,I\nB,2,T\n",
     ["line 2: 6 fields, the header has 5", "line 3: 3 fields, the header has 5"]),
    ("bad.json", '[{"storis_product_id": "A",\n "title": }]', ["line 2 column 11: invalid JSON: Expecting value"]),
    ("object.json", '{"products": []}', ["expected a JSON array of products, got dict"]),
    ("rows.json", json.dumps([
        {"storis_product_id": "A", "web_product_id": "1", "title": "T", "url": "U", "image_url": "I"},
        ["not", "an", "object"],
        {"storis_product_id": "B", "web_product_id": "2", "title": "T", "url": "U"},
        {"storis_product_id": "A", "web_product_id": "3", "title": "T", "url": "U", "image_url": "I"},
        {"storis_product_id": None, "web_product_id": "4", "title": "T", "url": "U", "image_url": "I"},
        {"storis_product_id": "C", "web_product_id": 1.5, "title": ["T"], "url": "U", "image_url": "I"},
    ]), ["[1]: expected an object, got list", "[2]: missing key(s) image_url",
         "[3]: duplicate storis_product_id 'A' (first at [0])", "[4]: empty storis_product_id",
         "[5].web_product_id: expected a string, got 1.5", "[5].title: expected a string, got ['T']"]),
]


@pytest.mark.parametrize(("name", "text", "expected"), BAD_FILES, ids=[case[0] for case in BAD_FILES])
def test_a_malformed_catalog_is_a_config_error_naming_file_and_rows(
        tmp_path: Path, name: str, text: str, expected: list[str]) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        Catalog({"file": name}, base_dir=tmp_path)
    lines = str(info.value).splitlines()
    assert len(lines) == len(expected)
    for line, want in zip(lines, expected):
        assert line.startswith(f"file: {path}: {want}")


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^file: .*absent\.csv: cannot read"):
        Catalog({"file": "absent.csv"}, base_dir=tmp_path)
    (tmp_path / "latin1.csv").write_bytes(HEADER.encode() + "A,1,Chaise \xe9t\xe9,U,I\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.csv: not UTF-8 text"):
        Catalog({"file": "latin1.csv"}, base_dir=tmp_path)


def test_a_wholly_wrong_file_reports_a_bounded_number_of_problems(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text(HEADER + "".join(f",{n},T,U,I\n" for n in range(50)))
    with pytest.raises(ConfigError) as info:
        Catalog({"file": "c.csv"}, base_dir=tmp_path)
    lines = str(info.value).splitlines()
    assert len(lines) == 21
    assert lines[-1].endswith("... and 30 more problems")


@pytest.mark.parametrize(("params", "message"), [
    ({}, "file: must be the path of a .csv or .json catalog, got None"),
    ({"file": "catalog.xlsx"}, "file: must be the path of a .csv or .json catalog, got 'catalog.xlsx'"),
    ({"file": "catalog.csv", "id_field": ""}, "id_field: must be a non-empty column name, got ''"),
    ({"file": "catalog.csv", "path": "x"}, "path: unknown parameter"),
])
def test_bad_params_are_config_errors_naming_the_param(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Catalog(params, base_dir=FIXTURES)
    assert str(info.value).startswith(message)


def test_enrich_adds_catalog_data_to_matched_lines_and_a_name_to_the_others() -> None:
    lines = [
        {"lineNumber": 1, "productId": "PAL-DC-02", "description": "STORIS chair name", "brand": "Palma"},
        {"lineNumber": 2, "productId": "CUSH-1", "description": "Seat Cushion", "brand": "Sunbrella",
         "collection": "Bermuda"},
        {"lineNumber": 3, "productId": "MISC-1"},
        {"lineNumber": 4, "productId": "HAM-ROPE-01", "description": "Hammock"},
    ]
    before = copy.deepcopy(lines)
    items = load(FIXTURES / "catalog.csv")
    assert enrich(lines, items.get) == [
        {**lines[0], "productName": "Palma Dining Chair", "webProductId": "5501002",
         "productUrl": "https://shop.example/products/palma-dining-chair",
         "imageUrl": "https://cdn.shop.example/palma-dining-chair.jpg"},
        {**lines[1], "productName": "Seat Cushion"},
        {**lines[2], "productName": "MISC-1"},
        # An empty catalog cell adds nothing rather than an empty URL.
        {**lines[3], "productName": "Rope Hammock", "webProductId": "5502001",
         "productUrl": "https://shop.example/products/rope-hammock"},
    ]
    assert lines == before


def test_kit_lines_are_looked_up_by_their_kit_id() -> None:
    kit_line = {"lineNumber": 2, "productId": "PAL-3PC", "description": "Palma 3-Piece Bistro Set", "isKit": True,
                "kitId": "PAL-3PC", "softKit": None}
    (out,) = enrich([kit_line], load(FIXTURES / "catalog.json").get)
    assert (out["webProductId"], out["productName"]) == ("5501001", "Palma 3-Piece Bistro Set")


def test_plugin_enriches_every_line_and_leaves_the_input_alone() -> None:
    record = json.loads((FIXTURES / "sale.json").read_text())
    before = copy.deepcopy(record)
    catalog = Catalog({"file": "catalog.csv"}, base_dir=FIXTURES)
    out = catalog.apply(record)
    assert record == before
    assert [line.get("webProductId") for line in out["lines"]] == ["5502001", "5501003", "5501002", None]
    assert out["lines"][3]["productName"] == "Seat Cushion 20in"
    assert catalog.lookup("PAL-DC-02") == CHAIR
    assert catalog.lookup("CUSH-XYZ-20") is None
    assert catalog.apply({"id": "1"}) == {"id": "1"}


def test_a_changed_file_is_reloaded_at_most_once_a_second(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    write(path, HEADER + "A,1,Old,U,I\n", mtime=1)
    clock = FakeClock()
    catalog = Catalog({"file": "c.csv"}, base_dir=tmp_path, clock=clock)
    write(path, HEADER + "A,1,New,U,I\nB,2,T,U,I\n", mtime=2)
    clock.now += 0.5
    assert catalog.lookup("A").title == "Old"  # type: ignore[union-attr]
    clock.now += 0.6
    assert catalog.lookup("A").title == "New"  # type: ignore[union-attr]
    assert catalog.apply({"lines": [{"productId": "B"}]})["lines"][0]["webProductId"] == "2"


def test_a_failed_reload_keeps_the_previous_catalog_and_logs_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "c.csv"
    write(path, HEADER + "A,1,Good,U,I\n", mtime=1)
    clock = FakeClock()
    catalog = Catalog({"file": "c.csv"}, base_dir=tmp_path, clock=clock)
    write(path, HEADER + "A,1,Bad,U,I\nA,2,Bad,U,I\n", mtime=2)
    with caplog.at_level(logging.ERROR, logger="plugins.catalog"):
        for _ in range(3):
            clock.now += 1.5
            assert catalog.lookup("A").title == "Good"  # type: ignore[union-attr]
    assert len(caplog.records) == 1
    assert "line 3: duplicate storis_product_id 'A'" in caplog.records[0].getMessage()

    caplog.clear()
    path.unlink()
    with caplog.at_level(logging.ERROR, logger="plugins.catalog"):
        clock.now += 1.5
        assert catalog.lookup("A").title == "Good"  # type: ignore[union-attr]
    assert "cannot read" in caplog.records[0].getMessage()

    write(path, HEADER + "A,1,Fixed,U,I\n", mtime=3)
    clock.now += 1.5
    assert catalog.lookup("A").title == "Fixed"  # type: ignore[union-attr]


def test_json_catalogs_reload_too(tmp_path: Path) -> None:
    row = {"storis_product_id": "A", "web_product_id": "1", "title": "Old", "url": "U", "image_url": "I"}
    path = tmp_path / "c.json"
    write(path, json.dumps([row]), mtime=1)
    clock = FakeClock()
    catalog = Catalog({"file": "c.json"}, base_dir=tmp_path, clock=clock)
    write(path, json.dumps([{**row, "title": "New"}]), mtime=2)
    clock.now += 1.0
    assert catalog.lookup("A").title == "New"  # type: ignore[union-attr]
