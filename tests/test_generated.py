"""The generated path (a cell's own step compiled by torch.compile) equals the plain step loop.

Most tests compile with the "aot_eager" backend (dynamo's trace and AOTAutograd's partitioning,
run with ATen ops: the mechanism without Inductor's compile cost); the tests named ``inductor``
compile with Inductor, as the path does by default. The sweeps over every cell (a compile per cell
configuration) are marked slow: ``pytest -m "not slow"`` keeps the mechanism's tests.
"""
import pytest
import torch

import rnnkit
from rnnkit.cells import RecurrentCell
from rnnkit.cells.functional import affine
from rnnkit.engine import generated
from rnnkit.engine.generated import run_generated

# A compile that fails falls back to the plain loop with a warning, which would let every comparison
# below pass without testing the compiled path: here the warning is an error.
pytestmark = pytest.mark.filterwarnings("error:rnnkit's generated path could not compile")


class GatedCell(RecurrentCell):
    """A user's cell: h_t = (1 − z) ⊙ h_{t−1} + z ⊙ tanh(W_n x + U_n h + b_n),
    z = σ(W_z x + U_z h + b_z), and a second state c_t = c_{t−1} + h_t (a running sum), so that the
    state is a pair."""

    state_names = ("h", "c")

    def __init__(self, input_size, hidden_size, **factory):
        super().__init__(input_size, hidden_size, **factory)
        self._build()

    def state_sizes(self):
        return (self.hidden_size, self.hidden_size)

    def parameter_shapes(self):
        H, I = self.hidden_size, self.input_size
        return {"weight_ih": (2 * H, I), "weight_hh": (2 * H, H), "bias_hh": (2 * H,)}

    def project_input(self, p, x):
        return affine(x, p["weight_ih"])                                        # (T, B, 2H)

    def step(self, p, u_t, state, recurrent_mask=None):
        h, c = state
        x_z, x_n = u_t.chunk(2, dim=-1)
        h_in = h if recurrent_mask is None else h * recurrent_mask
        a_z, a_n = affine(h_in, p["weight_hh"], p["bias_hh"]).chunk(2, dim=-1)
        z, n = torch.sigmoid(x_z + a_z), torch.tanh(x_n + a_n)
        h = (1 - z) * h + z * n
        return h, (h, c + h)


def make_cell(name, options, input_size, hidden_size, dtype):
    if name == "user":
        return GatedCell(input_size, hidden_size, dtype=dtype)
    return rnnkit.cells.create(name, input_size, hidden_size, dtype=dtype, **options)


def plain_loop(cell, p, u, state, valid=None, recurrent_mask=None, zoneout=0.0, training=False,
               keep_states=False):
    """The reference loop of rnnkit/engine/loop.py, written out."""
    outputs, history = [], []
    for t, u_t in enumerate(u.unbind(0)):
        y, new = cell.step(p, u_t, state, recurrent_mask)
        if zoneout:
            if training:
                new = tuple(torch.where(torch.rand_like(n) < zoneout, old, n) for old, n in zip(state, new))
            else:
                new = tuple(torch.lerp(n, old, zoneout) for old, n in zip(state, new))
            y = new[0]
        if valid is not None:
            keep = valid[t].unsqueeze(-1)                                       # (B, 1)
            new = tuple(torch.where(keep, n, old) for n, old in zip(new, state))
            y = y * keep
        state = new
        outputs.append(y)
        if keep_states:
            history.append(state if valid is None else tuple(s * valid[t].unsqueeze(-1) for s in state))
    kept = tuple(torch.stack(s) for s in zip(*history)) if keep_states else None
    return torch.stack(outputs), state, kept


@pytest.fixture(autouse=True)
def aot_eager(monkeypatch):
    monkeypatch.setattr(generated, "COMPILER", "aot_eager")


CELLS = [("user", {}), ("gru", {}), ("lstm", dict(variant="vanilla")), ("lstm", dict(layer_norm=True)),
         ("lstm", dict(variant="vanilla", proj_size=3)), ("lstm", dict(variant="fgr")), ("jordan", {}),
         ("elman", dict(nonlinearity="sigmoid")), ("indrnn", {}), ("esn", dict(seed=0))]
IDS = [name + "".join(f"-{k}={v}" for k, v in options.items()) for name, options in CELLS]


