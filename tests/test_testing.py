"""``rnnkit.testing.check_cell``: it passes every built-in cell, and each of its checks fails, with its
own message, on a cell broken in the way that check exists to catch (a cell of one's own that
passes is docs/custom-cells.md's, run by test_custom_cells.py)."""
from __future__ import annotations

import pytest
import torch

from rnnkit import cells
from rnnkit.cells.functional import affine, summed_outer
from rnnkit.testing import CHECKS, check_cell
from user_cells import TinyCell

pytestmark = pytest.mark.usefixtures("generated_path_without_inductor")


@pytest.mark.parametrize("name", cells.available())
def test_every_builtin_cell_passes(name):
    report = check_cell(name, input_size=2, hidden_size=3)
    assert report.checks == tuple(check for check, _ in CHECKS)
    assert f"{len(CHECKS)} checks passed" in str(report)


def test_the_callers_random_numbers_are_left_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    check_cell("elman", 2, 3)
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)


# ----- cells that each break what one check catches (user_cells.TinyCell, broken one way each) ----------
class Float64Cell(TinyCell):
    """Makes its pre-activation in float64, whatever the input's dtype."""

    def step(self, p, u_t, state, recurrent_mask=None):
        (h,) = state
        h = torch.tanh(u_t.double() + affine(h.double(), p["weight_hh"].double()))
        return h, (h,)


class PositionalCell(TinyCell):
    """Adds 0.1·t to step t's input: a function of the position in the sequence, not of the state."""

    def project_input(self, p, x):
        t = torch.arange(x.shape[0], dtype=x.dtype).view(-1, 1, 1)                # (T, 1, 1)
        return super().project_input(p, x) + 0.1 * t


class BatchMixingCell(TinyCell):
    """Centres the state over the batch: each sequence depends on the others."""

    def step(self, p, u_t, state, recurrent_mask=None):
        h, _ = super().step(p, u_t, state, recurrent_mask)
        h = h - 0.5 * h.mean(0, keepdim=True)
        return h, (h,)


class UnsavedMatrixCell(TinyCell):
    """A random recurrent mixing matrix kept as a plain attribute: not saved, loaded or copied."""

    def __init__(self, input_size, hidden_size, *, own_parameters=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, own_parameters=own_parameters, device=device, dtype=dtype)
        self.mix = torch.randn(hidden_size, hidden_size, dtype=dtype or torch.get_default_dtype())

    def step(self, p, u_t, state, recurrent_mask=None):
        (h,) = state
        h = torch.tanh(u_t + affine(h, p["weight_hh"]) @ self.mix)
        return h, (h,)


class _TanhWrongBackward(torch.autograd.Function):
    """tanh, whose backward forgets the square: (1 − y) instead of (1 − y²)."""

    @staticmethod
    def forward(ctx, a):
        y = torch.tanh(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * (1 - y)


class WrongBackwardCell(TinyCell):
    def step(self, p, u_t, state, recurrent_mask=None):
        (h,) = state
        h = _TanhWrongBackward.apply(u_t + affine(h, p["weight_hh"]))
        return h, (h,)


class UnusedParameterCell(TinyCell):
    """Declares a tensor that step never reads."""

    def parameter_shapes(self):
        return {**super().parameter_shapes(), "weight_unused": (self.hidden_size,)}


class WrongHandBPTTCell(TinyCell):
    """A hand-derived backward with tanh's derivative as 1 − h instead of 1 − h²."""

    def supports_hand_bptt(self):
        return True

    def step_saving(self, p, u_t, state):
        (h_prev,) = state
        h = torch.tanh(u_t + affine(h_prev, p["weight_hh"]))                     # (B, H)
        return (h,), {"h_prev": h_prev, "h": h}

    def step_backward(self, p, cache, grad_state):
        (dh,) = grad_state
        d_a = dh * (1 - cache["h"])                                              # wrong: 1 − h²
        return d_a, (d_a @ p["weight_hh"],), {"d_a": d_a, "h_prev": cache["h_prev"]}

    def recurrent_grads(self, p, records):
        return {"weight_hh": summed_outer(records["d_a"], records["h_prev"])}


@pytest.mark.parametrize("cell, check, says", [
    (Float64Cell, "shapes and dtypes", "y_t is torch.float64 for torch.float32 input"),
    (PositionalCell, "state carry", "outputs of x[:2] then x[2:] (state carried) and of x differ"),
    (BatchMixingCell, "padding", "in the padded batch and run alone differ"),
    (UnsavedMatrixCell, "stacking and directions", "a tensor kept as a plain attribute is not"),
    (WrongBackwardCell, "gradcheck", "gradient of the outputs with respect to the input x (float64, 1 layer "
                                     "with lengths) differs from finite differences"),
    (UnusedParameterCell, "gradcheck", "cells.0.weight_unused has no influence on the outputs"),
    (WrongHandBPTTCell, "fast paths", "of the hand-derived backward (backend='reference', bptt='hand') and "
                                      "of the reference loop differ"),
], ids=lambda value: value.__name__ if isinstance(value, type) else None)
def test_each_check_fails_on_the_cell_it_exists_for(cell, check, says):
    with pytest.raises(AssertionError) as caught:
        check_cell(cell, input_size=2, hidden_size=3)
    message = str(caught.value)
    assert message.startswith(f"check_cell({__name__}.{cell.__qualname__}), {check}: "), message
    assert says in message, message


def test_the_tiny_cell_itself_passes():
    """The broken cells' base passes: each failure above is its breakage, not the base's."""
    report = check_cell(TinyCell, input_size=2, hidden_size=3)
    assert report.checks[-1] == "fast paths"
