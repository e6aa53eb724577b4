"""rnnkit.RNNCell, LSTMCell and GRUCell are torch.nn's cells: same results, gradients, parameters,
state dicts, call forms and exception types; their rnnkit variants equal rnnkit's reference loop.

torch.nn's cells are the independent reference for the torch-equal configurations (weights copied
from a seeded torch cell, fresh random inputs and states, outputs and the gradients of a
random-weighted sum compared); for rnnkit's extra variants, which torch has not, the reference is
``rnnkit.Recurrent(cell, ..., backend="reference")`` over a sequence, fed step by step to the
drop-in. PyTorch's time_sequence_prediction example (tests/examples/) trains the same with both.

Some checks are re-expressed from PyTorch's test/test_nn.py (commit
74f2fa66feec00335f72813782f4802e80bff4cb: test_RNN_cell, test_RNN_cell_no_broadcasting):
Copyright (c) 2016- Facebook, Inc (Adam Paszke) and contributors. BSD-3-Clause licence:
https://github.com/pytorch/pytorch/blob/main/LICENSE
"""
from __future__ import annotations

import copy
import importlib.util
import io
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck, gradgradcheck
from torch.func import functional_call

import rnnkit

pytestmark = pytest.mark.usefixtures("one_thread")

PAIRS = {"rnn": (rnnkit.RNNCell, nn.RNNCell), "gru": (rnnkit.GRUCell, nn.GRUCell),
         "lstm": (rnnkit.LSTMCell, nn.LSTMCell)}
TORCH_CONFIGS = [("rnn", {}), ("rnn", {"nonlinearity": "relu"}), ("rnn", {"bias": False}),
                 ("gru", {}), ("gru", {"bias": False}), ("lstm", {}), ("lstm", {"bias": False})]
TOLERANCES = {torch.float64: dict(atol=1e-12, rtol=1e-10), torch.float32: dict(atol=1e-5, rtol=1e-5)}
I, H = 3, 5


def config_id(config) -> str:
    kind, kwargs = config
    return kind + "".join(f"-{k}={v}" for k, v in kwargs.items())


def as_tuple(result) -> tuple[torch.Tensor, ...]:
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def pair(kind: str, kwargs: dict, dtype=torch.float64, seed: int = 0):
    """(ours, torch's), torch's initialised from ``seed`` and its state dict loaded into ours."""
    ours_class, torch_class = PAIRS[kind]
    torch.manual_seed(seed)
    theirs = torch_class(I, H, dtype=dtype, **kwargs)
    ours = ours_class(I, H, dtype=dtype, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def random_state(sizes, batch: int | None, dtype, generator) -> tuple[torch.Tensor, ...]:
    """One random tensor per state size, (batch, S), or (S,) when batch is None (unbatched)."""
    return tuple(torch.randn(*(() if batch is None else (batch,)), size, dtype=dtype, generator=generator)
                 for size in sizes)


def state_sizes(cell) -> tuple[int, ...]:
    """The feature size of each state tensor, read from a step from zeros."""
    return tuple(t.shape[-1] for t in as_tuple(cell(torch.zeros(1, cell.input_size, dtype=cell.weight_ih.dtype))))


def hx_for(kind: str, state: tuple[torch.Tensor, ...]):
    return state if kind == "lstm" else state[0]


def run_steps(cell, kind: str, xs: torch.Tensor, state) -> list[torch.Tensor]:
    """Steps of ``cell`` over xs (T, ...) from ``state`` (None for zeros); every step's state tensors."""
    results = []
    for x_t in xs:
        state = as_tuple(cell(x_t, hx_for(kind, state) if state is not None else None))
        results.extend(state)
    return results


def weighted_sum(tensors, generator) -> torch.Tensor:
    return sum((t * torch.randn(t.shape, dtype=t.dtype, generator=generator)).sum() for t in tensors)


def outputs_and_grads(cell, kind, xs, state, seed):
    """Every step's state, and the gradients of one random-weighted sum of them with respect to the
    inputs, the initial state and every parameter (by name)."""
    xs = xs.clone().requires_grad_()
    state = None if state is None else tuple(s.clone().requires_grad_() for s in state)
    results = run_steps(cell, kind, xs, state)
    leaves = [xs, *(state or ()), *cell.parameters()]
    grads = torch.autograd.grad(weighted_sum(results, torch.Generator().manual_seed(seed)), leaves)
    names = ["input"] + [f"hx[{i}]" for i in range(len(state or ()))] + [n for n, _ in cell.named_parameters()]
    return [r.detach() for r in results], dict(zip(names, grads))


def assert_same_run(ours, theirs, kind, xs, state, dtype, seed=1):
    results, grads = outputs_and_grads(ours, kind, xs, state, seed)
    expected, expected_grads = outputs_and_grads(theirs, kind, xs, state, seed)
    assert len(results) == len(expected)
    for got, want in zip(results, expected):
        assert got.shape == want.shape and got.dtype == want.dtype
        torch.testing.assert_close(got, want, **TOLERANCES[dtype])
    assert grads.keys() == expected_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], expected_grads[name], **TOLERANCES[dtype], msg=name)


