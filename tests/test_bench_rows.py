"""The benchmark's rows beyond the plain cells: a user's cell, layer options in a spec (zoneout,
recurrent dropout), layer norm and bfloat16 autocast; each compared with the row it builds on.
Nothing here asserts a speed."""
import pytest
import torch
from click.testing import CliRunner

from rnnkit import Recurrent
from rnnkit.bench import BenchConfig, check_against_reference, render_tables, run
from rnnkit.bench.comparisons import comparison_of
from rnnkit.bench.config import TIME_TARGET, USER_CELL
from rnnkit.bench.subjects import CellSpec, output_of
from rnnkit.bench.user_cell import UserGatedCell
from rnnkit.cli import main
from rnnkit.diagnose import parse_cell_spec

NEW_ROWS = (USER_CELL, "lstm:layer_norm=true", "lstm:zoneout=0.1", "lstm:recurrent_dropout=0.25",
            "lstm:standard+bf16")
GENERATED_ROWS = NEW_ROWS[:2]          # zoneout and recurrent dropout run in the compiled C++ loops


# ----- specs -----------------------------------------------------------------------------------
def test_spec_takes_layer_options_and_passes_them_to_the_layer():
    assert parse_cell_spec("lstm:cifg:zoneout=0.1:input_dropout=0.2") == \
        ("lstm", {"variant": "cifg", "zoneout": 0.1, "input_dropout": 0.2}, None)
    spec = CellSpec.parse("gru:original:recurrent_dropout=0.25")
    layer = spec.build(3, 4)
    assert (layer.recurrent_dropout, layer.zoneout, layer.cells[0].variant) == (0.25, 0.0, "original")
    assert spec.layer_options == {"recurrent_dropout": 0.25} and spec.training_only
    twin = spec.reference_twin(layer)
    assert (twin.backend, twin.recurrent_dropout) == ("reference", 0.25)


@pytest.mark.parametrize("spec, message", [
    ("lstm:zonout=0.1", r"cell 'lstm' has no option 'zonout'.*the layer takes: input_dropout, "
                        r"recurrent_dropout, zoneout"),
    ("lstm:standard+fp8", r"unknown precision '\+fp8'"),
    ("rnnkit.bench.user_cell:NoSuchCell", "has no 'NoSuchCell'"),
])
def test_spec_refuses_what_it_does_not_know_and_says_what_it_takes(spec, message):
    with pytest.raises(ValueError, match=message):
        CellSpec.parse(spec)


def test_bench_command_refuses_an_unknown_layer_option_in_one_line():
    result = CliRunner().invoke(main, ["bench", "--quick", "--cells", "lstm:zonout=0.1"])
    assert result.exit_code == 1 and "zonout" in result.output and "zoneout" in result.output
    assert "Traceback" not in result.output


def test_a_layer_option_out_of_range_is_refused_before_any_timing():
    result = CliRunner().invoke(main, ["bench", "--quick", "--cells", "lstm:zoneout=1.5"])
    assert result.exit_code == 1 and "zoneout must be a number in [0, 1)" in result.output


def test_spec_names_a_users_cell_as_package_module_class_and_a_precision_as_a_suffix():
    spec = CellSpec.parse(USER_CELL)
    assert spec.user_defined and spec.autocast is None and not spec.training_only
    assert isinstance(spec.build(3, 4).cells[0], UserGatedCell)
    assert CellSpec.parse("gru:standard+bf16").autocast is torch.bfloat16
    radius = CellSpec.parse("elman@1e+1")                       # the '+' of a number is no suffix
    assert (radius.radius, radius.autocast) == (10.0, None)


def test_user_cell_step_is_its_docstring_equations():
    torch.manual_seed(0)
    cell = UserGatedCell(3, 4)
    x, h = torch.randn(2, 3), torch.randn(2, 4)
    W_z, W_n = cell.weight_ih[:4], cell.weight_ih[4:]
    U_z, U_n = cell.weight_hh[:4], cell.weight_hh[4:]
    b_z, b_n = cell.bias[:4], cell.bias[4:]
    z = torch.sigmoid(x @ W_z.T + h @ U_z.T + b_z)
    n = torch.tanh(x @ W_n.T + h @ U_n.T + b_n)
    y, (h_new,) = cell(x, (h,))
    torch.testing.assert_close(h_new, (1 - z) * h + z * n)
    torch.testing.assert_close(y, h_new)


