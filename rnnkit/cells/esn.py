"""Echo state network: a fixed random reservoir and a linear readout fitted in closed form.

H. Jaeger, "The 'echo state' approach to analysing and training recurrent neural networks",
GMD Report 148, 2001. M. Lukoševičius, "A Practical Guide to Applying Echo State Networks",
Neural Networks: Tricks of the Trade, 2012 (leak rate, spectral radius, ridge readout).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .activations import nonlinearity as lookup
from .base import Params, RecurrentCell, State
from .functional import affine
from .registry import register


@register("esn")
class EchoStateCell(RecurrentCell):
    r"""Leaky-integrator reservoir (nothing in it is trained).

    .. math::
        \tilde h_t = f(W_{in} x_t + W h_{t-1} + b), \qquad h_t = (1 - α) h_{t-1} + α \tilde h_t

    Fit a readout with ``rnnkit.cells.esn.fit_ridge`` or use ``rnnkit.EchoStateNetwork``.

    Args:
        input_size, hidden_size: I, H (``own_parameters``, ``device``, ``dtype``: see ``RecurrentCell``).
        spectral_radius: the largest |eigenvalue| of W, which is drawn random and scaled to it
            (default 0.9).
        leak_rate: α, in (0, 1] (default 1: no leak).
        sparsity: the fraction of W's entries that are zero, in [0, 1) (default 0.9).
        input_scaling: W_in is uniform in [−input_scaling, input_scaling] (default 1).
        bias_scaling: b is uniform in [−bias_scaling, bias_scaling] (default 0).
        nonlinearity: f, ``"tanh"`` (default), ``"relu"`` or ``"sigmoid"``.
        seed: makes the reservoir reproducible (in a stacked or bidirectional ``Recurrent``, cell k
            of the stack gets ``seed + k``); None draws from torch's global generator.

    Attributes:
        weight_ih: W_in (H, I), a buffer (not trained), as are the two below.
        weight_hh: W (H, H).
        bias_ih: b (H).

    Example:
        >>> import torch, rnnkit
        >>> cell = rnnkit.cells.create("esn", 1, 50, spectral_radius=1.25, leak_rate=0.3, seed=0)
        >>> round(float(torch.linalg.eigvals(cell.weight_hh).abs().max()), 4)
        1.25
        >>> list(cell.parameters())                          # nothing in the reservoir is trained
        []
    """

    takes_recurrent_dropout = False
    fixed_parameters = ("weight_ih", "weight_hh", "bias_ih")

    def __init__(self, input_size: int, hidden_size: int, *, spectral_radius: float = 0.9,
                 leak_rate: float = 1.0, sparsity: float = 0.9, input_scaling: float = 1.0,
                 bias_scaling: float = 0.0, nonlinearity: str = "tanh", seed: int | None = None,
                 own_parameters: bool = True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, own_parameters=own_parameters,
                         device=device, dtype=dtype)
        for name, value in (("spectral_radius", spectral_radius), ("leak_rate", leak_rate),
                            ("sparsity", sparsity)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r})")
        if not spectral_radius > 0:
            raise ValueError(f"spectral_radius must be positive, got {spectral_radius!r}")
        if not 0 < leak_rate <= 1:
            raise ValueError(f"leak_rate must be in (0, 1], got {leak_rate!r}")
        if not 0 <= sparsity < 1:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
        self.f = lookup(nonlinearity)
        self.spectral_radius, self.leak_rate, self.sparsity = spectral_radius, leak_rate, sparsity
        self.input_scaling, self.bias_scaling, self.seed = input_scaling, bias_scaling, seed
        self._build()

    def parameter_shapes(self):
        H, I = self.hidden_size, self.input_size
        return {"weight_ih": (H, I), "weight_hh": (H, H), "bias_ih": (H,)}

    def init_parameters(self, p: Params) -> None:
        H = self.hidden_size
        generator = torch.Generator().manual_seed(self.seed) if self.seed is not None else None
        # A sparse random matrix can be nilpotent (all eigenvalues 0: small H, high sparsity), and
        # then no scaling reaches the requested radius: draw again from the same generator.
        for _ in range(100):
            w = torch.randn(H, H, generator=generator, dtype=torch.float64)
            w *= torch.rand(H, H, generator=generator, dtype=torch.float64) >= self.sparsity
            radius = torch.linalg.eigvals(w).abs().max()
            if radius > 1e-6:
                break
        else:
            raise ValueError(f"could not draw a reservoir of {H} units with sparsity={self.sparsity} "
                             f"whose spectral radius is not 0; use a lower sparsity or more units")
        w *= self.spectral_radius / radius
        w_in = (2 * torch.rand(p["weight_ih"].shape, generator=generator, dtype=torch.float64) - 1)
        b = (2 * torch.rand(H, generator=generator, dtype=torch.float64) - 1)
        with torch.no_grad():
            p["weight_hh"].copy_(w)
            p["weight_ih"].copy_(w_in * self.input_scaling)
            p["bias_ih"].copy_(b * self.bias_scaling)

    def project_input(self, p: Params, x: Tensor) -> Tensor:
        return affine(x, p["weight_ih"], p["bias_ih"])                         # (T, B, H)

    def step(self, p: Params, u_t: Tensor, state: State, recurrent_mask=None):
        (h,) = state                                                            # (B, H)
        h_tilde = self.f(u_t + affine(h, p["weight_hh"]))
        h = (1 - self.leak_rate) * h + self.leak_rate * h_tilde
        return h, (h,)

    def extra_repr(self):
        return (f"{super().extra_repr()}, spectral_radius={self.spectral_radius}, "
                f"leak_rate={self.leak_rate}, sparsity={self.sparsity}")


def fit_ridge(features: Tensor, targets: Tensor, ridge: float = 1e-6) -> tuple[Tensor, Tensor]:
    r"""Least squares with an L2 penalty, in closed form (the readout of an echo state network).

    Solves min_{W, c} ‖X Wᵀ + c − Y‖² + λ‖W‖² for features X (N, H) and targets Y (N, O):
    with X̃ = [X, 1], [W, c] = Yᵀ X̃ (X̃ᵀ X̃ + λ D)⁻¹, D = diag(1, …, 1, 0) (the bias is not penalised).
    Returns W (O, H) and c (O). Computed in float64 for stability.
    """
    if features.dim() != 2 or targets.dim() != 2 or features.shape[0] != targets.shape[0]:
        raise ValueError("fit_ridge expects features (N, H) and targets (N, O) with the same N; got "
                         f"{tuple(features.shape)} and {tuple(targets.shape)}")
    if ridge < 0:
        raise ValueError(f"ridge must be non-negative, got {ridge!r}")
    X = torch.cat([features.double(), features.new_ones(features.shape[0], 1, dtype=torch.float64)], 1)
    penalty = torch.eye(X.shape[1], dtype=torch.float64) * ridge
    penalty[-1, -1] = 0.0
    solution = torch.linalg.solve(X.T @ X + penalty, X.T @ targets.double())    # (H+1, O)
    weight, bias = solution[:-1].T, solution[-1]
    return weight.to(features.dtype), bias.to(features.dtype)
