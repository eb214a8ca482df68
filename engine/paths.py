"""Where the project's data folders are: next to the package, in the project's checkout."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPINGS = ROOT / "mappings"
SCHEMAS = ROOT / "schemas"


def display(path: Path) -> str:
    """A path as people should read it in messages: relative to the working folder when inside it."""
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)
