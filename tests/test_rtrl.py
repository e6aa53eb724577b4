"""Real-time recurrent learning (rnnkit.learning.rtrl) against BPTT by autograd in float64, and UORO."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rnnkit import Recurrent, cells
from rnnkit.learning import RTRL, UORO, rtrl_gradient, train_online

T, B, I, H, O = 8, 2, 3, 4, 2
DTYPE = torch.float64
CASES = [("elman", {"nonlinearity": "tanh"}), ("lstm", {"variant": "standard"}),
         ("lstm", {"variant": "vanilla"}), ("gru", {"variant": "standard"})]
IDS = [f"{name}-{next(iter(options.values()))}" for name, options in CASES]


def make_model(name: str, options: dict, seed: int = 0):
    """A one-layer reference-loop Recurrent (its gradient by autograd) and a linear readout."""
    torch.manual_seed(seed)
    layer = Recurrent(name, I, H, backend="reference", bptt="autograd", dtype=DTYPE, **options)
    readout = nn.Linear(layer.output_size, O, dtype=DTYPE)
    return layer, readout


def make_sequence(length: int = T, batch: int = B, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(length, batch, I, generator=generator, dtype=DTYPE)
    y = torch.randn(length, batch, O, generator=generator, dtype=DTYPE)
    return x, y


def bptt_gradient(layer, readout, x, y) -> dict[str, torch.Tensor]:
    """d(Σ_t mse(readout(h_t), y_t)) by autograd through the whole sequence, named as RTRL names it."""
    output, _ = layer(x)                                                        # (T, B, H)
    loss = sum(F.mse_loss(readout(output[t]), y[t]) for t in range(len(x)))
    named = {**dict(layer.cells[0].named_parameters()),
             **{f"readout.{n}": p for n, p in readout.named_parameters()}}
    grads = torch.autograd.grad(loss, list(named.values()))
    return dict(zip(named, grads))


def assert_same_gradients(actual: dict, expected: dict, tol: float = 1e-8) -> None:
    assert sorted(actual) == sorted(expected)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=tol, atol=tol, msg=name)


# ----- exactness ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,options", CASES, ids=IDS)
def test_rtrl_gradient_over_a_sequence_equals_bptt(name, options):
    layer, readout = make_model(name, options)
    x, y = make_sequence()
    expected = bptt_gradient(layer, readout, x, y)
    actual = rtrl_gradient(layer.cells[0], x, F.mse_loss, y, readout=readout)
    assert_same_gradients(actual, expected)
    assert all(p.grad is None for p in layer.parameters())        # rtrl_gradient leaves .grad alone


@pytest.mark.parametrize("name,options", CASES, ids=IDS)
def test_gradient_online_after_step_t_is_bptt_gradient_of_the_losses_up_to_t(name, options):
    layer, readout = make_model(name, options)
    x, y = make_sequence()
    rtrl = RTRL(layer.cells[0], readout)
    rtrl.reset(B)
    named = {**dict(layer.cells[0].named_parameters()),
             **{f"readout.{n}": p for n, p in readout.named_parameters()}}
    for t in range(T):
        _, loss = rtrl.step(x[t], y[t], F.mse_loss)
        online = {n: p.grad.clone() for n, p in named.items()}
        assert_same_gradients(online, bptt_gradient(layer, readout, x[:t + 1], y[:t + 1]))
        torch.testing.assert_close(loss, F.mse_loss(readout(layer(x[:t + 1])[0][-1]), y[t]))


VARIANTS = [(name, {}) for name in cells.available() if name != "esn"] + [
    ("elman", {"nonlinearity": "relu"}), ("lstm", {"variant": "fgr"}), ("lstm", {"variant": "cifg"}),
    ("lstm", {"proj_size": 2}), ("lstm", {"layer_norm": True}), ("gru", {"variant": "original"})]


@pytest.mark.parametrize("name,options", VARIANTS,
                         ids=[name + "".join(f"-{k}={v}" for k, v in o.items()) for name, o in VARIANTS])
def test_every_registered_cell_matches_autograd_through_its_own_step_loop(name, options):
    torch.manual_seed(0)
    cell = cells.create(name, I, H, dtype=DTYPE, **options)
    readout = nn.Linear(cell.output_size, O, dtype=DTYPE)
    x, y = make_sequence(length=5)
    p = cell.params()
    u = cell.project_input(p, x)                                                # (T, B, G)
    state, loss = cell.initial_state(B, dtype=DTYPE), 0.0
    for t in range(len(x)):
        y_t, state = cell.step(p, u[t], state)
        loss = loss + F.mse_loss(readout(y_t), y[t])
    trained = {n: t for n, t in p.items() if n not in cell.fixed_parameters}
    expected = dict(zip(trained, torch.autograd.grad(loss, list(trained.values()))))
    actual = rtrl_gradient(cell, x, F.mse_loss, y, readout=readout)
    assert_same_gradients({n: actual[n] for n in trained}, expected)


def test_initial_state_is_used_and_the_gradient_still_matches_bptt():
    layer, readout = make_model("lstm", {})
    x, y = make_sequence()
    generator = torch.Generator().manual_seed(5)
    h0, c0 = (torch.randn(1, B, H, generator=generator, dtype=DTYPE) for _ in range(2))
    output, _ = layer(x, (h0, c0))
    loss = sum(F.mse_loss(readout(output[t]), y[t]) for t in range(T))
    expected = torch.autograd.grad(loss, [layer.cells[0].weight_hh])[0]
    actual = rtrl_gradient(layer.cells[0], x, F.mse_loss, y, readout=readout, state=(h0[0], c0[0]))
    torch.testing.assert_close(actual["weight_hh"], expected, rtol=1e-8, atol=1e-8)


def test_sensitivity_is_the_jacobian_of_the_state_with_respect_to_the_parameters():
    """M_T = ds_T/dθ, checked column by column against autograd's Jacobian of the final state."""
    torch.manual_seed(0)
    cell = cells.create("gru", I, H, dtype=DTYPE)
    x, _ = make_sequence(length=4, batch=1)
    rtrl = RTRL(cell)
    rtrl.reset(1)
    for t in range(len(x)):
        rtrl.step(x[t])
    theta = rtrl.layout.flatten(cell.params())

    def final_state(theta_):
        p = rtrl.layout.unflatten(theta_)
        u = cell.project_input(p, x)
        state = cell.initial_state(1, dtype=DTYPE)
        for t in range(len(x)):
            _, state = cell.step(p, u[t], state)
        return state[0][0]                                                      # (H,)
    expected = torch.autograd.functional.jacobian(final_state, theta)           # (H, P)
    torch.testing.assert_close(rtrl.sensitivity[0], expected, rtol=1e-10, atol=1e-12)


