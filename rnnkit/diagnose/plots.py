"""PNG pictures of the diagnostics, drawn with matplotlib's Agg backend.

Figures are built with ``matplotlib.figure.Figure`` and an Agg canvas, not ``pyplot``: nothing
global changes, no window opens, and it works on a machine without a display.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from .gradient_flow import GradientFlow


def plot_gradient_flow(results: Mapping[str, GradientFlow], path, *, title: str | None = None) -> Path:
    r"""A PNG of gradient flows: ‖∂L/∂h_k‖ and ‖∂h_T/∂h_k‖₂ against the distance d = T − k.

    Two panels, log-scale y, one line per cell: ‖∂L/∂h_k‖ (left) and ‖∂h_T/∂h_k‖₂ (right, when
    measured). A straight falling line is a geometric decay ρ^d (vanishing gradient), a rising one
    an explosion.

    Args:
        results: ``GradientFlow`` by the label of its line (a cell spec: ``"lstm"``, ``"elman:relu"``).
        path: where the PNG is written.
        title: above both panels.

    Returns:
        The path written.
    """
    if not results:
        raise ValueError("plot_gradient_flow needs at least one result")
    with_jacobian = all(r.jacobian_norm is not None for r in results.values())
    panels = [("grad", r"$\|\partial L / \partial h_k\|$,  $L = \Sigma_j\, y_{T,j}$")]
    if with_jacobian:
        panels.append(("jacobian", r"$\|\partial h_T / \partial h_k\|_2$  (spectral norm)"))
    fig = Figure(figsize=(5.5 * len(panels), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (which, label) in zip(axes, panels):
        for spec, result in results.items():
            norms = result.by_distance(which)                                   # (T,), index = T − k
            ax.plot(torch.arange(len(norms)).numpy(), norms.numpy(), label=spec, linewidth=1.5)
        ax.set_yscale("log", nonpositive="mask")
        ax.set_xlabel("distance T − k (steps back from the last step)")
        ax.set_title(label)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].legend(loc="best", fontsize="small")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_gate_activity(gates: Mapping[str, Tensor], path, *, title: str | None = None) -> Path:
    """A PNG of one heatmap per gate (units × time, colour 0 … 1), stacked, time on the x axis.

    Args:
        gates: a gate's name to its (T, H) activations (``gate_activity``).
        path: where the PNG is written.
        title: above the panels.

    Returns:
        The path written.
    """
    if not gates:
        raise ValueError("plot_gate_activity needs at least one gate")
    T, H = next(iter(gates.values())).shape
    fig = Figure(figsize=(min(4 + T / 20, 16), 1.0 + 1.6 * len(gates)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(gates), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (name, values) in zip(axes, gates.items()):
        image = ax.imshow(values.detach().cpu().T.numpy(),                     # (H, T): units × time
                          aspect="auto", origin="lower", interpolation="nearest",
                          vmin=0.0, vmax=1.0, cmap="viridis", extent=(0.5, T + 0.5, -0.5, H - 0.5))
        ax.set_ylabel(f"{name}\nunit")
    axes[-1].set_xlabel("time step t")
    fig.colorbar(image, ax=list(axes), label="gate value", shrink=0.9)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    fig.savefig(path, format="png", dpi=110)
    return path