def run_both(cell, dtype, T=9, B=3, lengths=None, recurrent_mask=False, zoneout=0.0, training=False,
             keep_states=False, seed=0):
    """The plain loop and the generated path on the same inputs and the same random draws: the
    outputs, final states, kept states and the gradients of a loss over all of them with respect to
    u, the initial state and every trained tensor of p."""
    torch.manual_seed(seed)
    p = cell.params()
    x = torch.randn(T, B, cell.input_size, dtype=dtype)
    u = cell.project_input(p, x).detach().requires_grad_()                      # (T, B, G)
    state = tuple(torch.randn(B, S, dtype=dtype, requires_grad=True) for S in cell.state_sizes())
    valid = torch.arange(T).unsqueeze(1) < torch.tensor(lengths) if lengths is not None else None
    mask = None
    if recurrent_mask:
        mask = torch.bernoulli(torch.full((B, cell.state_sizes()[0]), 0.7, dtype=dtype)) / 0.7
    weights = [torch.randn(T, B, cell.output_size, dtype=dtype)]
    weights += [torch.randn(B, S, dtype=dtype) for S in cell.state_sizes()]
    weights += [torch.randn(T, B, S, dtype=dtype) for S in cell.state_sizes()]
    trained = [t for t in p.values() if t.requires_grad]
    results = []
    for run in (plain_loop, run_generated):
        torch.manual_seed(seed + 1)
        outputs, final, kept = run(cell, p, u, state, valid, mask, zoneout, training, keep_states)
        loss = (outputs * weights[0]).sum() + sum((f * w).sum() for f, w in zip(final, weights[1:]))
        if keep_states:
            loss = loss + sum((k * w).sum() for k, w in zip(kept, weights[1 + len(final):]))
        grads = torch.autograd.grad(loss, [u, *state, *trained], allow_unused=True)
        results.append((outputs, final, kept, grads))
    return results


def assert_same(expected, actual, tol):
    (out0, final0, kept0, grads0), (out1, final1, kept1, grads1) = expected, actual
    torch.testing.assert_close(out1, out0, rtol=tol, atol=tol)
    assert len(final1) == len(final0)
    for a, b in zip(final1, final0):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    if kept0 is None:
        assert kept1 is None
    else:
        for a, b in zip(kept1, kept0):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    for a, b in zip(grads1, grads0):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.slow          # one compile per cell configuration: seconds each
@pytest.mark.parametrize("name,options", CELLS, ids=IDS)
def test_matches_plain_loop_with_lengths_mask_eval_zoneout_and_kept_states(name, options):
    cell = make_cell(name, options, 4, 5, torch.float64)
    expected, actual = run_both(cell, torch.float64, lengths=[9, 5, 2], zoneout=0.3, keep_states=True,
                                recurrent_mask=cell.takes_recurrent_dropout)
    assert_same(expected, actual, 1e-10)


# Zoneout acts on the state tuple whatever the cell: one, two and three state tensors, a fixed reservoir.
ZONEOUT_CELLS = [CELLS[0], CELLS[3], CELLS[5], CELLS[9]]


