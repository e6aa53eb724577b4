"""Pooling and SequenceClassifier: per-sequence loops as references, padding changes nothing, gradcheck, learning."""
import itertools

import pytest
import torch

from rnnkit.data.batching import bucket_batches, pad_batch
from rnnkit.data.labelled import iter_sst_sentences
from rnnkit.data.timeseries import read_uea_arff, read_ucr
from rnnkit.data.vocab import Vocabulary
from rnnkit.metrics import accuracy
from rnnkit.models.classifier import SequenceClassifier
from rnnkit.models.encoder import EncoderConfig
from rnnkit.models.pooling import POOLING_METHODS, AttentionPooling, Pooling, max_pool, mean_pool

pytestmark = pytest.mark.usefixtures("one_thread")


def padded_outputs(lengths, features=5, padding_value=None, seed=0):
    """(B, T, F) float64 outputs; past each end either garbage (random, large) or padding_value."""
    torch.manual_seed(seed)
    B, T = len(lengths), max(lengths)
    outputs = torch.randn(B, T, features, dtype=torch.float64)
    for b, n in enumerate(lengths):
        outputs[b, n:] = 100 * torch.randn(T - n, features) if padding_value is None else padding_value
    return outputs, torch.tensor(lengths)


# ------------------------------------------------------------------------------------------ pooling
def test_mean_and_max_pool_match_each_sequence_alone():
    outputs, lengths = padded_outputs([4, 1, 3])
    mean, maximum = mean_pool(outputs, lengths), max_pool(outputs, lengths)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(mean[b], outputs[b, :n].sum(0) / n)
        torch.testing.assert_close(maximum[b], outputs[b, :n].max(0).values)


def test_max_pool_padding_never_wins():
    # all valid outputs negative, padding exactly zero (as the encoder writes it)
    outputs, lengths = padded_outputs([3, 1], padding_value=0.0)
    outputs = -outputs.abs() - 0.1
    outputs[0, 3:], outputs[1, 1:] = 0.0, 0.0
    assert torch.all(max_pool(outputs, lengths) < 0)


