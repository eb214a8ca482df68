"""`engine validate`: clean on what we ship, and precise (file:line:col) on what analysts get wrong."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from engine import loader
from engine.cli import main
from engine.paths import MAPPINGS

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "mappings" / "invalid"


def test_shipped_mappings_are_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert f"{len(loader.mapping_files())} file(s) checked, 0 problem(s)" in err


def _plant(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} must occur once in {path.name}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def _line_of(path: Path, needle: str) -> int:
    text = path.read_text(encoding="utf-8")
    assert text.count(needle) == 1, f"{needle!r} must occur once in {path.name}"
    return text[: text.index(needle)].count("\n") + 1


def _copy_project_mappings(tmp_path: Path) -> Path:
    shutil.copytree(MAPPINGS, tmp_path / "mappings")
    shutil.copytree(MAPPINGS.parent / "catalogs", tmp_path / "catalogs")
    return tmp_path / "mappings"


def test_five_planted_mistakes_are_all_reported_with_their_lines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _copy_project_mappings(tmp_path)
    base, retailer = folder / "base.yaml", folder / "sunrise-patio.yaml"
    _plant(base, 'unique_id: {template: "order:{{ id }}"}', 'unqiue_id: {template: "order:{{ id }}"}')
    _plant(base, 'salespersonIds: {path: "salespersons[].id"', 'salespersonIds: {path: "salespersons[.id"')
    _plant(retailer, "  soft_kits: {}", "  soft_kit: {}")
    _plant(retailer, "  default_country: US", "  default_country: US\n  date_formats: [iso, MM/DD/YYYY]")
    _plant(base, "        metric: Received Quote\n", "")
    planted = [
        (base, _line_of(base, "unqiue_id:"), "unknown key 'unqiue_id' (did you mean 'unique_id'?)"),
        (base, _line_of(base, "salespersons[.id"), "bad JMESPath 'salespersons[.id'"),
        (retailer, _line_of(retailer, "soft_kit:"), "unknown plugin 'soft_kit' (did you mean soft_kits?)"),
        (retailer, _line_of(retailer, "MM/DD/YYYY"),
         "date format 'MM/DD/YYYY' is not 'iso' or a strptime pattern (did you mean '%m/%d/%Y'?)"),
        (base, _line_of(base, "received_quote:"), "missing required key 'metric'"),
    ]
    assert main(["validate", str(retailer)]) == 1
    lines = capsys.readouterr().out.splitlines()
    for path, line, message in planted:
        assert any(entry.startswith(f"{os.path.relpath(path)}:{line}:") and message in entry for entry in lines), (
            f"no {message!r} at {path.name}:{line} in\n" + "\n".join(lines))
    assert len(lines) == len(planted), "\n".join(lines)


def test_missing_metric_points_at_the_event_key(tmp_path: Path) -> None:
    shutil.copy(MAPPINGS / "base.yaml", tmp_path / "base.yaml")
    _plant(tmp_path / "base.yaml", "        metric: Received Quote\n", "")
    problems = loader.check_files([tmp_path / "base.yaml"])
    assert [(p.line, p.col, p.path, p.message) for p in problems] == [
        (_line_of(tmp_path / "base.yaml", "received_quote:"), 7,
         "webhooks.OrderWrittenQuote.events.received_quote", "missing required key 'metric'")]


def _expectations(path: Path) -> list[tuple[int, int | None, str]]:
    """``# expect: LINE[:COL] text`` comments in a fixture: the problems it must produce."""
    out = []
    for match in re.finditer(r"^# expect: (\d+)(?::(\d+))? (.+)$", path.read_text(encoding="utf-8"), re.M):
        out.append((int(match[1]), int(match[2]) if match[2] else None, match[3].strip()))
    return out


@pytest.mark.parametrize("fixture", sorted(FIXTURES.glob("*.yaml")), ids=lambda p: p.stem)
def test_invalid_fixture_reports_exactly_its_problems(fixture: Path, tmp_path: Path) -> None:
    shutil.copy(MAPPINGS / "base.yaml", tmp_path / "base.yaml")
    target = tmp_path / fixture.name
    shutil.copy(fixture, target)
    expected = _expectations(fixture)
    assert expected, f"{fixture.name} declares no '# expect:' lines"
    problems = loader.check_files([target])
    assert len(problems) == len(expected), "\n".join(map(str, problems))
    for line, col, text in expected:
        assert any(p.line == line and (col is None or p.col == col) and text in p.message
                   and p.file.endswith(fixture.name) for p in problems), (
            f"expected {line}:{col} {text!r} in\n" + "\n".join(map(str, problems)))