@pytest.mark.slow
@pytest.mark.parametrize("name,options", ZONEOUT_CELLS, ids=[IDS[CELLS.index(c)] for c in ZONEOUT_CELLS])
def test_matches_plain_loop_with_training_zoneout_under_one_seed(name, options):
    """The zoneout masks are drawn before the loop in the plain loop's order: one seed, one draw."""
    cell = make_cell(name, options, 4, 5, torch.float64)
    expected, actual = run_both(cell, torch.float64, lengths=[9, 9, 4], zoneout=0.4, training=True)
    assert_same(expected, actual, 1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("name,options", CELLS[:4], ids=IDS[:4])
def test_matches_plain_loop_in_float32(name, options):
    cell = make_cell(name, options, 4, 6, torch.float32)
    expected, actual = run_both(cell, torch.float32, T=11, B=4)
    assert_same(expected, actual, 1e-5)


def test_training_zoneout_keeps_about_rate_of_units_and_draws_anew_each_step():
    """Structure of zoneout in training, without the plain loop: every state unit is either its old
    or its new value, the old one about ``rate`` of the time, with a different mask at each step."""
    cell = make_cell("gru", {}, 3, 50, torch.float64)
    p = cell.params()
    T, B, rate = 8, 40, 0.3
    u = cell.project_input(p, torch.randn(T, B, 3, dtype=torch.float64))
    state = (torch.randn(B, 50, dtype=torch.float64),)
    with torch.no_grad():
        _, _, (h,) = run_generated(cell, p, u, state, zoneout=rate, training=True, keep_states=True)
        previous = torch.cat([state[0].unsqueeze(0), h[:-1]])                  # (T, B, H)
        kept = torch.stack([h[t] == previous[t] for t in range(T)])
        for t in range(T):
            fresh = cell.step(p, u[t], (previous[t],))[0]
            assert torch.all(kept[t] | (h[t] == fresh)), "each unit is its old or its new value"
    fraction = kept.double().mean().item()
    assert abs(fraction - rate) < 0.03, fraction
    assert not torch.equal(kept[0], kept[1])


def test_gradcheck_float64():
    cell = make_cell("user", {}, 2, 3, torch.float64)
    p = cell.params()
    T, B = 5, 2
    valid = torch.tensor([[True, True]] * 3 + [[True, False]] * 2)             # lengths 5, 3
    u0 = torch.randn(T, B, 6, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, 3, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(B, 3, dtype=torch.float64, requires_grad=True)
    names = ("weight_hh", "bias_hh")

    def f(u, h, c, weight_hh, bias_hh):
        q = dict(p, weight_hh=weight_hh, bias_hh=bias_hh)
        outputs, final, kept = run_generated(cell, q, u, (h, c), valid, zoneout=0.2, keep_states=True)
        return outputs, *final, *kept
    weights = tuple(p[n].detach().clone().requires_grad_() for n in names)
    # gradcheck differentiates the same graph several times (retain_graph=True), which torch's
    # compiled backwards allow only without donated buffers.
    with torch._functorch.config.patch(donated_buffer=False):
        assert torch.autograd.gradcheck(f, (u0, h0, c0, *weights))


def test_fixed_buffers_get_no_gradient_and_inference_needs_no_graph():
    cell = make_cell("esn", dict(seed=1), 3, 6, torch.float32)
    p = cell.params()
    assert not any(t.requires_grad for t in p.values())
    u = cell.project_input(p, torch.randn(7, 2, 3)).requires_grad_()
    outputs, final, _ = run_generated(cell, p, u, cell.initial_state(2))
    outputs.sum().backward()
    assert u.grad is not None and all(t.grad is None for t in p.values())
    with torch.no_grad():
        again, _, _ = run_generated(cell, p, u, cell.initial_state(2))
    assert not again.requires_grad
    torch.testing.assert_close(again, outputs.detach())


def test_short_sequences_and_a_length_not_a_multiple_of_the_steps_per_call():
    cell = make_cell("lstm", {}, 3, 4, torch.float64)
    for T in (1, generated.STEPS_PER_CALL - 1, generated.STEPS_PER_CALL, 2 * generated.STEPS_PER_CALL + 1):
        expected, actual = run_both(cell, torch.float64, T=T, B=2)
        assert_same(expected, actual, 1e-10)


def test_weight_gradient_pass_makes_one_product_of_a_sum_of_products():
    """Σ_k A_kᵀ B_k (a weight's gradient over a chunk's steps) becomes [A_1; …]ᵀ [B_1; …]; a sum
    with any other term is left alone."""
    from torch.fx.experimental.proxy_tensor import make_fx

    def weight_gradient(a1, a2, a3, b1, b2, b3):
        return a1.permute(1, 0) @ b1 + (a2.permute(1, 0) @ b2 + a3.permute(1, 0) @ b3)

    def mixed(a1, a2, b1, b2, c):
        return a1.permute(1, 0) @ b1 + a2.permute(1, 0) @ b2 + c

    def products(gm):
        return sum(node.target is torch.ops.aten.mm.default for node in gm.graph.nodes)

    torch.manual_seed(0)
    args = [torch.randn(4, 6, dtype=torch.float64) for _ in range(3)]
    args += [torch.randn(4, 5, dtype=torch.float64) for _ in range(3)]
    gm = make_fx(weight_gradient, tracing_mode="fake")(*args)
    assert products(gm) == 3
    generated.batch_weight_gradients(gm.graph)
    gm.recompile()
    assert products(gm) == 1
    torch.testing.assert_close(gm(*args), weight_gradient(*args))
    mixed_args = (args[0], args[1], args[3], args[4], torch.randn(6, 5, dtype=torch.float64))
    gm = make_fx(mixed, tracing_mode="fake")(*mixed_args)
    generated.batch_weight_gradients(gm.graph)
    gm.recompile()
    assert products(gm) == 2
    torch.testing.assert_close(gm(*mixed_args), mixed(*mixed_args))


def test_one_compile_per_configuration_not_per_cell_length_or_batch():
    """Cells are compiled by configuration: a second cell of the same configuration, a new sequence
    length and a new batch size compile nothing; a new configuration does."""
    def train(cell, T, B):
        p = cell.params()
        u = cell.project_input(p, torch.randn(T, B, cell.input_size))
        outputs, _, _ = run_generated(cell, p, u, cell.initial_state(B))
        outputs.sum().backward()

    first = make_cell("lstm", dict(variant="cifg"), 3, 7, torch.float32)
    train(first, 8, 3)
    count = generated.compile_count()
    layer = rnnkit.Recurrent("lstm", 3, 7, num_layers=1, bidirectional=True, variant="cifg")
    for cell in layer.cells:                                                    # other instances
        train(cell, 8, 3)
    train(first, 13, 3)                                                         # another length
    train(first, 8, 5)                                                          # another batch
    train(first, 21, 6)
    assert generated.compile_count() == count
    train(make_cell("lstm", dict(variant="nig"), 3, 7, torch.float32), 8, 3)   # another configuration
    assert generated.compile_count() > count


def test_falls_back_to_the_plain_loop_inside_torch_compile():
    cell = make_cell("gru", {}, 3, 4, torch.float32)
    p = {k: v.detach() for k, v in cell.params().items()}
    u = cell.project_input(p, torch.randn(6, 2, 3))
    state = cell.initial_state(2)
    count = generated.compile_count()

    @torch.compile(backend="eager", fullgraph=True)
    def outer(u, h):
        return run_generated(cell, p, u, (h,), zoneout=0.2)[0]
    torch.testing.assert_close(outer(u, state[0]), plain_loop(cell, p, u, state, zoneout=0.2)[0])
    assert generated.compile_count() == count


def test_a_step_torch_compile_cannot_trace_warns_and_runs_the_plain_loop():
    class Untraceable(GatedCell):
        def step(self, p, u_t, state, recurrent_mask=None):
            if u_t.detach().sum().item() > 1e9:                                 # data-dependent branch
                raise AssertionError
            return super().step(p, u_t, state, recurrent_mask)

    cell = Untraceable(3, 4, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="could not compile Untraceable.step"):
        expected, actual = run_both(cell, torch.float64, T=9, B=2)
    assert_same(expected, actual, 1e-12)


def test_an_error_in_the_step_is_raised_and_does_not_turn_compiling_off():
    cell = make_cell("user", {}, 3, 4, torch.float32)
    p = cell.params()
    wrong = torch.randn(8, 2, 5)                                                # G is 8, not 5
    with pytest.raises(RuntimeError):
        run_generated(cell, p, wrong, cell.initial_state(2))
    assert (GatedCell, generated.COMPILER) not in generated._failed


def test_inductor_user_cell_training_matches_plain_loop(monkeypatch):
    monkeypatch.setattr(generated, "COMPILER", "inductor")
    cell = make_cell("user", {}, 4, 8, torch.float32)
    count = generated.compile_count()
    expected, actual = run_both(cell, torch.float32, T=9, B=3, lengths=[9, 6, 1], zoneout=0.2,
                                training=True, recurrent_mask=True, keep_states=True)
    assert_same(expected, actual, 1e-5)
    assert generated.compile_count() > count


def test_inductor_layer_norm_lstm_inference_matches_plain_loop(monkeypatch):
    monkeypatch.setattr(generated, "COMPILER", "inductor")
    cell = make_cell("lstm", dict(layer_norm=True, variant="vanilla"), 4, 8, torch.float32)
    p = cell.params()
    u = cell.project_input(p, torch.randn(10, 3, 4))
    valid = torch.arange(10).unsqueeze(1) < torch.tensor([10, 7, 3])
    state = tuple(torch.randn(3, S) for S in cell.state_sizes())
    with torch.no_grad():
        expected = plain_loop(cell, p, u, state, valid, zoneout=0.1)
        actual = run_generated(cell, p, u, state, valid, zoneout=0.1)
    torch.testing.assert_close(actual[0], expected[0], rtol=1e-5, atol=1e-5)
    for a, b in zip(actual[1], expected[1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
