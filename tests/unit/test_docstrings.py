"""Every example in the docstrings of the core and of the PyTorch adapter runs and prints what it says."""

import doctest
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import chainrule2


def _modules() -> list[str]:
    names = [chainrule2.__name__]
    for info in pkgutil.walk_packages(chainrule2.__path__, prefix="chainrule2."):
        names.append(info.name)
    return sorted(names)


def _adapter_modules() -> list[str]:
    """The modules of ``chainrule2_torch``, found on disk: listing them must not import torch
    (pkgutil.walk_packages imports every package it walks), so collection works without it."""
    spec = importlib.util.find_spec("chainrule2_torch")
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(next(iter(spec.submodule_search_locations)))
    names = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names)


def test_the_adapter_modules_are_found() -> None:
    names = _adapter_modules()
    assert {"chainrule2_torch", "chainrule2_torch.objectives", "chainrule2_torch.data._collate"} <= set(names)


@pytest.mark.parametrize("name", _modules() + _adapter_modules())
def test_docstring_examples(name: str) -> None:
    if name.endswith("grid_strategies") or name.endswith(".strategies"):
        pytest.importorskip("hypothesis")
    if name.split(".")[0] == "chainrule2_torch":
        pytest.importorskip("torch")
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
