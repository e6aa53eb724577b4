"""Second-order gradients on every path (rnnkit.engine.higher_order): gradgradcheck in float64 for every
cell, each path that computes it, with lengths and PackedSequence; and the wiring's edge cases."""
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit
from rnnkit.cells import LSTM_VARIANTS
from rnnkit.engine.dispatch import PATHS

T, B, I, H = 4, 2, 3, 3
CELLS = ([("lstm", {"variant": v}) for v in LSTM_VARIANTS]
         + [("lstm", {"proj_size": 2}), ("lstm", {"layer_norm": True}), ("gru", {}),
            ("gru", {"variant": "original"}), ("elman", {}), ("elman", {"nonlinearity": "relu"}),
            ("jordan", {}), ("residual", {}), ("indrnn", {}), ("mingru", {}), ("minlstm", {}),
            ("esn", {"seed": 0})])


# The generated path compiles a graph per cell configuration (seconds each): its wiring is checked on
# cells of each kind of state and gating (marked slow: the full suite runs them, the fast local loop
# -m "not slow" leaves them out), and on a user's cell (test_a_users_cell_on_the_generated_path)
GENERATED_SAMPLE = [("lstm", {"variant": "standard"}), ("lstm", {"layer_norm": True}), ("gru", {}), ("jordan", {}),
                    ("mingru", {})]


def _cases(cells):
    """(cell, options, backend, bptt) for every path that computes each cell, as the dispatcher names
    them; the reference path both with autograd and with the cell's hand-derived BPTT."""
    for name, options in cells:
        for backend in PATHS:
            if backend == "generated" and (name, options) not in GENERATED_SAMPLE:
                continue
            try:
                layer = rnnkit.Recurrent(name, I, H, backend=backend, **options)
            except ValueError:                       # this path never computes this cell
                continue
            bptts = ("autograd", "hand") if backend == "reference" and layer.cells[0].supports_hand_bptt() \
                else ("auto",)
            for bptt in bptts:
                label = "-".join([name, *(f"{k}={v}" for k, v in options.items()), backend, bptt])
                yield pytest.param(name, options, backend, bptt, id=label,
                                   marks=pytest.mark.slow if backend == "generated" else ())


CASES = list(_cases(CELLS))
# with lengths: every cell, the LSTM in the variants whose compiled loop differs in what it saves
LENGTH_CASES = list(_cases([(n, o) for n, o in CELLS
                           if n != "lstm" or o.get("variant") in (None, "standard", "vanilla", "cifg", "fgr")]))


def make(name, options, backend, bptt, **layer_options):
    torch.manual_seed(0)
    return rnnkit.Recurrent(name, I, H, backend=backend, bptt=bptt, dtype=torch.float64, **options,
                            **layer_options)


@pytest.fixture(autouse=True)
def _generated_without_inductor(generated_path_without_inductor):
    """The generated path's graphs run under aot_eager: what is checked is the wiring of its backward,
    not Inductor's code (tests/test_generated.py covers that)."""


def test_every_path_is_covered():
    paths = {case.values[2] for case in CASES}
    assert paths == set(PATHS), f"no second-order check for {set(PATHS) - paths}"


