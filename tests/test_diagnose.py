"""rnnkit.diagnose and the ``rnnkit diagnose`` command.

The Jacobian norms are checked against independent computations: for the tanh Elman network the
product Π diag(1 − h_t²) U built in the test from the layer's recorded states, for the LSTM
torch.autograd.functional.jacobian of the remaining steps. The decay properties use fixed seeds;
the margins hold for every seed tried (0–7), as the numbers in the comments show.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import rnnkit
from rnnkit import diagnose
from rnnkit.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parents[1]


def log_slope(flow, first=10, last=100):
    """Least-squares slope of log10 ‖∂L/∂h_k‖ against the distance d = T − k, d = first … last."""
    norms = flow.by_distance().numpy()
    d = np.arange(first, last + 1)
    return np.polyfit(d, np.log10(norms[first:last + 1]), 1)[0]


def elman_states(layer, x):
    """Every step's state, from the layer itself (its own loop), (T, B, H)."""
    with torch.no_grad():
        _, _, (all_h,) = layer(x, return_all_states=True)                      # (T, 1, B, H)
    return all_h[:, 0]


# ----- gradient_flow: exact values -----------------------------------------------------------
def test_elman_jacobian_norm_equals_product_of_diag_one_minus_h_squared_U():
    torch.manual_seed(0)
    T, B, I, H = 25, 3, 4, 6
    layer = rnnkit.Recurrent("elman", I, H, dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64)
    flow = diagnose.gradient_flow(layer, x)

    h = elman_states(layer, x)                                                  # (T, B, H)
    U = layer.cells[0].weight_hh.detach()                                       # (H, H)
    for b in range(B):
        J = torch.eye(H, dtype=torch.float64)                                  # ∂h_T/∂h_T
        for k in range(T - 1, -1, -1):
            expected_jacobian = torch.linalg.matrix_norm(J, ord=2)
            expected_grad = torch.linalg.vector_norm(J.sum(0))                 # ‖1ᵀ J‖, L = Σ_j h_T,j
            torch.testing.assert_close(flow.jacobian_norm[k, b], expected_jacobian)
            torch.testing.assert_close(flow.grad_norm[k, b], expected_grad)
            if k > 0:                                                           # J ← J diag(1 − h_k²) U
                J = J @ torch.diag(1 - h[k, b] ** 2) @ U
    assert torch.allclose(flow.jacobian_norm[-1], torch.ones(B, dtype=torch.float64))


def test_lstm_jacobian_norm_matches_autograd_jacobian_of_the_remaining_steps():
    torch.manual_seed(1)
    T, B, I, H = 12, 2, 3, 5
    layer = rnnkit.Recurrent("lstm", I, H, dtype=torch.float64, forget_bias=1.0)
    x = torch.randn(T, B, I, dtype=torch.float64)
    flow = diagnose.gradient_flow(layer, x)

    cell, p = layer.cells[0], layer.cell_params(0)
    with torch.no_grad():
        _, _, (all_h, all_c) = layer(x, return_all_states=True)               # each (T, 1, B, H)
        u = cell.project_input(p, x)                                           # (T, B, 4H)

    for k in (0, 4, T - 2):
        for b in range(B):
            def last_h(h_k, b=b, k=k):                                          # h_T from h_k, c_k fixed
                state = (h_k.unsqueeze(0), all_c[k, 0, b].unsqueeze(0))
                for t in range(k + 1, T):
                    _, state = cell.step(p, u[t, b:b + 1], state)
                return state[0][0]
            J = torch.autograd.functional.jacobian(last_h, all_h[k, 0, b])     # (H, H)
            torch.testing.assert_close(flow.jacobian_norm[k, b], torch.linalg.matrix_norm(J, ord=2))


