"""Recurrent dropout and zoneout inside the compiled loops (rnnkit/csrc, rnnkit.engine.fused) against
the reference loop (``rnnkit.engine.loop.reference_loop``: ``cell.step`` per step, autograd)."""
import pytest
import torch

import rnnkit
from rnnkit.engine import fused, ops
from rnnkit.engine.loop import reference_loop

pytestmark = pytest.mark.skipif(not fused.available(), reason="rnnkit's compiled loops are not built")

CELLS = [("lstm", "vanilla"), ("lstm", "standard"), ("lstm", "cifg"), ("lstm", "nig"), ("lstm", "fgr"),
         ("gru", "standard"), ("gru", "original")]
CELL_IDS = [f"{name}-{variant}" for name, variant in CELLS]
# (recurrent dropout rate, zoneout rate, training)
MASKS = {"recurrent-dropout": (0.25, 0.0, True), "zoneout-training": (0.0, 0.3, True),
         "zoneout-evaluation": (0.0, 0.3, False), "both": (0.25, 0.3, True)}
LENGTHS = torch.tensor([7, 3, 1, 7, 5])                       # B = 5, T = 7
TOLERANCE = {torch.float64: dict(atol=1e-10, rtol=1e-9), torch.float32: dict(atol=1e-5, rtol=1e-5)}


def _cell_and_params(name, variant, dtype, hidden=9):
    torch.manual_seed(len(variant))
    layer = rnnkit.Recurrent(name, 3, hidden, variant=variant, dtype=dtype)
    params = layer.cell_params(0)
    with torch.no_grad():                                     # away from the initial values
        for p in params.values():
            p.normal_(0, 0.5)
    return layer.cells[0], {k: v.detach().clone() for k, v in params.items()}


def _inputs(cell, dtype, T=7, B=5, recurrent_dropout=0.0, with_lengths=False):
    """x (T, B, 3), a random initial state (zoneout's kept units at t = 0 then show), the
    recurrent dropout mask (B, S) (inverted dropout, as the layer draws it) or None, valid (T, B)."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(T, B, 3, dtype=dtype, generator=g)
    state = tuple(torch.randn(B, size, dtype=dtype, generator=g) for size in cell.state_sizes())
    mask = None
    if recurrent_dropout:
        keep = torch.rand(B, cell.state_sizes()[0], dtype=dtype, generator=g) >= recurrent_dropout
        mask = keep.to(dtype) / (1 - recurrent_dropout)
    valid = torch.arange(T).unsqueeze(1) < LENGTHS[:B] if with_lengths else None
    return x, state, mask, valid


def _run(path, cell, params, x, state, valid, mask, zoneout, training, seed=5):
    """Outputs, final state and the gradients of u, of the initial state and of every parameter, of a
    loss that weighs every output and final state; the zoneout masks drawn after ``seed``."""
    params = {k: v.clone().requires_grad_() for k, v in params.items()}
    state = tuple(s.clone().requires_grad_() for s in state)
    u = cell.project_input(params, x)                                           # (T, B, G)
    torch.manual_seed(seed)
    if path == "fused":
        run = fused.run_fused_lstm if cell.state_names[:2] == ("h", "c") else fused.run_fused_gru
        outputs, final = run(cell, params, u, state, valid, mask, zoneout, training)
    else:
        result = reference_loop(cell, params, u, state, valid, mask, zoneout, training)
        outputs, final = result.outputs, result.final_state
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(t.shape, dtype=t.dtype, generator=g) for t in (outputs, *final)]
    loss = sum((t * w).sum() for t, w in zip((outputs, *final), weights))
    grads = torch.autograd.grad(loss, [u, *state, *params.values()])
    return (outputs, *final, *grads)


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("masks", list(MASKS))
@pytest.mark.parametrize("name,variant", CELLS, ids=CELL_IDS)
def test_compiled_loop_with_masks_equals_the_reference_loop(name, variant, masks, with_lengths):
    dtype = torch.float64
    recurrent_dropout, zoneout, training = MASKS[masks]
    cell, params = _cell_and_params(name, variant, dtype)
    x, state, mask, valid = _inputs(cell, dtype, recurrent_dropout=recurrent_dropout, with_lengths=with_lengths)
    ours = _run("fused", cell, params, x, state, valid, mask, zoneout, training)
    theirs = _run("reference", cell, params, x, state, valid, mask, zoneout, training)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, **TOLERANCE[dtype])


@pytest.mark.parametrize("name,variant", CELLS, ids=CELL_IDS)
def test_compiled_loop_with_masks_in_float32_is_within_1e_5_of_the_reference(name, variant):
    dtype = torch.float32
    cell, params = _cell_and_params(name, variant, dtype)
    x, state, mask, valid = _inputs(cell, dtype, recurrent_dropout=0.25, with_lengths=True)
    ours = _run("fused", cell, params, x, state, valid, mask, 0.3, True)
    theirs = _run("reference", cell, params, x, state, valid, mask, 0.3, True)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, **TOLERANCE[dtype])


def test_zoneout_masks_are_drawn_in_the_reference_loops_order():
    """Per step, per state tensor in state order, rand_like(state) < rate: the draws of
    ``rnnkit.engine.masks.zoneout``, here written out as a loop."""
    T, rate = 6, 0.3
    state = (torch.zeros(4, 5), torch.zeros(4, 5), torch.zeros(4, 15))        # fgr's h, c, ifo
    torch.manual_seed(3)
    masks = fused.draw_zoneout_masks(state, T, rate)
    torch.manual_seed(3)
    expected = [[torch.rand_like(s) < rate for s in state] for _ in range(T)]
    for k, s in enumerate(state):
        assert masks[k].shape == (T, *s.shape) and masks[k].dtype == s.dtype
        torch.testing.assert_close(masks[k], torch.stack([step[k] for step in expected]).to(s.dtype), atol=0, rtol=0)


def test_a_kept_unit_holds_its_previous_value_exactly():
    """h_t = h_{t−1} exactly where zoneout's mask keeps the old value (a select, not arithmetic)."""
    cell, params = _cell_and_params("lstm", "vanilla", torch.float32, hidden=20)
    x, state, _, _ = _inputs(cell, torch.float32, T=9, B=4)
    u = cell.project_input(params, x)
    torch.manual_seed(0)
    masks = fused.draw_zoneout_masks(state, 9, 0.5)
    torch.manual_seed(0)
    outputs, _ = fused.run_fused_lstm(cell, params, u, state, None, None, 0.5, True)
    previous = torch.cat([state[0].unsqueeze(0), outputs[:-1]])                 # (T, B, H)
    kept = masks[0].bool()
    assert kept.any() and (~kept).any()
    assert torch.equal(outputs[kept], previous[kept])
    assert not torch.equal(outputs[~kept], previous[~kept])


