"""Shared fixtures. ``shared_data``: the real data sets in the repository's sibling ``../shared/data``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ``<repo>/../shared/data``; skips when absent, but fails when ``CI`` is set."""
    if not SHARED_DATA.is_dir():
        message = f"real data not found at {SHARED_DATA}"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI is set: the data must be present)")
        pytest.skip(message)
    return SHARED_DATA