# ----- which row a row is compared with ------------------------------------------------------------
def test_rows_are_compared_with_the_row_they_build_on():
    specs = [CellSpec.parse(t) for t in ("lstm", "lstm:cifg", "gru", USER_CELL, "lstm:zoneout=0.1",
                                         "lstm:cifg:recurrent_dropout=0.25", "lstm:layer_norm=true",
                                         "gru:standard+bf16", "elman")]
    by_text = {s.text: s for s in specs}

    def base(text):
        comparison = comparison_of(by_text[text], specs)
        return comparison and (comparison.base.text, comparison.target)
    assert base(USER_CELL) == ("gru", TIME_TARGET)                  # gru = gru:standard, defaults filled
    assert base("lstm:zoneout=0.1") == ("lstm", TIME_TARGET)
    assert base("lstm:cifg:recurrent_dropout=0.25") == ("lstm:cifg", TIME_TARGET)
    assert base("lstm:layer_norm=true") == ("lstm", TIME_TARGET)
    assert base("gru:standard+bf16") == ("gru", None)
    assert base("elman") is None and base("lstm:cifg") is None
    missing = comparison_of(CellSpec.parse("jordan:zoneout=0.1"), specs)
    assert missing.base is None and "without layer options" in missing.wanted


# ----- the guard of these rows ------------------------------------------------------------------------
def test_guard_draws_the_same_masks_for_layer_and_twin_from_one_seed():
    """The comparison is exact only because both runs start from one seed; without it the masks
    differ and so do the outputs, which is what the seed is for."""
    x = torch.randn(6, 3, 4)
    spec = CellSpec.parse("lstm:zoneout=0.3:recurrent_dropout=0.3")
    layer = spec.build(4, 5)
    twin = spec.reference_twin(layer)
    run_ = (lambda m: output_of(m, x))
    assert check_against_reference(layer.requires_grad_(False), twin.requires_grad_(False), run_,
                                   gradients=False, seed=0).error < 1e-6        # float32: C++ loop and Python
    unseeded = check_against_reference(layer, twin, run_, gradients=False)
    assert not unseeded.passed


@pytest.fixture
def fast_path_off_by(monkeypatch):
    """``off_by(shift, rounding=0)``: every backend="auto" layer reads its input x as x·(1 + rounding)
    (a path that rounds differently) and shifts its output by ``shift`` (a path gone wrong)."""
    forward = Recurrent.forward

    def off_by(shift, rounding=0.0):
        def drifting(self, x, *args, **kwargs):
            if self.backend != "auto":
                return forward(self, x, *args, **kwargs)
            output, *rest = forward(self, x * (1 + rounding), *args, **kwargs)
            return (output + shift, *rest)
        monkeypatch.setattr(Recurrent, "forward", drifting)
    return off_by


def test_bf16_rows_pass_within_bfloat16_rounding_and_refuse_a_wrong_equation(fast_path_off_by):
    config = BenchConfig.from_options(quick=True, cells="lstm:standard+bf16,gru:standard+bf16", sections="train",
                                      rounds=1, threads=1)
    rows = {m.subject: m for m in run(config, echo=lambda line: None).sections["train"]}
    assert all(rows[s].check.passed and rows[s].check.error > 0 for s in ("lstm:standard+bf16", "gru:standard+bf16"))
    fast_path_off_by(5 * config.bf16_tolerance)
    rows = {m.subject: m for m in run(config, echo=lambda line: None).sections["train"]}
    assert not rows["lstm:standard+bf16"].check.passed and rows["lstm:standard+bf16"].timings == {}


@pytest.fixture
def generated_by_eager(monkeypatch):
    """The generated path's graphs run by torch.compile's "eager" backend: a short compile."""
    from rnnkit.engine import generated
    monkeypatch.setattr(generated, "COMPILER", "eager")


