"""Cost per step of exact RTRL for the Elman cell against hidden size n, and UORO beside it.

    python benchmarks/rtrl_cost.py [--sizes 16 32 64 128 256 512 --input-size 2 --steps 3]

Exact RTRL (rnnkit.learning.RTRL) multiplies D_t (n × n) by M_{t−1} (n × P), P = n² + n·I + 2n, at
every step: n²·P ≈ n⁴ multiply-adds. For each n the script times whole steps (forward, loss through
a linear readout, gradient, sensitivity update; B = 1, float32) and reports the median; the exponent
k of time ∝ n^k is the slope of log(time) against log(n), fitted over all sizes and over the largest
three (at small n a fixed per-step overhead of Python and torch.func hides the n⁴ term). UORO
(rnnkit.learning.UORO, O(P) ≈ n² per step) is timed alike, and its gradient over one sequence is
compared with the exact one by cosine similarity.
"""
from __future__ import annotations

import argparse
import functools
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from rnnkit import cells
from rnnkit.learning import RTRL, UORO, rtrl_gradient


def seconds_per_step(learner_class, n: int, input_size: int, steps: int, dtype) -> float:
    """Median wall time of one ``step`` with a loss, after one warm-up step."""
    torch.manual_seed(0)
    cell = cells.create("elman", input_size, n, dtype=dtype)
    learner = learner_class(cell, nn.Linear(n, 1, dtype=dtype))
    learner.reset(batch_size=1)
    x = torch.randn(steps + 1, 1, input_size, dtype=dtype)                       # (T, B, I)
    y = torch.randn(steps + 1, 1, 1, dtype=dtype)                                # (T, B, 1)
    times = []
    for t in range(steps + 1):
        start = time.perf_counter()
        learner.step(x[t], y[t], F.mse_loss)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def fitted_exponent(sizes: list[int], times: list[float]) -> float:
    """Least-squares slope of log(time) against log(n)."""
    xs, ys = [math.log(n) for n in sizes], [math.log(t) for t in times]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def cost_table(name: str, learner_class, sizes, input_size, steps, dtype, work: str) -> None:
    """One row per n: P, the theoretical work (``work``: "n²·P" or "P"), the time, the time per
    unit of work (constant once that term dominates) and the local slope d log(time) / d log(n)."""
    print(f"\n{name}: time per step, Elman cell, I = {input_size}, B = 1, {dtype}")
    print(f"{'n':>6} {'P':>9} {work:>10} {'ms/step':>10} {'ns per ' + work:>12} {'slope from previous n':>22}")
    times = []
    for k, n in enumerate(sizes):
        times.append(seconds_per_step(learner_class, n, input_size, steps, dtype))
        P = n * n + n * input_size + 2 * n                                       # Elman: W, U, b_ih, b_hh
        units = n * n * P if work == "n²·P" else P
        slope = "" if k == 0 else f"{math.log(times[k] / times[k - 1]) / math.log(n / sizes[k - 1]):.2f}"
        print(f"{n:>6} {P:>9} {units:>10.3g} {times[-1] * 1e3:>10.2f} {times[-1] / units * 1e9:>12.3g} "
              f"{slope:>22}", flush=True)
    print(f"fitted exponent, all sizes:        {fitted_exponent(sizes, times):.2f}")
    if len(sizes) > 3:
        print(f"fitted exponent, largest 3 sizes:  {fitted_exponent(sizes[-3:], times[-3:]):.2f}")


def cosine(a: dict, b: dict, names: list[str]) -> float:
    va = torch.cat([a[n].flatten() for n in names])
    vb = torch.cat([b[n].flatten() for n in names])
    return float(va @ vb / (va.norm() * vb.norm()))


def uoro_cosines(n: int, length: int, samples: int) -> None:
    """Cosine similarity of UORO's gradient with RTRL's over one random sequence (float64)."""
    torch.manual_seed(0)
    cell = cells.create("elman", 2, n, dtype=torch.float64)
    readout = nn.Linear(n, 1, dtype=torch.float64)
    x = torch.randn(length, 1, 2, dtype=torch.float64)
    y = torch.randn(length, 1, 1, dtype=torch.float64)
    names = list(cell.params())                      # the cell's parameters (the readout's are exact)
    exact = rtrl_gradient(cell, x, F.mse_loss, y, readout=readout)
    estimates = [rtrl_gradient(cell, x, F.mse_loss, y, readout=readout,
                               learner=functools.partial(UORO, seed=s)) for s in range(samples)]
    singles = [cosine(e, exact, names) for e in estimates]
    mean = {k: sum(e[k] for e in estimates) / samples for k in names}
    print(f"\nUORO vs exact gradient of the cell's parameters (Elman n = {n}, T = {length}, float64):")
    print(f"  cosine of one estimate: mean {statistics.fmean(singles):.3f}, "
          f"min {min(singles):.3f}, max {max(singles):.3f} over {samples} seeds")
    print(f"  cosine of the mean of the {samples} estimates: {cosine(mean, exact, names):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512])
    parser.add_argument("--input-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per size (after one warm-up)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--no-uoro", action="store_true", help="time exact RTRL only")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    cost_table("Exact RTRL", RTRL, args.sizes, args.input_size, args.steps, torch.float32, "n²·P")
    print("theory: n²·P multiply-adds per step, exponent 4 as n grows")
    if not args.no_uoro:
        cost_table("UORO", UORO, args.sizes, args.input_size, args.steps, torch.float32, "P")
        print("theory: O(P) per step, exponent 2 as n grows")
        uoro_cosines(n=16, length=20, samples=20)


if __name__ == "__main__":
    main()
