r"""Diagnostics: how far back gradients reach, and what the gates do, as arrays and PNGs.

>>> import rnnkit, rnnkit.diagnose as diagnose, torch
>>> layer = rnnkit.Recurrent("elman", 8, 32)
>>> flow = diagnose.gradient_flow(layer, torch.randn(100, 4, 8))
>>> flow.grad_norm.shape, flow.jacobian_norm.shape          # (T, B): ‖∂L/∂h_k‖, ‖∂h_T/∂h_k‖₂
(torch.Size([100, 4]), torch.Size([100, 4]))
>>> flow.rate() < 1                                         # the gradient vanishes geometrically
True

The same from the command line: ``rnnkit diagnose gradient-flow --cells elman,lstm,gru --out flow.png``
and ``rnnkit diagnose gates --cell lstm --out gates.png``.
"""
from .experiments import (build_layer, compare_gradient_flow, decay_table, gates_of, parse_cell_spec,
                          random_input, set_spectral_radius)
from .gates import gate_activity
from .gradient_flow import GradientFlow, gradient_flow
from .plots import plot_gate_activity, plot_gradient_flow

__all__ = ["gradient_flow", "GradientFlow", "gate_activity", "plot_gradient_flow", "plot_gate_activity",
           "compare_gradient_flow", "gates_of", "decay_table", "build_layer", "parse_cell_spec",
           "random_input", "set_spectral_radius"]
