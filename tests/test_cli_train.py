"""`rnnkit train / evaluate / predict / generate / translate` in process (click's CliRunner): how flags
and a TOML file become the run's settings, what the commands print, and every bad input as one line
on stderr with a non-zero exit and no traceback. The true end-to-end runs, by subprocess, are in
test_cli_end_to_end.py."""
import json
import shutil

import pytest
from click.testing import CliRunner

from cli_data import classify_tsv, tag_conllu
from rnnkit.cli import main
from rnnkit.commands.settings import parse_option, resolve_settings
from rnnkit.train import TrainConfig, latest_checkpoint

TINY = ["--hidden", "8", "--embedding", "8", "--batch-size", "8", "--no-progress", "--no-tensorboard"]


def invoke(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def assert_one_line_error(result, text, exit_code=1):
    assert result.exit_code == exit_code, result.output
    assert isinstance(result.exception, SystemExit)                 # nothing escaped as a traceback
    assert "Traceback" not in result.output
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert text in result.stderr, result.stderr


@pytest.fixture(scope="module")
def classify_run(tmp_path_factory):
    """A classify run trained through the command (in process), with its data."""
    folder = tmp_path_factory.mktemp("classify")
    texts, labels = classify_tsv(folder / "train.tsv", n=40)
    test_texts, test_labels = classify_tsv(folder / "test.tsv", n=24, seed=1)
    result = invoke("train", "--task", "classify", "--train", folder / "train.tsv", "--dev", folder / "train.tsv",
                    "--out", folder / "run", "--epochs", "2", "--lr", "0.01", *TINY)
    assert result.exit_code == 0, result.output
    return {"folder": folder, "run": folder / "run", "test": folder / "test.tsv", "texts": test_texts,
            "labels": test_labels, "output": result.stdout}


# ---- settings: flags, TOML, --option -----------------------------------------------------------------

def test_toml_flat_keys_and_tables_then_flags_then_options(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('task = "tag"\ntrain = "a.conllu"\nout = "runs/x"\nepochs = 3\nlr = 0.01\n'
                      'hidden = 32\ncolumn = "xpos"\nbatch_size = 16\n'
                      '[model]\ncrf = true\nlayers = 2\n[training]\nseed = 7\nclip_norm = 1.0\n'
                      '[data]\nmin_freq = 2\n')
    settings = resolve_settings(config, {("training", "epochs"): 5, ("model", "hidden"): 64,
                                         ("run", "dev"): "b.conllu"},
                                ["char_features=true", "data.lowercase=true", "crf=false"])
    assert (settings.task, settings.train, settings.dev, settings.out, settings.batch_size) == \
        ("tag", "a.conllu", "b.conllu", "runs/x", 16)
    assert settings.config == TrainConfig(epochs=5, lr=0.01, seed=7, clip_norm=1.0, out_dir="runs/x")
    model, data = settings.model_options, settings.data_options
    assert (model["hidden"], model["layers"], model["crf"], model["char_features"]) == (64, 2, False, True)
    assert (model["cell"], model["embedding"]) == ("lstm", 100)                 # untouched defaults
    assert (data["column"], data["min_freq"], data["lowercase"]) == ("xpos", 2, True)


@pytest.mark.parametrize("text, expected", [
    ("crf=true", ("crf", True)), ("window=8", ("window", 8)), ("lr=1e-3", ("lr", 1e-3)),
    ("mean=null", ("mean", None)), ("format=sst", ("format", "sst")), ("column=-1", ("column", -1)),
    ("attention=luong-dot", ("attention", "luong-dot")), (" name = a=b", ("name", " a=b")),
])
def test_option_values_are_json_where_they_parse_else_strings(text, expected):
    assert parse_option(text) == expected


@pytest.mark.parametrize("toml, flags, options, message", [
    ('task = "tag"\ntrain = "a"\nout = "o"\nepoch = 2\n', {}, [], "did you mean 'epochs'?"),
    ('task = "tag"\ntrain = "a"\nout = "o"\n[training]\nlrr = 0.1\n', {}, [], "did you mean 'lr'?"),
    ('task = "tag"\ntrain = "a"\nout = "o"\n[modle]\ncrf = true\n', {}, [], "did you mean [model]?"),
    ('task = "tag"\ntrain = "a"\nout = "o"\n[model]\ncfr = true\n', {}, [], "did you mean 'crf'?"),
    ('train = "a"\nout = "o"\n', {("run", "task"): "tag"}, ["colum=xpos"], "did you mean 'column'?"),
    ('task = "tag"\ntrain = "a"\n', {}, [], "no out: pass --out DIR"),
    ('train = "a"\nout = "o"\n', {}, [], "no task: pass --task"),
    ('task = "tag"\ntrain = "a"\nout = "o"\nepochs = "two"\n', {}, [], "TrainConfig.epochs must be an int"),
    ('task = "tag"\ntrain = "a"\nout = "o"\nbatch_size = 0\n', {}, [], "batch_size must be an int >= 1"),
    ('task = "tag"\ntrain = "a"\nout = "o"\n', {}, ["crf"], "--option must be KEY=VALUE"),
    ('task = "tag\n', {}, [], "not valid TOML"),
])
def test_bad_settings_are_refused_naming_the_key(tmp_path, toml, flags, options, message):
    config = tmp_path / "run.toml"
    config.write_text(toml)
    with pytest.raises(ValueError, match=None) as raised:
        resolve_settings(config, flags, options)
    assert message in str(raised.value)


# ---- the commands -----------------------------------------------------------------------------------

def test_train_prints_its_settings_and_where_the_model_is(classify_run):
    out = classify_run["output"].splitlines()
    assert out[0].startswith("classify: ") and out[0].endswith(f"-> {classify_run['run']}")
    assert "hidden=8" in out[1] and "embedding=8" in out[1]
    assert out[2].startswith("training: adam lr 0.01, batch 8, 2 epochs, seed 0")
    best = json.loads((classify_run["run"] / "checkpoints" / "best.json").read_text())
    assert out[-1] == f"model: {classify_run['run'] / 'checkpoints' / best['checkpoint']}"


def test_evaluate_json_agrees_with_the_predicted_labels(classify_run):
    """evaluate's accuracy = the share of predict's lines equal to the gold labels (scored here)."""
    result = invoke("evaluate", classify_run["run"], "--test", classify_run["test"], "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)                   # the whole of stdout is one JSON object
    assert set(metrics) == {"accuracy", "loss"}
    predicted = invoke("predict", classify_run["run"], input="".join(t + "\n" for t in classify_run["texts"]))
    assert predicted.exit_code == 0, predicted.output
    labels = predicted.stdout.splitlines()
    assert len(labels) == len(classify_run["texts"]) and set(labels) <= {"pos", "neg"}
    share = sum(p == y for p, y in zip(labels, classify_run["labels"])) / len(labels)
    assert metrics["accuracy"] == pytest.approx(share)


def test_evaluate_prints_one_metric_a_line_and_reads_the_last_checkpoint_when_asked(classify_run):
    result = invoke("evaluate", classify_run["run"], "--test", classify_run["test"], "--checkpoint", "last")
    assert result.exit_code == 0, result.output
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert names == ["accuracy", "loss"]


def test_predict_reads_a_file_and_keeps_one_line_per_input_line(classify_run, tmp_path):
    lines = ["good film", "awful plot and actors", "a b c", "unseen words only"]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
    result = invoke("predict", classify_run["run"], tmp_path / "in.txt")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == len(lines)


def test_a_malformed_input_line_is_named_by_file_and_line(classify_run, tmp_path):
    (tmp_path / "in.txt").write_text("good film\n\nbad film\n")        # classify refuses an empty line
    result = invoke("predict", classify_run["run"], tmp_path / "in.txt")
    assert_one_line_error(result, f"{tmp_path / 'in.txt'}:2: ")
    assert_one_line_error(invoke("predict", classify_run["run"], input="good\n\n"), "<stdin>:2: ")


def test_every_command_shows_examples_in_its_help():
    for command in ("train", "evaluate", "predict", "generate", "translate"):
        result = invoke(command, "--help")
        assert result.exit_code == 0 and "Example" in result.stdout, command
        assert f"rnnkit {command} " in result.stdout
    top = invoke("--help")
    assert top.exit_code == 0 and "Examples" in top.stdout
    assert all(f"rnnkit {command} " in top.stdout for command in ("train", "evaluate", "predict", "generate"))


def test_resume_continues_a_run_and_a_second_fresh_run_is_refused(classify_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(classify_run["run"], run)
    train = ["train", "--task", "classify", "--train", classify_run["folder"] / "train.tsv", "--out", run, *TINY]
    assert_one_line_error(invoke(*train), "pass --resume to continue it")
    steps = int(latest_checkpoint(run / "checkpoints").name.split("-")[1])
    result = invoke(*train, "--resume", "--epochs", "3")
    assert result.exit_code == 0, result.output
    assert "(resuming)" in result.stdout
    assert int(latest_checkpoint(run / "checkpoints").name.split("-")[1]) == steps * 3 // 2


def test_resume_keeps_the_saved_options_and_refuses_to_change_them(classify_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(classify_run["run"], run)
    train = ["train", "--task", "classify", "--train", classify_run["folder"] / "train.tsv", "--out", run,
             "--resume", "--epochs", "3"]
    assert_one_line_error(invoke(*train, "--cell", "elman"), "cannot change it to 'elman'")
    result = invoke(*train, "--no-tensorboard", "--no-progress")   # no model options: the saved ones
    assert result.exit_code == 0, result.output


# ---- bad input: one line on stderr, non-zero exit, no traceback -------------------------------------

@pytest.mark.parametrize("args, text, code", [
    (["train", "--task", "classify", "--bogus"], "No such option '--bogus'", 2),
    (["train", "--task", "poetry"], "'poetry' is not one of", 2),
    (["train", "--hidden", "0"], "--hidden", 2),
    (["train", "--train", "{tmp}/x.tsv", "--out", "{tmp}/run"], "no task: pass --task", 1),
    (["train", "--task", "classify", "--train", "{tmp}/absent.tsv", "--out", "{tmp}/run"], "absent.tsv", 1),
    (["train", "--task", "classify", "--train", "{tmp}/bad.tsv", "--out", "{tmp}/run"], "bad.tsv:3:", 1),
    (["train", "{tmp}/absent.toml"], "does not exist", 2),
    (["train", "--task", "classify", "--train", "{tmp}/good.tsv", "--out", "{tmp}/run", "--option", "poolin=max"],
     "did you mean 'pooling'?", 1),
    (["train", "--task", "classify", "--train", "{tmp}/good.tsv", "--out", "{tmp}/run", "--cell", "bogus"],
     "unknown cell 'bogus'", 1),
    (["train", "--task", "tag", "--train", "{tmp}/good.tsv", "--out", "{tmp}/run"], "good.tsv:1:", 1),
    (["evaluate", "{tmp}/nowhere", "--test", "{tmp}/good.tsv"], "no such run directory", 1),
    (["evaluate", "{tmp}", "--test", "{tmp}/good.tsv"], "holds no trained model", 1),
    (["evaluate", "{tmp}"], "Missing option '--test'", 2),
    (["predict", "{tmp}", "{tmp}/absent.txt"], "absent.txt", 2),
    (["generate", "{tmp}", "--length", "-3"], "--length", 2),
])
def test_bad_input_is_one_line_on_stderr(tmp_path, args, text, code):
    (tmp_path / "good.tsv").write_text("good film\tpos\nbad film\tneg\n")
    (tmp_path / "bad.tsv").write_text("good film\tpos\nbad film\tneg\nno label here\n")
    assert_one_line_error(invoke(*[a.format(tmp=tmp_path) for a in args]), text, code)


def test_rnnkit_traceback_shows_the_whole_error_for_a_bug_report(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_TRACEBACK", "1")
    result = invoke("evaluate", tmp_path / "no-run", "--test", tmp_path / "missing.tsv")
    assert result.exit_code != 0 and isinstance(result.exception, FileNotFoundError)


def test_a_test_file_of_another_format_names_its_line(classify_run, tmp_path):
    tag_conllu(tmp_path / "test.conllu", n=3)
    result = invoke("evaluate", classify_run["run"], "--test", tmp_path / "test.conllu")
    assert_one_line_error(result, f"{tmp_path / 'test.conllu'}:")


def test_a_tampered_checkpoint_is_refused(classify_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(classify_run["run"], run)
    weights = latest_checkpoint(run / "checkpoints") / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    result = invoke("evaluate", latest_checkpoint(run / "checkpoints"), "--test", classify_run["test"])
    assert_one_line_error(result, "model.safetensors")


def test_generate_and_translate_need_their_kind_of_run(classify_run, tmp_path):
    assert_one_line_error(invoke("generate", classify_run["run"], "--prompt", "a"), "needs a run of --task lm")
    assert_one_line_error(invoke("translate", classify_run["run"], input="a b\n"),
                          "needs a run of --task translate")
    assert_one_line_error(invoke("translate", classify_run["run"], "--attention-plot", tmp_path / "a.svg"),
                          "--attention-plot must name a .png file")
