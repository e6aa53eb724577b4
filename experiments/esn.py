"""Study 9: echo state networks, one-step-ahead Mackey-Glass and NARMA-10.

    python experiments/esn.py [--budget 1] [--smoke] [--seeds 10] [--series PATH]

``rnnkit.EchoStateNetwork`` with 100 reservoir units and a ridge-regression readout (nothing is
trained by gradient), several reservoir seeds each:

* Mackey-Glass, τ = 17, as in reservoirpy's quick example: the series from ``rnnkit.tasks.
  mackey_glass`` (2,000 samples, one per time unit), leak rate 0.3, spectral radius 1.25, ridge
  1e-5, readout fitted on steps 100-500, one-step-ahead forecast of the rest;
* the same on the Mackey-Glass file of Lukoševičius's minimal ESN examples (``--series``, skipped
  with a message when absent): fitted on the first 2,000 steps, tested on the next 2,000;
* NARMA-10 (``rnnkit.tasks.narma``): u uniform in [0, 0.5], fitted on 2,200 steps (200 washout),
  tested on the next 2,000; against predicting the mean and a ridge regression on the last 10
  inputs (linear memory without the reservoir).

RMSE is the root mean squared error; NRMSE divides it by the targets' standard deviation. The
"persistence" line predicts x(t+1) = x(t), a baseline any forecaster must beat.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from common import Clock, markdown_table, parse_args, report
from rnnkit import EchoStateNetwork
from rnnkit.cells import fit_ridge
from rnnkit.data.timeseries import read_series_txt
from rnnkit.tasks import mackey_glass
from rnnkit.tasks.narma import narma

DEFAULT_SERIES = Path("/work/shared/data/timeseries/MackeyGlass_t17.txt")
UNITS = 100
MACKEY_GLASS = dict(spectral_radius=1.25, leak_rate=0.3, ridge=1e-5)     # reservoirpy's example
NARMA = dict(spectral_radius=0.9, leak_rate=1.0, input_scaling=0.5, ridge=1e-6)
NARMA_ORDER = 10
RESERVOIRPY_RMSE = 0.002

PUBLISHED = """\
Published figure: reservoirpy's quick example (Trouvain, Pedrelli, Dinh & Hinaut 2020,
*ReservoirPy: an efficient and user-friendly library to design echo state networks*, ICANN 2020;
README of github.com/reservoirpy/reservoirpy) forecasts `mackey_glass(n_timesteps=2000)` one step
ahead with `Reservoir(units=100, lr=0.3, sr=1.25)` and `Ridge(ridge=1e-5)`, fitted on
`X[:500] -> X[1:501]` with `warmup=100` and run on `X[501:-1]`; its RMSE is quoted as 0.002
(we did not find the printed value in the stored copy of the README we checked). Their reservoir
differs in details from ours (their input weights are sparse ±1, ours dense uniform; their bias
differs), so equal RMSEs are not expected to the digit. NARMA-10: errors reported for 100-unit
reservoirs depend on the protocol; we compare with the two baselines instead of a single number.
"""


@dataclass(frozen=True)
class Split:
    """Steps [washout, fit_end) fit the readout; steps [test_start, test_end) are scored."""
    washout: int
    fit_end: int
    test_start: int
    test_end: int


def forecast_errors(inputs: Tensor, targets: Tensor, split: Split, seed: int, options: dict,
                    include_input: bool) -> tuple[float, float]:
    """(RMSE, NRMSE) of an ESN that reads inputs (T,) and predicts targets (T,) at each step."""
    x = inputs.double().view(-1, 1, 1)                                       # (T, B=1, I=1)
    y = targets.double().view(-1, 1, 1)                                      # (T, 1, 1)
    options = dict(options)
    ridge = options.pop("ridge")
    esn = EchoStateNetwork(1, UNITS, 1, washout=split.washout, ridge=ridge, include_input=include_input,
                           seed=seed, dtype=torch.float64, **options)
    esn.fit(x[:split.fit_end], y[:split.fit_end])
    with torch.no_grad():
        prediction, _ = esn(x[:split.test_end])                              # (T', 1, 1), one run
    return rmse_and_nrmse(prediction[split.test_start:, 0, 0], y[split.test_start:split.test_end, 0, 0])


def rmse_and_nrmse(prediction: Tensor, target: Tensor) -> tuple[float, float]:
    rmse = float((prediction - target).pow(2).mean().sqrt())
    return rmse, rmse / float(target.std())


def seeds_row(label: str, errors: list[tuple[float, float]]) -> list[str]:
    rmse, nrmse = [e[0] for e in errors], [e[1] for e in errors]
    spread = f" ± {statistics.stdev(rmse):.2g}" if len(rmse) > 1 else ""
    return [label, f"{statistics.fmean(rmse):.3g}{spread}", f"{statistics.median(rmse):.3g}",
            f"{statistics.fmean(nrmse):.3g}", str(len(errors))]


def persistence_row(label: str, series: Tensor, split: Split) -> list[str]:
    """x(t+1) predicted as x(t) over the test steps."""
    rmse, nrmse = rmse_and_nrmse(series[split.test_start:split.test_end],
                                 series[split.test_start + 1:split.test_end + 1])
    return [label, f"{rmse:.3g}", "", f"{nrmse:.3g}", ""]


def run_seeds(clock: Clock, seeds: list[int], run) -> list[tuple[float, float]]:
    """``run(seed)`` for each seed while the budget lasts (always at least one)."""
    errors = []
    for seed in seeds:
        if errors and clock.left() <= 0:
            break
        errors.append(run(seed))
    return errors


def mackey_glass_rows(args, clock: Clock, seeds: list[int], notes: list[str]) -> list[list[str]]:
    n = 300 if args.smoke else 2000
    split = Split(washout=50, fit_end=200, test_start=201, test_end=n - 1) if args.smoke else \
        Split(washout=100, fit_end=500, test_start=501, test_end=n - 1)
    series = torch.from_numpy(mackey_glass(n))                               # (n,)
    errors = run_seeds(clock, seeds, lambda s: forecast_errors(series[:-1], series[1:], split, s,
                                                               MACKEY_GLASS, include_input=False))
    rows = [seeds_row(f"generated (rnnkit.tasks.mackey_glass, {n} samples), as reservoirpy", errors),
            persistence_row("  persistence x(t+1) = x(t)", series, split)]
    mean_rmse = statistics.fmean(e[0] for e in errors)
    ratio = mean_rmse / RESERVOIRPY_RMSE
    verdict = ("the published figure is reproduced (within 25%)" if abs(ratio - 1) <= 0.25 else
               "we fall short of the published figure" if ratio > 1 else "better than the published figure")
    notes.append(f"Generated series: mean RMSE {mean_rmse:.3g} against reservoirpy's {RESERVOIRPY_RMSE} "
                 f"(×{ratio:.2f}): {verdict}.")
    if not args.series.exists():
        notes.append(f"The Mackey-Glass file was skipped: {args.series} is absent (pass --series PATH).")
        print(notes[-1])
        return rows
    values = torch.from_numpy(np.asarray(read_series_txt(args.series), dtype=np.float64))
    length = 600 if args.smoke else 4001
    values = values[:length]
    half = len(values) // 2
    split = Split(washout=100, fit_end=half, test_start=half, test_end=len(values) - 1)
    errors = run_seeds(clock, seeds, lambda s: forecast_errors(values[:-1], values[1:], split, s,
                                                               MACKEY_GLASS, include_input=False))
    rows += [seeds_row(f"{args.series.name} (first {split.fit_end:,} fit, next "
                       f"{split.test_end - split.test_start:,} tested)", errors),
             persistence_row("  persistence x(t+1) = x(t)", values, split)]
    return rows


def narma_rows(args, clock: Clock, seeds: list[int], notes: list[str]) -> list[list[str]]:
    n = 400 if args.smoke else 4200
    split = Split(washout=50, fit_end=200, test_start=200, test_end=n) if args.smoke else \
        Split(washout=200, fit_end=2200, test_start=2200, test_end=n)
    u, y = narma(n, NARMA_ORDER, generator=torch.Generator().manual_seed(args.seed))    # (n,), (n,)
    errors = run_seeds(clock, seeds, lambda s: forecast_errors(u, y, split, s, NARMA, include_input=True))
    target = y[split.test_start:split.test_end]
    training_mean = float(y[split.washout:split.fit_end].mean())
    mean_rmse, mean_nrmse = rmse_and_nrmse(torch.full_like(target, training_mean), target)
    # Ridge regression on the last NARMA_ORDER inputs: window k holds u[k .. k + order − 1].
    windows = u.unfold(0, NARMA_ORDER, 1)                                    # (n − order + 1, order)
    ends = torch.arange(NARMA_ORDER - 1, n)                                  # the step each window ends at
    fit = (ends >= split.washout) & (ends < split.fit_end)
    test = ends >= split.test_start
    weight, bias = fit_ridge(windows[fit], y[ends[fit]].unsqueeze(1), NARMA["ridge"])
    linear = windows[test] @ weight.T.double() + bias.double()              # (N_test, 1)
    lin_rmse, lin_nrmse = rmse_and_nrmse(linear[:, 0], y[ends[test]])
    esn_nrmse = statistics.fmean(e[1] for e in errors)
    notes.append(f"The reservoir {'beats' if esn_nrmse < lin_nrmse else 'does not beat'} the linear memory of "
                 f"the last {NARMA_ORDER} inputs (NRMSE {esn_nrmse:.3g} vs {lin_nrmse:.3g}); the product "
                 "u(t−9)·u(t) and the feedback through y are out of a linear readout's reach.")
    return [seeds_row(f"ESN, {UNITS} units", errors),
            ["  predict the training mean", f"{mean_rmse:.3g}", "", f"{mean_nrmse:.3g}", ""],
            [f"  ridge regression on the last {NARMA_ORDER} inputs", f"{lin_rmse:.3g}", "",
             f"{lin_nrmse:.3g}", ""]]


def add_options(parser) -> None:
    parser.add_argument("--seeds", type=int, default=10, help="reservoir seeds per task (default 10)")
    parser.add_argument("--series", type=Path, default=DEFAULT_SERIES,
                        help=f"Mackey-Glass file, one value per line (default {DEFAULT_SERIES})")


def main(argv=None) -> None:
    args = parse_args("esn", __doc__, full_budget=1, argv=argv, add_options=add_options)
    clock = Clock(args.budget)
    seeds = list(range(args.seed, args.seed + (1 if args.smoke else args.seeds)))
    notes: list[str] = []
    narma_notes: list[str] = []
    headers = ["series", "RMSE (mean ± sd over seeds)", "median RMSE", "NRMSE (mean)", "seeds"]
    mg = mackey_glass_rows(args, clock, seeds, notes)
    narma_table = narma_rows(args, clock, seeds, narma_notes)
    parts = [f"**Mackey-Glass, one step ahead**: ESN of {UNITS} units, leak rate "
             f"{MACKEY_GLASS['leak_rate']}, spectral radius {MACKEY_GLASS['spectral_radius']}, sparsity "
             f"0.9, ridge {MACKEY_GLASS['ridge']}, readout on the reservoir state alone.",
             markdown_table(headers, mg), *notes,
             f"**NARMA-{NARMA_ORDER}**: ESN of {UNITS} units, spectral radius {NARMA['spectral_radius']}, "
             f"input scaling {NARMA['input_scaling']}, ridge {NARMA['ridge']}, readout on [state; input].",
             markdown_table(headers, narma_table), *narma_notes, PUBLISHED]
    report(args, "\n\n".join(parts), clock)


if __name__ == "__main__":
    main()
