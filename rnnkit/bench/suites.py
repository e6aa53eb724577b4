"""The sections of the speed benchmark: what each measures, against what, after which check.

* ``train``: a training step (forward, backward of ``output.sum()``, in training mode) of every cell
  spec through ``Recurrent(name, I, H, **options)`` (``backend="auto"``; ``+bf16`` under bfloat16
  autocast) and of torch.nn.LSTM / torch.nn.GRU of the same size, at every size. Each row records
  the path the dispatcher took and the time of its first call, made before the guard and the timing
  (on the generated path that call compiles the loop, so that no timed call includes the compile).
* ``lengths``: the same step on a batch whose lengths are spread from 1 to T, against the same
  batch at full length (``LENGTHS_CELLS`` with ``lengths=``, nn.LSTM on a PackedSequence).
* ``scan``: minGRU / minLSTM training on one long sequence batch (``BenchConfig.scan_size``).
* ``streaming``: batch-1 inference one step at a time, the state carried; of the plain float32
  specs (at inference, layer options are off or in expectation, and ``+bf16`` is a training row).
* ``memory``: peak memory of a training step (``rnnkit.bench.memory``), measured first, in child
  processes, before anything is timed.

Every rnnkit configuration passes the correctness guard (``rnnkit.bench.guard``) at the shape it is
timed at before it is timed; one that fails is reported with the reason and never timed. All
subjects of one table are timed in one ``time_interleaved`` call, so their ratios come from the same
rounds of the same process.
"""
from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from .config import LENGTHS_CELLS, SCAN_CELLS, BenchConfig, Size
from .guard import Check, check_against_reference, steps_float32_follows
from .machine import environment, load_average
from .memory import peak_step_memory
from .subjects import (BASELINES, CellSpec, build_baseline, output_of, random_input, spread_lengths,
                       streamed_outputs, streaming_loop, training_step)
from .timing import Timing, time_interleaved

Echo = Callable[[str], None]


@dataclass
class Measurement:
    """One subject (a cell spec or ``nn.LSTM``) at one size."""
    subject: str
    size: Size
    check: Check | None = None                                  # None for the torch.nn baselines
    timings: dict[str, Timing] = field(default_factory=dict)    # by mode; empty when not timed
    peak_bytes: int | None = None                               # memory section
    note: str = ""                                              # why a figure is missing
    spec: CellSpec | None = None                                # None for the torch.nn baselines
    path: str = ""                                              # the dispatcher's path (train)
    first_call: float | None = None                             # seconds of the first training step

    @property
    def timed(self) -> bool:
        return bool(self.timings)

    @property
    def compile_seconds(self) -> float | None:
        """The first call's time beyond the steady state (best round's median): on the generated
        path, torch.compile's work."""
        if self.first_call is None or "train" not in self.timings:
            return None
        return self.first_call - self.timings["train"].best


@dataclass
class Results:
    config: BenchConfig
    sections: dict[str, list[Measurement]] = field(default_factory=dict)
    seconds: float = 0.0
    load: list[tuple[float, float, float]] = field(default_factory=list)   # host load, at start and end
    environment: dict[str, str] = field(default_factory=dict)              # rnnkit.bench.machine


def run(config: BenchConfig, echo: Echo | None = None) -> Results:
    """Run the sections of ``config`` in one process on ``config.threads`` threads (restored after)."""
    echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    specs = parse_specs(config.cells)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    results, began = Results(config, environment=environment()), time.perf_counter()
    results.load.append(load_average())
    try:
        # memory first: its child processes import rnnkit from disk, as close as possible to the
        # moment this process did (and before any timing, which they would disturb)
        for name in sorted(config.sections, key=lambda n: n != "memory"):
            echo(f"== {name}")
            results.sections[name] = SECTIONS[name](config, specs, echo)
    finally:
        torch.set_num_threads(threads)
    results.seconds = time.perf_counter() - began
    results.load.append(load_average())
    return results


def parse_specs(cells) -> list[CellSpec]:
    """Parse and build (at a tiny size) every spec, so that a bad one fails before any timing."""
    specs = []
    for text in cells:
        spec = CellSpec.parse(text)
        try:
            spec.build(2, 2)
        except (ValueError, TypeError) as error:
            raise ValueError(f"--cells {text!r}: {' '.join(str(error).split())}") from None
        specs.append(spec)
    return specs


