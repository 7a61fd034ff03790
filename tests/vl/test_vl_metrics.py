"""VQA accuracy and normalisation on hand cases; losses at zero logits; per-type summaries."""
import math

import pytest
import torch

from hiclip.vl.evaluate import summarise, task_loss
from hiclip.vl.vqa_eval import normalize_answer, process_punctuation, vqa_accuracy
from hiclip.vl.vqa2 import soft_scores


@pytest.mark.parametrize("k, expected", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (7, 1.0), (10, 1.0)])
def test_vqa_accuracy_k_matching_annotators(k, expected):
    # the prediction matches only after normalisation: "Two." -> "2"; the others said something else
    answers = ["2"] * k + ["3", "three dogs", "no", "many", "4", "5", "6", "7", "8", "9"][:10 - k]
    assert vqa_accuracy("Two.", answers) == pytest.approx(expected, abs=1e-12)
    # by hand: the mean over the 10 leave-one-out subsets of min(1, matches / 3)
    by_hand = (k * min(1, (k - 1) / 3) + (10 - k) * min(1, k / 3)) / 10 if k else 0.0
    assert vqa_accuracy("two", answers) == pytest.approx(by_hand, abs=1e-12)


@pytest.mark.parametrize("raw, normal", [
    ("The dog", "dog"), ("a Red car", "red car"), ("an apple.", "apple"), ("dont know", "don't know"),
    ("yes!", "yes"), ("none", "0"), ("ten", "10"), ("3.5", "3.5"), ("1,000", "1000"), ("black/white", "black white"),
    ("black / white", "black white"), ("  Yes\n", "yes"), ("couldnt've", "couldn't've"), ("its", "its"),
    # the official table as it is: "hed" is in it, "im" and "couldntve" are not (its "Im" key never
    # matches a lower-cased word), and "somebody'd" loses its apostrophe
    ("hed", "he'd"), ("Im", "im"), ("couldntve", "couldntve"), ("somebody'd", "somebodyd"), ("twas", "'twas")])
def test_normalize_answer_hand_cases(raw, normal):
    assert normalize_answer(raw) == normal


def test_human_answers_get_punctuation_only_when_they_differ():
    # all ten alike: compared as written, so "the dog" never equals the normalised prediction "dog"
    assert vqa_accuracy("dog", ["the dog"] * 10) == 0.0
    assert process_punctuation("hot-dog") == "hot dog"
    assert vqa_accuracy("hot dog", ["hot-dog"] * 3 + ["pizza"] * 7) == pytest.approx(0.9)


def test_soft_scores_min_count_over_three():
    index = {"2": 0, "two dogs": 1, "yes": 2}
    scores = soft_scores(["Two", "2", "two", "two", "yes", "3", "3", "3", "3", "dogs"], index)
    assert scores == {0: 1.0, 2: pytest.approx(1 / 3)}
    assert soft_scores(["2", "2"], index) == {0: pytest.approx(2 / 3)}


def test_zero_logits_give_the_expected_losses():
    for c in (2, 3, 24):
        targets = torch.randint(0, c, (5,))
        assert task_loss(torch.zeros(5, c), targets, "ce").item() == pytest.approx(math.log(c), rel=1e-6)
        soft = torch.rand(5, c)  # any soft targets: each of the C terms is log 2 at logit 0
        assert task_loss(torch.zeros(5, c), soft, "bce").item() == pytest.approx(c * math.log(2), rel=1e-6)


def test_summarise_per_type_and_prefix():
    out = summarise([1, 0, 1, 1], ["a", "b/x", "b/y", "a"])
    assert out == {"accuracy": 0.75, "accuracy_a": 1.0, "accuracy_b": 0.5, "accuracy_b/x": 0.0, "accuracy_b/y": 1.0}
    with pytest.raises(ValueError, match="no example"):
        summarise([], [])