# ----- equal to torch.nn's cells ---------------------------------------------------------------
@pytest.mark.parametrize("config", TORCH_CONFIGS, ids=config_id)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("batch", [4, None, 0], ids=["batched", "unbatched", "empty-batch"])
@pytest.mark.parametrize("given_hx", [True, False], ids=["hx", "hx=None"])
def test_equals_torch_over_three_steps(config, dtype, batch, given_hx):
    kind, kwargs = config
    ours, theirs = pair(kind, kwargs, dtype)
    generator = torch.Generator().manual_seed(7)
    xs = torch.randn(3, *(() if batch is None else (batch,)), I, dtype=dtype, generator=generator)
    state = random_state((H,) * (2 if kind == "lstm" else 1), batch, dtype, generator) if given_hx else None
    assert_same_run(ours, theirs, kind, xs, state, dtype)


@pytest.mark.parametrize("config", TORCH_CONFIGS, ids=config_id)
def test_state_dict_loads_both_ways(config):
    kind, kwargs = config
    ours_class, torch_class = PAIRS[kind]
    torch.manual_seed(3)
    ours = ours_class(I, H, **kwargs)                      # ours initialised, torch's loads it
    theirs = torch_class(I, H, **kwargs)
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in theirs.state_dict().items()}
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, I)
    for got, want in zip(as_tuple(ours(x)), as_tuple(theirs(x))):
        torch.testing.assert_close(got, want)
    # and back: torch's own initialisation into ours
    fresh = torch_class(I, H, **kwargs)
    ours.load_state_dict(fresh.state_dict())
    for got, want in zip(as_tuple(ours(x)), as_tuple(fresh(x))):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("config", TORCH_CONFIGS, ids=config_id)
def test_parameters_attributes_initialisation_and_repr_are_torchs(config):
    kind, kwargs = config
    ours_class, torch_class = PAIRS[kind]
    hidden = 64
    ours, theirs = ours_class(I, hidden, **kwargs), torch_class(I, hidden, **kwargs)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, p.shape) for n, p in theirs.named_parameters()]
    bound = 1 / hidden ** 0.5
    for name, p in ours.named_parameters():
        assert p.abs().max() <= bound, name
        assert p.abs().max() > 0.9 * bound and p.std() > 0.8 * bound / 3 ** 0.5, name   # uniform, not constant
    for attribute in ("input_size", "hidden_size", "bias", "bias_ih", "bias_hh", "nonlinearity"):
        if hasattr(theirs, attribute):
            assert (getattr(ours, attribute) is None) == (getattr(theirs, attribute) is None), attribute
            if not isinstance(getattr(theirs, attribute), torch.Tensor):
                assert getattr(ours, attribute) == getattr(theirs, attribute), attribute
    assert repr(ours) == repr(theirs)
    assert list(ours.children()) == []                     # the rnnkit cell inside is no submodule
    typed = ours_class(I, H, dtype=torch.float64, **kwargs)
    assert all(p.dtype == torch.float64 for p in typed.parameters())


