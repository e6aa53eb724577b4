"""The arrows that must never exist (docs/architecture.md), checked on the source, not by importing it.

Every module of ``rnnkit`` is parsed with ``ast`` and each of its imports is resolved to an absolute
name: ``import a.b``; ``from a import b`` (read as ``a.b``, a module or a name of ``a``: either way
it lies in ``a``, which is all a rule asks); relative imports; imports inside functions or under
``if TYPE_CHECKING:``; ``importlib.import_module("...")`` / ``__import__("...")`` with a string
literal. An import whose name is computed at run time (the registry's entry points, the recipes'
table, the package's lazy names) cannot be read statically and is not checked.

RULES is the whole policy: a room (a package or module of rnnkit), what it may import or must not
import, and why. A failure names the file, the line, the import and the rule it breaks.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "rnnkit"


@dataclass(frozen=True)
class Rule:
    room: str                          # the importing modules: this module and everything under it
    reason: str
    only: tuple[str, ...] = ()         # if given: rnnkit modules outside these are forbidden
    never: tuple[str, ...] = ()        # rnnkit modules that are forbidden
    exempt: tuple[str, ...] = ()       # importing modules the rule does not apply to


RULES = (
    Rule("rnnkit.cells", only=("rnnkit.cells",),
         reason="a cell is its equations; every path and layer builds on the cells, so they lean on nothing"),
    Rule("rnnkit.engine", only=("rnnkit.engine", "rnnkit.cells", "rnnkit._fused"),
         reason="running a cell over time needs the cell and the engine's compiled loops (rnnkit._fused, "
                "built from csrc/), never the layers or anything built on them"),
    Rule("rnnkit.layers", only=("rnnkit.layers", "rnnkit.engine", "rnnkit.cells", "rnnkit.errors"),
         reason="a layer is cells run by the engine; models, training and data sit above it"),
    Rule("rnnkit.models", never=("rnnkit.train", "rnnkit.recipes", "rnnkit.commands", "rnnkit.cli",
                                 "rnnkit.data"),
         reason="a model takes tensors: the readers, vocabularies and batches of rnnkit.data, the trainer "
                "and the recipes that join them stay outside it"),
    Rule("rnnkit.train", never=("rnnkit.models", "rnnkit.recipes", "rnnkit.commands", "rnnkit.cli"),
         reason="the trainer trains any model through train/task.py's interface and knows no particular one"),
    Rule("rnnkit", never=("rnnkit.cli",), exempt=("rnnkit.__main__",),
         reason="the command line is the top floor: nothing of the library depends on it "
                "(python -m rnnkit is its other door)"),
)


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def module_name(path: Path, root: Path = PACKAGE_ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _literal_import(node: ast.Call) -> str | None:
    """The module named by ``importlib.import_module("...")`` or ``__import__("...")``, if a literal."""
    name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
    if name not in ("import_module", "__import__") or not node.args:
        return None
    first = node.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def imports_of(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, imported module) for every import of the module's source, resolved to absolute names."""
    package = module if is_package else module.rpartition(".")[0]

    def absolute(level: int, name: str | None) -> str:
        if level == 0:
            return name or ""
        base = package.split(".")[: len(package.split(".")) - (level - 1)]
        return ".".join(base + ([name] if name else []))

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source_module = absolute(node.level, node.module)
            found += [(node.lineno, f"{source_module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and (literal := _literal_import(node)) is not None:
            level = len(literal) - len(literal.lstrip("."))
            found.append((node.lineno, absolute(level, literal.lstrip(".") or None)))
    return sorted((line, name) for line, name in found if _within(name, "rnnkit"))


def broken_by(rule: Rule, module: str, imported: str) -> bool:
    if not _within(module, rule.room) or any(_within(module, free) for free in rule.exempt):
        return False
    if _within(imported, module):              # a package's own modules
        return False
    if rule.only and not any(_within(imported, allowed) for allowed in rule.only):
        return True
    return any(_within(imported, forbidden) for forbidden in rule.never)


def package_imports(root: Path = PACKAGE_ROOT):
    """(file, module, line, imported module) for every rnnkit import in the package."""
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        for line, imported in imports_of(path.read_text(encoding="utf-8"), module, path.name == "__init__.py"):
            yield path, module, line, imported


IMPORTS = list(package_imports())


@pytest.mark.parametrize("rule", RULES, ids=[rule.room for rule in RULES])
def test_no_forbidden_import(rule):
    broken = [f"{path.relative_to(PACKAGE_ROOT.parent)}:{line}: imports {imported}"
              for path, module, line, imported in IMPORTS if broken_by(rule, module, imported)]
    assert not broken, (f"{rule.room} breaks its rule ({rule.reason}):\n  " + "\n  ".join(broken)
                        + "\nMove the code to the room it belongs to, or change the rule in RULES and "
                          "docs/architecture.md together.")


@pytest.mark.parametrize("rule", RULES, ids=[rule.room for rule in RULES])
def test_every_rule_applies_to_modules_that_exist(rule):
    """A renamed folder must not leave a rule that checks nothing."""
    assert any(_within(module, rule.room) for _, module, _, _ in IMPORTS), \
        f"no module of {rule.room} imports anything of rnnkit: is the rule's room still there?"


def test_the_walk_reads_every_form_of_import():
    """The checker itself: each form of import is found, resolved, and judged by the rules."""
    source = ("import importlib\n"
              "from . import crf\n"
              "def build():\n"
              "    from ..train import trainer\n"
              "    return importlib.import_module('rnnkit.cli')\n"
              "from .. import __version__\n"
              "import torch, rnnkit.data.vocab\n"
              "importlib.import_module('.sampling', __package__)\n")
    found = imports_of(source, "rnnkit.models.bad", is_package=False)
    assert found == [(2, "rnnkit.models.crf"), (4, "rnnkit.train.trainer"), (5, "rnnkit.cli"),
                     (6, "rnnkit.__version__"), (7, "rnnkit.data.vocab"), (8, "rnnkit.models.sampling")]
    assert imports_of("from .dispatch import choose", "rnnkit.engine", is_package=True) == \
        [(1, "rnnkit.engine.dispatch.choose")]
    rule = {rule.room: rule for rule in RULES}
    judged = [name for _, name in found if broken_by(rule["rnnkit.models"], "rnnkit.models.bad", name)]
    assert judged == ["rnnkit.train.trainer", "rnnkit.cli", "rnnkit.data.vocab"]
    assert broken_by(rule["rnnkit.cells"], "rnnkit.cells.lstm", "rnnkit.__version__")  # the top package
    assert not broken_by(rule["rnnkit.cells"], "rnnkit.cells.lstm", "rnnkit.cells.base.RecurrentCell")
    assert broken_by(rule["rnnkit.engine"], "rnnkit.engine.loop", "rnnkit.layers.inputs")
    assert not broken_by(rule["rnnkit"], "rnnkit.__main__", "rnnkit.cli.main")
    assert broken_by(rule["rnnkit"], "rnnkit.commands.train", "rnnkit.cli")
    assert not broken_by(rule["rnnkit.train"], "rnnkit.recipes.run", "rnnkit.models")  # another room


def test_the_walk_sees_the_whole_package():
    modules = {module for _, module, _, _ in IMPORTS}
    for expected in ("rnnkit.cells.lstm", "rnnkit.engine.ops", "rnnkit.layers.recurrent",
                     "rnnkit.models.seq2seq", "rnnkit.train.trainer", "rnnkit.__main__"):
        assert expected in modules, f"the import walk missed {expected}"
    assert ("rnnkit.engine.ops", "rnnkit._fused") in {(module, imported) for _, module, _, imported in IMPORTS}
