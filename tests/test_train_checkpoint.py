"""Checkpoints: a round trip restores everything, nothing is pickled, a crash never leaves a
half-written "latest", and a truncated, changed or foreign file is refused naming the file."""
import hashlib
import json
import math
import pickle

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.train import checkpoint as ckpt
from rnnkit.train.checkpoint import (CheckpointError, best_checkpoint, checkpoint_path, latest_checkpoint,
                                     list_checkpoints, load_checkpoint, mark_best, prune_checkpoints,
                                     save_checkpoint)
from rnnkit.train.rng import capture_rng_state, restore_rng_state
from rnnkit.train.schedule import LearningRateSchedule


class TiedModel(nn.Module):
    """An LSTM language-model shape with the output layer tied to the embedding (shared memory)."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(7, 6)
        self.rnn = rnnkit.Recurrent("lstm", 6, 6, batch_first=True)
        self.out = nn.Linear(6, 7)
        self.out.weight = self.embedding.weight

    def forward(self, tokens):
        outputs, _ = self.rnn(self.embedding(tokens))            # (B, T, H)
        return self.out(outputs)                                 # (B, T, V)


def train_some(model, optimizer, schedule, steps=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        tokens = torch.randint(0, 7, (4, 5), generator=generator)
        logits = model(tokens[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, 7), tokens[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()


def make_run(seed=0):
    torch.manual_seed(seed)
    model = TiedModel()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.9))
    schedule = LearningRateSchedule(optimizer, "cosine", warmup_steps=2, total_steps=10)
    return model, optimizer, schedule


@pytest.fixture
def saved(tmp_path):
    model, optimizer, schedule = make_run()
    train_some(model, optimizer, schedule)
    trainer_state = {"step": 3, "best": None, "pair": (1, "a"), "worst": -math.inf, 4: "int key",
                     "rng": capture_rng_state()}
    path = save_checkpoint(tmp_path / "run" / "step-00000003", model, optimizer, schedule,
                           trainer_state=trainer_state, config={"lr": 0.01, "cell": "lstm"},
                           extra={"vocab": ["<pad>", "<unk>", "a"]})
    return path, model, optimizer, schedule, trainer_state


def test_round_trip_restores_weights_optimizer_schedule_and_states(saved):
    path, model, optimizer, schedule, trainer_state = saved
    loaded = load_checkpoint(path)
    assert loaded.config == {"lr": 0.01, "cell": "lstm"}
    assert loaded.extra == {"vocab": ["<pad>", "<unk>", "a"]}
    assert loaded.trainer_state["pair"] == (1, "a") and loaded.trainer_state["worst"] == -math.inf
    assert loaded.trainer_state[4] == "int key"
    assert torch.equal(loaded.trainer_state["rng"]["torch"], trainer_state["rng"]["torch"])

    fresh, fresh_optimizer, fresh_schedule = make_run(seed=1)
    loaded.restore(fresh, fresh_optimizer, fresh_schedule)
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    assert fresh.out.weight is fresh.embedding.weight                 # still tied
    assert fresh_optimizer.param_groups[0]["betas"] == (0.8, 0.9)
    assert fresh_schedule.state_dict() == schedule.state_dict()
    # the restored run continues exactly as the original: same Adam moments, same step count, same lr
    train_some(model, optimizer, schedule, steps=2, seed=5)
    train_some(fresh, fresh_optimizer, fresh_schedule, steps=2, seed=5)
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)


def test_rng_state_round_trip_repeats_the_same_draws(saved):
    import random

    import numpy as np
    state = load_checkpoint(saved[0]).trainer_state["rng"]
    restore_rng_state(state)
    first = (torch.rand(3), random.random(), np.random.rand())
    restore_rng_state(state)
    assert torch.equal(first[0], torch.rand(3)) and first[1] == random.random() and first[2] == np.random.rand()


def test_nothing_is_pickled_and_loading_never_unpickles(saved, monkeypatch):
    path = saved[0]
    assert sorted(p.name for p in path.iterdir()) == sorted([*ckpt.FILES, ckpt.MANIFEST])
    for file in path.iterdir():
        assert not file.read_bytes().startswith(b"\x80"), f"{file.name} looks like a pickle"

    def refuse(*args, **kwargs):
        raise AssertionError("loading a checkpoint must not unpickle")
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    load_checkpoint(path)


def test_manifest_lists_every_file_with_its_sha256(saved):
    path = saved[0]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format"] == "rnnkit-checkpoint"
    for name, entry in manifest["files"].items():
        data = (path / name).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


# ---- refused: each case names the offending file -------------------------------------------------

def truncate(path):
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    return path / "model.safetensors", "truncated"


def flip_a_byte(path):
    data = bytearray((path / "training.safetensors").read_bytes())
    data[-1] ^= 0x01
    (path / "training.safetensors").write_bytes(bytes(data))
    return path / "training.safetensors", "SHA-256"


def foreign_manifest(path):
    (path / "manifest.json").write_text(json.dumps({"format": "someone-else", "files": {}}))
    return path / "manifest.json", "not an rnnkit checkpoint"


def garbled_manifest(path):
    (path / "manifest.json").write_bytes(b"\x00\x01 not json")
    return path / "manifest.json", "not a JSON file"


def missing_manifest(path):
    (path / "manifest.json").unlink()
    return path / "manifest.json", "missing"


def missing_file(path):
    (path / "config.json").unlink()
    return path / "config.json", "missing"


def pickle_with_a_forged_manifest(path):
    """A torch.save (pickle) file in place of the weights, with the manifest updated to match it."""
    target = path / "model.safetensors"
    torch.save({"w": torch.zeros(2)}, target)
    manifest = json.loads((path / "manifest.json").read_text())
    data = target.read_bytes()
    manifest["files"]["model.safetensors"] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return target, "not a safetensors file"


def a_file_not_a_directory(path):
    other = path.parent / "weights.pt"
    torch.save({"w": torch.zeros(2)}, other)
    return other, "not a checkpoint directory"


@pytest.mark.parametrize("damage", [truncate, flip_a_byte, foreign_manifest, garbled_manifest, missing_manifest,
                                    missing_file, pickle_with_a_forged_manifest, a_file_not_a_directory])
def test_damaged_checkpoint_is_refused_naming_the_file(saved, damage):
    named, reason = damage(saved[0])
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(named if named.suffix == ".pt" else saved[0])
    message = str(caught.value)
    assert message.startswith(f"{named}: ") and reason in message, message
    assert caught.value.path == str(named)


def test_state_that_needs_pickle_is_refused_naming_where(tmp_path):
    model = nn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"trainer/hook: a function cannot be saved without pickle"):
        save_checkpoint(tmp_path / "c", model, trainer_state={"hook": lambda: 0})


# ---- atomicity, the latest and the best, pruning ---------------------------------------------

def test_crash_while_saving_leaves_the_previous_checkpoint_latest(tmp_path, monkeypatch):
    model = nn.Linear(3, 2)
    save_checkpoint(checkpoint_path(tmp_path, 10), model)
    real_write = ckpt.atomic_write

    def crash_at_the_manifest(path, data):
        if path.name == "manifest.json":
            raise KeyboardInterrupt("killed")
        real_write(path, data)
    monkeypatch.setattr(ckpt, "atomic_write", crash_at_the_manifest)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(checkpoint_path(tmp_path, 20), model)
    monkeypatch.undo()
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 10)
    assert not checkpoint_path(tmp_path, 20).exists()
    # the next save of that step clears the leftover and completes
    save_checkpoint(checkpoint_path(tmp_path, 20), model)
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000010", "step-00000020"]


def test_atomic_write_keeps_the_old_content_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "config.json"
    ckpt.atomic_write(target, b"old")

    def failing_fsync(descriptor):
        raise OSError("disk full")
    monkeypatch.setattr(ckpt.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        ckpt.atomic_write(target, b"new content")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]        # no temporary file left


def test_existing_checkpoint_is_not_overwritten(tmp_path):
    model = nn.Linear(3, 2)
    save_checkpoint(tmp_path / "c", model)
    with pytest.raises(FileExistsError, match="already exists"):
        save_checkpoint(tmp_path / "c", model)


def test_pruning_keeps_the_last_k_and_the_best(tmp_path):
    model = nn.Linear(3, 2)
    for step in (1, 2, 3, 4, 5):
        save_checkpoint(checkpoint_path(tmp_path, step), model)
    mark_best(tmp_path, checkpoint_path(tmp_path, 2), "accuracy", 0.9)
    prune_checkpoints(tmp_path, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000002", "step-00000004", "step-00000005"]
    assert best_checkpoint(tmp_path) == checkpoint_path(tmp_path, 2)
    assert json.loads((tmp_path / "best.json").read_text())["value"] == 0.9