@pytest.mark.parametrize("name, options, backend, bptt", CASES)
def test_gradgradcheck_input_state_and_parameters(name, options, backend, bptt):
    layer = make(name, options, backend, bptt)
    names = [n for n, p in layer.named_parameters() if p.requires_grad]
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    state0 = tuple(torch.randn(1, B, size, dtype=torch.float64, requires_grad=True) for size in layer.state_sizes)

    def outputs(x, *tensors):
        state, params = tensors[:len(state0)], dict(zip(names, tensors[len(state0):]))
        y, final = functional_call(layer, params, (x, state if len(state) > 1 else state[0]))
        return (y, *(final if isinstance(final, tuple) else (final,)))

    inputs = (x, *state0, *(dict(layer.named_parameters())[n].detach().clone().requires_grad_() for n in names))
    assert gradgradcheck(outputs, inputs, eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize("packed", [False, True], ids=["lengths", "packed"])
@pytest.mark.parametrize("name, options, backend, bptt", LENGTH_CASES)
def test_gradgradcheck_with_lengths(name, options, backend, bptt, packed):
    layer = make(name, options, backend, bptt, bidirectional=True)
    lengths = torch.tensor([T, 2])
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)

    def outputs(x):
        if packed:
            y, final = layer(pack_padded_sequence(x, lengths, enforce_sorted=False))
            y = pad_packed_sequence(y)[0]
        else:
            y, final = layer(x, lengths=lengths)
        return (y, *(final if isinstance(final, tuple) else (final,)))

    assert gradgradcheck(outputs, (x,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_a_users_cell_on_the_generated_path():
    """A cell of one's own (tests/user_cells.py) runs on the generated path with a compiled backward;
    its second derivative goes through its own step, as the built-in cells' do."""
    layer = rnnkit.Recurrent("tests.user_cells:TinyCell", I, H, dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    assert layer.explain(x).layers[0].path == "generated"
    assert gradgradcheck(lambda x: layer(x, lengths=torch.tensor([T, 2]))[0], (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", ["lstm", "gru"])
@pytest.mark.parametrize("backend", ["fused", pytest.param("generated", marks=pytest.mark.slow), "reference"])
def test_zoneout_draws_the_same_masks_for_the_second_derivative(name, backend):
    """In training zoneout draws random masks; the second derivative recomputes the forward, which
    must replay the same draws (the check fails if it draws new ones)."""
    layer = make(name, {}, backend, "auto", zoneout=0.3).train()
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)

    def outputs(x):
        torch.manual_seed(1)
        return layer(x)[0]

    assert gradcheck(outputs, (x,), eps=1e-6, atol=1e-5)
    assert gradgradcheck(outputs, (x,), eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize("backend", ["fused", "generated", "reference", "native"])
def test_a_gradient_penalty_matches_the_autograd_reference(backend):
    """The use the issue names: a penalty on ‖∂L/∂x‖² trained through, equal on every path."""
    def penalty_grads(backend, bptt):
        layer = make("lstm", {}, backend, bptt, num_layers=2)
        x = torch.randn(T, B, I, dtype=torch.float64, generator=torch.Generator().manual_seed(2),
                        requires_grad=True)
        loss = layer(x)[0].pow(2).sum()
        (grad_x,) = torch.autograd.grad(loss, x, create_graph=True)
        grad_x.pow(2).sum().backward()
        return [p.grad for p in layer.parameters()]

    for fast, reference in zip(penalty_grads(backend, "auto"), penalty_grads("reference", "autograd")):
        torch.testing.assert_close(fast, reference)


@pytest.mark.parametrize("backend", ["fused", "generated"])
def test_a_retained_graph_gives_the_same_gradient_twice(backend):
    layer = make("gru", {}, backend, "auto")
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    loss = layer(x)[0].sum()
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    loss.backward()
    torch.testing.assert_close(x.grad, 2 * first)


def test_a_freed_graph_still_refuses_a_second_backward():
    layer = make("lstm", {}, "fused", "auto")
    loss = layer(torch.randn(T, B, I, dtype=torch.float64, requires_grad=True))[0].sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


def test_third_order_gradients_say_they_are_not_supported():
    layer = make("lstm", {}, "fused", "auto")
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(layer(x)[0].sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|marked with @once_differentiable"):
        gg.sum().backward()


def test_the_hand_bptt_refuses_a_direct_second_derivative():
    """Used outside the engine's wrapper, the hand backward raises instead of returning a wrong
    second derivative (it used to: its backward's ops were not a function of the forward's inputs)."""
    from rnnkit.engine.bptt import run_hand_bptt
    cell = rnnkit.cells.create("elman", I, H, dtype=torch.float64)
    p = cell.params()
    u = torch.randn(T, B, H, dtype=torch.float64, requires_grad=True)
    outputs, _ = run_hand_bptt(cell, p, u, (torch.zeros(B, H, dtype=torch.float64),), None)
    (g,) = torch.autograd.grad(outputs.sum(), u, create_graph=True)
    with pytest.raises(RuntimeError):
        g.pow(2).sum().backward()
