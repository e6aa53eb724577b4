"""A cell of one's own: the contract's messages (at register, at the first build), the resolver
(``package.module:ClassName``, entry points), `rnnkit train --cell module:Class` and the run it
saves, and docs/custom-cells.md, whose Python blocks run here in order."""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import rnnkit
import user_cells
from cli_data import classify_tsv
from rnnkit.cells import CellContractError, RecurrentCell, available, create, register, registry, resolve
from rnnkit.cells.contract import check_meta_step
from rnnkit.cells.functional import affine
from rnnkit.cli import main
from user_cells import TinyCell

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "custom-cells.md"

pytestmark = pytest.mark.usefixtures("generated_path_without_inductor")


@pytest.fixture(autouse=True)
def registry_as_it_was():
    """Cells a test registers (and classes it checks) are forgotten afterwards, so that no other
    test module sees them in ``available()``."""
    names, checked = dict(registry._REGISTRY), set(registry._CHECKED)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(names)
    registry._CHECKED.clear()
    registry._CHECKED.update(checked)


# ----- the classes that each break one piece of the contract ---------------------------------------------
METHODS = {name: TinyCell.__dict__[name] for name in ("__init__", "parameter_shapes", "project_input", "step")}


def tiny_class(name: str, **changes):
    """A RecurrentCell subclass with TinyCell's methods, some replaced (None: left out)."""
    methods = {k: v for k, v in {**METHODS, **changes}.items() if v is not None}
    return type(name, (RecurrentCell,), methods)


