"""The `rnnkit` command end to end, by subprocess (`python -m rnnkit ...`) as a user runs it: for each
task, train one epoch of a tiny model on a small file -> `evaluate --json` -> `predict` (and
`generate` / `translate`); a run killed with SIGKILL and resumed with `--resume` ends with the
weights of a run never interrupted; bad input is one line on stderr. Each process pays the start of
python and torch (1-2 s), so these are few and marked slow; the many error cases run in process in
test_cli_train.py."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import cli_data
from rnnkit.train import latest_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--hidden", "8", "--embedding", "8", "--batch-size", "8", "--no-progress", "--no-tensorboard"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# task -> (the writer of its data file, file name, extra train flags, the metrics evaluate reports)
TASKS = {
    "classify": (cli_data.classify_tsv, "data.tsv", [], {"accuracy", "loss"}),
    "tag": (cli_data.tag_conllu, "data.conllu", [], {"accuracy"}),
    "translate": (cli_data.translate_tsv, "data.tsv", [], {"bleu", "chrf", "perplexity", "loss"}),
    "lm": (cli_data.lm_text, "data.txt", ["--option", "seq_len=16"], {"perplexity", "loss", "bits_per_character"}),
    "tree": (cli_data.sst_trees, "data.txt", [], {"accuracy", "node_accuracy", "loss"}),
    "regress": (cli_data.series_txt, "data.txt", ["--option", "window=8"],
                {"mse", "rmse", "last_value_mse", "last_value_rmse", "loss"}),
}


def rnnkit(*args, input=None, check=True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "rnnkit", *map(str, args)], input=input, capture_output=True,
                          text=True, cwd=ROOT, timeout=300, env=one_thread_env())
    if check:
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
    return done


def one_thread_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def check_predictions(task: str, inputs: list[str], outputs: list[str]) -> None:
    """What each task's predict writes for each input line."""
    assert len(outputs) == len(inputs)
    if task == "classify":
        assert set(outputs) <= {"pos", "neg"}
    elif task == "tag":
        for words, tags in zip(inputs, outputs):
            assert len(tags.split()) == len(words.split()) and set(tags.split()) <= set(cli_data.TAGS.values())
    elif task == "lm":
        assert all(float(value) >= 1 for value in outputs)             # a perplexity is at least 1
    elif task == "tree":
        assert set(outputs) <= {"positive", "negative"}
    elif task == "regress":
        assert all(len(line.split()) == 1 and abs(float(line)) < 10 for line in outputs)


@pytest.mark.slow
@pytest.mark.parametrize("task", list(TASKS))
def test_train_evaluate_predict_through_the_command(task, tmp_path):
    write, name, flags, metric_names = TASKS[task]
    data, run = tmp_path / name, tmp_path / "run"
    inputs, _ = write(data)
    trained = rnnkit("train", "--task", task, "--train", data, "--dev", data, "--out", run, *TINY, *flags)
    assert trained.stdout.splitlines()[-1].startswith(f"model: {run / 'checkpoints'}")

    evaluated = rnnkit("evaluate", run, "--test", data, "--json", "--batch-size", "8")
    metrics = json.loads(evaluated.stdout)                    # stdout is exactly one JSON object
    assert set(metrics) == metric_names
    # the reloaded model scores the dev file as the trainer scored it in memory at the best step
    best = json.loads((run / "checkpoints" / "best.json").read_text())
    assert metrics[best["metric"]] == pytest.approx(best["value"], rel=1e-5, abs=1e-9)

    predicted = rnnkit("predict", run, "-", input="".join(line + "\n" for line in inputs[:5]))
    check_predictions(task, inputs[:5], predicted.stdout.splitlines())

    if task == "lm":
        generated = rnnkit("generate", run, "--prompt", "the ", "--length", "20", "--temperature", "0.8",
                           "--top-k", "5", "--seed", "3")
        assert generated.stdout.startswith("the ") and len(generated.stdout) > len("the ") + 20
    if task == "translate":
        (tmp_path / "source.txt").write_text("one cat\nthe red dog\n")
        translated = rnnkit("translate", run, tmp_path / "source.txt", "--beam", "2", "--attention-plot",
                            tmp_path / "attention.png")
        assert len(translated.stdout.splitlines()) == 2
        for k in (1, 2):
            assert (tmp_path / f"attention-{k}.png").read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.slow
