"""Whole models through ``torch.save(model, f)`` and ``torch.load(f, weights_only=True)``
(rnnkit/serialization.py): every rnnkit layer, cell and model, saved here and loaded in a fresh
Python process that imported only rnnkit and torch, gives the same outputs; a hostile file is still
refused, rnnkit's allowlist included (no constructor calls, no other rnnkit function)."""
import copy
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import rnnkit
import rnnkit.cli
from rnnkit import cells, models, serialization

# --- the models saved: name -> (module, its arguments) --------------------------------------------


def _tree():
    """Two leaves under one root: (words (L,), left (N,), right (N,), level sizes)."""
    return torch.tensor([3, 5]), torch.tensor([-1, -1, 0]), torch.tensor([-1, -1, 1]), [2, 1]


def _cases() -> dict:
    torch.manual_seed(0)
    x = torch.randn(5, 2, 3)                                                      # (T, B, I)
    tokens, lengths = torch.randint(1, 20, (2, 6)), torch.tensor([6, 4])          # (B, T), (B,)
    chars, char_lengths = torch.randint(1, 10, (2, 6, 4)), torch.full((2, 6), 4)  # (B, T, W), (B, T)
    cases = {
        "RNN tanh": (rnnkit.RNN(3, 4, 2, bidirectional=True), (x,)),
        "RNN relu": (rnnkit.RNN(3, 4, 2, nonlinearity="relu"), (x,)),
        "LSTM proj_size": (rnnkit.LSTM(3, 4, 2, proj_size=2), (x,)),
        "GRU batch_first": (rnnkit.GRU(3, 4, bidirectional=True, batch_first=True), (x,)),
        # a function-valued option no pickle could write before: the "identity" nonlinearity (a lambda)
        "Recurrent lstm niaf": (rnnkit.Recurrent("lstm", 3, 4, variant="niaf"), (x,)),
        "Recurrent jordan identity output": (rnnkit.Recurrent("jordan", 3, 4, output_nonlinearity="identity"),
                                             (x,)),
        "Recurrent elman relu, learnt h0": (rnnkit.Recurrent("elman", 3, 4, nonlinearity="relu",
                                                              learn_initial_state=True), (x,)),
        "SequenceClassifier attention": (models.SequenceClassifier(20, 3, 8, 8, pooling="attention"),
                                         (tokens, lengths)),
        "SequenceTagger crf chars intents": (
            models.SequenceTagger(20, 3, 8, 8, crf=True, char_vocab_size=10, num_intents=2),
            (tokens, lengths, chars, char_lengths)),
        "LanguageModel tied gru": (models.LanguageModel(20, 8, 8, cell="gru", tie_embeddings=True), (tokens,)),
        "Seq2Seq bahdanau": (models.Seq2Seq(20, 20, 8, 8, bos_index=1, eos_index=2), (tokens, lengths, tokens)),
        "SequenceRegressor": (models.SequenceRegressor(3, 2, 8, cell="mingru"), (x.transpose(0, 1),)),
        "TreeClassifier tree-lstm": (models.TreeClassifier(20, 3, embedding_dim=8, hidden_size=8), _tree()),
        "TreeClassifier recursive": (models.TreeClassifier(20, 3, "recursive", 8, 8), _tree()),
    }
    for name in ("RNNCell", "LSTMCell", "GRUCell"):           # torch.nn's one-step cells, once rnnkit has them
        if hasattr(rnnkit, name):
            cases[name] = (getattr(rnnkit, name)(3, 4), (x[0],))
    for name in cells.available():
        cases[f"Recurrent {name}"] = (rnnkit.Recurrent(name, 3, 4, num_layers=2, bidirectional=True), (x,))
    esn = rnnkit.EchoStateNetwork(3, 8, 2, washout=1, seed=0)
    cases["EchoStateNetwork fitted"] = (esn.fit(x, torch.randn(5, 2, 2)), (x,))
    return cases


def _user_cases() -> dict:
    """A user's cell (tests/user_cells.py), named as the CLI names it: loadable once allowed."""
    torch.manual_seed(1)
    return {"Recurrent user_cells:TinyCell": (rnnkit.Recurrent("user_cells:TinyCell", 3, 4, num_layers=2),
                                              (torch.randn(5, 2, 3),))}


