"""Shared fixtures. ``shared_data``: the real data sets, in ``$CHAINRULE2_DATA`` or the repository's sibling
``../shared/data``."""

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

DATA_ROOT_ENV = "CHAINRULE2_DATA"


def _data_root() -> Path:
    """``chainrule2_torch.data.data_root()``, re-implemented here so that the core tests need no torch."""
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The data root (``$CHAINRULE2_DATA``, else ``<repo>/../shared/data``); skips when absent, fails when ``CI`` is set."""
    root = _data_root()
    if not root.is_dir():
        source = f"{DATA_ROOT_ENV} is {'set' if os.environ.get(DATA_ROOT_ENV) else 'unset'}"
        message = (
            f"real data not found at {root} ({source}; set {DATA_ROOT_ENV} to the folder that holds "
            "grabcut_scribbles/, weizmann_horse/, ...)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI is set: the data must be present)")
        pytest.skip(message)
    return root


#: The array namespaces every array-API function of the core must run on (see the ``xp`` fixture).
ARRAY_NAMESPACES = ("numpy", "array_api_strict", "torch")


@pytest.fixture(params=ARRAY_NAMESPACES)
def xp(request: pytest.FixtureRequest):
    """An array namespace to run an array-API function on: numpy, array_api_strict (the strictest
    reading of the standard), torch (CPU); each skipped when not installed, so the core's tests run
    without torch.

    The module itself (``numpy``, ``array_api_strict``, ``torch``): build inputs with
    ``xp.asarray(numpy_array)`` (dtype kept), read results back with ``numpy.from_dlpack(result)``.
    """
    return pytest.importorskip(request.param)
