"""Precision and device of a training run (``TrainConfig.precision`` / ``device``, ``rnnkit train
--precision/--device``): bf16-mixed learns on the CPU with float32 weights and gradients close to
float32's, float64 computes the float64 gradient, the gradient scaler's step sees the true gradient,
checkpoints load and evaluate in float32 on the CPU, and every impossible request is one clear error."""
import json
import math

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from cli_data import classify_tsv
from rnnkit.cli import main
from rnnkit.commands.settings import resolve_settings
from rnnkit.recipes import run
from rnnkit.tasks.adding import BASELINE_MSE
from rnnkit.train import RegressionTask, TrainConfig, Trainer, load_checkpoint
from rnnkit.train import precision as precision_module
from rnnkit.train.trainer import to_device
from test_train_trainer import AddingModel, adding_batches

TINY = ["--hidden", "8", "--embedding", "8", "--batch-size", "8", "--no-progress", "--no-tensorboard"]


def trainer(precision, seed=0, **options):
    torch.manual_seed(seed)
    return Trainer(AddingModel(hidden=16), RegressionTask(), precision=precision, progress=False, tensorboard=False,
                   **options)


def gradients(model):
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, text, exit_code=1):
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert text in result.stderr, result.stderr


# ---- bf16-mixed on the CPU ---------------------------------------------------------------------------

def test_bf16_mixed_learns_the_adding_problem_with_float32_weights():
    fit = trainer("bf16-mixed", lr=1e-2, epochs=3)
    history = fit.fit(adding_batches(40, batch_size=16), adding_batches(1, batch_size=64, seed=1))
    assert history.evaluations[-1]["mse"] < 0.6 * BASELINE_MSE          # learnt: well below answering the mean
    assert sum(history.losses[-5:]) < 0.2 * sum(history.losses[:5])
    for name, parameter in fit.model.named_parameters():
        assert parameter.dtype == torch.float32, name
        assert parameter.grad.dtype == torch.float32, name
    for state in fit.optimizer.state.values():
        assert state["exp_avg"].dtype == torch.float32


def test_under_the_trainers_autocast_matrix_products_are_bf16_and_the_loss_float32():
    inputs, targets = adding_batches(1)[0]
    mixed, plain = trainer("bf16-mixed"), trainer("32")
    with mixed.precision.autocast():
        predictions = mixed.model(inputs)
        loss, _ = RegressionTask().training_loss(mixed.model, (inputs, targets))
    with plain.precision.autocast():
        reference = plain.model(inputs)                          # the same weights (same seed)
    assert predictions.dtype == torch.bfloat16                   # nn.Linear is on autocast's bf16 list
    assert loss.dtype == torch.float32                           # mse_loss on its float32 list
    assert reference.dtype == torch.float32
    assert torch.allclose(predictions.float(), reference, atol=0.02, rtol=0.02)


def test_a_bf16_mixed_step_has_the_float32_gradient_to_bfloat16_precision():
    batch = adding_batches(1)
    steps = {}
    for name in ("32", "bf16-mixed"):
        fit = trainer(name, max_steps=1, shuffle=False)
        fit.fit(batch)
        steps[name] = gradients(fit.model)
    error = (steps["bf16-mixed"] - steps["32"]).norm() / steps["32"].norm()
    assert 0 < error < 0.05          # not float32's own gradient (bf16 was used), but within its 8 bits


# ---- float64 and the gradient scaler -----------------------------------------------------------------

def test_precision_64_trains_in_float64_and_matches_a_float64_reference_gradient():
    (inputs, targets), = batch = adding_batches(1)
    fit = trainer("64", max_steps=1, shuffle=False, lr=1e-3)
    torch.manual_seed(0)
    reference = AddingModel(hidden=16).double()                  # the trainer's initial weights
    fit.fit(batch)
    loss = nn.functional.mse_loss(reference(inputs.double()), targets.double())
    loss.backward()
    assert all(p.dtype == torch.float64 for p in fit.model.parameters())
    assert fit.history.losses[0] == pytest.approx(float(loss.detach()), rel=1e-12)
    assert torch.allclose(gradients(fit.model), gradients(reference), rtol=1e-10, atol=1e-12)


def test_the_gradient_scaler_skips_overflowing_steps_and_unscales_before_clipping(tmp_path, monkeypatch):
    """16-mixed's logic on the CPU (torch's CPU autocast has float16, and there is a CPU GradScaler), its
    CUDA-only check switched off. One batch again and again: a step whose scaled gradients overflowed
    changes nothing and halves the scale, so the first finite step starts from the initial weights and
    must log the true gradient's norm (float32's, to float16 precision), not the scale times it."""
    monkeypatch.setattr(precision_module, "check_precision", lambda name, device: None)
    batch = adding_batches(1)
    reference = trainer("32", max_steps=1)
    reference.fit(batch)
    fit = trainer("16-mixed", epochs=8, shuffle=False, out_dir=str(tmp_path))
    initial = [p.detach().clone() for p in fit.model.parameters()]
    fit.fit(batch)
    norms = fit.history.grad_norms
    skipped = next(k for k, norm in enumerate(norms) if math.isfinite(norm))
    assert 0 < skipped < len(norms) - 1, norms               # 65536 times the loss overflows float16 at first
    assert norms[skipped] == pytest.approx(reference.history.grad_norms[0], rel=0.02)
    assert fit.precision.scaler.get_scale() == 65536 / 2 ** skipped
    assert not all(torch.equal(p, q) for p, q in zip(fit.model.parameters(), initial))
    saved = load_checkpoint(next((tmp_path / "checkpoints").glob("step-*")))
    assert saved.trainer_state["grad_scaler"]["scale"] == fit.precision.scaler.get_scale()
    resumed = trainer("16-mixed", epochs=8, shuffle=False, out_dir=str(tmp_path), resume=True)
    resumed.fit(batch)                                       # already at its limit: restores, trains nothing
    assert resumed.precision.scaler.get_scale() == fit.precision.scaler.get_scale()