# ------------------------------------------------------------------------------------------------
def train_section(config: BenchConfig, specs: list[CellSpec], echo: Echo) -> list[Measurement]:
    measured = []
    for size in config.sizes:
        echo(f"training step, {size.label}")
        x = random_input(size.T, size.B, size.I, seed=config.seed)               # (T, B, I)
        rows, subjects = _guarded(config, specs, size, echo, _training_steps(x), _training_check(config, x),
                                  first_call=_first_call(x))
        for name in BASELINES:
            rows.append(Measurement(name, size))
            subjects[name] = training_step(build_baseline(name, size.I, size.H, seed=config.seed), x)
        _time(config, subjects, rows, echo, mode="train")
        measured += rows
    return measured


def lengths_section(config: BenchConfig, _specs, echo: Echo) -> list[Measurement]:
    specs = [CellSpec.parse(text) for text in LENGTHS_CELLS]
    measured = []
    for size in config.sizes:
        echo(f"variable lengths, {size.label}")
        x = random_input(size.T, size.B, size.I, seed=config.seed)               # (T, B, I)
        full = torch.full((size.B,), size.T, dtype=torch.long)                  # (B,)
        spread = spread_lengths(size.B, size.T, seed=config.seed)               # (B,)
        runs = {"plain": None, "full": full, "spread": spread}

        def steps(module, precision=nullcontext):
            return {mode: training_step(module, x, lengths, precision=precision) for mode, lengths in runs.items()}
        rows, subjects = _guarded(config, specs, size, echo, lambda spec, layer: steps(layer, spec.precision),
                                  _training_check(config, x, spread))
        rows.append(Measurement("nn.LSTM", size))
        subjects["nn.LSTM"] = steps(build_baseline("nn.LSTM", size.I, size.H, seed=config.seed))
        _time(config, subjects, rows, echo)
        measured += rows
    return measured


def scan_section(config: BenchConfig, specs: list[CellSpec], echo: Echo) -> list[Measurement]:
    chosen = [s for s in specs if s.name in SCAN_CELLS] or [CellSpec.parse(t) for t in SCAN_CELLS]
    size = config.scan_size
    echo(f"long sequences, {size.label}")
    x = random_input(size.T, size.B, size.I, seed=config.seed)                   # (T, B, I)
    rows, subjects = _guarded(config, chosen, size, echo, _training_steps(x), _training_check(config, x))
    rows.append(Measurement("nn.LSTM", size))
    subjects["nn.LSTM"] = training_step(build_baseline("nn.LSTM", size.I, size.H, seed=config.seed), x)
    _time(config, subjects, rows, echo, mode="train")
    return rows


def streaming_section(config: BenchConfig, specs: list[CellSpec], echo: Echo) -> list[Measurement]:
    left_out = [s.text for s in specs if s.training_only]
    if left_out:
        echo(f"streaming leaves out the training rows {', '.join(left_out)}")
    specs = [s for s in specs if not s.training_only]
    measured = []
    for I, H in dict.fromkeys((s.I, s.H) for s in config.sizes):
        size = Size(1, config.streaming_steps, I, H)
        echo(f"streaming, {size.label}, one step per call")
        x = random_input(size.T, 1, I, seed=config.seed)                         # (T, 1, I)

        def check(spec, layer):
            reference = spec.reference_twin(layer).eval()
            layer.eval()                                # inference: dropout-like options off

            def compare(x_) -> Check:
                return check_against_reference(layer, reference, lambda m: streamed_outputs(m, x_),
                                               run_reference=lambda m: output_of(m, x_),
                                               tolerance=config.tolerance, gradients=False)
            verdict = compare(x)
            if verdict.passed:
                return verdict
            return _where_float32_follows(verdict, compare, spec, layer, reference, x, config.tolerance)
        rows, subjects = _guarded(config, specs, size, echo, lambda _, layer: streaming_loop(layer.eval(), x),
                                  check)
        for name in BASELINES:
            rows.append(Measurement(name, size))
            subjects[name] = streaming_loop(build_baseline(name, I, H, seed=config.seed).eval(), x)
        _time(config, subjects, rows, echo, mode="stream")
        measured += rows
    return measured


def memory_section(config: BenchConfig, specs: list[CellSpec], echo: Echo) -> list[Measurement]:
    measured = []
    for size in config.sizes:
        echo(f"peak memory of a training step, {size.label} (in a separate process)")
        subjects = [s.text for s in specs] + list(BASELINES)
        probed = peak_step_memory(subjects, size, threads=config.threads, seed=config.seed)
        for subject in subjects:
            row, value = Measurement(subject, size), probed[subject]
            if isinstance(value, int):
                row.peak_bytes = value
            else:
                row.note = value
            measured.append(row)
    return measured


SECTIONS = {"train": train_section, "lengths": lengths_section, "scan": scan_section,
            "streaming": streaming_section, "memory": memory_section}


