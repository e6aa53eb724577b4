"""SequenceRegressor: many-to-one and many-to-many agree, padding changes nothing, causality, learning."""
import numpy as np
import pytest
import torch

from rnnkit.data.timeseries import read_series_csv, read_series_txt, sliding_windows
from rnnkit.models.encoder import EncoderConfig
from rnnkit.models.regressor import SequenceRegressor

pytestmark = pytest.mark.usefixtures("one_thread")


def batch_with_garbage_past_the_end(lengths, features, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(len(lengths), max(lengths), features, dtype=torch.float64)
    for b, n in enumerate(lengths):
        x[b, n:] = 50 * torch.randn(max(lengths) - n, features)
    return x, torch.tensor(lengths)


@pytest.mark.parametrize("many_to_many", [False, True])
@pytest.mark.parametrize("cell,bidirectional", [("lstm", False), ("gru", True), ("elman", False)])
def test_each_series_is_predicted_as_it_would_be_alone(many_to_many, cell, bidirectional):
    torch.manual_seed(0)
    model = SequenceRegressor(3, 2, encoder=EncoderConfig(cell, 5, num_layers=2, bidirectional=bidirectional),
                              many_to_many=many_to_many).double()
    x, lengths = batch_with_garbage_past_the_end([6, 2, 4], 3)
    predictions = model(x, lengths)
    assert predictions.shape == ((3, 6, 2) if many_to_many else (3, 2))
    for b, n in enumerate(lengths.tolist()):
        alone = model(x[b:b + 1, :n], torch.tensor([n]))[0]
        if many_to_many:
            torch.testing.assert_close(predictions[b, :n], alone)
            assert torch.all(predictions[b, n:] == 0)
        else:
            torch.testing.assert_close(predictions[b], alone)


def test_many_to_one_is_the_many_to_many_prediction_at_the_last_step():
    torch.manual_seed(0)
    one = SequenceRegressor(2, 3, encoder=EncoderConfig("gru", 4)).double()
    every = SequenceRegressor(2, 3, encoder=EncoderConfig("gru", 4), many_to_many=True).double()
    every.load_state_dict(one.state_dict())
    x, lengths = batch_with_garbage_past_the_end([5, 3, 1], 2)
    at_every_step = every(x, lengths)                                   # (B, T, K)
    last = at_every_step[torch.arange(3), lengths - 1]                  # (B, K)
    torch.testing.assert_close(one(x, lengths), last)


def test_one_direction_many_to_many_sees_only_the_past():
    torch.manual_seed(0)
    model = SequenceRegressor(1, 1, encoder=EncoderConfig("lstm", 4), many_to_many=True).double()
    x = torch.randn(1, 8, 1, dtype=torch.float64)
    changed = x.clone()
    changed[0, 5] += 1.0
    before, after = model(x), model(changed)
    torch.testing.assert_close(before[0, :5], after[0, :5])
    assert not torch.allclose(before[0, 5:], after[0, 5:])


def test_regressor_rejects_bad_input():
    model = SequenceRegressor(2, 1, encoder=EncoderConfig(hidden_size=3))
    with pytest.raises(ValueError, match=r"x must be float features of shape \(B, T, input_size=2\), "
                                         r"got torch.float32 of shape \(4, 2\)"):
        model(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="output_size must be a positive int, got 0"):
        SequenceRegressor(2, 0)


def one_step_forecast(train, test, window: int, model: SequenceRegressor, epochs: int, batch_size: int):
    """Normalise by the training part's mean and std, fit ``model`` (Adam 1e-2) on its sliding windows
    to predict the next value, and return the test windows, targets and the model's test MSE."""
    mean, std = train.mean(), train.std()                      # normalising is the caller's job
    x_train, y_train = (torch.from_numpy(a).float() for a in sliding_windows((train - mean) / std, window))
    x_test, y_test = (torch.from_numpy(a).float() for a in sliding_windows((test - mean) / std, window))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        for batch in torch.randperm(len(x_train)).split(batch_size):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
    with torch.no_grad():
        return x_test, y_test, torch.nn.functional.mse_loss(model(x_test), y_test).item()


@pytest.mark.slow
def test_mackey_glass_one_step_forecast_beats_repeating_the_last_value(shared_data):
    series = read_series_txt(shared_data("timeseries/MackeyGlass_t17.txt"))
    torch.manual_seed(0)
    x_test, y_test, model_mse = one_step_forecast(series[:2000], series[2000:2600], 20,
                                                  SequenceRegressor(1, 1, encoder=EncoderConfig("lstm", 32)),
                                                  epochs=3, batch_size=64)
    last_value_mse = torch.nn.functional.mse_loss(x_test[:, -1], y_test).item()     # y_{t+1} := y_t
    assert model_mse < 0.25 * last_value_mse, (model_mse, last_value_mse)


@pytest.mark.slow
def test_airline_passengers_forecast_beats_the_training_mean(shared_data):
    """Box & Jenkins' airline series (144 months): log, then a year of history predicts the next month;
    trained on 1949-1957, tested one step ahead on 1958-1960 against always answering the training
    mean (the trivial baseline, poor under the upward trend) and against repeating the last value."""
    series = np.log(read_series_csv(shared_data("timeseries/airline-passengers.csv")))
    torch.manual_seed(0)
    # the test windows start inside 1957, so that the first forecast is January 1958
    x_test, y_test, model_mse = one_step_forecast(series[:108], series[108 - 12:], 12,
                                                  SequenceRegressor(1, 1, encoder=EncoderConfig("gru", 16)),
                                                  epochs=150, batch_size=32)
    mean_mse = y_test.square().mean().item()                   # the training mean is 0 after normalising
    last_value_mse = torch.nn.functional.mse_loss(x_test[:, -1], y_test).item()
    assert len(y_test) == 36
    print(f"model MSE {model_mse:.4f}, training mean {mean_mse:.4f}, last value {last_value_mse:.4f}")
    # measured with seeds 0-2: 0.032-0.049 against 3.54 and 0.094
    assert model_mse < 0.2 * mean_mse and model_mse < 0.75 * last_value_mse, (model_mse, last_value_mse)
