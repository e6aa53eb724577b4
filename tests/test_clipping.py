"""Gradient clipping (rnnkit.learning.clipping): recorded norms, the bounds, weight-decay groups."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rnnkit import Recurrent
from rnnkit.learning import GradientClipper, total_norm, weight_decay_groups


def parameters_with_gradients(scale: float = 1.0, seed: int = 0):
    """Three tensors with known gradients, one parameter without a gradient."""
    generator = torch.Generator().manual_seed(seed)
    shapes = [(4, 3), (4,), (2, 2, 2)]
    params = [nn.Parameter(torch.zeros(s, dtype=torch.float64)) for s in shapes]
    for p in params:
        p.grad = scale * torch.randn(p.shape, generator=generator, dtype=torch.float64)
    return params + [nn.Parameter(torch.zeros(3, dtype=torch.float64))]  # .grad is None


def norm_by_hand(params, q=2.0):
    """(Σ_i |g_i|^q)^(1/q) over every entry of every gradient; the largest |g_i| for q = ∞."""
    entries = torch.cat([p.grad.flatten() for p in params if p.grad is not None]).tolist()
    if math.isinf(q):
        return max(abs(e) for e in entries)
    return sum(abs(e) ** q for e in entries) ** (1 / q)


@pytest.mark.parametrize("q", [2.0, 1.0, 3.0, math.inf])
def test_recorded_norm_is_the_norm_before_clipping(q):
    params = parameters_with_gradients(scale=10.0)
    expected = norm_by_hand(params, q)
    clipper = GradientClipper(max_norm=0.5, norm_type=q)
    returned = clipper(params)
    assert returned == pytest.approx(expected, rel=1e-12)
    assert clipper.history == [returned]
    assert norm_by_hand(params, q) < expected                      # and the gradients were clipped


def test_clipping_by_norm_bounds_the_norm_and_keeps_the_direction():
    params = parameters_with_gradients(scale=10.0)
    before = torch.cat([p.grad.flatten() for p in params[:3]])
    GradientClipper(max_norm=1.0)(params)
    after = torch.cat([p.grad.flatten() for p in params[:3]])
    assert norm_by_hand(params) <= 1.0 + 1e-6
    torch.testing.assert_close(after, before * (1.0 / before.norm()), rtol=1e-5, atol=0)


def test_gradient_below_max_norm_is_unchanged():
    params = parameters_with_gradients(scale=0.01)
    before = [p.grad.clone() for p in params[:3]]
    norm = GradientClipper(max_norm=10.0)(params)
    assert norm == pytest.approx(norm_by_hand(params), rel=1e-12)
    for p, b in zip(params, before):
        assert torch.equal(p.grad, b)


def test_clipping_by_value_bounds_every_entry_and_leaves_small_ones():
    params = parameters_with_gradients(scale=3.0)
    before = [p.grad.clone() for p in params[:3]]
    norm_before = norm_by_hand(params)
    clipper = GradientClipper(max_value=0.7)
    assert clipper(params) == pytest.approx(norm_before, rel=1e-12)
    for p, b in zip(params, before):
        assert p.grad.abs().max() <= 0.7
        torch.testing.assert_close(p.grad, b.clamp(-0.7, 0.7), rtol=0, atol=0)
    assert (torch.cat([b.flatten() for b in before]).abs() > 0.7).any()   # something was clipped


def test_both_limits_hold_together_and_history_grows():
    params = parameters_with_gradients(scale=5.0)
    clipper = GradientClipper(max_norm=2.0, max_value=0.3)
    first = clipper(params)
    assert norm_by_hand(params) <= 2.0 + 1e-6
    assert max(p.grad.abs().max() for p in params[:3]) <= 0.3
    second = clipper(params)
    assert clipper.history == [first, second] and second < first


def test_measuring_only_and_total_norm_of_nothing():
    params = parameters_with_gradients()
    before = [p.grad.clone() for p in params[:3]]
    assert GradientClipper()(params) == pytest.approx(norm_by_hand(params), rel=1e-12)
    assert all(torch.equal(p.grad, b) for p, b in zip(params, before))
    assert total_norm([]) == 0.0
    assert GradientClipper(max_norm=1.0)([nn.Parameter(torch.zeros(2))]) == 0.0


def test_nonfinite_norm_raises_when_asked():
    params = parameters_with_gradients()
    params[0].grad[0, 0] = float("nan")
    with pytest.raises(RuntimeError, match="non-finite|nan"):
        GradientClipper(max_norm=1.0, error_if_nonfinite=True)(params)
    with pytest.raises(RuntimeError, match="nan"):
        GradientClipper(error_if_nonfinite=True)(params)


@pytest.mark.parametrize("kwargs, message", [
    ({"max_norm": -1.0}, "max_norm must be a positive number or None, got -1.0"),
    ({"max_norm": 0}, "max_norm must be a positive number or None, got 0"),
    ({"max_norm": math.inf}, "max_norm must be a positive number or None, got inf"),
    ({"max_value": -0.5}, "max_value must be a positive number or None, got -0.5"),
    ({"max_value": "1"}, "max_value must be a positive number or None, got '1'"),
    ({"max_norm": True}, "max_norm must be a positive number or None, got True"),
    ({"norm_type": 0.0}, "norm_type must be a positive number or math.inf, got 0.0"),
    ({"norm_type": None}, "norm_type must be a positive number or math.inf, got None"),
])
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        GradientClipper(**kwargs)


# ----- weight decay parameter groups --------------------------------------------------------------
def test_weight_decay_groups_exclude_biases_and_normalisation():
    layer = Recurrent("lstm", 3, 4, layer_norm=True)
    model = nn.ModuleDict({"rnn": layer, "norm": nn.LayerNorm(4), "head": nn.Linear(4, 2)})
    model.head.weight.requires_grad_(False)
    groups = weight_decay_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in groups[0]["params"]}
    kept = {names[id(p)] for p in groups[1]["params"]}
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert decayed == {"rnn.cells.0.weight_ih", "rnn.cells.0.weight_hh"}
    layer_norms = {f"rnn.cells.0.ln_{part}_{kind}" for part in ("ih", "hh", "c")
                   for kind in ("weight", "bias")}
    assert kept == {"rnn.cells.0.bias_ih", "rnn.cells.0.bias_hh", "head.bias", "norm.weight", "norm.bias",
                    *layer_norms}
    torch.optim.AdamW(groups, lr=1e-3)                              # the optimiser takes them


def test_adamw_with_groups_decays_only_the_weights():
    model = nn.Linear(3, 2)
    weight, bias = model.weight.detach().clone(), model.bias.detach().clone()
    optimizer = torch.optim.AdamW(weight_decay_groups(model, 0.5), lr=0.1)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)                                # only the decay moves anything
    optimizer.step()
    torch.testing.assert_close(model.weight.detach(), weight * (1 - 0.1 * 0.5))
    torch.testing.assert_close(model.bias.detach(), bias)


def test_weight_decay_groups_bad_arguments():
    with pytest.raises(ValueError, match="weight_decay must be a finite number >= 0, got -0.1"):
        weight_decay_groups(nn.Linear(2, 2), -0.1)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        weight_decay_groups([nn.Parameter(torch.zeros(2))], 0.1)
    with pytest.raises(ValueError, match="no parameters that require a gradient"):
        weight_decay_groups(nn.ReLU(), 0.1)
