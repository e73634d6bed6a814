"""The public API is typed: mypy (pinned in the test extra, configured in pyproject.toml's [tool.mypy])
checks chainrule2/ and adapters/chainrule2_torch/ with zero errors, and both packages ship a py.typed
marker (PEP 561) so that their users' type checkers read the annotations."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"


def _skip_or_fail(message: str) -> None:
    """Skip locally; under CI (``CI`` set) the checker must run, so fail."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: the type check must run)")
    pytest.skip(message)


def _pinned() -> str:
    """The mypy version of the test extra (``"mypy==X"`` in pyproject.toml)."""
    found = re.search(r'"mypy==([^"]+)"', PYPROJECT.read_text())
    assert found, "pyproject.toml: the test extra pins no mypy version (mypy==X)"
    return found.group(1)


def test_mypy_reports_no_errors_on_the_public_modules() -> None:
    if importlib.util.find_spec("mypy") is None:
        _skip_or_fail(f"mypy is not installed (pip install -e '.[test]', or mypy=={_pinned()})")
    from mypy.version import __version__ as installed

    if installed != _pinned():
        _skip_or_fail(f"mypy {installed} is installed, the test extra pins {_pinned()}: results could differ")
    # files, mypy_path and the strictness come from [tool.mypy]; the cache (.mypy_cache) makes reruns fast.
    # Without torch (a core-only install) the adapter cannot be checked: the core alone is.
    files = [] if importlib.util.find_spec("torch") is not None else ["chainrule2"]
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(PYPROJECT), *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout, result.stdout


@pytest.mark.parametrize("package", ["chainrule2", "adapters/chainrule2_torch"])
def test_the_packages_ship_a_py_typed_marker(package: str) -> None:
    assert (ROOT / package / "py.typed").is_file()
    name = Path(package).name
    section = re.search(r"^\[tool\.setuptools\.package-data\]\n((?:.+\n)+)", PYPROJECT.read_text(), flags=re.M)
    assert section, "pyproject.toml: no [tool.setuptools.package-data] (py.typed would not be installed)"
    assert re.search(rf'^{name} = \[.*"py\.typed".*\]$', section.group(1), flags=re.M), section.group(1)
