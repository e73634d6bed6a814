"""Shared fixtures. ``shared_data``: the real data sets in the repository's sibling ``../shared/data``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests are deterministic in CI (same examples every run, no flaky red builds) and
# random locally (more exploration). Deadlines are off: the 2-core machine is noisy.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

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
