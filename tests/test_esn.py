"""Echo state network: reservoir properties and the one-step-ahead Mackey–Glass forecast."""
from pathlib import Path

import numpy as np
import pytest
import torch

import rnnkit
from rnnkit.tasks import mackey_glass

SHARED_MG = Path(__file__).resolve().parents[2] / "shared" / "data" / "timeseries" / "MackeyGlass_t17.txt"


def _forecast_rmse(series: np.ndarray, seed: int, train: int = 2000) -> tuple[float, float]:
    """RMSE of the ESN's one-step-ahead forecast on the held-out part, and of repeating the last value."""
    s = torch.tensor(series, dtype=torch.float64)
    x, y = s[:-1].view(-1, 1, 1), s[1:].view(-1, 1, 1)                         # (T, 1, 1)
    esn = rnnkit.EchoStateNetwork(1, 100, 1, seed=seed, spectral_radius=1.25, leak_rate=0.3,
                                  sparsity=0.9, bias_scaling=0.2, ridge=1e-8, dtype=torch.float64)
    esn.fit(x[:train], y[:train])
    prediction, _ = esn(x)
    rmse = ((prediction[train:] - y[train:]) ** 2).mean().sqrt().item()
    naive = ((x[train:] - y[train:]) ** 2).mean().sqrt().item()
    return rmse, naive


def test_mackey_glass_generator_has_the_known_range_and_matches_the_shared_file_statistics():
    s = mackey_glass(3000)
    assert 0.4 < s.min() < 0.5 and 1.2 < s.max() < 1.35
    # The shared file is tanh(x − 1) of the same series (Lukoševičius' minimal ESN data).
    assert np.std(np.tanh(s - 1)) == pytest.approx(0.2159, abs=0.005)


@pytest.mark.parametrize("seed", [0, 1])
def test_esn_forecasts_mackey_glass_one_step_ahead_with_small_error(seed):
    rmse, naive = _forecast_rmse(np.tanh(mackey_glass(3000) - 1), seed)
    assert rmse < 0.01 and rmse < naive / 10, (rmse, naive)


@pytest.mark.skipif(not SHARED_MG.exists(), reason=f"shared data file {SHARED_MG} is absent")
def test_esn_forecasts_the_shared_mackey_glass_file():
    rmse, naive = _forecast_rmse(np.loadtxt(SHARED_MG)[:3000], seed=0)
    assert rmse < 0.01 and rmse < naive / 10, (rmse, naive)


def test_readout_is_the_ridge_solution_of_states_on_targets():
    torch.manual_seed(0)
    esn = rnnkit.EchoStateNetwork(2, 20, 3, washout=5, ridge=1e-3, seed=3, dtype=torch.float64)
    x = torch.randn(40, 4, 2, dtype=torch.float64)
    y = torch.randn(40, 4, 3, dtype=torch.float64)
    esn.fit(x, y)
    features, _ = esn.features(x)
    X = features[5:].reshape(-1, 22).numpy()
    X1 = np.hstack([X, np.ones((X.shape[0], 1))])
    penalty = 1e-3 * np.eye(23)
    penalty[-1, -1] = 0
    expected = np.linalg.solve(X1.T @ X1 + penalty, X1.T @ y[5:].reshape(-1, 3).numpy())
    np.testing.assert_allclose(esn.readout_weight.numpy(), expected[:-1].T, atol=1e-8)
    np.testing.assert_allclose(esn.readout_bias.numpy(), expected[-1], atol=1e-8)


def test_reservoir_is_not_trained_and_predicting_before_fit_is_an_error():
    esn = rnnkit.EchoStateNetwork(1, 10, 1, seed=0)
    assert list(esn.parameters()) == []
    with pytest.raises(RuntimeError, match="fit"):
        esn(torch.randn(5, 1, 1))
    with pytest.raises(ValueError, match="washout"):
        esn.fit(torch.randn(50, 1, 1), torch.randn(50, 1, 1))


def test_a_seeded_stack_gets_a_different_reproducible_reservoir_for_every_cell():
    first = rnnkit.Recurrent("esn", 4, 8, num_layers=2, bidirectional=True, seed=3)
    again = rnnkit.Recurrent("esn", 4, 8, num_layers=2, bidirectional=True, seed=3)
    forward_1, backward_1 = first.cells[0].weight_hh, first.cells[1].weight_hh
    assert not torch.equal(forward_1, backward_1), "both directions got the same reservoir"
    assert not torch.equal(first.cells[1].weight_hh, first.cells[3].weight_hh)
    for ours, theirs in zip(first.cells, again.cells):
        assert torch.equal(ours.weight_hh, theirs.weight_hh) and torch.equal(ours.weight_ih, theirs.weight_ih)
    single = rnnkit.Recurrent("esn", 4, 8, seed=3)
    assert torch.equal(single.cells[0].weight_hh, forward_1), "cell 0 of a stack uses the seed itself"


def test_a_small_very_sparse_reservoir_still_has_the_requested_spectral_radius():
    for seed in range(40):                  # some of these draw a nilpotent matrix first
        cell = rnnkit.cells.create("esn", 2, 4, sparsity=0.9, spectral_radius=0.8, seed=seed,
                                   dtype=torch.float64)
        radius = torch.linalg.eigvals(cell.weight_hh).abs().max()
        torch.testing.assert_close(radius, torch.tensor(0.8, dtype=torch.float64))
