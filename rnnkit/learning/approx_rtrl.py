r"""Unbiased online recurrent optimization (UORO): RTRL's sensitivities as one random outer product.

C. Tallec, Y. Ollivier, "Unbiased Online Recurrent Optimization", ICLR 2018, arXiv:1702.05043.

Exact RTRL (``rnnkit.learning.rtrl``) carries M_t = ds_t/dθ (S × P) with M_t = D_t M_{t−1} + I_t,
at a cost of S² P per step. UORO carries instead two vectors per sequence, s̃_t (S) and θ̃_t (P),
whose outer product is an unbiased estimate of M_t: E[s̃_t θ̃_tᵀ] = M_t. Given s̃_{t−1} θ̃_{t−1}ᵀ for
M_{t−1}, draw ν ∈ {−1, +1}^S uniformly (E[ν νᵀ] = 1, E[ν] = 0) and write the new M_t as

    D_t s̃_{t−1} θ̃_{t−1}ᵀ + I_t  ≈  (ρ₀ D_t s̃_{t−1} + ρ₁ ν) (θ̃_{t−1}/ρ₀ + νᵀ I_t/ρ₁)ᵀ,

whose expectation over ν is D_t s̃_{t−1} θ̃_{t−1}ᵀ + I_t (the cross terms have mean zero: ρ₁ is
even in ν). So

    s̃_t = ρ₀ D_t s̃_{t−1} + ρ₁ ν,          θ̃_t = θ̃_{t−1}/ρ₀ + νᵀ I_t / ρ₁,
    ρ₀ = √(‖θ̃_{t−1}‖ / (‖D_t s̃_{t−1}‖ + ε)) + ε,      ρ₁ = √(‖νᵀ I_t‖ / (‖ν‖ + ε)) + ε,

the ρ's chosen to minimise the variance of the estimate (Tallec & Ollivier's Prop. 1 and Alg. 1).
The gradient at step t is RTRL's with M_{t−1} replaced by its estimate:

    dℓ_t/dθ ≈ ∂ℓ_t/∂θ|_{s_{t−1} fixed} + ((∂ℓ_t/∂s_{t−1}) · s̃_{t−1}) θ̃_{t−1}.

D_t s̃ is one Jacobian–vector product and νᵀ I_t one vector–Jacobian product (``torch.func.jvp`` and
``torch.func.vjp``), so a step costs a small multiple of the cell's own step, O(P) = O(n²) for an
Elman network of n units, and the memory is S + P numbers per sequence, against RTRL's S² P and S P.
The price is variance: one sequence's estimate can point far from the true gradient; averages over
sequences (or over steps, with a small learning rate) converge to it. The variance grows with the
state size and the length.

Shapes: B batch (every sequence has its own s̃, θ̃ and ν), S state numbers, P trained parameters.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..cells.base import RecurrentCell
from .rtrl import RTRL


class UORO(RTRL):
    """UORO (module docstring) with RTRL's interface: ``reset``, ``step``, ``step_gradients``;
    ``rtrl_gradient(..., learner=UORO)`` gives its estimate over a sequence.

    Args:
        cell, readout: as for ``RTRL``.
        seed: seed of the generator that draws ν (None: torch's global generator).
        epsilon: the ε of ρ₀ and ρ₁ (Tallec & Ollivier use 10⁻⁷).
    """

    def __init__(self, cell: RecurrentCell, readout: nn.Module | None = None, *,
                 seed: int | None = None, epsilon: float = 1e-7) -> None:
        super().__init__(cell, readout)
        if not epsilon > 0:
            raise ValueError(f"epsilon must be positive, got {epsilon!r}")
        self.epsilon = float(epsilon)
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def _reset_sensitivities(self, like: Tensor) -> None:
        B, S, P = self.batch_size, self.state.shape[1], self.layout.size
        self.state_tilde = like.new_zeros(B, S)                                 # s̃_0 (B, S)
        self.theta_tilde = like.new_zeros(B, P)                                 # θ̃_0 (B, P)

    @property
    def sensitivity(self) -> Tensor:
        """The current estimate s̃_t θ̃_tᵀ of M_t, (B, S, P), formed on request (never stored)."""
        return self.state_tilde.unsqueeze(2) * self.theta_tilde.unsqueeze(1)

    def _credit(self, d_state: Tensor) -> Tensor:
        """Σ_b ((∂ℓ_t/∂s_{t−1})_b · s̃_b) θ̃_b: (B, S) -> (P,)."""
        return (d_state * self.state_tilde).sum(-1) @ self.theta_tilde

    def _advance(self, theta: Tensor, p: dict[str, Tensor], x_t: Tensor) -> None:
        transition = self._transition(p)

        def products(s_prev: Tensor, x: Tensor, s_tilde: Tensor, nu: Tensor) -> tuple[Tensor, Tensor]:
            """D_t s̃ (S,) and νᵀ I_t (P,) for one sequence."""
            _, d_s_tilde = torch.func.jvp(lambda s: transition(theta, s, x), (s_prev,), (s_tilde,))
            _, pullback = torch.func.vjp(lambda th: transition(th, s_prev, x), theta)
            return d_s_tilde, pullback(nu)[0]

        B, S = self.state.shape
        signs = torch.randint(0, 2, (B, S), generator=self.generator)
        nu = (2 * signs - 1).to(self.state)                                     # ν (B, S), ±1
        d_s_tilde, nu_immediate = torch.func.vmap(products)(self.state, x_t.detach(),
                                                            self.state_tilde, nu)  # (B, S), (B, P)
        eps = self.epsilon
        rho0 = ((self.theta_tilde.norm(dim=1, keepdim=True)
                 / (d_s_tilde.norm(dim=1, keepdim=True) + eps)).sqrt() + eps)  # (B, 1)
        rho1 = ((nu_immediate.norm(dim=1, keepdim=True)
                 / (nu.norm(dim=1, keepdim=True) + eps)).sqrt() + eps)         # (B, 1)
        self.state_tilde = rho0 * d_s_tilde + rho1 * nu                         # s̃_t (B, S)
        self.theta_tilde = self.theta_tilde / rho0 + nu_immediate / rho1        # θ̃_t (B, P)
