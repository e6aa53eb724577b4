"""Checkpoints that survive a crash at any moment and never run code when loaded.

A checkpoint is a directory::

    step-00000120/
        model.safetensors       the model's state_dict
        training.safetensors    every tensor of the optimiser, schedule, trainer and RNG states
        training.json           the rest of those states, tensors replaced by {"__tensor__": key}
        config.json             the run's configuration
        extra.json              what a model needs besides weights (vocabularies, label lists)
        manifest.json           written last: format, version, and every file's size and SHA-256

Nothing is pickled: tensors go through safetensors, everything else through JSON, so loading
parses data and never executes it (``torch.load`` with pickle would). Every file is written to a
temporary file in the same directory, flushed, ``os.fsync``-ed and renamed over its name with
``os.replace``, and the directory is fsync-ed; the checkpoint is assembled in a hidden
``.step-….partial`` directory and renamed into place only once its manifest is written. A crash at
any moment therefore leaves either no new checkpoint or a complete one, and the last complete
checkpoint stays the "latest". ``load_checkpoint`` checks every file against the manifest and
refuses a truncated, changed or foreign file with one ``CheckpointError`` naming it.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor, nn

FORMAT, VERSION = "rnnkit-checkpoint", 1
MANIFEST = "manifest.json"
FILES = ("model.safetensors", "training.safetensors", "training.json", "config.json", "extra.json")
BEST = "best.json"
_PREFIX = "step-"


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted; the message reads ``PATH: what is wrong``."""

    def __init__(self, path: str | PathLike, message: str) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


@dataclass
class Checkpoint:
    """What ``load_checkpoint`` read, verified. ``restore`` puts it into live objects."""

    path: Path
    model_state: dict[str, Tensor]
    optimizer_state: dict | None
    scheduler_state: dict | None
    trainer_state: dict
    config: dict
    extra: dict
    manifest: dict = field(repr=False)

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                scheduler: Any | None = None) -> None:
        """Load the weights into ``model`` (strictly: every name must match) and, when given, the
        optimiser's and the schedule's states."""
        model.load_state_dict(self.model_state)
        if optimizer is not None:
            if self.optimizer_state is None:
                raise CheckpointError(self.path, "holds no optimizer state to restore")
            optimizer.load_state_dict(self.optimizer_state)
        if scheduler is not None:
            if self.scheduler_state is None:
                raise CheckpointError(self.path, "holds no schedule state to restore")
            scheduler.load_state_dict(self.scheduler_state)


def save_checkpoint(directory: str | PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any | None = None, trainer_state: dict | None = None,
                    config: dict | None = None, extra: dict | None = None) -> Path:
    """Write a checkpoint directory atomically (see the module's docstring) and return its path.

    ``trainer_state`` may hold tensors (RNG states), numbers, strings, lists, tuples and dicts;
    ``config`` and ``extra`` must be JSON (vocabularies as ``Vocabulary.to_dict()``).
    Refuses to overwrite an existing checkpoint directory.
    """
    final = Path(directory)
    if final.exists():
        raise FileExistsError(f"{final}: a checkpoint already exists there")
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.parent / f".{final.name}.partial"
    if partial.exists():                         # left by a run killed while saving
        shutil.rmtree(partial)
    partial.mkdir()

    tensors: dict[str, Tensor] = {}
    training = {"optimizer": _encode(None if optimizer is None else optimizer.state_dict(), tensors, "optimizer"),
                "scheduler": _encode(None if scheduler is None else scheduler.state_dict(), tensors, "scheduler"),
                "trainer": _encode(trainer_state or {}, tensors, "trainer")}
    # a copy of each weight: tied weights share memory, which safetensors refuses
    weights = {name: value.detach().to("cpu", copy=True).contiguous() for name, value in model.state_dict().items()}
    contents = {"model.safetensors": save_safetensors(weights),
                "training.safetensors": save_safetensors(tensors),
                "training.json": _json_bytes(training, "training state"),
                "config.json": _json_bytes(config or {}, "config"),
                "extra.json": _json_bytes(extra or {}, "extra")}
    for name, data in contents.items():
        atomic_write(partial / name, data)
    manifest = {"format": FORMAT, "version": VERSION,
                "files": {name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                          for name, data in contents.items()}}
    atomic_write(partial / MANIFEST, _json_bytes(manifest, "manifest"))
    os.replace(partial, final)
    fsync_directory(final.parent)
    return final


