"""The house style is checked like any other test: ruff lint and format (pinned in the test extra),
and the layering rule of pyproject.toml (the core imports neither torch nor its adapter)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: One banned import per line: module level, submodule, ``from`` form, inside a function, the adapter.
BANNED = """\
import torch
import torch.nn
from torch import nn
import chainrule2_torch
from chainrule2_torch.data import Sample


def later():
    import torch as t

    return t, torch, nn, chainrule2_torch, Sample
"""


def _ruff() -> str:
    """The ruff of this interpreter's environment (``.venv/bin``, found without an activated venv), else PATH's."""
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    return ruff


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff(command: list[str]) -> None:
    result = subprocess.run([_ruff(), *command], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _tid251(tmp_path: Path, folder: str) -> list[str]:
    """The TID251 (banned-api) lines ruff reports, with the project's settings, for :data:`BANNED` placed in ``folder``."""
    path = tmp_path / folder / "layering_probe.py"
    path.parent.mkdir(parents=True)
    path.write_text(BANNED)
    # with --config, the globs of per-file-ignores resolve against the working directory: tmp_path
    # stands in for the repository root, so chainrule2/ here is the core and adapters/ the adapter
    result = subprocess.run(
        [_ruff(), "check", "--config", str(ROOT / "pyproject.toml"), "--no-cache", "--output-format", "concise", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode in (0, 1), result.stdout + result.stderr  # 2: ruff itself failed (bad config)
    return [line for line in result.stdout.splitlines() if "TID251" in line]


def test_the_core_may_not_import_torch_or_the_adapter(tmp_path: Path) -> None:
    found = _tid251(tmp_path, "chainrule2/solvers")
    lines = {int(line.split(":")[1]) for line in found}
    assert lines == {1, 2, 3, 4, 5, 9}, "ruff must flag every torch/chainrule2_torch import under chainrule2/:\n" + (
        "\n".join(found) or "(none flagged: is TID251 selected, with torch and chainrule2_torch banned?)"
    )
    assert any("`torch` is banned" in line for line in found)
    assert any("`chainrule2_torch` is banned" in line for line in found)


@pytest.mark.parametrize("folder", ["adapters/chainrule2_torch", "tests/unit", "examples", "benchmarks"])
def test_the_other_layers_may_import_torch(tmp_path: Path, folder: str) -> None:
    assert _tid251(tmp_path, folder) == []
