r"""The learning rate at each step: linear warm-up, then constant, cosine, step decay or plateau decay.

With η the base rate of a parameter group, s the number of optimiser steps taken, W the warm-up steps,
S the total steps, η_min the floor and γ the decay factor:

    warm-up (s < W):   η_s = η · (s + 1) / W
    constant:          η_s = η
    cosine:            η_s = η_min + (η − η_min) · ½ (1 + cos(π · min(1, (s − W) / (S − W))))
                       (Loshchilov & Hutter 2017, "SGDR", arXiv:1608.03983, without restarts)
    step:              η_s = η · γ^⌊(s − W) / step_size⌋
    plateau:           η_s = max(η_min, η · γ^k), k = the number of times the dev metric went
                       ``patience`` evaluations without improving (as torch's ReduceLROnPlateau)

The whole state is a few numbers, so it is saved as JSON with the checkpoint (no pickle).
"""
from __future__ import annotations

import math

import torch


class LearningRateSchedule:
    """Sets ``lr`` of every parameter group of ``optimizer`` before each step.

    Args:
        optimizer: its groups' current ``lr`` are the base rates η.
        kind: ``"constant"``, ``"cosine"``, ``"step"`` or ``"plateau"``.
        warmup_steps: W.
        total_steps: S, needed by ``"cosine"``.
        step_size, gamma: the step and plateau decay.
        plateau_patience: evaluations without improvement before a plateau decay.
        min_lr: η_min.
        higher_is_better: the direction of the metric ``observe`` receives.

    Call ``step()`` after each optimiser step and ``observe(value)`` after each evaluation.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, kind: str = "constant", *, warmup_steps: int = 0,
                 total_steps: int | None = None, step_size: int = 1000, gamma: float = 0.1,
                 plateau_patience: int = 2, min_lr: float = 0.0, higher_is_better: bool = True) -> None:
        if kind not in ("constant", "cosine", "step", "plateau"):
            raise ValueError(f"kind must be 'constant', 'cosine', 'step' or 'plateau', got {kind!r}")
        if kind == "cosine" and (total_steps is None or total_steps < 1):
            raise ValueError("the cosine schedule needs total_steps, the length of the run in steps "
                             f"(set max_steps, or give batches that have a len()); got {total_steps!r}")
        self.optimizer, self.kind = optimizer, kind
        self.warmup_steps, self.total_steps = warmup_steps, total_steps
        self.step_size, self.gamma, self.plateau_patience = step_size, gamma, plateau_patience
        self.min_lr, self.higher_is_better = min_lr, higher_is_better
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.steps = 0                 # optimiser steps taken
        self.decays = 0                # plateau decays so far
        self.best: float | None = None
        self.bad_evaluations = 0
        self._apply()

    def rate(self, base_lr: float) -> float:
        """η_s for a group whose base rate is ``base_lr``, at the current step."""
        s, W = self.steps, self.warmup_steps
        if s < W:
            return base_lr * (s + 1) / W
        if self.kind == "cosine":
            progress = min(1.0, (s - W) / max(1, self.total_steps - W))
            return self.min_lr + (base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.kind == "step":
            return base_lr * self.gamma ** ((s - W) // self.step_size)
        if self.kind == "plateau":
            return max(self.min_lr, base_lr * self.gamma ** self.decays)
        return base_lr

    def step(self) -> None:
        """Advance one optimiser step and set the next step's rates."""
        self.steps += 1
        self._apply()

    def observe(self, value: float) -> None:
        """Record an evaluation of the dev metric (only the plateau schedule uses it)."""
        improved = self.best is None or (value > self.best if self.higher_is_better else value < self.best)
        if improved:
            self.best, self.bad_evaluations = value, 0
        else:
            self.bad_evaluations += 1
        if self.kind == "plateau" and self.bad_evaluations >= self.plateau_patience:
            self.decays, self.bad_evaluations = self.decays + 1, 0
            self._apply()

    def current_lrs(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"kind": self.kind, "base_lrs": list(self.base_lrs), "steps": self.steps, "decays": self.decays,
                "best": self.best, "bad_evaluations": self.bad_evaluations}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != self.kind:
            raise ValueError(f"the saved schedule is {state.get('kind')!r}, this run's is {self.kind!r}")
        self.base_lrs = [float(lr) for lr in state["base_lrs"]]
        self.steps, self.decays = int(state["steps"]), int(state["decays"])
        self.best, self.bad_evaluations = state["best"], int(state["bad_evaluations"])
        self._apply()

    def _apply(self) -> None:
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.rate(base_lr)
