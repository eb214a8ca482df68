"""The ``engine`` command's contract: preview prints only the bodies, errors name where, golden checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import main
from engine.golden import GOLDEN

CASE = GOLDEN / "sunrise-patio" / "sale-kit-and-cushions"
NO_CONTACT = GOLDEN / "sunrise-patio" / "sale-no-contact-skipped"


def _preview(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, str, str]:
    code = main(["preview", "--retailer", "sunrise-patio", "--webhook", "OrderWrittenSale", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_preview_prints_the_bodies_and_nothing_else_the_same_every_time(capsys: pytest.CaptureFixture[str]) -> None:
    first = _preview(capsys, CASE / "OrderWrittenSale.json")
    second = _preview(capsys, CASE / "OrderWrittenSale.json")
    assert first == second
    code, out, err = first
    assert code == 0 and err == ""
    assert out == (CASE / "expected.json").read_text(encoding="utf-8")
    assert all(body["data"]["type"] == "event" for body in json.loads(out))


def test_skipped_events_go_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _preview(capsys, NO_CONTACT / "OrderWrittenSale.json")
    assert (code, json.loads(out)) == (0, [])
    assert "skipped: Completed Purchase (order:2100104): no email and no valid phone number" in err


def test_a_mapping_error_exits_non_zero_naming_where(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    record = json.loads((CASE / "OrderWrittenSale.json").read_text(encoding="utf-8"))["data"]["orders"][0]
    record["dateWritten"] = "yesterday"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(record), encoding="utf-8")
    code, out, err = _preview(capsys, path)
    assert code == 1 and out == ""
    for part in ("retailer sunrise-patio", "webhook OrderWrittenSale", "record 2100101",
                 "event completed_purchase (Completed Purchase)", "path webhooks.OrderWrittenSale.events."
                 "completed_purchase.properties.orderDate", "mappings/base.yaml:",
                 "'yesterday' matches none of the date formats"):
        assert part in err, err


def test_unreadable_input_and_unknown_retailer_are_clear(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    code, out, err = _preview(capsys, tmp_path / "broken.json")
    assert code == 1 and out == "" and "cannot read" in err
    assert main(["preview", "--retailer", "sunrise-patoi", "--webhook", "OrderWrittenSale", "x.json"]) == 1
    assert "did you mean 'sunrise-patio'?" in capsys.readouterr().err


def test_golden_check_passes_on_the_shipped_cases(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["golden"]) == 0
    assert capsys.readouterr().out == ""