def test_batches_move_their_floats_to_the_precisions_dtype_and_keep_integer_ids():
    floats, ids = to_device((torch.ones(2), {"ids": torch.ones(2, dtype=torch.long)}), torch.device("cpu"),
                            torch.float64)
    assert (floats.dtype, ids["ids"].dtype) == (torch.float64, torch.long)


# ---- refusals ----------------------------------------------------------------------------------------

def test_16_mixed_on_the_cpu_is_refused_pointing_to_bf16_mixed():
    with pytest.raises(ValueError, match=r"'16-mixed' .* needs a CUDA device, got cpu; on the CPU use .*bf16-mixed"):
        trainer("16-mixed", device="cpu")


@pytest.mark.parametrize("options, message", [
    ({"precision": "fp8"}, "precision must be one of '32', '64', 'bf16-mixed', '16-mixed', got 'fp8'"),
    ({"precision": 16}, "precision must be one of '32', '64', 'bf16-mixed', '16-mixed', got 16"),
    ({"device": "tpu"}, "device must be one of 'cpu', 'cuda', 'cuda:N', 'auto', got 'tpu'"),
    ({"device": "cuda:x"}, "got 'cuda:x'"),
])
def test_config_refuses_unknown_precisions_and_devices_listing_the_allowed(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        TrainConfig(**options)


def test_cuda_where_there_is_none_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:1"):
        with pytest.raises(ValueError, match=f"device '{device}': CUDA is not available on this machine"):
            trainer("32", device=device)
    assert trainer("32", device="auto").device == torch.device("cpu")


# ---- the command -------------------------------------------------------------------------------------

def test_toml_takes_precision_and_device_flat_or_in_training(tmp_path):
    base = 'task = "classify"\ntrain = "a.tsv"\nout = "o"\n'
    keys = 'precision = "bf16-mixed"\ndevice = "cpu"\n'
    for text in (keys, "[training]\n" + keys):
        (tmp_path / "run.toml").write_text(base + text)
        config = resolve_settings(tmp_path / "run.toml", {}).config
        assert (config.precision, config.device) == ("bf16-mixed", "cpu")
    (tmp_path / "run.toml").write_text(base + "precision = 64\n")              # Lightning's int spelling
    assert resolve_settings(tmp_path / "run.toml", {}).config.precision == "64"
    flags = {("training", "precision"): "32"}
    assert resolve_settings(tmp_path / "run.toml", flags).config.precision == "32"   # a flag overrides


def test_command_refuses_impossible_precisions_and_devices_in_one_line(tmp_path, monkeypatch):
    classify_tsv(tmp_path / "train.tsv", n=8)
    common = ["train", "--task", "classify", "--train", tmp_path / "train.tsv", "--out", tmp_path / "run", *TINY]
    assert_one_line_error(invoke(*common, "--precision", "16-mixed", "--device", "cpu"),
                          "on the CPU use precision 'bf16-mixed'")
    assert_one_line_error(invoke(*common, "--device", "tpu"), "'cpu', 'cuda', 'cuda:N', 'auto', got 'tpu'")
    result = invoke(*common, "--precision", "8")
    assert_one_line_error(result, "'32', '64', 'bf16-mixed', '16-mixed'", exit_code=2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert_one_line_error(invoke(*common, "--device", "cuda"), "CUDA is not available on this machine")
    assert_one_line_error(invoke(*common, "--precision", "16-mixed"), "needs a CUDA device")
    assert not (tmp_path / "run").exists()                                       # refused before any work


def test_bf16_mixed_run_on_the_cpu_saves_float32_weights_that_evaluate_on_the_cpu(tmp_path):
    classify_tsv(tmp_path / "train.tsv", n=40)
    texts, labels = classify_tsv(tmp_path / "test.tsv", n=24, seed=1)
    (tmp_path / "texts.txt").write_text("".join(text + "\n" for text in texts))
    result = invoke("train", "--task", "classify", "--train", tmp_path / "train.tsv", "--out", tmp_path / "run",
                    "--epochs", "2", "--lr", "0.01", "--precision", "bf16-mixed", "--device", "cpu", *TINY)
    assert result.exit_code == 0, result.output
    assert "precision bf16-mixed, device cpu" in result.stdout
    trained = run.load_run(tmp_path / "run", "last", "cpu")
    config = json.loads((trained.checkpoint / "config.json").read_text())
    assert (config["precision"], config["device"]) == ("bf16-mixed", "cpu")
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in trained.model.parameters())
    evaluated = invoke("evaluate", tmp_path / "run", "--test", tmp_path / "test.tsv", "--json", "--device", "cpu",
                       "--checkpoint", "last")
    assert evaluated.exit_code == 0, evaluated.output
    predicted = invoke("predict", tmp_path / "run", tmp_path / "texts.txt", "--device", "cpu", "--checkpoint", "last")
    assert predicted.exit_code == 0, predicted.output
    outputs = predicted.stdout.splitlines()
    assert len(outputs) == len(labels)
    accuracy = sum(output == label for output, label in zip(outputs, labels)) / len(labels)
    assert json.loads(evaluated.stdout)["accuracy"] == pytest.approx(accuracy)