@pytest.mark.parametrize("name,variant", [("lstm", "fgr"), ("lstm", "vanilla"), ("gru", "original"),
                                          ("gru", "standard")])
def test_compiled_loop_with_masks_passes_gradcheck(name, variant):
    cell, params = _cell_and_params(name, variant, torch.float64, hidden=4)
    x, state, mask, valid = _inputs(cell, torch.float64, T=4, B=3, recurrent_dropout=0.25, with_lengths=True)
    run = fused.run_fused_lstm if name == "lstm" else fused.run_fused_gru
    names, n_state = list(params), len(state)

    def outputs(u, *rest):
        torch.manual_seed(2)                                  # the same zoneout masks at every call
        outputs, final = run(cell, dict(zip(names, rest[n_state:])), u, rest[:n_state], valid, mask, 0.3, True)
        return (outputs, *final)

    u = cell.project_input(params, x).detach()
    assert torch.autograd.gradcheck(outputs, [t.clone().requires_grad_() for t in (u, *state, *params.values())])


@pytest.mark.parametrize("name,variant", [("lstm", "fgr"), ("gru", "original")])
def test_each_op_with_masks_passes_opcheck(name, variant):
    """The custom operators with the mask arguments: schema, fake implementation, registered
    gradient (torch.library.opcheck), on the arguments a training call with lengths gives them."""
    cell, params = _cell_and_params(name, variant, torch.float64, hidden=4)
    x, state, mask, valid = _inputs(cell, torch.float64, T=4, B=3, recurrent_dropout=0.25, with_lengths=True)
    u = cell.project_input(params, x).detach()
    calls, real = [], ops.call

    def recording(op, *args):
        calls.append((op, args))
        return real(op, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ops, "call", recording)
        run = fused.run_fused_lstm if name == "lstm" else fused.run_fused_gru
        leaves = [t.clone().requires_grad_() for t in (u, *state, *params.values())]
        outputs, final = run(cell, dict(zip(params, leaves[1 + len(state):])), leaves[0],
                             leaves[1:1 + len(state)], valid, mask, 0.3, True)
        torch.autograd.grad(outputs.sum() + sum(f.sum() for f in final), leaves, allow_unused=True)
    assert {op for op, _ in calls} == ({ops.lstm_family_forward, ops.lstm_family_backward} if name == "lstm"
                                       else {ops.gru_forward, ops.gru_backward})
    for op, args in calls:
        grad = op in (ops.lstm_family_forward, ops.gru_forward)    # the backward ops have no gradient
        torch.library.opcheck(op, tuple(_fresh(a, grad) for a in args))


def _fresh(value, grad: bool):
    if not isinstance(value, torch.Tensor):
        return value
    copy = value.detach().clone()
    return copy.requires_grad_() if grad and copy.is_floating_point() else copy


def test_a_mask_of_the_wrong_shape_is_refused_by_name():
    cell, params = _cell_and_params("gru", "standard", torch.float64)
    x, state, _, _ = _inputs(cell, torch.float64)
    u = cell.project_input(params, x).detach()
    with pytest.raises(RuntimeError, match=r"recurrent_mask must have shape \(5, 9\)"):
        fused.run_fused_gru(cell, params, u, state, None, torch.ones(5, 8, dtype=torch.float64))
