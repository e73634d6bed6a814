"""The NumPy-only example runs, prints its comparison, and shows what its docstring claims."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "chain_numpy.py"


def test_chain_example_beats_gradient_descent_without_torch() -> None:
    # The example must not need torch: block it in the child process.
    code = (
        "import sys; sys.modules['torch'] = None; sys.argv = ['chain_numpy.py', '--json', '--seeds', '0', '2', '4', '--methods', 'gd', 'tr']; "
        f"import runpy; runpy.run_path({str(EXAMPLE)!r}, run_name='__main__')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    median = result["median"]
    assert median["tr"]["relaxed_loss"] < median["gd"]["relaxed_loss"]
    assert median["tr"]["accuracy"] > median["gd"]["accuracy"] + 0.1
    for run in result["runs"]:
        for method in run["methods"].values():
            assert np.isfinite(method["relaxed_loss"]) and 0 <= method["accuracy"] <= 1
