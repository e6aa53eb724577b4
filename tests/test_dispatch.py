"""The dispatcher (rnnkit/engine/dispatch.py): which path each call takes, that it is the path that
runs, that a named path either runs or says why not, and that cells carry no engine policy."""
import ast
from pathlib import Path

import pytest
import torch

import rnnkit
import rnnkit.layers.recurrent as recurrent_module
from rnnkit.cells import RecurrentCell
from rnnkit.engine import dispatch, explain

pytestmark = pytest.mark.usefixtures("generated_path_without_inductor")


class GatedCell(RecurrentCell):
    """A user's cell: h_t = (1 − z) ⊙ h_{t−1} + z ⊙ tanh(W_n x_t + U_n h_{t−1}), z = σ(W_z x_t + U_z h_{t−1})."""

    def __init__(self, input_size, hidden_size, *, own_parameters=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, own_parameters=own_parameters, device=device, dtype=dtype)
        self._build()

    def parameter_shapes(self):
        return {"weight_ih": (2 * self.hidden_size, self.input_size),
                "weight_hh": (2 * self.hidden_size, self.hidden_size)}

    def project_input(self, p, x):
        return x @ p["weight_ih"].T                                             # (T, B, 2H)

    def step(self, p, u_t, state, recurrent_mask=None):
        (h,) = state
        h_in = h if recurrent_mask is None else h * recurrent_mask
        a_z, a_n = (u_t + h_in @ p["weight_hh"].T).chunk(2, dim=-1)
        z = torch.sigmoid(a_z)
        h = (1 - z) * h + z * torch.tanh(a_n)
        return h, (h,)


def paths(layer, x, lengths=None, **kwargs):
    return [choice.path for choice in explain(layer, x, lengths=lengths, **kwargs).layers]


X = torch.randn(6, 2, 3)
R = rnnkit.Recurrent


@pytest.mark.parametrize("make,expected", [
    (lambda: R("lstm", 3, 5), "native"),                                  # torch's oneDNN LSTM first
    (lambda: R("lstm", 3, 5, variant="vanilla"), "fused"),
    (lambda: R("lstm", 3, 5, variant="fgr"), "fused"),
    (lambda: R("gru", 3, 5), "fused"),                                    # before torch's GRU on the CPU
    (lambda: rnnkit.GRU(3, 5, num_layers=2), "fused"),
    (lambda: R("elman", 3, 5), "native"),
    (lambda: R("mingru", 3, 5), "fused"),                                 # the compiled time-ordered scan
    (lambda: R("lstm", 3, 5, variant="vanilla", backend="reference"), "reference"),
    (lambda: R("lstm", 3, 5, variant="vanilla", proj_size=2), "reference"),
    (lambda: R("lstm", 3, 5, variant="vanilla", bptt="autograd"), "reference"),
    (lambda: R("lstm", 3, 5, variant="vanilla", layer_norm=True), "generated"),
    (lambda: R("lstm", 3, 5, zoneout=0.1), "fused"),                      # the C++ loops take the masks
    (lambda: R("lstm", 3, 5, recurrent_dropout=0.2), "fused"),            # training mode
    (lambda: R("jordan", 3, 5, zoneout=0.1), "generated"),
    (lambda: R("gru", 3, 5, layer_norm=True), "generated"),
    (lambda: R("jordan", 3, 5), "reference"),
    (lambda: R(GatedCell, 3, 5), "generated"),
], ids=lambda v: "" if callable(v) else v)
def test_auto_takes_the_tabled_path_for_a_training_call(make, expected):
    layer = make()
    assert set(paths(layer, X)) == {expected}, str(explain(layer, X))


def test_lengths_send_the_standard_lstm_to_the_compiled_loop():
    layer = rnnkit.LSTM(3, 5)
    assert paths(layer, X) == ["native"]
    assert paths(layer, X, lengths=torch.tensor([6, 2])) == ["fused"]     # torch's packed kernels are slower
    assert paths(layer, X, lengths=torch.tensor([6, 6])) == ["native"]    # all full: no lengths at all


def test_without_a_gradient_or_when_keeping_states_the_reference_loop_runs_uncompiled_cells():
    ln = R("lstm", 3, 5, layer_norm=True)
    with torch.no_grad():
        assert paths(ln, X) == ["reference"]
    assert paths(ln, X, return_all_states=True) == ["reference"]
    assert paths(R("lstm", 3, 5, recurrent_dropout=0.2).eval(), X) == ["native"]   # no mask at evaluation


def test_the_reference_path_takes_the_hand_backward_where_it_is_faster():
    (vanilla,) = explain(R("lstm", 3, 5, variant="vanilla", backend="reference"), X).layers
    (indrnn,) = explain(R("indrnn", 3, 5), X).layers
    (autograd,) = explain(R("lstm", 3, 5, variant="vanilla", bptt="autograd"), X).layers
    assert vanilla.hand_bptt and not indrnn.hand_bptt and not autograd.hand_bptt
    assert (vanilla.path, indrnn.path, autograd.path) == ("reference",) * 3


