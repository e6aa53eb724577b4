"""Peak memory of one training step, measured in a separate process.

tracemalloc does not see torch's allocations, and a long-lived process (the one that times) holds
layers, inputs and allocator caches that a step could reuse without the process growing. So for each
size a fresh process (``peak_step_memory``) measures every subject in turn, and for each subject

1. builds the layer (or torch.nn baseline) and the input x (T, B, I);
2. runs one untimed training step, so that code, thread pools and per-thread heaps are in place
   (and the generated path's loop is compiled);
3. sets the gradients to None, collects garbage, returns all free heap pages to the system (glibc
   ``malloc_trim``), reads the resident size (VmRSS) and resets the kernel's peak-resident-size mark
   to it (``/proc/self/clear_refs``, Linux);
4. runs one training step (forward, backward of ``output.sum()``, gradients allocated) and reads the
   peak resident size (VmHWM).

Steps 3–4 run twice and the smaller growth VmHWM − VmRSS is kept: what the step added at its peak
(saved activations, temporaries, gradients), to page resolution; allocator slack, which only adds,
still moves it by several per cent between runs. Weights and input are not counted.
"""
from __future__ import annotations

import ctypes
import gc
import json
import os
import re
import subprocess
import sys
from pathlib import Path

MEASURED_STEPS = 2          # the smaller figure is kept: allocator slack only ever adds
METHOD = ("peak growth of the resident set (Linux VmHWM − VmRSS) during one training step, after a "
          "warm-up step, garbage collection and malloc_trim, the smaller of two steps; measured in a "
          "separate process (one per size, the subjects in turn); gradients, saved activations and "
          "temporaries are counted, weights and input are not; allocator slack moves it by several "
          "per cent between runs")


def peak_step_memory(subjects: list[str], size, *, threads: int, seed: int = 0,
                     timeout: float = 1800) -> dict[str, int | str]:
    """For each of ``subjects`` (cell specs or ``nn.LSTM``/``nn.GRU``) at ``size``: the bytes one
    training step adds at its peak, or the reason it could not be measured; one child process."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-c", "from rnnkit.bench.memory import main; main()",
               str(size), str(threads), str(seed), *subjects]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {subject: f"memory probe failed: {last}" for subject in subjects}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    """The child: ``SIZE THREADS SEED SUBJECT...`` -> one JSON line {subject: bytes or reason}."""
    size_text, threads, seed, *subjects = sys.argv[1:]
    import torch

    torch.set_num_threads(int(threads))
    results: dict[str, int | str] = {}
    for subject in subjects:
        try:
            results[subject] = _measure(subject, size_text, int(seed))
        except Exception as error:                  # reported in the table, the others still measured
            results[subject] = f"{type(error).__name__}: {' '.join(str(error).split())}"
    print(json.dumps(results))


def _measure(subject: str, size_text: str, seed: int) -> int:
    from .config import Size
    from .subjects import BASELINES, CellSpec, build_baseline, random_input, training_step

    size = Size.parse(size_text)
    x = random_input(size.T, size.B, size.I, seed=seed)                        # (T, B, I)
    if subject in BASELINES:
        module = build_baseline(subject, size.I, size.H, seed=seed)
        step = training_step(module, x)
    else:
        spec = CellSpec.parse(subject)
        module = spec.build(size.I, size.H, seed=seed)
        step = training_step(module, x, precision=spec.precision)
    step()                                          # load code, thread pools and arenas; compile
    growth = [_peak_growth(step, module) for _ in range(MEASURED_STEPS)]
    del step, module, x
    gc.collect()
    return min(growth)


def _peak_growth(step, module) -> int:
    """Bytes the process's resident size rose by at the peak of ``step()``, from a trimmed heap."""
    for p in module.parameters():
        p.grad = None
    gc.collect()
    _trim()
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")                               # VmHWM := VmRSS
    step()
    return (_status_kib("VmHWM") - before) * 1024


def _status_kib(key: str) -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{key}:\s+(\d+) kB", status, re.M).group(1))


def _trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
