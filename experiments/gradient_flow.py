"""Study 8: how far back the gradient reaches before and after training, and RTRL's cost per step.

    python experiments/gradient_flow.py [--budget 30] [--smoke] [--length 100]

* Gradient flow (``rnnkit.diagnose.gradient_flow``): a tanh RNN, an LSTM and a GRU are trained on
  the adding problem (study 1's setting); for each, ‖∂L/∂h_k‖ and ‖∂h_T/∂h_k‖₂ are measured at
  every step k of a batch of adding sequences, at initialisation and after training (float64,
  L = Σ_j y_{T,j}). A per-step factor ρ < 1 fitted over the distances is a vanishing gradient.
  The picture goes to ``results/gradient_flow.png`` beside the results file.
* RTRL (``rnnkit.learning.RTRL``, Williams & Zipser 1989): time per step of exact RTRL for an
  Elman cell of n units, timed with ``benchmarks/rtrl_cost.py``'s functions, against the n²·P ≈ n⁴
  multiply-adds of the sensitivity update; the sizes grow while the budget allows.

About 80% of the budget trains, the rest times RTRL.
"""
from __future__ import annotations

import copy
import math

import torch

# common first: it puts the repository root on sys.path, which makes benchmarks/ importable.
from common import Clock, figure_path, fmt, markdown_table, parse_args, report  # isort: skip
import adding
from benchmarks.rtrl_cost import fitted_exponent, seconds_per_step
from rnnkit.diagnose import decay_table, gradient_flow, plot_gradient_flow
from rnnkit.learning import RTRL
from rnnkit.train.rng import seed_everything

CELLS = ("tanh RNN", "LSTM", "GRU")
RTRL_SIZES = (8, 16, 32, 64, 128, 256, 512)
RTRL_INPUT_SIZE = 2
TRAIN_SHARE = 0.8
FLOW_BATCH = 16
FIT_FROM = 10                 # rho is fitted over d = FIT_FROM..T-1 in both tables

PUBLISHED = """\
What theory says: for the tanh RNN each step multiplies the gradient by diag(1 − h_t²) U, so its
norm falls geometrically with the distance when ‖U‖ < 1 (Bengio, Simard & Frasconi 1994; Pascanu,
Mikolov & Bengio 2013, arXiv:1211.5063); the LSTM's cell state and the GRU's update gate give a
path whose factors stay near 1. Exact RTRL (Williams & Zipser 1989) carries the sensitivity
matrix M_t (n × P) forward, D_t M_{t−1} costing n²·P ≈ n⁴ multiply-adds per step for an Elman
network of n units.
"""


def flow_of(model, x):
    """``gradient_flow`` of the model's recurrent layer on x (B, T, 2), in float64."""
    layer = copy.deepcopy(model.encoder.rnn).double()
    return gradient_flow(layer, x.double())


def gradient_flow_part(args, sizes: adding.Sizes, length: int, seconds: float):
    """Train each cell, measure its flow before and after; (rows, flows)."""
    contenders = [c for c in adding.CONTENDERS if c.label in CELLS]
    probe = torch.Generator().manual_seed(30_000 + args.seed)
    x, _ = adding.adding_batch(FLOW_BATCH, length, probe)                     # (B, T, 2)
    rows, flows = [], {}
    for contender in contenders:
        seed_everything(args.seed)                    # the same initial weights train_adding starts from
        untrained = adding.adding_model(contender, length, sizes.hidden_size)
        share = seconds / len(contenders)
        trained, log, test_mse = adding.train_adding(contender, length, sizes, share, args.seed)
        before, after = flow_of(untrained, x), flow_of(trained, x)
        flows[f"{contender.label}, untrained"] = before
        flows[f"{contender.label}, trained"] = after
        farthest = [fmt(float(flow.by_distance()[length - 1]), 2) for flow in (before, after)]
        rows.append([contender.label, f"{log.steps:,} ({log.seconds / 60:.1f} min)", fmt(test_mse, 4),
                     _rate(before, length), _rate(after, length), *farthest])
        print(f"flow {contender.label:<10} test MSE {fmt(test_mse, 4)} after {log.steps} steps", flush=True)
    return rows, flows