def test_explain_names_the_path_and_why():
    text = str(explain(R("lstm", 3, 5, variant="vanilla", num_layers=2), X))
    assert text.splitlines()[0] == "cpu, torch.float32, gradient, full-length batch"
    assert text.splitlines()[1].startswith("layer 0: fused: not native (no torch kernel computes LSTMCell(")
    assert len(text.splitlines()) == 3


@pytest.mark.parametrize("make", [
    lambda: R("lstm", 3, 5, variant="vanilla", num_layers=2, bidirectional=True),
    lambda: R("lstm", 3, 5, num_layers=2),
    lambda: R("mingru", 3, 5),
    lambda: R("indrnn", 3, 5, bidirectional=True),
    lambda: R("lstm", 3, 5, layer_norm=True, num_layers=2),
])
def test_the_explained_path_is_the_one_that_runs(make, monkeypatch):
    layer = make()
    ran = []
    real_sequence, real_native = recurrent_module.run_sequence, recurrent_module.run_native
    monkeypatch.setattr(recurrent_module, "run_sequence",
                        lambda *a, **k: ran.append(k["path"]) or real_sequence(*a, **k))
    monkeypatch.setattr(recurrent_module, "run_native", lambda *a, **k: ran.append("native") or real_native(*a, **k))
    layer(X)
    expected = [c.path for c in explain(layer, X).layers for _ in range(1 if c.path == "native" else layer.num_directions)]
    assert ran == expected


def test_a_named_path_that_cannot_run_a_call_says_why():
    x = torch.randn(6, 2, 3)
    with pytest.raises(ValueError, match="backend='fused' cannot run this call: the compiled scan has no zoneout"):
        R("mingru", 3, 5, zoneout=0.1, backend="fused")(x)
    with pytest.raises(ValueError, match="backend='native' cannot run this call: torch's kernels have no "
                                         "recurrent dropout"):
        R("lstm", 3, 5, recurrent_dropout=0.1, backend="native")(x)
    with pytest.raises(ValueError, match="compute in float32/float64, not torch.bfloat16"):
        R("lstm", 3, 5, variant="vanilla", backend="fused", dtype=torch.bfloat16)(x.bfloat16())
    with pytest.raises(ValueError, match="backend='fused' cannot run this layer: no compiled loop computes JordanCell"):
        R("jordan", 3, 5, backend="fused")


@pytest.mark.parametrize("backend", ["native", "fused", "reference"])
def test_every_path_a_standard_lstm_can_take_gives_the_same_result(backend):
    torch.manual_seed(0)
    reference = R("lstm", 3, 5, 2, True, backend="reference", bptt="autograd", dtype=torch.float64)
    layer = R("lstm", 3, 5, 2, True, backend=backend, dtype=torch.float64)
    layer.load_state_dict(reference.state_dict())
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    for lengths in (None, torch.tensor([6, 3])):
        (ours, _), (theirs, _) = layer(x, lengths=lengths), reference(x, lengths=lengths)
        torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=0)


def test_cells_carry_no_engine_policy_and_import_nothing_above_them():
    """Cells are math only: what runs them is engine/dispatch.py's tables; no arrow runs upward."""
    for name in rnnkit.cells.available():
        cls = rnnkit.cells.cell_class(name)
        for attribute in ("native_kind", "hand_bptt_by_default", "mode", "scan"):
            assert not hasattr(cls, attribute), f"{cls.__name__}.{attribute} is engine policy"
    package = Path(rnnkit.__file__).parent
    for path in sorted((package / "cells").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level >= 2:
                raise AssertionError(f"{path.name} imports {'.' * node.level}{node.module}: cells import "
                                     f"nothing above rnnkit/cells")


def test_the_preference_table_lists_only_known_paths():
    call = dispatch.Call("cpu", torch.float32, None, True, True, False, False, False)
    for device in ("cpu", "cuda"):
        for tracing in (False, True):
            c = dispatch.Call(device, torch.float32, None, True, True, False, False, tracing)
            order = dispatch._preference(rnnkit.cells.create("gru", 3, 5), R("gru", 3, 5), c)
            assert set(order) <= set(dispatch.PATHS) and "reference" in order
    assert dispatch.choose(R("gru", 3, 5), rnnkit.cells.create("gru", 3, 5), call).path == "fused"


@pytest.mark.parametrize("name,options,expected", [
    ("lstm", {}, "native"), ("gru", {}, "native"), ("elman", {}, "native"),          # cuDNN where exact
    ("lstm", dict(variant="vanilla"), "generated"), ("gru", dict(variant="original"), "generated"),
    ("indrnn", {}, "generated"), ("jordan", {}, "generated"),                          # Triton elsewhere
    ("mingru", {}, "parallel_scan"),
])
@pytest.mark.parametrize("lengths", [False, True])
def test_on_a_gpu_cudnn_runs_where_exact_and_the_generated_loop_elsewhere(name, options, expected, lengths):
    """The table a CUDA call meets (no GPU here: the Call is built by hand; the generated path itself
    is the same code on the CPU, tests/test_generated.py)."""
    layer = R(name, 3, 5, **options)
    call = dispatch.Call("cuda", torch.float16, torch.float16, True, True, lengths, False, False)
    assert dispatch.choose(layer, layer.cells[0], call).path == expected