def test_padded_batch_matches_each_sequence_alone():
    torch.manual_seed(2)
    T, I, H = 20, 3, 4
    layer = rnnkit.Recurrent("gru", I, H, dtype=torch.float64)
    x = torch.randn(T, 2, I, dtype=torch.float64)
    lengths = torch.tensor([T, 13])
    flow = diagnose.gradient_flow(layer, x, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        alone = diagnose.gradient_flow(layer, x[:n, b])                         # unbatched (n, I)
        torch.testing.assert_close(flow.grad_norm[:n, b], alone.grad_norm[:, 0])
        torch.testing.assert_close(flow.jacobian_norm[:n, b], alone.jacobian_norm[:, 0])
        assert (flow.grad_norm[n:, b] == 0).all() and (flow.jacobian_norm[n:, b] == 0).all()
    # Lined up by distance d from each sequence's own end: d = 5 is in both, d = 15 only in the first.
    J = flow.jacobian_norm
    by_d = flow.by_distance("jacobian")
    torch.testing.assert_close(by_d[0], torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(by_d[5], (J[T - 1 - 5, 0] + J[13 - 1 - 5, 1]) / 2)
    torch.testing.assert_close(by_d[15], J[T - 1 - 15, 0])


@pytest.mark.parametrize("options", [{}, {"zoneout": 0.3}, {"learn_initial_state": True},
                                     {"lengths": [9, 4]}, {"variant": "fgr"}])
def test_diagnostic_loop_reproduces_the_layers_outputs(options):
    torch.manual_seed(5)
    options = dict(options)
    lengths = options.pop("lengths", None)
    layer = rnnkit.Recurrent("lstm", 3, 4, dtype=torch.float64, **options).eval()
    if layer.learn_initial_state:
        with torch.no_grad():
            layer.initial_h.normal_(), layer.initial_c.normal_()
    x = torch.randn(9, 2, 3, dtype=torch.float64)
    seen = []
    diagnose.gradient_flow(layer, x, loss=lambda y: seen.append(y.detach()) or y.sum(), lengths=lengths,
                           jacobian=False)
    expected, _ = layer(x, lengths=lengths)
    torch.testing.assert_close(seen[0], expected)


def test_user_loss_sees_the_layers_output_layout_and_sets_the_gradient():
    torch.manual_seed(3)
    layer = rnnkit.Recurrent("elman", 3, 4, batch_first=True, dtype=torch.float64)
    x = torch.randn(2, 10, 3, dtype=torch.float64)                             # (B, T, I)
    seen = []

    def loss(outputs):
        seen.append(tuple(outputs.shape))
        return outputs[:, 5].sum()                                              # reads step 5 only

    flow = diagnose.gradient_flow(layer, x, loss=loss, jacobian=False)
    assert seen == [(2, 10, 4)]
    assert flow.jacobian_norm is None
    assert (flow.grad_norm[6:] == 0).all() and (flow.grad_norm[:6] > 0).all()


def test_lstm_cell_state_can_be_followed_instead_of_h():
    layer = rnnkit.Recurrent("lstm", 3, 4)
    flow = diagnose.gradient_flow(layer, torch.randn(15, 2, 3), state="c")
    assert flow.state == "c" and flow.grad_norm.shape == (15, 2)
    with pytest.raises(ValueError, match="state must be one of"):
        diagnose.gradient_flow(layer, torch.randn(15, 2, 3), state="q")


@pytest.mark.parametrize("cell", rnnkit.cells.available())
def test_every_registered_cell_runs(cell):
    layer = rnnkit.Recurrent(cell, 3, 4, dtype=torch.float64)
    flow = diagnose.gradient_flow(layer, torch.randn(8, 2, 3, dtype=torch.float64))
    assert flow.grad_norm.shape == flow.jacobian_norm.shape == (8, 2)
    assert torch.isfinite(flow.jacobian_norm).all()
    torch.testing.assert_close(flow.jacobian_norm[-1], torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("options, message", [
    ({"num_layers": 2}, "num_layers=1"),
    ({"bidirectional": True}, "bidirectional=False"),
])
def test_stacked_or_bidirectional_layers_are_refused(options, message):
    layer = rnnkit.Recurrent("elman", 3, 4, **options)
    with pytest.raises(ValueError, match=message):
        diagnose.gradient_flow(layer, torch.randn(5, 1, 3))


# ----- gradient_flow: the decay the textbook describes ----------------------------------------
@pytest.fixture(scope="module")
def flows():
    """Untrained cells, H = 32, on one shared input x ~ N(0, 1) of 120 steps × 4 sequences."""
    specs = ["elman", "lstm", "lstm:forget_bias=1", "gru", "elman@3", "elman:relu@3"]
    return diagnose.compare_gradient_flow(specs, length=120, hidden_size=32, input_size=8,
                                          batch_size=4, seed=0)


def test_tanh_elman_gradient_vanishes_geometrically(flows):
    flow = flows["elman"]
    by_d = flow.by_distance()
    assert log_slope(flow) < -0.1                   # ≈ −0.28 (ρ ≈ 0.53 per step); −0.25 … −0.29 over seeds
    assert by_d[100] < 1e-3 * by_d[1]               # ≈ 1e-28 in fact
    assert flow.rate() == pytest.approx(10 ** log_slope(flow))


def test_gated_cells_decay_slower_than_elman_on_the_same_input(flows):
    elman = log_slope(flows["elman"])
    # Slope ratios to the Elman's over seeds 0–7: lstm 0.63–0.90, gru 0.65–0.83, lstm with
    # forget-gate bias 1 (Jozefowicz et al. 2015) 0.24–0.35.
    assert log_slope(flows["lstm"]) > 0.95 * elman
    assert log_slope(flows["gru"]) > 0.95 * elman
    assert log_slope(flows["lstm:forget_bias=1"]) > 0.5 * elman
    assert log_slope(flows["lstm:forget_bias=1"]) > log_slope(flows["lstm"])


@pytest.mark.parametrize("spec", ["elman:relu@3", "elman@3"])
def test_elman_with_spectral_radius_3_explodes(flows, spec):
    flow = flows[spec]
    by_d = flow.by_distance()
    assert log_slope(flow) > 0.03                   # relu ≈ 0.31, tanh (chaotic regime) ≈ 0.10
    assert by_d[100] > 1e3 * by_d[1]
    assert flow.rate(which="jacobian") > 1


def test_set_spectral_radius_sets_the_largest_eigenvalue_modulus():
    layer = diagnose.build_layer("elman@3", 2, 10)
    U = layer.cells[0].weight_hh.detach()
    assert float(torch.linalg.eigvals(U).abs().max()) == pytest.approx(3.0)


# ----- gate activity --------------------------------------------------------------------------
@pytest.mark.parametrize("cell, names", [("lstm", ["i", "f", "o"]), ("gru", ["r", "z"]),
                                         ("mingru", ["z"])])
def test_gate_activity_shapes_and_range(cell, names):
    layer = rnnkit.Recurrent(cell, 3, 7)
    gates = diagnose.gate_activity(layer, torch.randn(30, 3) * 3)
    assert list(gates) == names
    for values in gates.values():
        assert values.shape == (30, 7)
        assert (values >= 0).all() and (values <= 1).all()


def test_lstm_forget_gate_equals_sigmoid_of_its_preactivation():
    torch.manual_seed(4)
    T, I, H = 9, 3, 5
    layer = rnnkit.Recurrent("lstm", I, H, dtype=torch.float64)
    x = torch.randn(T, I, dtype=torch.float64)
    gates = diagnose.gate_activity(layer, x)
    with torch.no_grad():
        _, _, (all_h, _) = layer(x, return_all_states=True)                    # (T, 1, H)
    h_prev = torch.cat([torch.zeros(1, H, dtype=torch.float64), all_h[:-1, 0]])  # (T, H)
    cell = layer.cells[0]
    rows = slice(H, 2 * H)                                                      # gates stacked i, f, g, o
    f = torch.sigmoid(x @ cell.weight_ih[rows].T + cell.bias_ih[rows]
                      + h_prev @ cell.weight_hh[rows].T + cell.bias_hh[rows])
    torch.testing.assert_close(gates["f"], f.detach())


def test_gate_activity_refuses_gateless_cells_and_batches():
    with pytest.raises(ValueError, match="no gates"):
        diagnose.gate_activity(rnnkit.Recurrent("elman", 3, 4), torch.randn(5, 3))
    with pytest.raises(ValueError, match="one sequence"):
        diagnose.gate_activity(rnnkit.Recurrent("lstm", 3, 4), torch.randn(5, 2, 3))


# ----- cell specs and plots -------------------------------------------------------------------
@pytest.mark.parametrize("spec, expected", [
    ("lstm:cifg", ("lstm", {"variant": "cifg"}, None)),
    ("elman:relu@3", ("elman", {"nonlinearity": "relu"}, 3.0)),
    ("lstm:forget_bias=1", ("lstm", {"forget_bias": 1}, None)),
    ("gru:layer_norm=true", ("gru", {"layer_norm": True}, None)),
])
def test_parse_cell_spec(spec, expected):
    assert diagnose.parse_cell_spec(spec) == expected


@pytest.mark.parametrize("spec, message", [
    ("lsmt", "unknown cell 'lsmt'"),
    ("lstm:forget=1", "no option 'forget'"),
    ("elman@big", "must be a number"),
    ("elman@-1", "must be positive"),
    ("mingru:relu", "no variant or nonlinearity"),
])
def test_bad_cell_specs_are_explained(spec, message):
    with pytest.raises(ValueError, match=message):
        diagnose.parse_cell_spec(spec)


def test_radius_needs_a_square_recurrent_matrix():
    with pytest.raises(ValueError, match="square recurrent matrix"):
        diagnose.build_layer("lstm@2", 3, 4)


def test_plots_write_png_files(tmp_path):
    flows = diagnose.compare_gradient_flow(["elman", "gru"], length=12, hidden_size=4, batch_size=2)
    gates = diagnose.gates_of("lstm", length=12, hidden_size=4)
    for path in (diagnose.plot_gradient_flow(flows, tmp_path / "flow.png"),
                 diagnose.plot_gate_activity(gates, tmp_path / "gates.png")):
        assert path.read_bytes()[:8] == PNG_SIGNATURE


# ----- the command line -----------------------------------------------------------------------
def invoke(*args):
    return CliRunner().invoke(main, list(args))


def assert_one_line_error(result, exit_code, text):
    assert result.exit_code == exit_code, result.output
    assert isinstance(result.exception, SystemExit)                             # no exception escaped
    assert "Traceback" not in result.output
    assert result.stderr.strip().count("\n") == 0 and text in result.stderr


def test_cli_gradient_flow_prints_the_decay_and_writes_a_png(tmp_path):
    out = tmp_path / "flow.png"
    result = invoke("diagnose", "gradient-flow", "--cells", "elman,lstm:cifg,elman@3", "--length", "30",
                    "--hidden", "6", "--batch", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    lines = result.stdout.splitlines()
    assert "d=1" in lines[1] and "d=10" in lines[1] and "d=29" in lines[1]
    assert [line.split()[0] for line in lines[2:5]] == ["elman", "lstm:cifg", "elman@3"]
    assert lines[-1] == f"wrote {out} (gradient flow of elman, lstm:cifg, elman@3 over 30 steps)"


def test_cli_gates_writes_a_png(tmp_path):
    out = tmp_path / "gates.png"
    result = invoke("diagnose", "gates", "--cell", "gru", "--length", "20", "--hidden", "5",
                    "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    assert result.stdout.startswith("mean activation: r ")
    assert result.stdout.splitlines()[-1].startswith(f"wrote {out} (gates r, z of gru")


def test_cli_is_a_group_with_diagnose():
    result = invoke("--help")
    assert result.exit_code == 0 and "diagnose" in result.output
    result = invoke("diagnose", "--help")
    assert "gradient-flow" in result.output and "gates" in result.output


@pytest.mark.parametrize("args, text", [
    (["gradient-flow", "--cells", "elman,nope"], "unknown cell 'nope'"),
    (["gradient-flow", "--cells", "elman,elman"], "given twice"),
    (["gradient-flow", "--cells", "lstm@3"], "square recurrent matrix"),
    (["gradient-flow", "--out", "{tmp}/no/such/dir/flow.png"], "does not exist"),
    (["gradient-flow", "--out", "{tmp}/flow.svg"], "must name a .png file"),
    (["gates", "--cell", "elman"], "no gates"),
    (["gates", "--cell", "lstm:peepholes=1"], "no option 'peepholes'"),
])
def test_cli_user_errors_are_one_line_without_traceback(tmp_path, args, text):
    args = [a.format(tmp=tmp_path) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "x.png")]
    assert_one_line_error(invoke("diagnose", *args), 1, text)


@pytest.mark.parametrize("args", [["gradient-flow", "--length", "0"], ["gradient-flow", "--bogus"],
                                  ["gates", "--hidden", "many"]])
def test_cli_malformed_options_are_usage_errors(args):
    result = invoke("diagnose", *args)
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "Error:" in result.stderr and "Traceback" not in result.output


def run_module(*args, cwd):
    return subprocess.run([sys.executable, "-m", "rnnkit", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@pytest.mark.slow          # a fresh interpreter importing torch
def test_python_m_rnnkit_gradient_flow_writes_a_png(tmp_path):
    out = tmp_path / "flow.png"
    done = run_module("diagnose", "gradient-flow", "--cells", "elman,lstm,gru", "--length", "200",
                      "--out", str(out), cwd=ROOT)
    assert done.returncode == 0, done.stderr
    data = out.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 1000
    assert f"wrote {out}" in done.stdout and "rho/step" in done.stdout


def test_python_m_rnnkit_bad_cell_is_one_line_on_stderr(tmp_path):
    done = run_module("diagnose", "gradient-flow", "--cells", "elman,bogus", "--out",
                      str(tmp_path / "flow.png"), cwd=ROOT)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and done.stderr.strip().count("\n") == 0
    assert "unknown cell 'bogus'" in done.stderr and not (tmp_path / "flow.png").exists()
