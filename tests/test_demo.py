"""`rnnkit demo` trains on the built-in adding problem and writes its picture."""
import pytest
from click.testing import CliRunner

from rnnkit.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_demo_runs_small_and_writes_a_png(tmp_path):
    out = tmp_path / "demo.png"
    result = CliRunner().invoke(main, ["demo", "--out", str(out), "--length", "10", "--steps", "100"])
    assert result.exit_code == 0, result.output
    assert "elman" in result.output and "lstm" in result.output and "gru" in result.output
    assert out.read_bytes().startswith(PNG_SIGNATURE)


def test_demo_rejects_an_unwritable_output_in_one_line(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "missing" / "demo.png")])
    assert result.exit_code != 0
    assert "Traceback" not in result.output and "does not exist" in result.output


@pytest.mark.slow
def test_full_demo_shows_the_gated_cells_learn_what_the_tanh_rnn_cannot(tmp_path):
    from rnnkit.tasks.demo import run_demo
    from rnnkit.tasks import ADDING_BASELINE_MSE

    runs = {run.cell: run for run in run_demo(tmp_path / "demo.png", echo=lambda *_: None)}
    assert runs["elman"].test_mse > 0.8 * ADDING_BASELINE_MSE
    assert runs["lstm"].test_mse < 0.1 * ADDING_BASELINE_MSE
    assert runs["gru"].test_mse < 0.1 * ADDING_BASELINE_MSE