def contract_error(call) -> str:
    with pytest.raises(CellContractError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message                                   # one message, one line
    return message


# ----- (a)-(c): what register sees in the class ----------------------------------------------------------
def test_register_refuses_a_class_that_is_no_recurrent_cell():
    class PlainModule(nn.Module):
        pass

    message = contract_error(lambda: register("plain")(PlainModule))
    assert "PlainModule" in message and "is not a subclass of rnnkit.cells.RecurrentCell" in message
    assert "plain" not in available()


@pytest.mark.parametrize("method", ["parameter_shapes", "project_input", "step"])
def test_register_names_the_missing_method_and_its_signature(method):
    cls = tiny_class("Missing", **{method: None})
    message = contract_error(lambda: register("missing")(cls))
    assert f"Missing does not define {method}(), which every cell needs" in message
    assert f"def {method}(self" in message
    assert "missing" not in available()


def test_register_refuses_a_step_without_recurrent_mask():
    def step(self, p, u_t, state):
        return METHODS["step"](self, p, u_t, state)

    message = contract_error(lambda: register("nomask")(tiny_class("NoMask", step=step)))
    assert "NoMask: step() cannot be called as the engine calls it" in message
    assert "step(self, p, u_t, state, recurrent_mask=None)" in message


def test_register_refuses_an_init_without_the_factory_keywords():
    def __init__(self, input_size, hidden_size, *, scale=1.0):
        super(type(self), self).__init__(input_size, hidden_size)
        self._build()

    message = contract_error(lambda: register("nofactory")(tiny_class("NoFactory", __init__=__init__)))
    assert "NoFactory: __init__ does not accept own_parameters, device, dtype" in message
    assert "super().__init__(input_size, hidden_size, own_parameters=own_parameters" in message


def test_an_unregistered_class_is_checked_at_its_first_use():
    cls = tiny_class("Unregistered", step=None)
    assert "does not define step()" in contract_error(lambda: rnnkit.Recurrent(cls, 3, 4))


# ----- (d)-(f): what only the first build shows ---------------------------------------------------------
def test_a_forgotten_build_is_named_at_create_and_in_a_layer():
    def __init__(self, input_size, hidden_size, *, own_parameters=True, device=None, dtype=None):
        RecurrentCell.__init__(self, input_size, hidden_size, own_parameters=own_parameters, device=device,
                               dtype=dtype)

    cls = register("nobuild")(tiny_class("NoBuild", __init__=__init__))
    for build in (lambda: create("nobuild", 3, 4), lambda: rnnkit.Recurrent("nobuild", 3, 4)):
        message = contract_error(build)
        assert "NoBuild: after __init__ its tensors 'weight_ih', 'bias_ih', 'weight_hh' do not exist" in message
        assert "call self._build() at the end of __init__" in message


def test_build_before_the_options_it_reads_is_named():
    class EarlyBuild(TinyCell):
        def __init__(self, input_size, hidden_size, *, bias=True, own_parameters=True, device=None, dtype=None):
            RecurrentCell.__init__(self, input_size, hidden_size, own_parameters=own_parameters, device=device,
                                   dtype=dtype)
            self._build()
            self.bias = bias

        def parameter_shapes(self):
            return {"weight_ih": (self.hidden_size, self.input_size)} if self.bias else {}

    message = contract_error(lambda: create(EarlyBuild, 3, 4))
    assert "EarlyBuild: parameter_shapes() failed in self._build()" in message
    assert "call self._build() last in __init__" in message


@pytest.mark.parametrize("shapes, expected", [
    ({"weight.ih": (4, 3)}, "names a tensor 'weight.ih': names must be Python identifiers"),
    ({"hidden_size": (4, 3)}, "names a tensor 'hidden_size', but the cell already has an attribute 'hidden_size'"),
    ({"weight_ih": (4, 3.0)}, "gives 'weight_ih' the shape (4, 3.0); a shape is a tuple of ints"),
    ([("weight_ih", (4, 3))], "must return a dict {name: shape}, got list"),
])
def test_invalid_parameter_shapes_are_named(shapes, expected):
    class BadShapes(TinyCell):
        def parameter_shapes(self):
            return shapes

    message = contract_error(lambda: create(BadShapes, 3, 4))
    assert "BadShapes: parameter_shapes()" in message and expected in message


def test_fixed_parameters_must_be_declared_tensors():
    class BadFixed(TinyCell):
        fixed_parameters = ("reservoir",)

    assert "BadFixed: fixed_parameters names 'reservoir', which parameter_shapes() does not" in \
        contract_error(lambda: create(BadFixed, 3, 4))


def _step_returning(result):
    class Returns(TinyCell):
        def step(self, p, u_t, state, recurrent_mask=None):
            (h,) = state
            h = torch.tanh(u_t + affine(h, p["weight_hh"]))
            return result(h)
    return Returns


@pytest.mark.parametrize("result, expected", [
    (lambda h: (h, h), "step()'s new state must be a tuple of 1 tensor(s) in state_names order ('h',), "
                       "e.g. `return h, (h,)`; it returned Tensor"),
    (lambda h: h, "step() must return (y_t, new_state), e.g. `return h, (h,)`; it returned Tensor"),
    (lambda h: (torch.cat([h, h], -1), (h,)),
     "step()'s output y_t has shape (3, 10), expected (batch, size) = (3, 5)"),
    (lambda h: (h, (h[:, :2],)), "step()'s new state 'h' has shape (3, 2), expected (batch, size) = (3, 5)"),
    (lambda h: (h.double(), (h.double(),)), "step()'s output y_t is torch.float64 for torch.float32 input"),
])
def test_a_step_of_the_wrong_structure_is_named_at_the_first_build(result, expected):
    cls = _step_returning(result)
    for build in (lambda: create(cls, 3, 5), lambda: rnnkit.Recurrent(cls, 3, 5, num_layers=2)):
        message = contract_error(build)
        assert "Returns: " in message and expected in message


def test_a_project_input_of_the_wrong_shape_is_named():
    class FlatProjection(TinyCell):
        def project_input(self, p, x):
            return affine(x, p["weight_ih"], p["bias_ih"]).flatten(0, 1)                # (T·B, H)

    assert "FlatProjection: project_input() must return u of shape (T, B, G) for x of shape (T, B, I) = " \
        "(2, 3, 3); it returned (6, 5)" in contract_error(lambda: create(FlatProjection, 3, 5))


def test_the_step_probe_runs_every_builtin_cell_on_the_meta_device():
    """The probe must not silently skip the cells it exists for: every built-in one runs there."""
    for name in available():
        cell = create(name, 3, 4)
        assert check_meta_step(cell, cell.parameter_shapes()), name


def test_a_correct_user_cell_builds_and_runs_in_a_layer():
    layer = rnnkit.Recurrent(TinyCell, 3, 4, num_layers=2, bidirectional=True)
    with torch.no_grad():
        out, h = layer(torch.randn(5, 2, 3), lengths=torch.tensor([5, 2]))
    assert out.shape == (5, 2, 8) and h.shape == (4, 2, 4)
    assert torch.all(out[2:, 1] == 0)


# ----- the resolver: package.module:ClassName, entry points -----------------------------------------------
@pytest.fixture
def cell_module(tmp_path, monkeypatch):
    """A copy of user_cells.py as module ``copied_cells_<n>`` in tmp_path, importable (and forgotten after)."""
    name = f"copied_cells_{abs(hash(tmp_path)) % 10 ** 8}"
    shutil.copy(user_cells.__file__, tmp_path / f"{name}.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_a_module_class_spec_resolves_without_registering(cell_module):
    cls = resolve(f"{cell_module}:TinyCell")
    assert cls.__name__ == "TinyCell" and cls.__module__ == cell_module
    assert f"{cell_module}:TinyCell" not in available()
    layer = rnnkit.Recurrent(f"{cell_module}:TinyCell", 3, 4, bidirectional=True)
    assert isinstance(layer.cells[0], cls) and layer(torch.randn(5, 2, 3))[0].shape == (5, 2, 8)


@pytest.mark.parametrize("spec, expected", [
    ("no_such_module_xyz:Cell", "cell 'no_such_module_xyz:Cell': cannot import module 'no_such_module_xyz' "
                                "(No module named 'no_such_module_xyz'); is its folder on PYTHONPATH"),
    ("{module}:Missing", "cell '{module}:Missing': module '{module}' ("),
    ("{module}:", "expected package.module:ClassName (both parts)"),
])
def test_a_spec_that_does_not_resolve_says_which_module_and_name(cell_module, spec, expected):
    with pytest.raises(ValueError) as caught:
        resolve(spec.format(module=cell_module))
    assert expected.format(module=cell_module) in str(caught.value)


def test_a_spec_naming_no_cell_class_says_so(cell_module):
    message = contract_error(lambda: resolve(f"{cell_module}:affine"))
    assert "function" in message and "is not a subclass of rnnkit.cells.RecurrentCell" in message


def test_an_unknown_name_lists_the_cells_and_the_other_ways():
    with pytest.raises(ValueError, match=r"unknown cell 'lstmm'; available cells: elman, .*lstm.*"
                                         r"package\.module:ClassName"):
        resolve("lstmm")


def _dist_info(folder: Path, entry_points: str) -> None:
    """A distribution as installers leave it: NAME-VERSION.dist-info with METADATA and entry_points.txt."""
    info = folder / "user_cell_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: user-cell-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)


def test_an_entry_point_name_is_loaded_and_registered_when_first_asked_for(cell_module, tmp_path):
    _dist_info(tmp_path, f"[rnnkit.cells]\nsmall_plugin = {cell_module}:TinyCell\n"
                         "broken_plugin = no_such_module_xyz:Cell\n")
    assert "small_plugin" not in available()
    layer = rnnkit.Recurrent("small_plugin", 3, 4)
    assert type(layer.cells[0]).__name__ == "TinyCell" and "small_plugin" in available()
    with pytest.raises(ValueError, match=r"cell 'broken_plugin': the entry point 'no_such_module_xyz:Cell' "
                                         r"\(group 'rnnkit.cells'\) does not load: ModuleNotFoundError"):
        resolve("broken_plugin")


# ----- the command line --------------------------------------------------------------------------------
def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.stderr.strip().count("\n") == 0, result.stderr
    return result.stderr


def test_train_with_a_module_class_cell_saves_the_spec_and_the_run_evaluates(cell_module, tmp_path, monkeypatch):
    classify_tsv(tmp_path / "train.tsv", n=16)
    spec = f"{cell_module}:TinyCell"
    result = invoke("train", "--task", "classify", "--train", tmp_path / "train.tsv", "--out", tmp_path / "run",
                    "--cell", spec, "--hidden", "4", "--embedding", "4", "--batch-size", "8", "--max-steps", "2",
                    "--unidirectional", "--no-progress", "--no-tensorboard")
    assert result.exit_code == 0, result.output
    trained = rnnkit.recipes.run.load_run(tmp_path / "run")
    assert trained.state.model_options["cell"] == spec                       # what extra.json holds
    assert any(type(m).__name__ == "TinyCell" for m in trained.model.modules())

    sys.modules.pop(cell_module)                         # evaluate imports the module again, by the spec
    result = invoke("evaluate", tmp_path / "run", "--test", tmp_path / "train.tsv", "--json")
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout and cell_module in sys.modules

    sys.modules.pop(cell_module)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    message = one_line_error(invoke("evaluate", tmp_path / "run", "--test", tmp_path / "train.tsv"))
    assert f"cell '{spec}': cannot import module '{cell_module}'" in message


def test_train_refuses_a_cell_spec_that_does_not_import_before_reading_any_data(tmp_path):
    message = one_line_error(invoke("train", "--task", "classify", "--train", tmp_path / "absent.tsv",
                                    "--out", tmp_path / "run", "--cell", "no_such_pkg.cells:MyCell"))
    assert "cell 'no_such_pkg.cells:MyCell': cannot import module 'no_such_pkg.cells' (No module named " \
           "'no_such_pkg')" in message


# ----- docs/custom-cells.md ----------------------------------------------------------------------------
@pytest.mark.slow          # the whole page, check_cell with its compiled paths included
def test_the_custom_cells_page_runs_in_order():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) >= 4
    namespace: dict = {}
    for index, block in enumerate(blocks):
        exec(compile(block, f"docs/custom-cells.md block {index + 1}", "exec"), namespace)
    assert namespace["report"].checks[-1] == "fast paths"
    assert "mgu" in available()


def test_the_readme_points_to_the_page():
    assert "docs/custom-cells.md" in (ROOT / "README.md").read_text(encoding="utf-8")