USER_CASES = list(_user_cases())
TESTS = Path(__file__).resolve().parent


def flat(output) -> list:
    """The tensors of an output (a tensor, or tuples / named tuples of them), in order."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (tuple, list)):
        return [t for part in output for t in flat(part)]
    return []


# The fresh process: load each file with weights_only=True, run the model on the saved arguments and
# write its output next to the file (plainly pickled, for the test to compare); report the classes
# loaded, or the error. A user's cell is tried before and after allow().
CHILD = textwrap.dedent("""
    import json, sys
    import torch
    import rnnkit
    torch.set_num_threads(1)

    def run(path):
        try:
            model, args = torch.load(path, weights_only=True)
            with torch.no_grad():
                torch.save(model(*args), path + ".out")
            return {"classes": sorted({f"{type(m).__module__}.{type(m).__qualname__}" for m in model.modules()})}
        except Exception as error:
            return {"error": f"{type(error).__name__}: {error}"}

    ours, users = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    results = {name: run(path) for name, path in ours.items()}
    refused = {name: "error" in run(path) for name, path in users.items()}
    import user_cells
    rnnkit.serialization.allow(user_cells.TinyCell)
    results.update({name: {**run(path), "refused before allow": refused[name]} for name, path in users.items()})
    print(json.dumps(results))
""")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Every case saved whole (model, arguments), its output here, and what the fresh process made
    of the file: name -> (path, output here, the process's result)."""
    folder = tmp_path_factory.mktemp("saved")
    paths, outputs = {}, {}
    for index, (name, (model, args)) in enumerate({**_cases(), **_user_cases()}.items()):
        model.eval()
        with torch.no_grad():
            outputs[name] = model(*args)
        paths[name] = str(folder / f"{index}.pt")
        torch.save((model, args), paths[name])
    ours = {name: path for name, path in paths.items() if name not in USER_CASES}
    users = {name: paths[name] for name in USER_CASES}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(ours), json.dumps(users)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])
    return {name: (paths[name], outputs[name], results[name]) for name in paths}


def same_output(path: str, expected) -> bool:
    """Whether the fresh process's output (written next to ``path``) equals ``expected``, bit for bit."""
    got, want = flat(torch.load(path + ".out", weights_only=False)), flat(expected)   # our own file
    return len(got) == len(want) > 0 and all(torch.equal(g, w) for g, w in zip(got, want))


@pytest.mark.parametrize("name", list(_cases()))
def test_whole_model_loads_with_weights_only_in_a_fresh_process(saved, name):
    path, expected, result = saved[name]
    assert "error" not in result, result.get("error")
    assert same_output(path, expected), f"{name}: outputs differ after torch.load"


@pytest.mark.parametrize("name", USER_CASES)
def test_a_users_cell_loads_once_allowed(saved, name):
    path, expected, result = saved[name]
    assert result["refused before allow"], "a class nobody allowed was loaded"
    assert "error" not in result, result.get("error")
    assert same_output(path, expected)


def test_every_allowed_class_was_saved_and_loaded(saved):
    """The cases cover every class importing rnnkit allows (a new model class needs a case here)."""
    loaded = {c for _, _, result in saved.values() for c in result.get("classes", [])}
    allowed = {f"{c.__module__}.{c.__qualname__}" for c in serialization.rnnkit_classes()}
    assert allowed - loaded == set()


def test_files_name_nothing_outside_the_allowlist(saved):
    """No getattr (a cell's nonlinearity), no dispatcher cache (Call, Choice) in what was written."""
    for name, (path, _, _) in saved.items():
        if name not in USER_CASES:
            assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == [], name


def test_plain_pickle_and_copies_keep_the_nonlinearities():
    """The cells' pickling recipe (copyreg) serves torch.load(weights_only=False), copy and deepcopy
    too: each gives a working cell with the same functions."""
    layer = rnnkit.Recurrent("lstm", 3, 4, variant="noaf").eval()                 # h = o * c (identity)
    x = torch.randn(4, 2, 3)
    expected = layer(x)[0]
    for twin in (pickle.loads(pickle.dumps(layer)), copy.deepcopy(layer)):
        assert torch.equal(twin(x)[0], expected)
    cell = layer.cells[0]
    shallow = copy.copy(cell)
    assert (shallow.g_act, shallow.h_act) == (cell.g_act, cell.h_act)


