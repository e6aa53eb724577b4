"""The ``>>>`` examples in the docstrings run, and every built-in cell's docstring has one.

Each docstring with examples in ``rnnkit.cells``, ``rnnkit.learning``, ``rnnkit.diagnose``,
``rnnkit.data`` and ``rnnkit.metrics`` is one test, run by ``doctest`` in its module's namespace
(from one seed, so that a failure repeats); any example whose output differs fails it. A cell
registered by ``rnnkit.cells`` without an example in its class docstring fails
``test_every_builtin_cell_has_an_example`` (docs/architecture.md, "Docstrings").
"""
from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest
import torch

from rnnkit.cells import available, cell_class

PACKAGES = ("rnnkit.cells", "rnnkit.learning", "rnnkit.diagnose", "rnnkit.data")
MODULES = ("rnnkit.metrics",)


def modules_with_examples():
    names = list(MODULES)
    for package in PACKAGES:
        names.append(package)
        names += [f"{package}.{info.name}" for info in pkgutil.iter_modules(importlib.import_module(package).__path__)]
    finder = doctest.DocTestFinder(exclude_empty=True)
    for name in names:
        for test in finder.find(importlib.import_module(name), name):
            if test.examples:
                yield test


EXAMPLES = sorted(modules_with_examples(), key=lambda test: test.name)


@pytest.mark.parametrize("test", EXAMPLES, ids=[test.name for test in EXAMPLES])
def test_docstring_example(test):
    torch.manual_seed(0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = []
    test.globs = dict(test.globs)                 # the module's namespace, not shared between tests
    result = runner.run(test, out=report.append, clear_globs=True)
    assert result.failed == 0, f"{test.name} ({test.filename}:{test.lineno}):\n" + "".join(report)


def builtin_cells():
    return [name for name in available() if cell_class(name).__module__.startswith("rnnkit.cells.")]


def test_every_builtin_cell_has_an_example():
    cells = builtin_cells()
    assert {"elman", "jordan", "residual", "lstm", "gru", "indrnn", "mingru", "minlstm", "esn"} <= set(cells)
    missing = [f"{name} ({cell_class(name).__module__}.{cell_class(name).__qualname__})"
               for name in cells if ">>>" not in (cell_class(name).__doc__ or "")]
    assert not missing, ("a cell's class docstring shows it built and run (>>> lines: rnnkit.cells.create "
                         "or rnnkit.Recurrent, a step or a sequence, an output shape); none in: "
                         + ", ".join(missing))


def test_every_builtin_cell_example_is_collected():
    """The cells' examples are among those that run above (not only present)."""
    collected = {test.name for test in EXAMPLES}
    for name in builtin_cells():
        cls = cell_class(name)
        assert f"{cls.__module__}.{cls.__qualname__}" in collected, f"{name}'s example is not run"
