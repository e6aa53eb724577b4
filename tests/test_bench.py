"""The speed benchmark's machinery: the interleaved timer, the correctness guard, the command and the
generated document. Nothing here asserts a speed: only what is measured and how it is reported."""
import importlib.util
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from rnnkit import Recurrent
from rnnkit.bench import BenchConfig, Size, TimerConfig, check_against_reference, run, time_interleaved
from rnnkit.bench.memory import peak_step_memory
from rnnkit.cli import main

ROOT = Path(__file__).resolve().parents[1]
# One thread: on a host whose cores are busy, two OpenMP threads can make a 1 ms step take a second,
# and these tests check what is reported, not how fast.
ONE_THREAD = ["--threads", "1"]


class FakeClock:
    """A clock that only moves when a fake subject 'runs' for a scripted duration."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def scripted(clock, durations, calls, name):
    """A subject that takes the next of ``durations`` seconds per call and records its name."""
    durations = iter(durations)

    def call():
        calls.append(name)
        clock.now += next(durations)
    return call


def test_timer_reports_each_rounds_median_and_the_best_round():
    clock, calls = FakeClock(), []
    timer = TimerConfig(rounds=2, warmup=1, min_reps=3, min_time=0.0, max_reps=3)
    # per round: one warm-up call (ignored), then three timed calls
    a = scripted(clock, [100, 5, 1, 3, 100, 2, 9, 8], calls, "a")
    b = scripted(clock, [100, 4, 4, 4, 100, 7, 6, 5], calls, "b")
    timings = time_interleaved({"a": a, "b": b}, timer, clock=clock)
    assert timings["a"].round_medians == [3, 8] and timings["a"].reps == [3, 3]
    assert timings["b"].round_medians == [4, 6]
    assert (timings["a"].best, timings["a"].worst) == (3, 8)


def test_timer_interleaves_subjects_round_robin():
    clock, calls = FakeClock(), []
    timer = TimerConfig(rounds=3, warmup=1, min_reps=2, min_time=0.0, max_reps=2)
    subjects = {name: scripted(clock, [1] * 9, calls, name) for name in "abc"}
    time_interleaved(subjects, timer, clock=clock)
    blocks = [calls[k] for k in range(0, len(calls), 3)]              # 3 calls per subject per round
    assert blocks == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]   # every round, each in turn, rotated


def test_timer_repeats_until_min_time_but_not_past_max_reps():
    clock, calls = FakeClock(), []
    timer = TimerConfig(rounds=1, warmup=0, min_reps=2, min_time=10.0, max_reps=6)
    timings = time_interleaved({"a": scripted(clock, [1] * 20, calls, "a")}, timer, clock=clock)
    assert timings["a"].reps == [6]
    timings = time_interleaved({"a": scripted(clock, [4] * 20, calls, "a")}, timer, clock=clock)
    assert timings["a"].reps == [3]                                   # 12 s >= min_time after 3


def test_guard_passes_a_fast_path_equal_to_the_reference_and_refuses_one_that_differs():
    x = torch.randn(6, 3, 4)
    fast = Recurrent("lstm", 4, 5)
    reference = Recurrent("lstm", 4, 5, backend="reference", bptt="autograd")
    reference.load_state_dict(fast.state_dict())
    check = check_against_reference(fast, reference, lambda m: m(x)[0])
    assert check.passed and check.error < 1e-5
    check = check_against_reference(fast, reference, lambda m: m(x)[0] + (1e-3 if m is fast else 0))
    assert not check.passed and "output" in check.reason and "1.0e-03" in check.reason


def test_guard_compares_weight_gradients_too():
    x = torch.randn(6, 3, 4)
    fast, reference = Recurrent("gru", 4, 5), Recurrent("gru", 4, 5, backend="reference")
    reference.load_state_dict(fast.state_dict())
    with torch.no_grad():
        reference.cells[0].bias_ih.add_(1e-2)        # same output scale, different gradients and output
    check = check_against_reference(fast, reference, lambda m: m(x)[0])
    assert not check.passed


@pytest.fixture
def drifting_fast_path(monkeypatch):
    """Every backend="auto" layer returns its output shifted by 1e-3: a fast path gone wrong."""
    forward = Recurrent.forward

    def drifting(self, *args, **kwargs):
        output, *rest = forward(self, *args, **kwargs)
        return (output + 1e-3 if self.backend == "auto" else output, *rest)
    monkeypatch.setattr(Recurrent, "forward", drifting)


def test_a_config_that_fails_the_guard_is_never_timed(drifting_fast_path):
    config = BenchConfig.from_options(quick=True, cells="elman,lstm:vanilla", sections="train", rounds=1,
                                      threads=1)
    results = run(config, echo=lambda line: None)
    rows = {m.subject: m for m in results.sections["train"]}
    for spec in ("elman", "lstm:vanilla"):
        assert not rows[spec].check.passed and "reference loop" in rows[spec].check.reason
        assert rows[spec].timings == {}
    assert rows["nn.LSTM"].timings and rows["nn.GRU"].timings


def test_bench_command_prints_a_table_with_ratios_to_nn_lstm():
    result = CliRunner().invoke(main, ["bench", "--quick", "--sections", "train", "--cells", "elman,lstm",
                                       *ONE_THREAD])
    assert result.exit_code == 0, result.output
    assert "nn.LSTM" in result.output and "| × nn.LSTM |" in result.output
    rows = [line for line in result.output.splitlines() if line.startswith(("| elman ", "| lstm "))]
    assert len(rows) == 2 and all("✓" in row and row.count("×") == 2 for row in rows)


def test_bench_command_reports_a_refused_config(drifting_fast_path):
    result = CliRunner().invoke(main, ["bench", "--quick", "--sections", "train", "--cells", "elman",
                                       *ONE_THREAD])
    assert result.exit_code == 0, result.output
    assert "✗ not timed" in result.output and "failed the correctness guard: elman" in result.output


def test_markdown_document_names_the_command_and_the_machine(tmp_path):
    out = tmp_path / "performance.md"
    args = ["--quick", "--cells", "elman", "--rounds", "1", "--sections", "train", "--markdown", str(out)]
    result = CliRunner().invoke(main, ["bench", *args, *ONE_THREAD])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert f"`rnnkit bench --quick --cells elman --rounds 1 --threads 1 --sections train --markdown {out}`" \
        in text
    assert "os.cpu_count()" in text and torch.__version__ in text and "## Method" in text
    assert "| elman |" in text and "**nn.LSTM**" in text


def test_speed_script_is_the_same_benchmark_and_writes_its_command(tmp_path):
    spec = importlib.util.spec_from_file_location("speed", ROOT / "benchmarks" / "speed.py")
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    out = tmp_path / "perf.md"
    speed.main(["--quick", "--cells", "lstm", "--rounds", "1", "--sections", "train", "--markdown", str(out),
                *ONE_THREAD])
    assert (f"`python benchmarks/speed.py --quick --cells lstm --rounds 1 --threads 1 --sections train "
            f"--markdown {out}`") in out.read_text()


@pytest.mark.parametrize("args,message", [
    (["--sizes", "32x100"], "BxTxH"),
    (["--sections", "train,speed"], "unknown section"),
    (["--cells", "lstm:bogus"], "bogus"),
    (["--cells", "nocell"], "unknown cell"),
])
def test_bench_command_rejects_bad_options_in_one_line(args, message):
    result = CliRunner().invoke(main, ["bench", "--quick", *args])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_size_reads_b_t_h_with_i_equal_to_h_or_b_t_i_h():
    assert Size.parse("32x100x256") == Size(32, 100, 256, 256)
    assert Size.parse("8x20x4x16") == Size(8, 20, 4, 16)
    assert Size.parse(str(Size(8, 20, 4, 16))) == Size(8, 20, 4, 16)


def test_peak_memory_of_a_step_is_measured_in_a_separate_process():
    peaks = peak_step_memory(["elman", "nn.LSTM"], Size(8, 50, 16, 16), threads=1)
    assert all(isinstance(peaks[s], int) and peaks[s] >= 0 for s in ("elman", "nn.LSTM")), peaks
