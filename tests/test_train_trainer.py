"""The trainer: configuration, schedules against their formulas, clipping, early stopping, logs, and
resumption that reaches exactly the weights of an uninterrupted run (also after kill -9)."""
import json
import math
import os
import runpy
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.tasks.adding import adding_problem
from rnnkit.train import RegressionTask, TrainConfig, Trainer
from rnnkit.train import trainer as trainer_module
from rnnkit.train.checkpoint import checkpoint_path, latest_checkpoint, list_checkpoints
from rnnkit.train.logging import read_csv, train_columns
from rnnkit.train.schedule import LearningRateSchedule

REPO = Path(__file__).resolve().parents[1]


class AddingModel(nn.Module):
    """A recurrent stack read at its last step by a linear head: (T, B, 2) -> (B, 1)."""

    def __init__(self, cell: str = "gru", hidden: int = 8, layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.rnn = rnnkit.Recurrent(cell, 2, hidden, num_layers=layers, dropout=dropout)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        outputs, _ = self.rnn(x)                                 # (T, B, H)
        return self.head(outputs[-1])                            # (B, 1)


def adding_batches(count, batch_size=8, length=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [adding_problem(batch_size, length, generator=generator) for _ in range(count)]


def model_with_seed(seed, **options):
    torch.manual_seed(seed)
    return AddingModel(**options)


def quiet(**options):
    return dict(progress=False, tensorboard=False, **options)


# ---- configuration --------------------------------------------------------------------------

def test_config_round_trips_through_json():
    config = TrainConfig(optimizer="adamw", lr=3e-3, schedule="cosine", warmup_steps=4, clip_norm=1.0,
                         max_steps=50, patience=3, out_dir="runs/a", deterministic=True)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert TrainConfig.from_dict({}) == TrainConfig()


def test_unknown_keys_are_refused_naming_them_and_the_nearest():
    with pytest.raises(ValueError, match=r"unknown TrainConfig key\(s\): 'lrr' \(did you mean 'lr'\?\), 'zzz'"):
        TrainConfig.from_dict({"lr": 0.1, "lrr": 0.1, "zzz": 1})
    with pytest.raises(ValueError, match=r"'epoch' \(did you mean 'epochs'\?\)"):
        Trainer(AddingModel(), RegressionTask(), epoch=3)


@pytest.mark.parametrize("values, message", [
    ({"optimizer": "adagrad"}, r"optimizer must be one of 'adam', 'adamw', 'sgd', got 'adagrad'"),
    ({"lr": -1.0}, r"lr must be a finite number > 0, got -1.0"),
    ({"epochs": 0}, r"epochs must be an int >= 1, got 0"),
    ({"max_steps": 2.5}, r"max_steps must be an int >= 1, got 2.5"),
    ({"deterministic": "yes"}, r"deterministic must be True or False, got 'yes'"),
    ({"resume": True}, r"resume=True needs out_dir"),
])
def test_bad_values_name_the_field_and_what_came(values, message):
    with pytest.raises((ValueError, TypeError), match=message):
        TrainConfig.from_dict(values)


# ---- learning-rate schedules against their formulas ----------------------------------------------

def rates(kind, steps, observations=(), **options):
    optimizer = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)
    schedule = LearningRateSchedule(optimizer, kind, **options)
    seen = []
    for s in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        schedule.step()
    for value in observations:
        schedule.observe(value)
        seen.append(optimizer.param_groups[0]["lr"])
    return seen


def test_warmup_then_cosine_follows_the_formula():
    W, S, low = 3, 13, 0.01
    expected = [0.1 * (s + 1) / W if s < W else
                low + (0.1 - low) * 0.5 * (1 + math.cos(math.pi * min(1.0, (s - W) / (S - W)))) for s in range(16)]
    assert rates("cosine", 16, warmup_steps=W, total_steps=S, min_lr=low) == pytest.approx(expected, rel=1e-12)


def test_step_decay_follows_the_formula():
    expected = [0.1 * 1 / 2 if s == 0 else 0.1 if s < 2 else 0.1 * 0.5 ** ((s - 2) // 4) for s in range(14)]
    assert rates("step", 14, warmup_steps=2, step_size=4, gamma=0.5) == pytest.approx(expected, rel=1e-12)


def test_plateau_decays_after_patience_evaluations_without_improvement():
    # lower is better: 1.0 best, 0.9 best, then 0.95 0.96 (2 bad: decay), 0.97 0.98 (2 bad: decay), 0.5 best
    seen = rates("plateau", 0, [1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.5], plateau_patience=2, gamma=0.5,
                 higher_is_better=False)
    assert seen == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_cosine_without_a_length_is_refused():
    with pytest.raises(ValueError, match="cosine schedule needs total_steps"):
        Trainer(AddingModel(), RegressionTask(), **quiet(schedule="cosine")).fit(lambda epoch: [], None)


# ---- the loop ---------------------------------------------------------------------------------

def test_linear_regression_reaches_the_least_squares_solution():
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(256, 3, generator=generator)
    y = X @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.3 + 0.1 * torch.randn(256, 1, generator=generator)
    batches = [(X[i:i + 64], y[i:i + 64]) for i in range(0, 256, 64)]
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    Trainer(model, RegressionTask(), **quiet(optimizer="sgd", lr=0.1, momentum=0.5, epochs=60,
                                             schedule="cosine")).fit(batches)
    design = torch.cat([X, torch.ones(256, 1)], dim=1)                        # (N, 4)
    solution = torch.linalg.lstsq(design, y).solution.squeeze(1)              # (4,)
    fitted = torch.cat([model.weight.detach().squeeze(0), model.bias.detach()])
    assert torch.allclose(fitted, solution, atol=2e-3), (fitted, solution)


class ScriptedTask(RegressionTask):
    """Regression whose dev metric is read from a script, to steer early stopping."""

    def __init__(self, script):
        self.script = list(script)

    def evaluate(self, model, batches):
        return {"mse": self.script.pop(0)}


def test_early_stopping_stops_after_patience_evaluations_without_improvement(tmp_path):
    task = ScriptedTask([0.5, 0.4, 0.45, 0.41, 0.42, 0.1, 0.1])
    history = Trainer(model_with_seed(0), task, **quiet(epochs=5, eval_every=2, patience=3, shuffle=False,
                                                        out_dir=str(tmp_path))).fit(adding_batches(6), [None])
    assert history.stop_reason == "early_stopping"
    assert [e["mse"] for e in history.evaluations] == [0.5, 0.4, 0.45, 0.41, 0.42]
    assert history.steps == 10 and history.best == {"step": 4, "epoch": 0, "mse": 0.4}
    assert history.best_checkpoint == str(checkpoint_path(tmp_path / "checkpoints", 4))


def test_limits_stop_the_run():
    history = Trainer(model_with_seed(0), RegressionTask(), **quiet(epochs=100, max_steps=7)).fit(adding_batches(3))
    assert (history.stop_reason, history.steps, history.epochs) == ("max_steps", 7, 2)
    history = Trainer(model_with_seed(0), RegressionTask(), **quiet(epochs=2)).fit(adding_batches(3))
    assert (history.stop_reason, history.steps) == ("epochs", 6)
    history = Trainer(model_with_seed(0), RegressionTask(), **quiet(epochs=1000, max_minutes=0.5 / 60)) \
        .fit(adding_batches(3))
    assert history.stop_reason == "max_minutes" and history.steps < 3000


class FlushWatchingTask(RegressionTask):
    """Records, at every training step, whether subnormal floats are flushed just then."""

    def __init__(self):
        self.seen = []

    def training_loss(self, model, batch):
        from rnnkit.train.subnormals import flushing_subnormals
        self.seen.append(flushing_subnormals())
        return super().training_loss(model, batch)


@pytest.mark.parametrize("flush", [True, False])
def test_fit_flushes_subnormals_only_while_it_runs_and_only_when_asked(flush):
    from rnnkit.train.subnormals import flushing_subnormals
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormals (torch.set_flush_denormal returned False)")
    assert not flushing_subnormals()
    task = FlushWatchingTask()
    Trainer(model_with_seed(0), task, **quiet(max_steps=3, flush_subnormals=flush)).fit(adding_batches(3))
    assert task.seen == [flush] * 3
    assert not flushing_subnormals()                 # put back as it was
    torch.set_flush_denormal(True)                   # already on before fit: left on after it
    try:
        Trainer(model_with_seed(0), FlushWatchingTask(), **quiet(max_steps=1, flush_subnormals=flush)) \
            .fit(adding_batches(1))
        assert flushing_subnormals()
    finally:
        torch.set_flush_denormal(False)


def test_clip_norm_is_measured_logged_and_applied(tmp_path):
    batches = adding_batches(2)
    model = model_with_seed(0)
    reference = model_with_seed(0)
    clip, lr = 1e-3, 0.1
    before = [p.detach().clone() for p in model.parameters()]
    history = Trainer(model, RegressionTask(), **quiet(optimizer="sgd", lr=lr, clip_norm=clip, max_steps=1,
                                                       shuffle=False, log_every=1, out_dir=str(tmp_path))) \
        .fit(batches)
    inputs, targets = batches[0]
    nn.functional.mse_loss(reference(inputs), targets).backward()
    norm = math.sqrt(sum(float((p.grad ** 2).sum()) for p in reference.parameters()))      # ‖g‖₂
    assert norm > clip                                                  # so the clip acted
    assert history.grad_norms == [pytest.approx(norm, rel=1e-5)]
    assert read_csv(tmp_path / "train.csv")["grad_norm"] == [pytest.approx(norm, rel=1e-5)]
    # plain SGD moves the weights by lr · clip · g/‖g‖: a step of length lr · clip exactly
    step = math.sqrt(sum(float(((p.detach() - b) ** 2).sum()) for p, b in zip(model.parameters(), before)))
    assert step == pytest.approx(lr * clip, rel=1e-4)


def test_logs_have_their_columns_curves_and_tensorboard_events(tmp_path):
    history = Trainer(model_with_seed(0), RegressionTask(), progress=False, tensorboard=True, out_dir=str(tmp_path),
                      log_every=2, eval_every=3, max_steps=6, epochs=3, shuffle=False) \
        .fit(adding_batches(4), adding_batches(1, seed=9))
    train = read_csv(tmp_path / "train.csv")
    assert list(train) == train_columns("examples") == ["step", "epoch", "loss", "lr", "grad_norm",
                                                        "examples_per_s", "seconds"]
    assert train["step"] == [2, 4, 6] and train["epoch"] == [0, 0, 1]
    windows = [history.losses[i:i + 2] for i in (0, 2, 4)]
    assert train["loss"] == pytest.approx([sum(w) / 2 for w in windows], rel=1e-12)
    assert train["grad_norm"] == [max(history.grad_norms[i:i + 2]) for i in (0, 2, 4)]
    evaluation = read_csv(tmp_path / "eval.csv")
    assert list(evaluation) == ["step", "epoch", "mse"] and evaluation["step"] == [3, 6]
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path / "tensorboard"))


def test_progress_bar_shows_loss_metric_and_throughput_only_on_a_terminal(capsys, monkeypatch):
    def fit():
        Trainer(model_with_seed(0), RegressionTask(), progress=True, tensorboard=False, max_steps=2, log_every=1,
                eval_every=1).fit(adding_batches(2), adding_batches(1))
    fit()
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    fit()
    shown = capsys.readouterr().err
    assert "2/2" in shown and "loss=" in shown and "mse=" in shown and "examples/s=" in shown, shown


def test_callable_batches_receive_the_epoch():
    asked = []

    def batches(epoch):
        asked.append(epoch)
        return adding_batches(2, seed=epoch)
    Trainer(model_with_seed(0), RegressionTask(), **quiet(epochs=3)).fit(batches)
    assert asked == [0, 1, 2]


def test_bad_inputs_are_refused_clearly():
    with pytest.raises(TypeError, match="one-shot iterator"):
        Trainer(AddingModel(), RegressionTask(), **quiet()).fit(iter(adding_batches(2)))
    class NoMetric:
        def training_loss(self, model, batch): ...
        def evaluate(self, model, batches): ...
    with pytest.raises(TypeError, match=r"task must have a method training_loss"):
        Trainer(AddingModel(), object())
    with pytest.raises(TypeError, match=r"task.metric must be a str .* got None on NoMetric"):
        Trainer(AddingModel(), NoMetric())

    class NoCounts(RegressionTask):
        def training_loss(self, model, batch):
            loss, _ = super().training_loss(model, batch)
            return loss, {"tokens": 3}
    with pytest.raises(ValueError, match=r"counts\['examples'\]"):
        Trainer(AddingModel(), NoCounts(), **quiet()).fit(adding_batches(1))


def test_a_fresh_run_refuses_an_out_dir_that_holds_a_run(tmp_path):
    Trainer(model_with_seed(0), RegressionTask(), **quiet(max_steps=1, out_dir=str(tmp_path))).fit(adding_batches(1))
    with pytest.raises(FileExistsError, match="already holds the checkpoints of a run; pass resume=True"):
        Trainer(model_with_seed(0), RegressionTask(), **quiet(max_steps=1, out_dir=str(tmp_path))).fit(adding_batches(1))


def test_deterministic_mode_is_switched_off_again_after_fit():
    assert not torch.are_deterministic_algorithms_enabled()
    Trainer(model_with_seed(0), RegressionTask(), **quiet(deterministic=True, max_steps=1)).fit(adding_batches(1))
    assert not torch.are_deterministic_algorithms_enabled()


# ---- resumption -------------------------------------------------------------------------------

RESUMABLE = dict(deterministic=True, optimizer="adam", lr=1e-2, schedule="cosine", warmup_steps=3, clip_norm=0.5,
                 epochs=3, eval_every=5, checkpoint_every=4, keep_last=10, shuffle=True, seed=7)


def run_resumable(out_dir, model_seed, resume=False):
    model = model_with_seed(model_seed, layers=2, dropout=0.3)               # dropout: the RNG matters
    history = Trainer(model, RegressionTask(), **quiet(out_dir=str(out_dir), resume=resume, **RESUMABLE)) \
        .fit(adding_batches(6), adding_batches(1, seed=9))
    return model, history


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("uninterrupted")
    model, history = run_resumable(out_dir, model_seed=0)
    return out_dir, model, history


@pytest.mark.parametrize("step", [8, 12])       # 8: inside the second epoch; 12: its last batch
def test_resume_reaches_the_weights_of_an_uninterrupted_run(uninterrupted, tmp_path, step):
    full_dir, full_model, full_history = uninterrupted
    shutil.copytree(checkpoint_path(full_dir / "checkpoints", step), checkpoint_path(tmp_path / "checkpoints", step))
    model, history = run_resumable(tmp_path, model_seed=1, resume=True)
    assert history.steps == full_history.steps == 18 and len(history.losses) == 18 - step
    assert history.losses == full_history.losses[step:]
    assert history.evaluations == full_history.evaluations
    for (name, a), b in zip(full_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name
    # the logs read as one run: rows up to the resumed step are kept, later ones rewritten once
    assert read_csv(tmp_path / "eval.csv")["step"] == [e["step"] for e in full_history.evaluations if e["step"] > step]


def test_resume_without_the_rng_states_would_differ(uninterrupted, tmp_path, monkeypatch):
    """The test above is sensitive to the RNG: skipping its restoration changes the dropout masks."""
    full_dir, full_model, _ = uninterrupted
    shutil.copytree(checkpoint_path(full_dir / "checkpoints", 8), checkpoint_path(tmp_path / "checkpoints", 8))
    monkeypatch.setattr(trainer_module, "restore_rng_state", lambda state: None)
    model, _ = run_resumable(tmp_path, model_seed=1, resume=True)
    assert not all(torch.equal(a, b) for a, b in zip(full_model.parameters(), model.parameters()))


def test_resuming_a_finished_run_takes_no_more_steps(uninterrupted, tmp_path):
    full_dir, full_model, _ = uninterrupted
    last = latest_checkpoint(full_dir / "checkpoints")
    shutil.copytree(last, tmp_path / "checkpoints" / last.name)
    model, history = run_resumable(tmp_path, model_seed=1, resume=True)
    assert history.steps == 18 and history.losses == [] and history.stop_reason == "epochs"
    assert all(torch.equal(a, b) for a, b in zip(full_model.parameters(), model.parameters()))


KILLABLE_RUN = textwrap.dedent("""
    import sys, time
    import torch
    from torch import nn
    from safetensors.torch import save_file
    import rnnkit
    from rnnkit.tasks.adding import adding_problem
    from rnnkit.train import RegressionTask, Trainer


    class SlowTask(RegressionTask):
        def __init__(self, pause):
            self.pause = pause

        def training_loss(self, model, batch):
            time.sleep(self.pause)             # room for the test to kill the run mid-way
            return super().training_loss(model, batch)


    class LastStep(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.head = rnnkit.Recurrent("lstm", 2, 8, num_layers=2, dropout=0.2), nn.Linear(8, 1)

        def forward(self, x):
            return self.head(self.rnn(x)[0][-1])


    def main(out_dir, resume, pause):
        torch.set_num_threads(1)
        torch.manual_seed(1 if resume else 0)     # a resumed run must take its weights from the checkpoint
        net = LastStep()
        generator = torch.Generator().manual_seed(0)
        batches = [adding_problem(8, 6, generator=generator) for _ in range(10)]
        Trainer(net, SlowTask(pause), out_dir=out_dir, resume=resume, deterministic=True, epochs=4,
                checkpoint_every=3, keep_last=2, lr=1e-2, schedule="cosine", warmup_steps=2, clip_norm=1.0,
                seed=3, progress=False, tensorboard=False).fit(batches)
        return net


    if __name__ == "__main__":
        main(sys.argv[1], resume=False, pause=float(sys.argv[2]))
""")


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_matches_an_uninterrupted_run(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(KILLABLE_RUN)
    killed_dir = tmp_path / "killed"
    killed = subprocess.Popen([sys.executable, str(script), str(killed_dir), "0.05"],
                              env={**os.environ, "PYTHONPATH": str(REPO)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and killed.poll() is None:
        found = list_checkpoints(killed_dir / "checkpoints")
        if found and int(found[-1].name.split("-")[1]) >= 12:
            break
        time.sleep(0.01)
    assert killed.poll() is None, f"the run ended before it could be killed: {killed.stdout.read()}"
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    interrupted_at = int(latest_checkpoint(killed_dir / "checkpoints").name.split("-")[1])
    assert 12 <= interrupted_at < 40

    # resumed and uninterrupted runs in this process (one thread, as the killed one)
    run = runpy.run_path(str(script))["main"]
    resumed = run(str(killed_dir), resume=True, pause=0.0)
    reference = run(str(tmp_path / "reference"), resume=False, pause=0.0)
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