# ------------------------------------------------------------------------------------------------
def _guarded(config: BenchConfig, specs: list[CellSpec], size: Size, echo: Echo, make_subject,
             check, first_call=None) -> tuple[list[Measurement], dict]:
    """Build each spec's layer, call ``first_call(spec, layer, row)`` when given, run
    ``check(spec, layer)``; only those that pass get a subject (``make_subject(spec, layer)``: a
    function, or a dict of them by mode)."""
    rows, subjects = [], {}
    for spec in specs:
        layer = spec.build(size.I, size.H, seed=config.seed)
        row = Measurement(spec.text, size, spec=spec)
        if first_call is not None:
            first_call(spec, layer, row)
        try:
            row.check = check(spec, layer)
        except Exception as error:                  # e.g. the reference twin cannot be built
            row.check = Check(False, float("nan"), f"check raised {type(error).__name__}: "
                                                   f"{' '.join(str(error).split())}")
        path = f" [{row.path}]" if row.path else ""
        echo(f"  {spec.text:<14}{path} {row.check.describe()}")
        rows.append(row)
        if row.check.passed:
            subjects[spec.text] = make_subject(spec, layer)
    return rows, subjects


def _training_steps(x):
    """``make_subject(spec, layer)``: a training step on x (T, B, I) in the spec's precision."""
    return lambda spec, layer: training_step(layer, x, precision=spec.precision)


def _first_call(x):
    """``first_call(spec, layer, row)``: record the dispatcher's path for a training step on x and
    time that step's first call (on the generated path, it compiles). A call that raises is left to
    the guard, which runs the same step and reports why."""
    def first_call(spec: CellSpec, layer, row: Measurement) -> None:
        row.path = spec.path(layer, x)
        step = training_step(layer, x, precision=spec.precision)
        began = time.perf_counter()
        try:
            step()
        except Exception:                           # noqa: BLE001 - the guard reports it
            return
        row.first_call = time.perf_counter() - began
    return first_call


def _training_check(config: BenchConfig, x, lengths=None):
    """``check(spec, layer)``: the layer's output on x (T, B, I) and its weight gradients against
    the reference twin's, both in training mode from the same random seed (so that zoneout and
    dropout draw the same masks), in the spec's precision (``+bf16``: the twin under the same
    autocast, within ``config.bf16_tolerance``). A float32 configuration without masks or lengths
    that fails is compared again over the steps where float32 rounding has not yet grown
    (``steps_float32_follows``), when the reference loop itself leaves float64 before the end."""
    def check(spec: CellSpec, layer) -> Check:
        tolerance = config.tolerance if spec.autocast is None else config.bf16_tolerance
        twin = spec.reference_twin(layer)

        def compare(x_) -> Check:
            return check_against_reference(layer, twin, lambda m: output_of(m, x_, lengths, precision=spec.precision),
                                           tolerance=tolerance, seed=config.seed)
        verdict = compare(x)
        if verdict.passed or spec.training_only or lengths is not None:
            return verdict
        return _where_float32_follows(verdict, compare, spec, layer, twin, x, tolerance)
    return check


def _where_float32_follows(verdict: Check, compare, spec: CellSpec, layer, twin, x, tolerance: float) -> Check:
    """A failed float32 ``verdict`` compared again (``compare(x_)``) over the leading steps of x where
    the float32 reference loop still follows float64 (``steps_float32_follows``); the verdict as it
    was when the reference follows all the way (the difference is then the path's)."""
    T, steps = x.shape[0], steps_float32_follows(twin, spec.reference_twin(layer, torch.float64), x, tolerance)
    if steps == T:
        return verdict
    if steps < 2:
        return replace(verdict, reason=f"{verdict.reason}; the reference loop itself leaves float64's by "
                                       f"more than {tolerance / 10:.0e} from step {steps + 1}")
    return replace(compare(x[:steps]), scope=f"first {steps} of {T} steps")


def _time(config: BenchConfig, subjects: dict, rows: list[Measurement], echo: Echo, mode: str | None = None) -> None:
    """Time all subjects interleaved; a subject is one function (stored under ``mode``) or a dict
    of them by mode. Fills each row's ``timings``."""
    flat = {}
    for name, subject in subjects.items():
        for key, function in (subject.items() if isinstance(subject, dict) else [(mode, subject)]):
            flat[(name, key)] = function
    began = time.perf_counter()
    timings = time_interleaved(flat, config.timer, on_round=lambda r, _: echo(
        f"  round {r}/{config.timer.rounds} of {len(flat)} subjects done, {time.perf_counter() - began:.0f} s"))
    for row in rows:
        row.timings = {key: t for (name, key), t in timings.items() if name == row.subject}