# ----- memory -------------------------------------------------------------------------------------
def held_tensors(obj) -> dict[str, torch.Tensor]:
    return {k: v for k, v in vars(obj).items() if isinstance(v, torch.Tensor)}


@pytest.mark.parametrize("learner", [RTRL, UORO])
def test_memory_is_independent_of_the_sequence_length_and_no_graph_is_kept(learner):
    shapes = {}
    for length in (2, 12):
        layer, readout = make_model("lstm", {})
        x, y = make_sequence(length=length)
        rtrl = learner(layer.cells[0], readout)
        rtrl.reset(B)
        for t in range(length):
            rtrl.step(x[t], y[t], F.mse_loss)
            for name, tensor in held_tensors(rtrl).items():
                assert not tensor.requires_grad and tensor.grad_fn is None, name
        shapes[length] = {k: tuple(v.shape) for k, v in held_tensors(rtrl).items()}
    assert shapes[2] == shapes[12]
    S, P = 2 * H, sum(p.numel() for p in layer.cells[0].parameters())
    if learner is RTRL:
        assert shapes[12] == {"state": (B, S), "sensitivity": (B, S, P)}
    else:   # UORO keeps a vector pair per sequence, not the S × P matrix
        assert shapes[12] == {"state": (B, S), "state_tilde": (B, S), "theta_tilde": (B, P)}


def test_step_without_a_loss_advances_the_state_as_the_cell_does_and_leaves_grad_alone():
    torch.manual_seed(0)
    cell = cells.create("lstm", I, H, dtype=DTYPE)
    x, _ = make_sequence()
    rtrl = RTRL(cell)
    rtrl.reset(B)
    p, state = cell.params(), cell.initial_state(B, dtype=DTYPE)
    u = cell.project_input(p, x)
    for t in range(T):
        output, loss = rtrl.step(x[t])
        y_t, state = cell.step(p, u[t], state)
        assert loss is None
        torch.testing.assert_close(output, y_t.detach())
    torch.testing.assert_close(rtrl.state, torch.cat(state, -1).detach())
    assert all(q.grad is None for q in cell.parameters())


# ----- online training ----------------------------------------------------------------------------
def recall_task(length: int, generator):
    """Inputs x_t ~ N(0, 1), targets y_t = x_{t−1} (y_1 = 0): the network must remember one step."""
    x = torch.randn(length, 4, 1, generator=generator, dtype=DTYPE)
    y = torch.cat([torch.zeros_like(x[:1]), x[:-1]])
    return x, y


def evaluation_loss(cell, readout, x, y) -> float:
    rtrl = RTRL(cell, readout)
    rtrl.reset(x.shape[1])
    outputs = torch.stack([rtrl.step(x_t)[0] for x_t in x])                  # (T, B, 1)
    return float(F.mse_loss(outputs[1:], y[1:]))


def test_online_training_learns_to_recall_the_previous_input():
    torch.manual_seed(0)
    cell = cells.create("elman", 1, 8, dtype=DTYPE)
    readout = nn.Linear(8, 1, dtype=DTYPE)
    generator = torch.Generator().manual_seed(0)
    x, y = recall_task(300, generator)
    x_test, y_test = recall_task(50, generator)
    before = evaluation_loss(cell, readout, x_test, y_test)
    optimizer = torch.optim.Adam([*cell.parameters(), *readout.parameters()], lr=0.03)
    losses = train_online(cell, readout, x, y, optimizer, F.mse_loss)
    after = evaluation_loss(cell, readout, x_test, y_test)
    assert losses.shape == (300,)
    assert before > 0.5                      # predicting nothing costs Var(x) = 1
    assert after < 0.2 * before
    assert losses[-50:].mean() < 0.2 * losses[:50].mean()