def test_a_loaded_layer_carries_no_dispatch_cache(tmp_path):
    layer = rnnkit.GRU(3, 4)
    layer(torch.randn(2, 1, 3))
    assert layer._choices
    torch.save(layer, tmp_path / "gru.pt")
    assert torch.load(tmp_path / "gru.pt", weights_only=True)._choices == {}


# --- hostile files ----------------------------------------------------------------------------------


class Call:
    """Pickles as a call ``function(*args)`` (pickle's REDUCE), whatever function it names; a
    ``"module:name"`` string names an object pickle cannot write by reference (a click command)."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.fixture
def marker(tmp_path, monkeypatch):
    """A file that exists only if a payload ran; ``marker_mod`` is a module whose import creates it."""
    path = tmp_path / "ran"
    (tmp_path / "marker_mod.py").write_text(f"open({str(path)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield path
    sys.modules.pop("marker_mod", None)


def _refused(payload: Call, tmp_path) -> str:
    path = tmp_path / "payload.pt"
    with pytest.MonkeyPatch.context() as patch:
        if isinstance(payload.function, str):       # a stand-in that pickle writes as GLOBAL module name
            module, name = payload.function.split(":")
            stand_in = lambda *args: None            # noqa: E731
            stand_in.__module__, stand_in.__qualname__ = module, name
            patch.setattr(sys.modules[module], name, stand_in)
            payload = Call(stand_in, *payload.args)
        torch.save(payload, path)
    with pytest.raises(pickle.UnpicklingError) as error:
        torch.load(path, weights_only=True)
    return str(error.value)


def _payloads(marker) -> dict:
    """name -> (a file's call, what the refusal says)."""
    import builtins
    import subprocess as sp
    touch = f"open({str(marker)!r}, 'w').close()"
    unsupported, constructor = "Unsupported global", "not call its constructor"
    return {
        "os.system": (Call(os.system, f"touch {marker}"), "is blocked"),            # torch's blocklist
        "builtins.eval": (Call(builtins.eval, touch), unsupported),
        "builtins.exec": (Call(builtins.exec, touch), unsupported),
        "subprocess.Popen": (Call(sp.Popen, ["touch", str(marker)]), unsupported),
        "builtins.getattr": (Call(getattr, torch.nn.Linear, "__subclasses__"), unsupported),
        # rnnkit functions that are not on the allowlist, some of which would import marker_mod
        "rnnkit.cli.main": (Call("rnnkit.cli:main"), unsupported),
        "rnnkit.cells.create": (Call(cells.create, "marker_mod:Cell", 1, 1), unsupported),
        "rnnkit.cells.registry._import_class": (Call(cells.registry._import_class, "marker_mod:Cell"),
                                                unsupported),
        "rnnkit.serialization.allow": (Call(serialization.allow), unsupported),
        # allowed classes may be rebuilt, never called: their constructors resolve cell names
        "rnnkit.Recurrent(...)": (Call(rnnkit.Recurrent, "marker_mod:Cell", 1, 1), constructor),
        "rnnkit.LSTM(...)": (Call(rnnkit.LSTM, 1, 1), constructor),
        "SequenceClassifier(...)": (Call(models.SequenceClassifier, 5, 2, 4, 4, "marker_mod:Cell"), constructor),
        "torch.nn.Linear(...)": (Call(torch.nn.Linear, 1, 1), constructor),
        # blank_cell builds only rnnkit's cells, with only its nonlinearities
        "blank_cell(other class)": (Call(serialization.blank_cell, "marker_mod.Cell", {}), "blank_cell: name"),
        "blank_cell(other function)": (Call(serialization.blank_cell, "rnnkit.cells.elman.ElmanCell",
                                            {"f": "system"}), "blank_cell: nonlinearities"),
    }


@pytest.mark.parametrize("name", list(_payloads("x")))
def test_hostile_payload_is_refused_and_never_runs(name, marker, tmp_path):
    payload, reason = _payloads(marker)[name]
    assert reason in _refused(payload, tmp_path)
    assert not marker.exists(), f"{name}: the payload ran"
    assert "marker_mod" not in sys.modules
