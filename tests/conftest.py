from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


@pytest.fixture
def shared() -> Path:
    """The read-only shared folder beside the project's clone; tests that need it skip without it."""
    if not (SHARED / "storis").is_dir():
        pytest.skip(f"the shared folder is not beside this clone ({SHARED})")
    return SHARED
