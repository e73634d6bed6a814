"""The docs cannot rot: Python blocks in the quickstart run; the API page lists every public name;
the README's commands are the ones CI runs and the demo exists."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def _run_blocks(path: Path, monkeypatch) -> None:
    """Execute a page's python blocks in order, in one fresh module (dataclasses need a real one)."""
    blocks = _python_blocks(path)
    assert blocks, f"{path.name} has no python block"
    module = types.ModuleType(f"docs_{path.stem}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for block in blocks:
        exec(compile(block, str(path), "exec"), module.__dict__)


def test_quickstart_program_runs(capsys, monkeypatch) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("maxflow")
    _run_blocks(ROOT / "docs" / "quickstart.md", monkeypatch)
    assert "stage A energy" in capsys.readouterr().out


def test_extending_example_runs(capsys, monkeypatch) -> None:
    _run_blocks(ROOT / "docs" / "extending.md", monkeypatch)
    assert "ICM" in capsys.readouterr().out


def _public_names() -> set[str]:
    import chainrule2
    import chainrule2.divergences
    import chainrule2.energies
    import chainrule2.losses
    import chainrule2.models
    import chainrule2.solvers
    import chainrule2.testing
    import chainrule2.validation

    modules = [
        chainrule2,
        chainrule2.divergences,
        chainrule2.energies,
        chainrule2.losses,
        chainrule2.solvers,
        chainrule2.testing,
        chainrule2.validation,
    ]
    names = {f"chainrule2.{n}" for n in chainrule2.__all__}
    for module in modules[1:]:
        names |= {f"{module.__name__}.{n}" for n in module.__all__}
    names |= {"chainrule2.models.LinearClassifier", "chainrule2.models.SGDFitter"}
    try:
        import chainrule2_torch
        import chainrule2_torch.data

        names |= {f"chainrule2_torch.{n}" for n in chainrule2_torch.__all__}
        names |= {f"chainrule2_torch.data.{n}" for n in chainrule2_torch.data.__all__}
    except ImportError:  # pragma: no cover - torch missing
        pass
    return names


def test_api_page_lists_every_public_name() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    missing = sorted(name for name in _public_names() if f"`{name}`" not in text)
    assert not missing, f"docs/api.md does not list: {missing}"


def test_readme_commands_are_what_ci_and_users_run() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"<!-- (demo|test)-command -->\n```bash\n(.*?)\n```", readme)
    assert [kind for kind, _ in commands] == ["demo", "test"]
    demo, test = (command for _, command in commands)
    assert "pip install torch==2.13.0" in demo and "examples/segmentation_scribbles.py --demo" in demo
    assert test.endswith("python -m pytest -q")
    assert "test-command" in (ROOT / ".ci" / "run").read_text()
    assert demo in (ROOT / "docs" / "quickstart.md").read_text()


def test_own_loop_page_runs(capsys, monkeypatch) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("maxflow")
    _run_blocks(ROOT / "docs" / "own_loop.md", monkeypatch)
    assert "stage A energy" in capsys.readouterr().out


def test_architecture_picture_matches_the_imports() -> None:
    import subprocess

    result = subprocess.run([sys.executable, str(ROOT / "docs" / "make_architecture.py"), "--check"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert (ROOT / "docs" / "architecture.png").is_file()
