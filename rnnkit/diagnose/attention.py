"""The attention map of one translated sentence as a PNG (``rnnkit translate --attention-plot``).

The weights a_{t,s} of output step t over source token s (Bahdanau et al. 2015, arXiv:1409.0473,
draw them the same way, their figure 3): one row per output token, one column per source token,
grey levels from 0 (white) to 1 (black), each row summing to 1. Drawn with matplotlib's Agg canvas
(no ``pyplot``, no display needed), as ``rnnkit.diagnose.plots``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from .plots import _save


def attention_figure(weights: Tensor, source_tokens: Sequence[str], output_tokens: Sequence[str], *,
                     title: str | None = None) -> Figure:
    """A figure of ``weights`` (T_out, S): output tokens down the left, source tokens along the top.

    Raises:
        ValueError: when ``weights`` is not 2-D or its shape is not (len(output_tokens), len(source_tokens)).
    """
    if not hasattr(weights, "dim") or weights.dim() != 2:
        got = f"shape {tuple(weights.shape)}" if hasattr(weights, "shape") else type(weights).__name__
        raise ValueError(f"weights must be a (T_out, S) tensor of attention weights, got {got}")
    T_out, S = weights.shape
    if (T_out, S) != (len(output_tokens), len(source_tokens)):
        raise ValueError(f"weights must have shape (len(output_tokens), len(source_tokens)) = "
                         f"({len(output_tokens)}, {len(source_tokens)}), got ({T_out}, {S})")
    fig = Figure(figsize=(1.5 + 0.45 * S, 1.2 + 0.4 * T_out), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.imshow(weights.detach().cpu().float().numpy(), cmap="Greys", vmin=0.0, vmax=1.0,  # (T_out, S)
              aspect="equal", interpolation="nearest")
    ax.set_xticks(range(S), list(source_tokens), rotation=90)
    ax.set_yticks(range(T_out), list(output_tokens))
    ax.xaxis.tick_top()
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        fig.suptitle(title)
    return fig


def plot_attention(weights: Tensor, source_tokens: Sequence[str], output_tokens: Sequence[str], path,
                   *, title: str | None = None) -> Path:
    """Draw ``attention_figure(weights, source_tokens, output_tokens)`` to the PNG ``path``; returns it."""
    return _save(attention_figure(weights, source_tokens, output_tokens, title=title), path)
