"""Every example in the core's docstrings runs and prints what it says."""

import doctest
import importlib
import pkgutil

import pytest

import chainrule2


def _modules() -> list[str]:
    names = [chainrule2.__name__]
    for info in pkgutil.walk_packages(chainrule2.__path__, prefix="chainrule2."):
        names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name: str) -> None:
    if name.endswith("grid_strategies") or name.endswith(".strategies"):
        pytest.importorskip("hypothesis")
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