def test_steps_are_rnnkits_equations_not_torchs_cell_functions(monkeypatch):
    """With torch's fused cell functions replaced by ones that raise, torch's cells fail and ours run."""
    def refuse(*args, **kwargs):
        raise AssertionError("torch's _VF cell function was called")
    for name in ("rnn_tanh_cell", "rnn_relu_cell", "gru_cell", "lstm_cell"):
        monkeypatch.setattr(torch._VF, name, refuse)
    for kind, kwargs in TORCH_CONFIGS:
        ours, theirs = pair(kind, kwargs)
        x = torch.randn(2, I, dtype=torch.float64)
        with pytest.raises(AssertionError, match="_VF"):
            theirs(x)
        assert as_tuple(ours(x))[0].shape == (2, H)


@pytest.mark.parametrize("config", TORCH_CONFIGS + [("lstm", {"variant": "vanilla"}), ("lstm", {"variant": "fgr"}),
                                                    ("gru", {"variant": "original"}),
                                                    ("rnn", {"nonlinearity": "sigmoid"})], ids=config_id)
def test_gradcheck_and_gradgradcheck(config):
    """float64 finite differences against autograd, first and second order, with respect to the
    input, every state tensor and every parameter (single steps do not go through the engine)."""
    kind, kwargs = config
    cell = PAIRS[kind][0](2, 3, dtype=torch.float64, **kwargs)
    names = [n for n, _ in cell.named_parameters()]
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, dtype=torch.float64, generator=generator)
    state = random_state(state_sizes(cell), 2, torch.float64, generator)
    if kind == "lstm" and kwargs.get("variant") == "fgr":
        state = state[:2] + (torch.rand(2, 9, dtype=torch.float64, generator=generator),)   # gates in (0, 1)

    def step(x, *rest):
        hx, weights = rest[:len(state)], rest[len(state):]
        return as_tuple(functional_call(cell, dict(zip(names, weights)), (x, hx_for(kind, hx))))

    inputs = tuple(t.detach().clone().requires_grad_() for t in (x, *state, *cell.parameters()))
    assert gradcheck(step, inputs)
    assert gradgradcheck(step, inputs)


# ----- errors: torch's exception types ---------------------------------------------------------
def _hx(kind, *shape, dtype=torch.float32):
    return (torch.randn(shape, dtype=dtype), torch.randn(shape, dtype=dtype)) if kind == "lstm" \
        else torch.randn(shape, dtype=dtype)