def test_toml_config_file_with_a_flag_overriding_it(tmp_path):
    cli_data.classify_tsv(tmp_path / "train.tsv")
    (tmp_path / "run.toml").write_text(f'task = "classify"\ntrain = "{tmp_path / "train.tsv"}"\n'
                                       f'out = "{tmp_path / "run"}"\nepochs = 3\nbatch_size = 20\n'
                                       'tensorboard = false\nprogress = false\n'
                                       '[model]\nhidden = 8\nembedding = 8\npooling = "mean"\n')
    done = rnnkit("train", tmp_path / "run.toml", "--epochs", "2")
    assert "pooling=mean" in done.stdout and "batch 20, 2 epochs" in done.stdout
    assert latest_checkpoint(tmp_path / "run" / "checkpoints").name == "step-00000004"    # 2 x 40/20


@pytest.mark.slow
def test_kill_9_then_resume_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    data = tmp_path / "train.tsv"
    cli_data.classify_tsv(data, n=400)
    train = [sys.executable, "-m", "rnnkit", "train", "--task", "classify", "--train", str(data), "--hidden", "8",
             "--embedding", "8", "--batch-size", "2", "--epochs", "2", "--checkpoint-every", "10",
             "--deterministic", "--no-progress", "--no-tensorboard", "--dropout", "0.2", "--lr", "0.01"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    uninterrupted = subprocess.Popen(train + ["--out", str(whole)], cwd=ROOT, env=one_thread_env(),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen(train + ["--out", str(killed)], cwd=ROOT, env=one_thread_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while victim.poll() is None and latest_checkpoint(killed / "checkpoints") is None:
        assert time.monotonic() < deadline, "the run wrote no checkpoint in 2 minutes"
        time.sleep(0.01)
    assert victim.poll() is None, "the run ended before it could be killed"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    interrupted_at = latest_checkpoint(killed / "checkpoints").name
    assert interrupted_at < "step-00000400"

    resumed = subprocess.run(train + ["--out", str(killed), "--resume"], cwd=ROOT, env=one_thread_env(),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "(resuming)" in resumed.stdout
    assert uninterrupted.wait(timeout=300) == 0, uninterrupted.stderr.read()
    ends = [latest_checkpoint(run / "checkpoints") for run in (whole, killed)]
    assert [end.name for end in ends] == ["step-00000400"] * 2
    weights, resumed_weights = (load_file(end / "model.safetensors") for end in ends)
    assert weights.keys() == resumed_weights.keys()
    for name, tensor in weights.items():
        assert torch.equal(tensor, resumed_weights[name]), f"{name} differs after resuming at {interrupted_at}"


@pytest.mark.slow
def test_bad_input_through_python_m_rnnkit_is_one_line(tmp_path):
    (tmp_path / "bad.tsv").write_text("good film\tpos\nno label here\n")
    for args, text in [(["train", "--task", "classify", "--train", tmp_path / "bad.tsv", "--out", tmp_path / "r"],
                        f"{tmp_path / 'bad.tsv'}:2:"),
                       (["evaluate", tmp_path, "--test", tmp_path / "bad.tsv"], "holds no trained model")]:
        done = rnnkit(*args, check=False)
        assert done.returncode != 0 and "Traceback" not in done.stderr
        assert done.stderr.strip().count("\n") == 0 and text in done.stderr, done.stderr


@pytest.mark.slow
def test_training_runs_unchanged_under_torchrun_with_two_processes(tmp_path):
    """`torchrun --nproc_per_node=2 -m rnnkit train ...`: each process takes every second batch, rank 0
    writes the checkpoints, every process then reads the same best model (the Trainer's own
    two-process test checks the weights against one process on the global batch)."""
    cli_data.classify_tsv(tmp_path / "train.tsv", n=64)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "rnnkit", "train",
               "--task", "classify", "--train", tmp_path / "train.tsv", "--dev", tmp_path / "train.tsv",
               "--out", tmp_path / "run", "--epochs", "2", *TINY]
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, env=one_thread_env())
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("best dev:") == 1                 # rank 0 speaks for the run
    # 64 examples in batches of 8 = 8 batches an epoch, half of them on each process: 4 steps an epoch
    assert latest_checkpoint(tmp_path / "run" / "checkpoints").name == "step-00000008"
    scores = json.loads(rnnkit("evaluate", tmp_path / "run", "--test", tmp_path / "train.tsv", "--json").stdout)
    assert set(scores) == {"accuracy", "loss"}
