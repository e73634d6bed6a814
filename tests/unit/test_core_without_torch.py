"""The core's own tests (tests/unit, tests/properties) need no torch: with torch blocked, every one
of their modules is collected (a module-level ``import torch`` would be a collection error), and
the tests that use torch are skipped by ``pytest.importorskip`` inside them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_core_tests_are_collected_with_torch_blocked() -> None:
    code = (
        "import sys; sys.modules['torch'] = None; import pytest; "
        "sys.exit(pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', 'tests/unit', 'tests/properties']))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "error" not in result.stdout.splitlines()[-1].lower(), result.stdout[-3000:]
