"""Metrics against hand-computed cases, conlleval's reading of tricky tag sequences and sacrebleu's own example."""
import math

import pytest
import torch

from rnnkit.metrics import accuracy, bits_per_character, bleu, chrf, chunks, perplexity, span_f1


# ---------------------------------------------------------------------------------------- accuracy
def test_accuracy_counts_agreeing_positions():
    assert accuracy([1, 2, 3, 4], [1, 0, 3, 0]) == 0.5
    assert accuracy(torch.tensor([[0, 1], [1, 1]]), torch.tensor([[0, 1], [1, 0]])) == 0.75
    assert accuracy(["atis_flight", "atis_airfare", "atis_flight"],
                    ["atis_flight", "atis_flight", "atis_flight"]) == pytest.approx(2 / 3)


def test_accuracy_under_a_mask_ignores_padding():
    predicted = torch.tensor([[3, 3, 9], [1, 9, 9]])
    gold = torch.tensor([[3, 0, 0], [1, 0, 0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert accuracy(predicted, gold, mask) == pytest.approx(2 / 3)


def test_accuracy_rejects_mismatched_shapes_and_nothing_to_count():
    with pytest.raises(ValueError, match="same length, got 3 and 2"):
        accuracy([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match=r"same shape, got \(3,\) and \(2,\)"):
        accuracy(torch.tensor([1, 2, 3]), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="mask selects nothing"):
        accuracy([1, 2], [1, 2], torch.tensor([False, False]))


# ------------------------------------------------------------------------------------------ chunks
@pytest.mark.parametrize("tags,expected", [
    (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 1), ("LOC", 3, 3)]),
    (["O", "I-LOC", "I-LOC"], [("LOC", 1, 2)]),                      # I- after O starts a chunk
    (["B-LOC", "I-PER", "I-PER"], [("LOC", 0, 0), ("PER", 1, 2)]),    # a type switch ends and starts one
    (["B-PER", "B-PER"], [("PER", 0, 0), ("PER", 1, 1)]),             # B- after B- of the same type
    (["I-PER", "I-PER", "B-PER", "O"], [("PER", 0, 1), ("PER", 2, 2)]),  # IOB1
    (["I-ORG", "I-LOC"], [("ORG", 0, 0), ("LOC", 1, 1)]),             # IOB1 type switch
    (["S-PER", "S-PER", "B-LOC", "E-LOC", "S-LOC"],                   # IOBES
     [("PER", 0, 0), ("PER", 1, 1), ("LOC", 2, 3), ("LOC", 4, 4)]),
    (["B-LOC", "E-LOC", "I-LOC"], [("LOC", 0, 1), ("LOC", 2, 2)]),    # E- closes its chunk
    (["B-fromloc.city_name", "I-fromloc.city_name", "B-toloc.city_name"],  # ATIS types with dots
     [("fromloc.city_name", 0, 1), ("toloc.city_name", 2, 2)]),
    (["O", "O"], []),
    ([], []),
])
def test_chunks_are_read_as_conlleval_reads_them(tags, expected):
    assert chunks(tags) == expected


# ----------------------------------------------------------------------------------------- span F1
def test_span_f1_hand_computed():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]              # 3 gold chunks
    predicted = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "O"]]             # 2 predicted, 1 correct
    scores = span_f1(predicted, gold)
    p, r = 1 / 2, 1 / 3
    assert scores["precision"] == pytest.approx(p)
    assert scores["recall"] == pytest.approx(r)
    assert scores["f1"] == pytest.approx(2 * p * r / (p + r))              # 0.4
    assert (scores["correct"], scores["predicted"], scores["gold"]) == (1, 2, 3)


def test_span_f1_counts_only_exact_spans_of_the_right_type():
    gold = [["B-PER", "I-PER", "I-PER"]]
    for predicted in (["B-PER", "I-PER", "O"], ["O", "B-PER", "I-PER"], ["B-LOC", "I-LOC", "I-LOC"]):
        assert span_f1([predicted], gold)["f1"] == 0.0


def test_span_f1_an_i_tag_after_o_matches_the_b_tag_chunk():
    # conlleval's classic leniency: a chunk that starts with I- is still a chunk.
    scores = span_f1([["O", "I-LOC", "I-LOC", "O"]], [["O", "B-LOC", "I-LOC", "O"]])
    assert scores["f1"] == 1.0


def test_span_f1_a_type_switch_inside_a_chunk_gives_two_chunks():
    scores = span_f1([["B-LOC", "I-PER"]], [["B-LOC", "I-LOC"]])
    assert (scores["correct"], scores["predicted"], scores["gold"]) == (0, 2, 1)


def test_span_f1_a_chunk_does_not_continue_into_the_next_sentence():
    scores = span_f1([["O", "B-PER"], ["I-PER", "O"]], [["O", "B-PER"], ["B-PER", "O"]])
    assert scores["f1"] == 1.0 and scores["gold"] == 2


