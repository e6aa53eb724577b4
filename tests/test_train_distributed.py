"""Several processes: the share of batches each takes, the weights that make the loss a mean over the
global batch, and two processes under torchrun ending with the weights of one process on the global batch."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import rnnkit
from rnnkit.tasks.adding import adding_problem
from rnnkit.train import RegressionTask, Trainer
from rnnkit.train.checkpoint import latest_checkpoint, load_checkpoint
from rnnkit.train.distributed import DistributedContext
from rnnkit.train.logging import read_csv

REPO = Path(__file__).resolve().parents[1]


def test_each_process_takes_every_nth_batch_and_drops_an_incomplete_round():
    batches = list(range(8))
    shares = [list(DistributedContext(rank=r, world_size=3).shard(batches)) for r in range(3)]
    assert shares == [[0, 3], [1, 4], [2, 5]]                  # 6, 7: an incomplete round
    assert list(DistributedContext().shard(batches)) == batches


def test_weighted_local_means_average_to_the_global_mean():
    """What DDP computes, (1/N) Σ_r w_r L_r, equals the mean over the global batch for unequal shares."""
    losses = [torch.rand(n, generator=torch.Generator().manual_seed(n)) for n in (3, 5, 1)]
    units = [len(x) for x in losses]
    context = DistributedContext(rank=0, world_size=3)
    ddp_average = sum(context.global_mean_weight(n, sum(units)) * x.mean() for n, x in zip(units, losses)) / 3
    assert torch.allclose(ddp_average, torch.cat(losses).mean())


def test_without_torchrun_there_is_one_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    context = DistributedContext.from_environment()
    assert (context.rank, context.world_size, context.is_main, context.is_distributed) == (0, 1, True, False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="RANK is not set"):
        DistributedContext.from_environment()


# ---- two processes on the CPU -------------------------------------------------------------------

class LastStep(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn, self.head = rnnkit.Recurrent("gru", 2, 8), nn.Linear(8, 1)

    def forward(self, x):
        return self.head(self.rnn(x)[0][-1])                     # (T, B, 2) -> (B, 1)


def shares(steps):
    """Per-process batches of unequal sizes, 3 and 5 examples, alternating (global batches of 8)."""
    generator = torch.Generator().manual_seed(0)
    return [adding_problem(3 if i % 2 == 0 else 5, 6, generator=generator) for i in range(2 * steps)]


def global_batches(steps):
    local = shares(steps)
    return [(torch.cat([local[i][0], local[i + 1][0]], dim=1),           # (T, 3 + 5, 2)
             torch.cat([local[i][1], local[i + 1][1]], dim=0)) for i in range(0, len(local), 2)]


OPTIONS = dict(optimizer="sgd", lr=0.2, momentum=0.9, clip_norm=5.0, epochs=2, shuffle=False, eval_every=2,
               log_every=1, progress=False, tensorboard=False, deterministic=True)

WORKER = textwrap.dedent("""
    import sys
    import torch
    import torch.distributed as dist
    from safetensors.torch import save_file
    from rnnkit.train import RegressionTask, Trainer
    sys.path.insert(0, sys.argv[2])
    from test_train_distributed import LastStep, OPTIONS, shares

    torch.set_num_threads(1)
    out = sys.argv[1]
    torch.manual_seed(0)
    model = LastStep()
    trainer = Trainer(model, RegressionTask(), out_dir=out + "/run", **OPTIONS)
    history = trainer.fit(shares(4), shares(1)[:1])
    rank = dist.get_rank()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{out}/rank{rank}.safetensors")
    trainer.context.close()
""")


class UnweightedTask(RegressionTask):
    """What DDP would compute without the global-mean weights: the plain average of the two shares' means."""

    def training_loss(self, model, batch):
        x, y = batch
        first = nn.functional.mse_loss(model(x[:, :3]), y[:3])
        second = nn.functional.mse_loss(model(x[:, 3:]), y[3:])
        return (first + second) / 2, {"examples": 8}


@pytest.mark.slow
def test_two_processes_end_with_the_weights_of_one_process_on_the_global_batch(tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    environment = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    finished = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                               str(worker), str(tmp_path), str(Path(__file__).parent)],
                              env=environment, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    rank0, rank1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")

    torch.manual_seed(0)
    single = LastStep()
    history = Trainer(single, RegressionTask(), **OPTIONS).fit(global_batches(4), shares(1)[:1])
    torch.manual_seed(0)
    unweighted = LastStep()
    Trainer(unweighted, UnweightedTask(), **OPTIONS).fit(global_batches(4), shares(1)[:1])

    for name, expected in single.state_dict().items():
        assert torch.equal(rank0[name], rank1[name]), name                       # the processes agree exactly
        assert torch.allclose(rank0[name], expected, rtol=1e-5, atol=1e-6), name  # and equal one process
    gap = max(float((rank0[name] - w).abs().max()) for name, w in unweighted.state_dict().items())
    assert gap > 1e-3, "an unweighted average of the shares' means should differ: the test would not see it"

    # only rank 0 wrote: one log whose losses are the global batch's, and a checkpoint of its weights
    logged = read_csv(tmp_path / "run" / "train.csv")
    assert logged["step"] == list(range(1, 9))
    assert logged["loss"] == pytest.approx(history.losses, rel=1e-4)
    saved = load_checkpoint(latest_checkpoint(tmp_path / "run" / "checkpoints")).model_state
    assert all(torch.equal(saved[name], rank0[name]) for name in rank0)