def load_checkpoint(directory: str | PathLike) -> Checkpoint:
    """Read and verify a checkpoint directory; ``CheckpointError`` names the first bad file."""
    root = Path(directory)
    if not root.is_dir():
        raise CheckpointError(root, "is not a checkpoint directory (expected a directory holding manifest.json)")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(manifest_path, "is missing: this is not a complete rnnkit checkpoint")
    manifest = _parse_json(manifest_path, manifest_path.read_bytes())
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise CheckpointError(manifest_path, f"is not an rnnkit checkpoint manifest "
                                             f"(format {found!r}, expected {FORMAT!r})")
    if manifest.get("version") != VERSION:
        raise CheckpointError(manifest_path, f"has version {manifest.get('version')!r}; "
                                             f"this rnnkit reads version {VERSION}")
    listed = manifest.get("files")
    if not isinstance(listed, dict) or sorted(listed) != sorted(FILES):
        raise CheckpointError(manifest_path, f"must list exactly the files {', '.join(FILES)}; "
                                             f"got {sorted(listed) if isinstance(listed, dict) else listed!r}")
    contents = {name: _read_verified(root / name, listed[name]) for name in FILES}

    tensors = _parse_safetensors(root / "training.safetensors", contents["training.safetensors"])
    training = _parse_json(root / "training.json", contents["training.json"])
    try:
        training = _decode(training, tensors)
        optimizer_state, scheduler_state, trainer_state = (training["optimizer"], training["scheduler"],
                                                           training["trainer"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(root / "training.json", f"does not hold a training state ({error})") from None
    return Checkpoint(path=root,
                      model_state=_parse_safetensors(root / "model.safetensors", contents["model.safetensors"]),
                      optimizer_state=optimizer_state, scheduler_state=scheduler_state,
                      trainer_state=trainer_state,
                      config=_parse_json(root / "config.json", contents["config.json"]),
                      extra=_parse_json(root / "extra.json", contents["extra.json"]),
                      manifest=manifest)


# ---- a run's checkpoints: step-N directories, the best one, pruning -------------------------------

def checkpoint_path(root: str | PathLike, step: int) -> Path:
    """Where the checkpoint after ``step`` optimiser steps lives under ``root``."""
    return Path(root) / f"{_PREFIX}{step:08d}"


def list_checkpoints(root: str | PathLike) -> list[Path]:
    """The complete checkpoints (those with a manifest) under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [path for path in root.iterdir() if path.name.startswith(_PREFIX) and path.name[len(_PREFIX):].isdigit()
             and (path / MANIFEST).is_file()]
    return sorted(found, key=lambda path: int(path.name[len(_PREFIX):]))


def latest_checkpoint(root: str | PathLike) -> Path | None:
    """The newest complete checkpoint under ``root``, or None."""
    found = list_checkpoints(root)
    return found[-1] if found else None


def mark_best(root: str | PathLike, checkpoint: str | PathLike, metric: str, value: float) -> None:
    """Record (atomically) that ``checkpoint`` has the best dev ``metric`` so far."""
    record = {"checkpoint": Path(checkpoint).name, "metric": metric, "value": value}
    atomic_write(Path(root) / BEST, _json_bytes(record, "best checkpoint record"))


def best_checkpoint(root: str | PathLike) -> Path | None:
    """The checkpoint ``mark_best`` last recorded under ``root``, or None."""
    record_path = Path(root) / BEST
    if not record_path.is_file():
        return None
    record = _parse_json(record_path, record_path.read_bytes())
    name = record.get("checkpoint") if isinstance(record, dict) else None
    if not isinstance(name, str) or not name.startswith(_PREFIX) or "/" in name or "\\" in name:
        raise CheckpointError(record_path, f"does not name a checkpoint directory (got {name!r})")
    path = Path(root) / name
    return path if (path / MANIFEST).is_file() else None


def prune_checkpoints(root: str | PathLike, keep_last: int) -> None:
    """Delete all but the ``keep_last`` newest complete checkpoints and the best one.

    Each is first renamed to a hidden name, so a crash while deleting never leaves a half-deleted
    directory that looks complete.
    """
    keep = set(list_checkpoints(root)[-keep_last:])
    best = best_checkpoint(root)
    if best is not None:
        keep.add(best)
    for path in list_checkpoints(root):
        if path not in keep:
            doomed = path.parent / f".{path.name}.deleting"
            os.replace(path, doomed)
            shutil.rmtree(doomed)


# ---- writing atomically ------------------------------------------------------------------------

def atomic_write(path: str | PathLike, data: bytes) -> None:
    """Write ``data`` so that ``path`` holds either its old content or all of ``data``, even after a
    crash: a temporary file in the same directory, flushed and fsync-ed, renamed over ``path``,
    then the directory fsync-ed so that the rename itself is on disk."""
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    fsync_directory(path.parent)


def fsync_directory(path: str | PathLike) -> None:
    """fsync a directory, so that the names created or renamed in it are durable (POSIX)."""
    if os.name != "posix":
        return
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# ---- reading and verifying ---------------------------------------------------------------------

def _read_verified(path: Path, listed: Any) -> bytes:
    if not (isinstance(listed, dict) and isinstance(listed.get("bytes"), int)
            and isinstance(listed.get("sha256"), str)):
        raise CheckpointError(path.parent / MANIFEST, f"has no size and SHA-256 for {path.name}")
    if not path.is_file():
        raise CheckpointError(path, "is missing, though the manifest lists it")
    data = path.read_bytes()
    if len(data) < listed["bytes"]:
        raise CheckpointError(path, f"is truncated: {len(data)} bytes, the manifest lists {listed['bytes']}")
    if len(data) != listed["bytes"] or hashlib.sha256(data).hexdigest() != listed["sha256"]:
        raise CheckpointError(path, "does not match the SHA-256 in the manifest: it was changed or replaced "
                                    "after the checkpoint was saved")
    return data


def _parse_json(path: Path, data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(path, f"is not a JSON file ({error})") from None


def _parse_safetensors(path: Path, data: bytes) -> dict[str, Tensor]:
    try:
        return load_safetensors(data)
    except Exception as error:               # safetensors raises its own SafetensorError
        raise CheckpointError(path, f"is not a safetensors file ({error})") from None


def _json_bytes(value: Any, what: str) -> bytes:
    try:
        return json.dumps(value, indent=1, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as error:
        raise TypeError(f"the {what} must be plain JSON (dicts, lists, strings, finite numbers): {error}") from None


# ---- state dicts as JSON + tensors, without pickle ----------------------------------------------
# JSON has no tuples, no non-string keys, no inf/nan and no tensors; each is written as a tagged object.

def _encode(value: Any, tensors: dict[str, Tensor], path: str) -> Any:
    if isinstance(value, Tensor):
        tensors[path] = value.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": path}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(item, tensors, f"{path}/{i}") for i, item in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(item, tensors, f"{path}/{i}") for i, item in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(key, str) and not key.startswith("__") for key in value):
            return {key: _encode(item, tensors, f"{path}/{key}") for key, item in value.items()}
        return {"__items__": [[_encode(key, tensors, f"{path}/key{i}"), _encode(item, tensors, f"{path}/{key}")]
                              for i, (key, item) in enumerate(value.items())]}
    raise TypeError(f"{path}: a {type(value).__name__} cannot be saved without pickle "
                    "(expected tensors, numbers, strings, None, lists, tuples and dicts)")


def _decode(value: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(item, tensors) for item in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__float__" in value:
        return float(value["__float__"])
    if "__tuple__" in value:
        return tuple(_decode(item, tensors) for item in value["__tuple__"])
    if "__items__" in value:
        return {_decode(key, tensors): _decode(item, tensors) for key, item in value["__items__"]}
    return {key: _decode(item, tensors) for key, item in value.items()}