def test_span_f1_perfect_and_empty():
    gold = [["B-A", "I-A", "O", "B-B"], ["O"]]
    assert span_f1(gold, gold)["f1"] == 1.0
    nothing = span_f1([["O", "O", "O", "O"], ["O"]], gold)
    assert (nothing["precision"], nothing["recall"], nothing["f1"]) == (0.0, 0.0, 0.0)
    assert span_f1([["O"]], [["O"]])["f1"] == 0.0                          # conlleval: 0 when no chunks


def test_span_f1_rejects_misaligned_input():
    with pytest.raises(ValueError, match="sentence 1: predicted_tags has 1 tags, gold_tags has 2"):
        span_f1([["O"], ["O"]], [["O"], ["O", "O"]])
    with pytest.raises(ValueError, match="as many sentences"):
        span_f1([["O"]], [["O"], ["O"]])
    with pytest.raises(TypeError, match="a list of tags per sentence"):
        span_f1(["B-PER I-PER"], ["B-PER I-PER"])


# ------------------------------------------------------------------------------------ BLEU and chrF
SACREBLEU_HYPOTHESES = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
SACREBLEU_REFERENCES = [["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
                        ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]]


def test_bleu_reproduces_sacrebleus_readme_example():
    # sacrebleu's README: corpus_bleu(sys, refs) with two reference streams -> BLEU = 48.53
    assert bleu(SACREBLEU_HYPOTHESES, SACREBLEU_REFERENCES) == pytest.approx(48.53, abs=0.005)
    details = bleu(SACREBLEU_HYPOTHESES, SACREBLEU_REFERENCES, return_object=True)
    assert (details.sys_len, details.ref_len) == (17, 18)                  # as its README prints them


def test_bleu_hand_computed_single_sentence():
    # n-gram precisions 4/5, 3/4, 2/3, 1/2; equal lengths so no brevity penalty.
    expected = 100 * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** (1 / 4)
    assert bleu(["a b c d e"], ["a b c d f"]) == pytest.approx(expected, abs=1e-9)


def test_bleu_perfect_and_empty():
    references = ["the cat sat on the mat .", "a dog barked loudly at the postman ."]
    assert bleu(references, references) == pytest.approx(100.0)
    assert bleu(["", ""], references) == 0.0


def test_one_reference_per_hypothesis_is_one_stream():
    hypotheses, references = ["a b c d e", "x y z w"], ["a b c d f", "x y z q"]
    assert bleu(hypotheses, references) == bleu(hypotheses, [references])
    assert chrf(hypotheses, references) == chrf(hypotheses, [references])


def test_chrf_hand_computed():
    # character n-grams of "abc" vs "abd": n=1 P=R=2/3, n=2 P=R=1/2, n=3 P=R=0, none longer;
    # chrF averages over the 3 orders present: 100·(2/3 + 1/2 + 0)/3.
    assert chrf(["abc"], ["abd"]) == pytest.approx(100 * (2 / 3 + 1 / 2) / 3, abs=1e-6)
    assert chrf(["the cat sat"], ["the cat sat"]) == pytest.approx(100.0)
    assert chrf(SACREBLEU_HYPOTHESES, SACREBLEU_REFERENCES, return_object=True).score == \
        chrf(SACREBLEU_HYPOTHESES, SACREBLEU_REFERENCES)


def test_bleu_rejects_misaligned_references():
    with pytest.raises(ValueError, match="references stream 1 must hold 3 strings"):
        bleu(SACREBLEU_HYPOTHESES, [SACREBLEU_REFERENCES[0], SACREBLEU_REFERENCES[1][:2]])
    with pytest.raises(ValueError, match="hypotheses must be a non-empty list"):
        chrf([], [])
    with pytest.raises(ValueError, match="hypotheses must be a non-empty list"):
        bleu("a whole string", ["a whole string"])


# --------------------------------------------------------------------- perplexity, bits per character
def test_a_uniform_model_has_perplexity_equal_to_the_vocabulary_size():
    vocabulary_size, count = 50, 1234
    total_nll = count * math.log(vocabulary_size)                          # -ln(1/V) per symbol
    assert perplexity(total_nll, count) == pytest.approx(vocabulary_size)
    assert bits_per_character(total_nll, count) == pytest.approx(math.log2(vocabulary_size))


def test_perplexity_of_a_cross_entropy_sum():
    torch.manual_seed(0)
    logits, targets = torch.randn(40, 7, dtype=torch.float64), torch.randint(0, 7, (40,))
    total = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    probabilities = logits.softmax(-1)[torch.arange(40), targets]
    geometric_mean = probabilities.log().mean().exp().item()
    assert perplexity(total, 40) == pytest.approx(1 / geometric_mean)
    assert bits_per_character(total, 40) == pytest.approx(-math.log2(geometric_mean))


def test_perplexity_rejects_a_count_that_is_not_positive():
    with pytest.raises(ValueError, match="count must be a positive int.*got 0"):
        perplexity(1.0, 0)