# ----- UORO ---------------------------------------------------------------------------------------
def truncated_gradient(cell, readout, x, y) -> dict[str, torch.Tensor]:
    """Σ_t ∂ℓ_t/∂θ with s_{t−1} held fixed (backpropagation through one step only)."""
    p = cell.params()
    state, total = cell.initial_state(x.shape[1], dtype=DTYPE), {}
    for t in range(len(x)):
        y_t, new_state = cell.step(p, cell.project_input(p, x[t:t + 1])[0], state)
        grads = torch.autograd.grad(F.mse_loss(readout(y_t), y[t]), list(p.values()))
        for name, grad in zip(p, grads):
            total[name] = total.get(name, 0) + grad
        state = tuple(s.detach() for s in new_state)
    return total


def flat(grads: dict, names) -> torch.Tensor:
    return torch.cat([grads[n].flatten() for n in names])


@pytest.mark.parametrize("name", ["elman", "lstm", "gru"])
def test_uoro_is_unbiased_its_mean_over_many_sequences_approaches_the_exact_gradient(name):
    """The same sequence in every row of the batch: each row draws its own ν, so the batch's gradient
    is the mean of B independent UORO estimates. Compared on the part older than one step, the only
    part UORO estimates (the one-step part is exact in both)."""
    torch.manual_seed(0)
    cell = cells.create(name, I, H, dtype=DTYPE)
    readout = nn.Linear(H, O, dtype=DTYPE)
    x, y = make_sequence(batch=1)
    names = list(cell.params())
    exact = flat(rtrl_gradient(cell, x, F.mse_loss, y, readout=readout), names)
    recent = flat(truncated_gradient(cell, readout, x, y), names)
    history = exact - recent
    assert history.norm() > 0.1 * exact.norm()            # the older part is not negligible here

    def uoro_error(copies: int) -> float:
        uoro = rtrl_gradient(cell, x.expand(T, copies, I), F.mse_loss, y.expand(T, copies, O),
                             readout=readout, learner=lambda c, r: UORO(c, r, seed=copies))
        return float((flat(uoro, names) - exact).norm() / history.norm())
    few, many = uoro_error(16), uoro_error(4096)
    assert many < 0.15                                    # the mean converges to the exact gradient
    assert many < few / 4                                 # at about 1/√B (expected ratio 16)


def test_uoro_sensitivity_estimate_is_an_outer_product_of_the_carried_vectors():
    torch.manual_seed(0)
    cell = cells.create("elman", I, H, dtype=DTYPE)
    x, _ = make_sequence()
    uoro = UORO(cell, seed=0)
    uoro.reset(B)
    for t in range(T):
        uoro.step(x[t])
    estimate = uoro.sensitivity                                                 # (B, S, P)
    assert torch.linalg.matrix_rank(estimate[0]) == 1
    torch.testing.assert_close(estimate[1], torch.outer(uoro.state_tilde[1], uoro.theta_tilde[1]))


# ----- argument checks ----------------------------------------------------------------------------
def test_bad_arguments_raise_errors_that_say_what_was_expected():
    torch.manual_seed(0)
    cell = cells.create("lstm", I, H, dtype=DTYPE)
    rtrl = RTRL(cell)
    x, y = make_sequence()
    with pytest.raises(RuntimeError, match="reset"):
        rtrl.step(x[0])
    with pytest.raises(ValueError, match="batch_size"):
        rtrl.reset(0)
    with pytest.raises(ValueError, match=r"state: expected 2 tensor"):
        rtrl.reset(B, state=torch.zeros(B, H, dtype=DTYPE))
    rtrl.reset(B)
    with pytest.raises(ValueError, match=r"x_t must be one step of shape \(B, I\) = \(2, 3\)"):
        rtrl.step(x)
    with pytest.raises(ValueError, match="without a loss_fn"):
        rtrl.step(x[0], y[0])
    with pytest.raises(ValueError, match="scalar"):
        rtrl.step(x[0], torch.zeros(B, H, dtype=DTYPE), lambda out, target: (out - target) ** 2)
    with pytest.raises(ValueError, match="no trained parameters"):
        RTRL(cells.create("esn", I, H))
    with pytest.raises(TypeError, match="RecurrentCell"):
        RTRL(nn.Linear(I, H))
    with pytest.raises(ValueError, match=r"x must be a sequence of shape \(T, B, I\)"):
        rtrl_gradient(cell, x[0], F.mse_loss, y[0])
    with pytest.raises(ValueError, match="targets must have T=8 steps"):
        rtrl_gradient(cell, x, F.mse_loss, y[:3])
    with pytest.raises(TypeError, match="optimizer"):
        train_online(cell, None, x, y, "sgd", F.mse_loss)
    with pytest.raises(ValueError, match="epsilon"):
        UORO(cell, epsilon=0.0)