def additive_attention_by_hand(pooling: AttentionPooling, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """e_t = v·tanh(U h_t + W q), a = softmax(e), p = Σ a_t h_t for one sequence h (n, F)."""
    attention = pooling.attention
    U, W, v = attention.key_projection.weight, attention.query_projection.weight, attention.score.weight[0]
    scores = torch.stack([v @ torch.tanh(U @ h_t + W @ pooling.query) for h_t in h])    # (n,)
    weights = torch.exp(scores) / torch.exp(scores).sum()
    return (weights[:, None] * h).sum(0), weights


def test_attention_pooling_follows_the_additive_formula_over_the_true_length():
    outputs, lengths = padded_outputs([5, 2, 4])
    torch.manual_seed(1)
    pooling = AttentionPooling(5, attention_size=3).double()
    pooled, weights = pooling(outputs, lengths)
    for b, n in enumerate(lengths.tolist()):
        expected_pooled, expected_weights = additive_attention_by_hand(pooling, outputs[b, :n])
        torch.testing.assert_close(pooled[b], expected_pooled)
        torch.testing.assert_close(weights[b, :n], expected_weights)
        assert torch.all(weights[b, n:] == 0)
    torch.testing.assert_close(weights.sum(1), torch.ones(3, dtype=torch.float64))


def test_mean_pooling_weights_are_one_over_the_length():
    outputs, lengths = padded_outputs([3, 1])
    _, weights = Pooling("mean", 5)(outputs, lengths)
    expected = torch.tensor([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(weights, expected)


@pytest.mark.parametrize("method", ["mean", "max", "attention"])
def test_pooling_gradcheck_float64(method):
    outputs, lengths = padded_outputs([3, 2], features=3)
    outputs.requires_grad_(True)
    torch.manual_seed(2)
    pooling = Pooling(method, 3, attention_size=2 if method == "attention" else None).double()
    parameters = tuple(pooling.parameters())

    def pooled(outputs, *parameters):
        return pooling(outputs, lengths)[0]
    assert torch.autograd.gradcheck(pooled, (outputs, *parameters))


def test_last_pooling_returns_the_summary_and_needs_it():
    outputs, lengths = padded_outputs([2, 1])
    summary = torch.randn(2, 5, dtype=torch.float64)
    pooled, weights = Pooling("last", 5)(outputs, lengths, summary)
    assert pooled is summary and weights is None
    with pytest.raises(ValueError, match=r"pooling='last' needs the encoder's summary of shape \(B, F\)"):
        Pooling("last", 5)(outputs, lengths)


def test_pooling_rejects_bad_arguments():
    with pytest.raises(ValueError, match="pooling must be one of 'last', 'mean', 'max', 'attention'; got 'sum'"):
        Pooling("sum", 4)
    with pytest.raises(ValueError, match="attention_size is for pooling='attention' only"):
        Pooling("mean", 4, attention_size=3)
    outputs, _ = padded_outputs([2, 2])
    with pytest.raises(ValueError, match="lengths must not exceed the sequence length 2"):
        mean_pool(outputs, torch.tensor([2, 3]))
    with pytest.raises(ValueError, match=r"outputs must have shape \(B, T, F\), got \(2, 5\)"):
        max_pool(outputs[:, 0], torch.tensor([1, 1]))


# ---------------------------------------------------------------------------------------- classifier
SMALL = EncoderConfig("lstm", hidden_size=3, bidirectional=True)      # the classifier's default, smaller


@pytest.mark.parametrize("pooling", POOLING_METHODS)
@pytest.mark.parametrize("cell,bidirectional", [("lstm", True), ("gru", False)])
def test_each_sentence_is_classified_as_it_would_be_alone(pooling, cell, bidirectional):
    torch.manual_seed(0)
    encoder = EncoderConfig(cell, 5, num_layers=2, bidirectional=bidirectional)
    model = SequenceClassifier(30, 4, embedding_dim=6, encoder=encoder, pooling=pooling).double().eval()
    lengths = torch.tensor([6, 2, 4])
    tokens = torch.randint(1, 30, (3, 6))              # past each end: real token ids, not padding
    logits = model(tokens, lengths)
    weights = model.attention_weights
    assert logits.shape == (3, 4)
    for b, n in enumerate(lengths.tolist()):
        alone = model(tokens[b:b + 1, :n], torch.tensor([n]))
        torch.testing.assert_close(logits[b], alone[0])
        if weights is not None:
            torch.testing.assert_close(weights[b, :n], model.attention_weights[0])
            assert torch.all(weights[b, n:] == 0)


def test_time_series_features_are_classified_as_they_would_be_alone():
    torch.manual_seed(0)
    model = SequenceClassifier(num_classes=3, input_size=2, encoder=EncoderConfig("gru", 4, bidirectional=True),
                               pooling="max").double()
    x, lengths = torch.randn(2, 7, 2, dtype=torch.float64), torch.tensor([7, 3])
    logits = model(x, lengths)
    torch.testing.assert_close(logits[1], model(x[1:, :3], torch.tensor([3]))[0])
    assert model.embedding is None and logits.shape == (2, 3)


def test_without_lengths_every_step_counts():
    torch.manual_seed(0)
    model = SequenceClassifier(20, 2, embedding_dim=4, encoder=SMALL, pooling="mean").double()
    tokens = torch.randint(1, 20, (2, 5))
    torch.testing.assert_close(model(tokens), model(tokens, torch.tensor([5, 5])))


def test_pretrained_embeddings_start_the_embedding_and_can_be_frozen():
    torch.manual_seed(0)
    vectors = torch.randn(12, 4)
    for freeze in (True, False):
        model = SequenceClassifier(12, 2, encoder=SMALL, embedding_weights=vectors,
                                   freeze_embeddings=freeze, padding_idx=0)
        torch.testing.assert_close(model.embedding.weight, vectors)
        assert model.embedding.weight.data_ptr() != vectors.data_ptr()        # a copy, not the caller's
        model(torch.tensor([[3, 5, 0]]), torch.tensor([2])).sum().backward()
        assert model.embedding.weight.requires_grad is not freeze
        if not freeze:
            gradient = model.embedding.weight.grad
            assert torch.all(gradient[0] == 0) and gradient[3].abs().sum() > 0   # padding row gets none


def test_a_frozen_embedding_does_not_move_in_training():
    torch.manual_seed(0)
    model = SequenceClassifier(10, 2, embedding_dim=4, encoder=SMALL, freeze_embeddings=True)
    before = model.embedding.weight.clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    loss = torch.nn.functional.cross_entropy(model(torch.tensor([[1, 2, 3]])), torch.tensor([1]))
    loss.backward()
    optimizer.step()
    torch.testing.assert_close(model.embedding.weight, before)


def test_cell_options_reach_the_cell():
    model = SequenceClassifier(10, 2, embedding_dim=4, encoder=EncoderConfig("lstm", 3, options={"variant": "cifg"}))
    assert model.encoder.rnn.cells[0].variant == "cifg"
    with pytest.raises((TypeError, ValueError), match="varient"):
        SequenceClassifier(10, 2, embedding_dim=4, encoder=EncoderConfig("lstm", 3, options={"varient": "cifg"}))


def test_classifier_rejects_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="not both"):
        SequenceClassifier(10, 2, input_size=3)
    with pytest.raises(ValueError, match="got none of them"):
        SequenceClassifier(num_classes=2)
    with pytest.raises(TypeError, match="num_classes must be an int, got NoneType"):
        SequenceClassifier(10)
    with pytest.raises(ValueError, match=r"embedding_weights must have shape \(vocab_size=9, E\), got \(10, 4\)"):
        SequenceClassifier(9, 2, embedding_weights=torch.zeros(10, 4))
    tokens_model = SequenceClassifier(10, 2, embedding_dim=4, encoder=SMALL)
    with pytest.raises(ValueError, match=r"inputs must be token ids of shape \(B, T\).*"
                                         r"torch.float32 of shape \(1, 3\)"):
        tokens_model(torch.zeros(1, 3))
    features_model = SequenceClassifier(num_classes=2, input_size=3, encoder=SMALL)
    with pytest.raises(ValueError, match=r"shape \(B, T, input_size=3\), got torch.float32 of shape \(1, 4, 2\)"):
        features_model(torch.zeros(1, 4, 2))


# ---------------------------------------------------------------------------------- the model learns
def train_classifier(model, epochs, lr):
    """Adam with gradient clipping over ``epochs``: a list (one per epoch) of lists of
    (inputs, lengths, labels) batches."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for batches in epochs:
        for inputs, lengths, labels in batches:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(inputs, lengths), labels).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
    model.eval()


def majority_accuracy(train_labels, eval_labels) -> float:
    """Accuracy of always answering the most frequent training label."""
    majority = max(set(train_labels), key=list(train_labels).count)
    return sum(label == majority for label in eval_labels) / len(eval_labels)


@pytest.mark.slow
def test_sst2_sentiment_beats_the_majority_class(shared_data):
    train = list(itertools.islice(iter_sst_sentences(shared_data("sst/sst2_sentences/stsa.binary.train")), 2000))
    dev = list(itertools.islice(iter_sst_sentences(shared_data("sst/sst2_sentences/stsa.binary.dev")), 400))
    vocabulary = Vocabulary.build((example.tokens for example in train), min_freq=2)

    def batches(examples, batch_size, seed=0, shuffle=True):
        lengths = [len(example.tokens) for example in examples]
        for indices in bucket_batches(lengths, batch_size, shuffle=shuffle, seed=seed):
            ids, lengths_ = pad_batch([vocabulary.encode(examples[i].tokens) for i in indices],
                                      vocabulary.pad_index)
            yield ids, lengths_, torch.tensor([int(examples[i].label) for i in indices])

    torch.manual_seed(0)
    model = SequenceClassifier(len(vocabulary), 2, embedding_dim=64, pooling="last", dropout=0.3,
                               encoder=EncoderConfig("gru", 64, bidirectional=True), padding_idx=vocabulary.pad_index)
    train_classifier(model, [list(batches(train, 32, seed)) for seed in range(3)], lr=3e-3)
    with torch.no_grad():
        dev_batches = list(batches(dev, 200, shuffle=False))
        predicted = torch.cat([model(ids, lengths).argmax(-1) for ids, lengths, _ in dev_batches])
        gold = torch.cat([labels for _, _, labels in dev_batches])
    baseline = majority_accuracy([example.label for example in train], [example.label for example in dev])
    assert accuracy(predicted, gold) >= baseline + 0.08, (accuracy(predicted, gold), baseline)


def series_accuracy_and_baseline(x_train, y_train, x_test, y_test, pooling: str, epochs: int) -> tuple[float, float]:
    """Train a GRU classifier (H=32) on float series (N, T, C) with string labels, batches of 10, Adam
    1e-2; return its test accuracy and the majority class's."""
    classes = sorted(set(y_train))
    labels_train = torch.tensor([classes.index(label) for label in y_train])
    labels_test = torch.tensor([classes.index(label) for label in y_test])
    torch.manual_seed(0)
    model = SequenceClassifier(num_classes=len(classes), input_size=x_train.shape[-1], pooling=pooling,
                               encoder=EncoderConfig("gru", 32, bidirectional=True))
    batches = [[(x_train[order], None, labels_train[order]) for order in torch.randperm(len(x_train)).split(10)]
               for _ in range(epochs)]
    train_classifier(model, batches, lr=1e-2)
    with torch.no_grad():
        test_accuracy = accuracy(model(x_test).argmax(-1), labels_test)
    return test_accuracy, majority_accuracy(y_train, y_test)


@pytest.mark.slow
def test_gunpoint_time_series_classifier_beats_the_majority_class(shared_data):
    x_train, y_train = read_ucr(shared_data("timeseries/ucr/GunPoint/GunPoint_TRAIN.txt"))
    x_test, y_test = read_ucr(shared_data("timeseries/ucr/GunPoint/GunPoint_TEST.txt"))
    # every third of the 150 points: the gesture's shape survives, and the loop is 3x shorter
    x_train, x_test = torch.from_numpy(x_train[:, ::3]), torch.from_numpy(x_test[:, ::3])   # (N, 50, 1)
    test_accuracy, baseline = series_accuracy_and_baseline(x_train, y_train, x_test, y_test, "max", epochs=30)
    assert test_accuracy >= baseline + 0.15, (test_accuracy, baseline)


@pytest.mark.slow
def test_basic_motions_multivariate_classifier_beats_the_majority_class(shared_data):
    """UEA BasicMotions: 6 accelerometer and gyroscope channels x 100 steps, 4 activities."""
    x_train, y_train = read_uea_arff(shared_data("timeseries/uea/BasicMotions/BasicMotions_TRAIN.arff"))
    x_test, y_test = read_uea_arff(shared_data("timeseries/uea/BasicMotions/BasicMotions_TEST.arff"))
    scale = float(abs(x_train).max())                          # one scale for all channels, from train
    x_train, x_test = torch.from_numpy(x_train) / scale, torch.from_numpy(x_test) / scale   # (N, 100, 6)
    test_accuracy, baseline = series_accuracy_and_baseline(x_train, y_train, x_test, y_test, "mean", epochs=25)
    print(f"test accuracy {test_accuracy:.3f}, majority {baseline:.3f}")
    assert test_accuracy >= baseline + 0.35, (test_accuracy, baseline)