def test_a_chaotic_row_is_compared_over_the_steps_float32_can_follow(generated_by_eager, fast_path_off_by):
    """The layer-norm LSTM amplifies rounding: over 200 steps float32 and float64 reference loops part,
    so a path that rounds differently (Inductor's fused code; here, an input off by one rounding) is
    compared over the steps before, the check says so, and a path that is wrong is still refused."""
    B, T, H = 4, 200, 64
    config = BenchConfig.from_options(quick=True, cells="lstm:layer_norm=true,lstm:standard", sizes=f"{B}x{T}x{H}",
                                      sections="train", rounds=1, threads=1)
    spec = CellSpec.parse("lstm:layer_norm=true")
    layer = spec.build(H, H)
    x = torch.randn(T, B, H, generator=torch.Generator().manual_seed(config.seed))      # the bench's input
    with torch.no_grad():
        apart = spec.reference_twin(layer)(x)[0].double() - spec.reference_twin(layer, torch.float64)(x.double())[0]
    assert apart.abs().max() > 10 * config.tolerance                  # the premise: float32 cannot follow
    fast_path_off_by(0.0, rounding=2 ** -23)
    rows = {m.subject: m for m in run(config, echo=lambda line: None).sections["train"]}
    steps = int(rows["lstm:layer_norm=true"].check.scope.split()[1])
    assert rows["lstm:layer_norm=true"].check.passed and 2 <= steps < T
    assert rows["lstm:layer_norm=true"].check.scope == f"first {steps} of {T} steps"
    assert rows["lstm:standard"].check.passed and rows["lstm:standard"].check.scope == ""
    fast_path_off_by(1e-3, rounding=2 ** -23)
    refused = {m.subject: m for m in run(config, echo=lambda line: None).sections["train"]}["lstm:layer_norm=true"]
    assert not refused.check.passed and refused.timings == {}


# ----- a quick run with every new row ------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick_run():
    """One quick run (one round, one thread) of the new rows and the rows they build on; the generated
    path's graphs run by torch.compile's "eager" backend, not Inductor, to keep the compile short
    (Inductor's code is the engine's tests' business)."""
    from rnnkit.engine import generated
    cells = ",".join(("lstm:standard", "gru:standard") + NEW_ROWS)
    config = BenchConfig.from_options(quick=True, cells=cells, sections="train", rounds=1, threads=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(generated, "COMPILER", "eager")
        results = run(config, echo=lambda line: None)
    return results, {m.subject: m for m in results.sections["train"]}


def test_quick_run_guards_and_times_every_new_row(quick_run):
    _, rows = quick_run
    for subject in NEW_ROWS:
        assert rows[subject].check.passed, (subject, rows[subject].check.reason)
        assert rows[subject].timings["train"].best > 0
    assert {rows[s].path for s in GENERATED_ROWS} == {"generated"}
    assert rows["lstm:standard+bf16"].path == rows["lstm:standard"].path


def test_quick_run_reports_user_cell_ratios_and_compile_time(quick_run):
    results, rows = quick_run
    table = render_tables(results)
    lines = {line.split(" | ")[0][2:]: line for line in table.splitlines() if line.startswith("| ")}
    user = lines[f"{USER_CELL} — user-defined cell (generated path)"]
    assert user.count("×") == 4 and f"× gru:standard, target ≤ {TIME_TARGET:g}×:" in user
    for subject in ("lstm:layer_norm=true", "lstm:zoneout=0.1", "lstm:recurrent_dropout=0.25"):
        assert f"× lstm:standard, target ≤ {TIME_TARGET:g}×:" in lines[subject]
    ratio = rows["lstm:standard+bf16"].timings["train"].best / rows["lstm:standard"].timings["train"].best
    assert f"{ratio:.2f}× lstm:standard |" in lines["lstm:standard+bf16"]
    note = next(line for line in table.splitlines() if line.startswith("Compile time of the generated path"))
    assert all(subject in note for subject in GENERATED_ROWS) and "lstm:standard+bf16" not in note
    assert all(rows[s].first_call > rows[s].compile_seconds >= 0 for s in GENERATED_ROWS)
