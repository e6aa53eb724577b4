"""PyTorch's word_language_model example (tests/examples/word_language_model.py, derived from
pytorch/examples, BSD-3-Clause; see that file) run with torch.nn's recurrent modules and with
rnnkit's drop-ins from one seed: the same training, the same saved-and-reloaded model (its
``torch.load(f, weights_only=True)`` names only torch.nn's classes; rnnkit's are allowed by
``import rnnkit``), the same losses."""
import pickletools
import random
import zipfile

import pytest
import torch
from torch import nn

import rnnkit
from examples.word_language_model import main

WORDS = "the a cat dog sat ran on under mat log and then it was big small red".split()

# Where rnnkit runs torch's kernel (the dispatcher's "native" path: LSTM, Elman tanh and relu) the
# example trains to the same bits. rnnkit's GRU runs its own compiled loop on the CPU, which sums in
# another order: one step differs by an ulp or so (outputs 6e-8, gradients 1e-6), and 20 SGD steps at
# the example's lr 20 amplify that; over six corpora like this one the weights differed by at most
# 3.2e-3 and the losses by at most 4e-4 relative. The bounds leave a margin of about 3.
BIT_IDENTICAL = {"LSTM", "RNN_TANH", "RNN_RELU"}
GRU_WEIGHTS_ATOL, GRU_LOSS_RTOL = 1e-2, 1e-3


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """train/valid/test.txt: 40/10/10 lines of 4-10 words from 17 (about 300 words of training)."""
    folder = tmp_path_factory.mktemp("corpus")
    rng = random.Random(0)
    for name, lines in (("train", 40), ("valid", 10), ("test", 10)):
        text = "".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10))) + "\n"
                       for _ in range(lines))
        (folder / f"{name}.txt").write_text(text)
    return folder


def globals_in(path) -> set[str]:
    """The classes and functions a torch.save file's pickle names."""
    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    return {arg.replace(" ", ".") for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("rnn_type", ["LSTM", "GRU", "RNN_TANH", "RNN_RELU"])
def test_rnnkit_trains_saves_and_reloads_as_torch_nn(corpus, tmp_path, rnn_type, tied):
    runs = {}
    for namespace in (nn, rnnkit):
        save = tmp_path / f"{namespace.__name__}.pt"
        runs[namespace] = main(str(corpus), namespace, model=rnn_type, tied=tied, save=str(save))
        kind = {"LSTM": "LSTM", "GRU": "GRU"}.get(rnn_type, "RNN")
        assert type(runs[namespace][0].rnn) is getattr(namespace, kind)        # reloaded, of its library
    assert f"rnnkit.layers.dropin.{kind}" in globals_in(tmp_path / "rnnkit.pt")

    (torch_model, torch_val, torch_test), (kit_model, kit_val, kit_test) = runs[nn], runs[rnnkit]
    expected, got = torch_model.state_dict(), kit_model.state_dict()
    assert list(got) == list(expected)
    if rnn_type in BIT_IDENTICAL:
        for name in expected:
            assert torch.equal(got[name], expected[name]), f"{rnn_type}: {name} differs"
        assert (kit_val, kit_test) == (torch_val, torch_test)
    else:
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], atol=GRU_WEIGHTS_ATOL, rtol=0, msg=name)
        assert kit_val == pytest.approx(torch_val, rel=GRU_LOSS_RTOL)
        assert kit_test == pytest.approx(torch_test, rel=GRU_LOSS_RTOL)