# (name, kinds, make (input, hx) from kind, what our message says: a regex, HX standing for hx or hx[0]);
# torch's cells decide the expected exception type
WRONG_CALLS = [
    ("input 3-D", "rnn gru lstm", lambda k: (torch.randn(1, 2, I), None), r"Expected input to be 1D .* got 3D"),
    ("input 0-D", "rnn gru lstm", lambda k: (torch.tensor(1.0), None), r"Expected input to be 1D .* got 0D"),
    ("input size", "rnn gru lstm", lambda k: (torch.randn(2, I + 1), None),
     r"inconsistent input_size: got 4 expected 3"),
    ("unbatched input size", "rnn gru lstm", lambda k: (torch.randn(I + 1), None),
     r"inconsistent input_size: got 4 expected 3"),
    ("hx 3-D", "rnn gru lstm", lambda k: (torch.randn(2, I), _hx(k, 1, 2, H)), r"Expected HX to be 1D or 2D, got 3D"),
    ("hx batch", "rnn gru lstm", lambda k: (torch.randn(3, I), _hx(k, 2, H)),
     r"Input batch size 3 doesn't match HX batch size 2"),
    ("hx batch 1 is not broadcast", "rnn gru lstm", lambda k: (torch.randn(3, I), _hx(k, 1, H)),
     r"Input batch size 3 doesn't match HX batch size 1"),
    ("hx size", "rnn gru lstm", lambda k: (torch.randn(2, I), _hx(k, 2, H + 1)),
     r"HX has inconsistent size: got 6, expected 5"),
    ("hx size 1 is not broadcast", "rnn gru lstm", lambda k: (torch.randn(2, I), _hx(k, 2, 1)),
     r"HX has inconsistent size: got 1, expected 5"),
    ("hx 1-D for batched input", "rnn gru lstm", lambda k: (torch.randn(2, I), _hx(k, H)),
     r"HX must have shape \(batch=2, 5\) for a batched input, got \(5,\)"),
    ("hx 2-D for unbatched input", "rnn gru lstm", lambda k: (torch.randn(I), _hx(k, 1, H)),
     r"HX must have shape \(5,\) for an unbatched input, got \(1, 5\)"),
    ("unbatched hx size", "rnn gru lstm", lambda k: (torch.randn(I), _hx(k, H + 1)),
     r"HX has inconsistent size: got 6, expected 5"),
    ("input dtype", "rnn gru lstm", lambda k: (torch.randn(2, I, dtype=torch.float64), None), r"(?i)double"),
    ("hx dtype", "rnn gru lstm", lambda k: (torch.randn(2, I), _hx(k, 2, H, dtype=torch.float64)), r"(?i)double"),
    ("c batch 1 is not broadcast", "lstm", lambda k: (torch.randn(3, I), (torch.randn(3, H), torch.randn(1, H))),
     r"Input batch size 3 doesn't match hx\[1\] batch size 1"),
    ("c size", "lstm", lambda k: (torch.randn(2, I), (torch.randn(2, H), torch.randn(2, H + 1))),
     r"hx\[1\] has inconsistent size: got 6, expected 5"),
    ("c 3-D", "lstm", lambda k: (torch.randn(2, I), (torch.randn(2, H), torch.randn(1, 2, H))),
     r"Expected hx\[1\] to be 1D or 2D, got 3D"),
    ("hx a tensor, not a pair", "lstm", lambda k: (torch.randn(2, I), torch.randn(2, H)),
     r"hx must be a tuple \(h_0, c_0\) of Tensors, got Tensor"),
    ("hx of one tensor", "lstm", lambda k: (torch.randn(2, I), (torch.randn(2, H),)), r"2 state tensors, got 1"),
    ("hx of three tensors", "lstm", lambda k: (torch.randn(2, I), (torch.randn(2, H),) * 3), r"2 state tensors, got 3"),
]


@pytest.mark.parametrize("kind, case", [(kind, case) for case in WRONG_CALLS for kind in case[1].split()],
                         ids=[f"{kind}-{case[0]}" for case in WRONG_CALLS for kind in case[1].split()])
def test_wrong_calls_raise_torchs_exception_type(kind, case):
    name, _, make, message = case
    ours, theirs = pair(kind, {}, torch.float32)
    torch.manual_seed(0)
    input, hx = make(kind)
    with pytest.raises(Exception) as torch_error:
        theirs(input, hx)
    with pytest.raises(torch_error.type, match=message.replace("HX", r"hx\[0\]" if kind == "lstm" else "hx")):
        ours(input, hx)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("arguments", [(3.0, 4), (3, 4.0), (3, "4")], ids=["float input_size", "float hidden_size",
                                                                          "str hidden_size"])
def test_constructor_argument_types_raise_torchs_type(kind, arguments):
    ours_class, torch_class = PAIRS[kind]
    with pytest.raises(TypeError):
        torch_class(*arguments)
    with pytest.raises(TypeError, match="must be an int"):
        ours_class(*arguments)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_stricter_than_torch_where_torch_accepts_nonsense(kind):
    """Differences from torch (docs/cells.md): torch accepts these or fails later with another type."""
    ours_class, _ = PAIRS[kind]
    with pytest.raises(TypeError, match="bias must be a bool"):
        ours_class(3, 4, bias="yes")                # torch: accepted (truthy)
    with pytest.raises(TypeError, match="input_size must be an int"):
        ours_class(True, 4)                         # torch: input_size True
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        ours_class(3, 0)                            # torch: allowed, an empty state
    with pytest.raises(ValueError, match="input_size must be a positive int"):
        ours_class(-1, 4)                           # torch: RuntimeError from torch.empty
    with pytest.raises(TypeError, match="input must be a Tensor"):
        ours_class(3, 4)([[1.0, 2.0, 3.0]])         # torch: AttributeError ('list' has no 'dim')


