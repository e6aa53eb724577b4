"""The ``regress`` recipe end to end: a series file → trained forecaster → forecasts in the series' units."""
import math

import numpy as np
import pytest

from rnnkit.data.errors import DataFormatError
from rnnkit.recipes import run
from quiet_runs import quiet_config

TINY = {"hidden": 8}


def quiet(*_):
    pass


def config(tmp_path, **options):
    return quiet_config(tmp_path / "run", **{"epochs": 2, "seed": 0, "lr": 1e-2, **options})


def wave(count, start=0):
    """A sine wave around 100 with amplitude 20: far from mean 0 / std 1, so that normalising matters."""
    t = np.arange(start, start + count)
    return 100 + 20 * np.sin(0.3 * t) + 5 * np.sin(0.05 * t)


def write_txt(path, values):
    path.write_text("".join(f"{float(v)!r}\n" for v in values))
    return str(path)


def write_csv(path, values):
    path.write_text('"Month","Passengers","Other"\r\n'
                    + "".join(f'"m{i}",{float(v)!r},0\r\n' for i, v in enumerate(values)))
    return str(path)


@pytest.fixture
def series_files(tmp_path):
    return write_txt(tmp_path / "train.txt", wave(120)), write_txt(tmp_path / "dev.txt", wave(60, start=120))


def test_a_run_reloads_to_the_metrics_it_was_selected_by(tmp_path, series_files):
    train_path, dev_path = series_files
    trained, history = run.train("regress", train_path, dev_path, config(tmp_path), model_options=TINY,
                                 data_options={"window": 10}, batch_size=16, echo=quiet)
    reloaded = run.load_run(tmp_path / "run")
    assert str(reloaded.checkpoint) == history.best_checkpoint
    assert reloaded.state.data_options == trained.state.data_options        # mean and std saved exactly
    scores = run.evaluate(reloaded, dev_path, batch_size=16)
    assert scores == pytest.approx({k: history.best[k] for k in scores}, rel=1e-12)
    assert list(run.predict(reloaded, ["100, 110, 118"])) == list(run.predict(trained, ["100, 110, 118"]))


def normalisation(trained):
    return {key: trained.state.data_options[key] for key in ("window", "horizon", "mean", "std")}


def test_normalisation_completes_the_data_options_with_the_training_files_mean_and_std(tmp_path, series_files):
    train_path, _ = series_files
    trained, _ = run.train("regress", train_path, None, config(tmp_path), model_options=TINY, echo=quiet)
    assert normalisation(trained) == pytest.approx({"window": 20, "horizon": 1, "mean": wave(120).mean(),
                                                    "std": wave(120).std()}, rel=1e-12)
    assert trained.state.vocabularies == {}
    given, _ = run.train("regress", train_path, None, config(tmp_path / "given"), model_options=TINY,
                         data_options={"mean": 90, "std": 4.5}, echo=quiet)
    assert normalisation(given) == {"window": 20, "horizon": 1, "mean": 90.0, "std": 4.5}


@pytest.mark.parametrize("horizon", [1, 3])
def test_evaluate_is_the_error_of_the_predicted_forecasts_in_the_series_units(tmp_path, series_files, horizon):
    train_path, _ = series_files
    window = 8
    test_series = wave(40, start=300)
    test_path = write_txt(tmp_path / "test.txt", test_series)
    trained, _ = run.train("regress", train_path, None, config(tmp_path), model_options=TINY,
                           data_options={"window": window, "horizon": horizon}, batch_size=16, echo=quiet)
    scores = run.evaluate(trained, test_path, batch_size=7)

    starts = range(len(test_series) - window - horizon + 1)
    histories = [test_series[s:s + window] for s in starts]
    futures = np.array([test_series[s + window:s + window + horizon] for s in starts])      # (N, K)
    forecasts = np.array([[float(v) for v in line.split()]
                          for line in run.predict(trained, [" ".join(str(float(v)) for v in h) for h in histories])])
    assert forecasts.shape == futures.shape
    mse = ((forecasts - futures) ** 2).mean()
    last_value_mse = ((np.array([h[-1] for h in histories])[:, None] - futures) ** 2).mean()
    assert scores["mse"] == pytest.approx(mse, rel=1e-4)          # forecasts printed with 6 digits
    assert scores["rmse"] == pytest.approx(math.sqrt(scores["mse"]))
    assert scores["last_value_mse"] == pytest.approx(last_value_mse, rel=1e-5)
    assert scores["last_value_rmse"] == pytest.approx(math.sqrt(last_value_mse), rel=1e-5)
    std = wave(120).std()                                         # the training series' σ
    assert scores["loss"] == pytest.approx(scores["mse"] / std ** 2)


