"""Golden files: ``tests/golden/<retailer>/<case>/<WebhookType>.json`` is the input (a STORIS Detail response
or a bare record), ``expected.json`` what ``engine preview`` prints for it, and ``skipped.json`` the events
it reports as skipped (only when there are some)."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path

from engine.compile import Retailer
from engine.paths import ROOT
from engine.preview import dumps, preview

GOLDEN = ROOT / "tests" / "golden"
EXPECTED = "expected.json"
SKIPPED = "skipped.json"


@dataclass(frozen=True)
class Case:
    retailer: str
    name: str
    folder: Path
    input: Path

    @property
    def webhook_type(self) -> str:
        return self.input.stem

    @property
    def id(self) -> str:
        return f"{self.retailer}/{self.name}"


def cases(root: Path = GOLDEN) -> list[Case]:
    found = []
    for folder in sorted(p for p in root.glob("*/*") if p.is_dir()):
        inputs = [p for p in folder.glob("*.json") if p.name not in (EXPECTED, SKIPPED)]
        if len(inputs) != 1:
            raise RuntimeError(f"{folder}: a golden case holds exactly one <WebhookType>.json input")
        found.append(Case(folder.parent.name, folder.name, folder, inputs[0]))
    return found


def render(case: Case, retailer: Retailer) -> tuple[str, str | None]:
    """(expected.json text, skipped.json text or None) for the case as the mapping maps it today."""
    result = preview(retailer, case.webhook_type, json.loads(case.input.read_text(encoding="utf-8")))
    skipped = [{"event": s.key, "metric": s.metric, "unique_id": s.unique_id, "reason": s.reason}
               for s in result.skipped]
    return dumps([e.body for e in result.events]), (dumps(skipped) if skipped else None)


def compare(case: Case, retailer: Retailer) -> str:
    """A unified diff of what the case expects against what the mapping makes today; empty when equal."""
    events, skipped = render(case, retailer)
    diff = []
    for name, actual in ((EXPECTED, events), (SKIPPED, skipped or "")):
        path = case.folder / name
        expected = path.read_text(encoding="utf-8") if path.exists() else ""
        if expected != actual:
            diff.extend(difflib.unified_diff(expected.splitlines(keepends=True), actual.splitlines(keepends=True),
                                             f"{case.id}/{name} (expected)", f"{case.id}/{name} (actual)"))
    return "".join(diff)


def update(case: Case, retailer: Retailer) -> bool:
    """Rewrite the case's expected files; True when anything changed."""
    events, skipped = render(case, retailer)
    changed = _write(case.folder / EXPECTED, events)
    if skipped is None:
        stale = case.folder / SKIPPED
        if stale.exists():
            stale.unlink()
            changed = True
    else:
        changed |= _write(case.folder / SKIPPED, skipped)
    return changed


def _write(path: Path, text: str) -> bool:
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True