def test_unknown_nonlinearity_and_variant_are_refused_at_construction():
    with pytest.raises(ValueError, match="nonlinearity must be one of 'tanh', 'relu', 'sigmoid'"):
        rnnkit.RNNCell(3, 4, nonlinearity="relu6")  # torch: RuntimeError at the first call
    with pytest.raises(ValueError, match="variant must be one of"):
        rnnkit.LSTMCell(3, 4, variant="peephole")
    with pytest.raises(ValueError, match="variant must be one of 'standard', 'original'"):
        rnnkit.GRUCell(3, 4, variant="vanilla")
    with pytest.raises(TypeError):
        rnnkit.LSTMCell(3, 4, True, None, None, "vanilla")   # the extras are keyword-only


# ----- whole modules: save/load, compile ---------------------------------------------------------
class _Stack(nn.Module):
    """A model holding drop-in cells (one of them a variant whose cell holds a lambda)."""

    def __init__(self):
        super().__init__()
        self.rnn = rnnkit.RNNCell(I, H, nonlinearity="relu")
        self.gru = rnnkit.GRUCell(H, H, variant="original")
        self.lstm = rnnkit.LSTMCell(H, H, variant="noaf")

    def forward(self, x):
        return self.lstm(self.gru(self.rnn(x)))


def test_torch_save_and_load_of_a_module_holding_the_cells():
    model = _Stack()
    x = torch.randn(2, I)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    for copied in (loaded, copy.deepcopy(model)):
        assert repr(copied) == repr(model)
        for got, want in zip(copied(x), model(x)):
            torch.testing.assert_close(got, want, atol=0, rtol=0)
    assert loaded.state_dict().keys() == model.state_dict().keys()