def test_predict_reads_the_last_window_of_a_longer_history(tmp_path, series_files):
    trained, _ = run.train("regress", series_files[0], None, config(tmp_path), model_options=TINY,
                           data_options={"window": 5}, echo=quiet)
    history = [str(float(v)) for v in wave(12, start=7)]
    forecasts = list(run.predict(trained, [", ".join(history), " ".join(history[-5:]), ",".join(history[-3:])]))
    assert len(forecasts) == 3 and forecasts[0] == forecasts[1] != forecasts[2]


@pytest.mark.parametrize("column", [1, "Passengers"])
def test_a_csv_column_is_read_by_index_or_name(tmp_path, column):
    values = wave(50)
    path = write_csv(tmp_path / "series.csv", values)
    trained, _ = run.train("regress", path, None, config(tmp_path), model_options=TINY,
                           data_options={"column": column, "window": 6}, echo=quiet)
    assert trained.state.data_options["mean"] == pytest.approx(values.mean())
    assert run.evaluate(trained, path)["last_value_mse"] == pytest.approx(np.mean(np.diff(values[5:]) ** 2))


def test_airline_passengers_is_read_as_csv(shared_data, tmp_path):
    path = str(shared_data("timeseries/airline-passengers.csv"))
    trained, _ = run.train("regress", path, None, config(tmp_path, epochs=1), model_options=TINY,
                           data_options={"window": 12}, echo=quiet)
    assert trained.state.data_options["mean"] == pytest.approx(280.2986111)


@pytest.mark.parametrize("name, text, message", [
    ("bad.txt", "1.0\n2.0\nthree\n", "bad.txt:3: line 'three' is not a number"),
    ("bad.csv", '"a","b"\n"x",1\n"y"\n', "bad.csv:3: 1 fields"),
    ("short.txt", "1\n2\n3\n", "short.txt: 3 values, too few for one window of 20"),
])
def test_a_malformed_or_short_series_names_its_file(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataFormatError, match=message):
        run.train("regress", str(path), None, config(tmp_path), echo=quiet)


def test_missing_files_and_bad_input_lines_are_clear_errors(tmp_path, series_files):
    with pytest.raises(FileNotFoundError, match="absent.txt"):
        run.train("regress", str(tmp_path / "absent.txt"), None, config(tmp_path), echo=quiet)
    trained, _ = run.train("regress", series_files[0], None, config(tmp_path), model_options=TINY, echo=quiet)
    with pytest.raises(DataFormatError, match="<input>:2: value 'x' is not a number"):
        list(run.predict(trained, ["1 2 3", "1, x"]))
    with pytest.raises(DataFormatError, match="<input>:1: empty line"):
        list(run.predict(trained, [" , "]))


# ----------------------------------------------------------------------------------- it learns
@pytest.mark.slow
def test_mackey_glass_forecast_beats_repeating_the_last_value(shared_data, tmp_path):
    series = np.loadtxt(shared_data("timeseries/MackeyGlass_t17.txt"))
    train_path = write_txt(tmp_path / "train.txt", series[:1500])
    dev_path = write_txt(tmp_path / "dev.txt", series[1500:2000])
    trained, _ = run.train("regress", train_path, None, config(tmp_path, epochs=5, lr=5e-3),
                           model_options={"hidden": 32, "cell": "gru"}, data_options={"window": 20},
                           batch_size=32, echo=quiet)
    scores = run.evaluate(trained, dev_path)
    print(f"Mackey-Glass one step ahead: mse {scores['mse']:.3g}, repeating the last value "
          f"{scores['last_value_mse']:.3g}")
    assert scores["mse"] < scores["last_value_mse"] / 10