def fit_range(length: int) -> tuple[int, int]:
    """The distances ρ is fitted over, in both tables: from FIT_FROM (past the first steps, where
    the loss's own path dominates) to T - 1; all of 1..T-1 for short sequences."""
    return (FIT_FROM, length - 1) if length - 1 - FIT_FROM >= 1 else (1, length - 1)


def _rate(flow, length: int) -> str:
    try:
        return f"{flow.rate(*fit_range(length)):.3f}"
    except ValueError:
        return "n/a"


def rtrl_part(seconds: float, sizes: tuple[int, ...], steps: int):
    """Time exact RTRL per step, at two sizes at least and then while the next size's predicted
    time (∝ n⁴) fits in ``seconds``; (rows, sizes timed, seconds per step)."""
    done, times, rows, spent = [], [], [], 0.0
    for n in sizes:
        if len(times) >= 2:
            predicted = times[-1] * (n / done[-1]) ** 4 * (steps + 1)
            if spent + predicted > seconds:
                break
        per_step = seconds_per_step(RTRL, n, RTRL_INPUT_SIZE, steps, torch.float32)
        spent += per_step * (steps + 1)
        P = n * n + n * RTRL_INPUT_SIZE + 2 * n                          # Elman: W, U, b_ih, b_hh
        work = n * n * P
        slope = "" if not done else f"{math.log(per_step / times[-1]) / math.log(n / done[-1]):.2f}"
        rows.append([n, f"{P:,}", f"{work:.3g}", f"{per_step * 1e3:.2f}", f"{per_step / work * 1e9:.3g}",
                     slope])
        done.append(n)
        times.append(per_step)
        print(f"rtrl n={n}: {per_step * 1e3:.2f} ms/step", flush=True)
    return rows, done, times


def add_options(parser) -> None:
    parser.add_argument("--length", type=int, default=100, help="adding-problem length T (default 100)")


def main(argv=None) -> None:
    args = parse_args("gradient_flow", __doc__, full_budget=30, argv=argv, add_options=add_options)
    sizes = adding.SMOKE if args.smoke else adding.Sizes()
    length = 8 if args.smoke else args.length
    clock = Clock(args.budget)

    rows, flows = gradient_flow_part(args, sizes, length, clock.left() * TRAIN_SHARE)
    png, link = figure_path(args, "gradient_flow.png")
    if png is not None:
        plot_gradient_flow(flows, png, title=f"Adding problem, T = {length}: before and after training")
    # RTRL keeps its share of the budget even when measuring the flows overran the training's.
    rtrl_seconds = max(clock.left(), (1 - TRAIN_SHARE) * clock.seconds)
    rtrl_rows, ns, times = rtrl_part(rtrl_seconds, RTRL_SIZES[:2] if args.smoke else RTRL_SIZES,
                                     steps=1 if args.smoke else 3)

    first, last = fit_range(length)
    parts = [
        f"**Gradient flow** on {FLOW_BATCH} adding sequences of length {length} (hidden size "
        f"{sizes.hidden_size}, trained as in study 1). ρ: the per-step factor of the geometric fit of "
        f"‖∂L/∂h_k‖ over the distances d = {first}..{last}.",
        markdown_table(["cell", "steps trained", "test MSE", "ρ untrained", "ρ trained",
                        f"‖∂L/∂h‖ at d = {length - 1}, untrained", "trained"], rows),
        "```text\n" + decay_table(flows, fit=(first, last)) + "\n```",
    ]
    if link:
        parts.append(f"![gradient flow before and after training]({link})")
    parts += [
        f"**RTRL's cost per step** (Elman cell, I = {RTRL_INPUT_SIZE}, B = 1, float32; median of "
        f"{1 if args.smoke else 3} timed steps; `benchmarks/rtrl_cost.py` for the full table with UORO):",
        markdown_table(["n", "P", "n²·P", "ms/step", "ns per n²·P", "slope from previous n"], rtrl_rows),
        f"Fitted exponent of time ∝ n^k over all sizes: {fitted_exponent(ns, times):.2f}"
        + (f"; over the largest three: {fitted_exponent(ns[-3:], times[-3:]):.2f}" if len(ns) > 3 else "")
        + ". Theory: 4 once the n²·P product dominates the per-step overhead (small n are overhead-bound).",
        PUBLISHED,
    ]
    report(args, "\n\n".join(parts), clock)


if __name__ == "__main__":
    main()