def test_torch_compile_of_a_loop_over_steps():
    """The whole loop is one graph (fullgraph=True) and computes what eager does, gradients too.
    aot_eager: dynamo's capture and AOT autograd's, what the cells' code meets; Inductor's code
    generation for the same loop took 36 s with a cold cache on this 2-core machine."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    lstm, gru = rnnkit.LSTMCell(I, H), rnnkit.GRUCell(H, H)

    def loop(xs):                                   # xs (T, B, I) -> (T, B, H)
        h = c = torch.zeros(xs.shape[1], H)
        g = None
        outputs = []
        for x_t in xs:
            h, c = lstm(x_t, (h, c))
            g = gru(h, g)
            outputs.append(g)
        return torch.stack(outputs)

    xs = torch.randn(4, 2, I)
    compiled = torch.compile(loop, backend="aot_eager", fullgraph=True)
    got = compiled(xs)
    torch.testing.assert_close(got, loop(xs))
    weights = list(lstm.parameters()) + list(gru.parameters())
    grads = torch.autograd.grad(compiled(xs).sum(), weights)
    expected = torch.autograd.grad(loop(xs).sum(), weights)
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e)


# ----- rnnkit's variants against rnnkit's reference loop -----------------------------------------
VARIANT_CONFIGS = ([("lstm", {"variant": v}) for v in rnnkit.cells.LSTM_VARIANTS if v != "standard"]
                   + [("lstm", {"proj_size": 2}), ("lstm", {"layer_norm": True}),
                      ("lstm", {"variant": "vanilla", "bias": False}),
                      ("gru", {"variant": "original"}), ("gru", {"layer_norm": True}),
                      ("gru", {"variant": "original", "bias": False}), ("rnn", {"nonlinearity": "sigmoid"})])
CELL_NAMES = {"rnn": "elman", "gru": "gru", "lstm": "lstm"}


@pytest.mark.parametrize("config", VARIANT_CONFIGS, ids=config_id)
def test_variants_equal_the_reference_loop_step_by_step(config):
    kind, kwargs = config
    torch.manual_seed(0)
    ours = PAIRS[kind][0](I, H, dtype=torch.float64, **kwargs)
    with torch.no_grad():                           # layer norm's gains and shifts off their start
        for name, p in ours.named_parameters():
            if name.startswith("ln_"):
                p.add_(0.3 * torch.randn_like(p))
    reference = rnnkit.Recurrent(CELL_NAMES[kind], I, H, backend="reference", dtype=torch.float64, **kwargs)
    reference.cells[0].load_state_dict(ours.state_dict())
    generator = torch.Generator().manual_seed(5)
    T, B = 4, 3
    xs = torch.randn(T, B, I, dtype=torch.float64, generator=generator)
    state = random_state(state_sizes(ours), B, torch.float64, generator)

    leaves = [xs.clone().requires_grad_(), *(s.clone().requires_grad_() for s in state)]
    steps, final = [], tuple(leaves[1:])
    for x_t in leaves[0]:
        final = as_tuple(ours(x_t, hx_for(kind, final)))
        steps.append(final[0])
    outputs = torch.stack(steps)                                          # (T, B, O)
    ref_leaves = [t.detach().clone().requires_grad_() for t in leaves]
    ref_outputs, ref_final = reference(ref_leaves[0], tuple(s.unsqueeze(0) for s in ref_leaves[1:]))
    ref_final = tuple(s.squeeze(0) for s in as_tuple(ref_final))
    torch.testing.assert_close(outputs, ref_outputs, **TOLERANCES[torch.float64])
    assert len(final) == len(ref_final)
    for got, want in zip(final, ref_final):
        torch.testing.assert_close(got, want, **TOLERANCES[torch.float64])

    weights = torch.Generator().manual_seed(9)
    loss = weighted_sum([outputs, *final], weights)
    weights = torch.Generator().manual_seed(9)
    ref_loss = weighted_sum([ref_outputs, *ref_final], weights)
    grads = torch.autograd.grad(loss, leaves + list(ours.parameters()))
    ref_grads = torch.autograd.grad(ref_loss, ref_leaves + list(reference.cells[0].parameters()))
    names = ["input"] + [f"hx[{i}]" for i in range(len(state))] + [n for n, _ in ours.named_parameters()]
    assert names[len(leaves):] == [n for n, _ in reference.cells[0].named_parameters()]
    for name, got, want in zip(names, grads, ref_grads):
        torch.testing.assert_close(got, want, **TOLERANCES[torch.float64], msg=name)


def test_variant_parameters_state_and_repr():
    cell = rnnkit.LSTMCell(3, 4, variant="vanilla", proj_size=2)
    assert [n for n, _ in cell.named_parameters()] == [
        "weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "peephole_i", "peephole_f", "peephole_o"]
    h, c = cell(torch.randn(5, 3))
    assert h.shape == (5, 2) and c.shape == (5, 4)
    assert repr(cell) == "LSTMCell(3, 4, variant='vanilla', proj_size=2)"
    fgr = rnnkit.LSTMCell(3, 4, variant="fgr")
    assert [t.shape for t in fgr(torch.randn(3))] == [(4,), (4,), (12,)]
    with pytest.raises(RuntimeError, match=r"3 state tensors, got 2"):
        fgr(torch.randn(2, 3), (torch.zeros(2, 4), torch.zeros(2, 4)))
    assert repr(rnnkit.GRUCell(3, 4, bias=False, variant="original")) == "GRUCell(3, 4, bias=False, variant='original')"
    assert repr(rnnkit.RNNCell(3, 4, nonlinearity="sigmoid")) == "RNNCell(3, 4, nonlinearity=sigmoid)"


# ----- PyTorch's time_sequence_prediction example ------------------------------------------------
def _example():
    path = Path(__file__).parent / "examples" / "time_sequence_prediction.py"
    spec = importlib.util.spec_from_file_location("time_sequence_prediction", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_time_sequence_prediction_example_trains_the_same_with_rnnkit_cells():
    example = _example()
    theirs = example.run(nn.LSTMCell, steps=2)
    ours = example.run(rnnkit.LSTMCell, steps=2)
    assert len(ours["train"]) == len(theirs["train"]) > 2             # LBFGS's closure calls
    torch.testing.assert_close(torch.tensor(ours["train"]), torch.tensor(theirs["train"]), atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(torch.tensor(ours["test"]), torch.tensor(theirs["test"]), atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(ours["prediction"], theirs["prediction"], atol=1e-9, rtol=1e-7)
    assert ours["prediction"].dtype == torch.float64
    assert ours["train"][-1] < ours["train"][0] / 10                   # it learns
