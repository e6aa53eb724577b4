"""Shared test fixtures."""
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_thread_for_the_suite():
    """Every test runs on one intra-op thread: the suite's tensors are small, and with two threads on a
    busy machine a small training step measured 15-50x slower (libgomp's spin-waiting), enough to
    push the suite past its time limit. Tests of threading set their own count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, only contention: run a module on one thread
    (the previous setting is restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def generated_path_without_inductor(monkeypatch):
    """The generated path (rnnkit.engine.generated) traces a cell's step with torch.compile; with
    aot_eager the traced graph runs without Inductor's C++ generation, about 3.5x faster on this
    machine. For tests of what runs on that path (a user's cell through rnnkit.testing.check_cell),
    not of Inductor's code, which the engine's own tests cover."""
    try:
        from rnnkit.engine import generated
    except ModuleNotFoundError:             # no generated path in this installation: nothing compiles
        return
    monkeypatch.setattr(generated, "COMPILER", "aot_eager")


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data():
    """The path of a file under ../shared/data (the team's copy of the public datasets); the test is
    skipped, saying which file, where it is absent (for example in a clone outside /work)."""
    def path(relative: str) -> Path:
        found = SHARED_DATA / relative
        if not found.exists():
            pytest.skip(f"shared data file {found} is absent")
        return found
    return path
