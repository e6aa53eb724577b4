"""What subnormal floats cost a vanishing gradient: a training step with and without flushing them.

    python benchmarks/subnormals.py [--batch 50 --length 200 --size 128 --rounds 3 --threads 1]

A tanh RNN's gradient shrinks geometrically going back through time (rho ≈ 0.6 a step at the
default initialisation, ``docs/results.md`` study 8), so after about 150 steps its float32 values
fall below 1.2e-38 into the subnormal range, which x86 CPUs compute in microcode, many times
slower. ``torch.set_flush_denormal(True)`` turns them into zeros (a loss of nothing that a float32
gradient could carry). One training step (loss = the last output's sum, as in the adding problem)
of torch.nn.RNN (tanh) and of rnnkit's LSTM and GRU, each timed with flushing off and on,
interleaved in rounds; the figure is the lowest of the round medians.
"""
from __future__ import annotations

import argparse

import torch

import rnnkit
from bptt_vs_autograd import median_ms

MODELS = {
    "torch.nn.RNN (tanh)": lambda i, h: torch.nn.RNN(i, h, batch_first=True),
    "rnnkit LSTM (vanilla)": lambda i, h: rnnkit.Recurrent("lstm", i, h, batch_first=True, variant="vanilla"),
    "rnnkit GRU": lambda i, h: rnnkit.Recurrent("gru", i, h, batch_first=True),
}


def last_output_step(module, x):
    """One forward and backward of loss = sum of the last step's output."""
    def step():
        output = module(x)[0]                                         # (B, T, H)
        output[:, -1].sum().backward()
        for p in module.parameters():
            p.grad = None
    return step


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.length, 2)                                  # (B, T, I)
    if not torch.set_flush_denormal(True):
        raise SystemExit("this CPU cannot flush subnormals (torch.set_flush_denormal returned False)")
    print(f"training step, B {args.batch}, T {args.length}, H {args.size}, {args.threads} thread(s), "
          f"float32; best of {args.rounds} round medians of {args.repeats}")
    print(f"{'model':<24}{'kept ms':>10}{'flushed ms':>12}{'kept / flushed':>16}")
    for name, build in MODELS.items():
        step = last_output_step(build(2, args.size), x)
        best = {False: float("inf"), True: float("inf")}
        for _ in range(args.rounds):
            for flush in (False, True):
                torch.set_flush_denormal(flush)
                best[flush] = min(best[flush], median_ms(step, args.repeats))
        torch.set_flush_denormal(False)
        print(f"{name:<24}{best[False]:>10.1f}{best[True]:>12.1f}{best[False] / best[True]:>16.2f}")


if __name__ == "__main__":
    main()
