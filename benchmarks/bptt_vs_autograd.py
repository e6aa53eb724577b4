"""Training-step time of the hand-derived BPTT against autograd through the same step loop.

    python benchmarks/bptt_vs_autograd.py [--batch 32 --length 100 --size 128 --rounds 3]

For each cell, one forward + backward (loss = output.sum()) through rnnkit.Recurrent with
backend="reference" and bptt="hand" vs bptt="autograd", interleaved in rounds; the figure is the
lowest of the round medians (host noise only adds time). torch.nn.LSTM in the same run is the
yardstick: every column is also given as a ratio of its time to nn.LSTM's.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import rnnkit

CELLS = [("elman", {}), ("residual", {}), ("jordan", {}), ("indrnn", {}),
         ("mingru", {}), ("lstm", {"variant": "standard"}),
         ("lstm", {"variant": "vanilla"}), ("lstm", {"variant": "cifg"}), ("lstm", {"variant": "fgr"}),
         ("gru", {"variant": "standard"}), ("gru", {"variant": "original"})]


def median_ms(step, repeats: int) -> float:
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def training_step(module, x):
    def step():
        output = module(x)[0]
        output.sum().backward()
        for p in module.parameters():
            p.grad = None
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--size", type=int, default=128, help="input and hidden size")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.length, args.batch, args.size)
    steps = {"nn.LSTM": training_step(torch.nn.LSTM(args.size, args.size), x)}
    for name, options in CELLS:
        label = name + "".join(f":{v}" for v in options.values())
        for bptt in ("hand", "autograd"):
            layer = rnnkit.Recurrent(name, args.size, args.size, backend="reference", bptt=bptt, **options)
            steps[(label, bptt)] = training_step(layer, x)
    best: dict = {}
    for _ in range(args.rounds):
        for key, step in steps.items():
            best[key] = min(best.get(key, float("inf")), median_ms(step, args.repeats))
    base = best.pop("nn.LSTM")
    print(f"B={args.batch} T={args.length} I=H={args.size}, {args.threads} threads, torch {torch.__version__}; "
          f"nn.LSTM forward+backward {base:.1f} ms")
    print(f"{'cell':<16}{'hand ms':>9}{'autograd ms':>13}{'hand/autograd':>15}{'speed vs nn.LSTM':>18}")
    for label in dict.fromkeys(k[0] for k in best):
        hand, auto = best[(label, "hand")], best[(label, "autograd")]
        print(f"{label:<16}{hand:>9.1f}{auto:>13.1f}{hand / auto:>15.2f}{base / hand:>17.2f}x")


if __name__ == "__main__":
    main()
