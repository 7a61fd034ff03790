"""Metric functions of hiclip.eval against hand-computed values and explicit loops."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from hiclip.eval.compositional import compositional_metrics, score_trials
from hiclip.eval.linear_probe import fit_linear_probe
from hiclip.eval.retrieval import recall_at_k, retrieval_ranks
from hiclip.eval.zeroshot import classification_metrics


def test_classification_metrics_hand_case():
    logits = torch.tensor([[0.9, 0.1, 0.0],   # true 0, top-1 hit
                           [0.5, 0.4, 0.1],   # true 1, 2nd
                           [0.2, 0.7, 0.1],   # true 2, 3rd
                           [0.1, 0.2, 0.8]])  # true 2, hit
    targets = torch.tensor([0, 1, 2, 2])
    m = classification_metrics(logits, targets, topk=(1, 2, 5))
    assert m["acc1"] == pytest.approx(2 / 4)
    assert m["acc2"] == pytest.approx(3 / 4)
    assert m["acc5"] == pytest.approx(1.0)  # capped at 3 classes
    # per-class recall: class 0: 1/1, class 1: 0/1, class 2: 1/2
    assert m["mean_per_class_recall"] == pytest.approx((1 + 0 + 0.5) / 3)


def test_classification_metrics_match_loop():
    gen = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(50, 10, generator=gen), torch.randint(0, 10, (50,), generator=gen)
    m = classification_metrics(logits, targets)
    for k in (1, 5):
        hits = [int(targets[i]) in sorted(range(10), key=lambda c: -logits[i, c])[:k] for i in range(50)]
        assert m[f"acc{k}"] == pytest.approx(sum(hits) / 50)
    with pytest.raises(ValueError, match="expected logits"):
        classification_metrics(logits, targets[:3])


# Similarity matrix (texts x images) with known ranks; image embeddings are the identity,
# so text embedding rows are the similarities.
SIM = torch.tensor([[0.9, 0.1, 0.0],
                    [0.2, 0.5, 0.3],
                    [0.4, 0.3, 0.1],
                    [0.0, 0.8, 0.7],
                    [0.1, 0.2, 0.6]])
OWNER = torch.tensor([0, 0, 1, 2, 2])


def test_recall_hand_case():
    m = recall_at_k(SIM, torch.eye(3), OWNER, recall_k_list=(1, 2, 3))
    # text -> image ranks: 0, 2, 1, 1, 0
    assert m["image_retrieval_recall@1"] == pytest.approx(2 / 5)
    assert m["image_retrieval_recall@2"] == pytest.approx(4 / 5)
    assert m["image_retrieval_recall@3"] == pytest.approx(1.0)
    # image -> text best-positive ranks: 0, 2, 0
    assert m["text_retrieval_recall@1"] == pytest.approx(2 / 3)
    assert m["text_retrieval_recall@2"] == pytest.approx(2 / 3)
    assert m["text_retrieval_recall@3"] == pytest.approx(1.0)


def test_recall_ties_count_against_model():
    same = torch.ones(4, 2) / 2 ** 0.5
    m = recall_at_k(same, same[:2], torch.tensor([0, 0, 1, 1]), recall_k_list=(1, 2))
    # every text ties with the other image; every image ties with the other's 2 captions
    assert m["image_retrieval_recall@1"] == 0 and m["image_retrieval_recall@2"] == 1
    assert m["text_retrieval_recall@2"] == 0


def _reference_ranks(sim: torch.Tensor, owner: torch.Tensor) -> tuple[list[int], list[int]]:
    """Explicit loops over the full matrix."""
    n_t, n_i = sim.shape
    text_rank = [sum(sim[t, j] >= sim[t, owner[t]] for j in range(n_i) if j != owner[t])
                 for t in range(n_t)]
    image_rank = []
    for i in range(n_i):
        best = max(sim[t, i] for t in range(n_t) if owner[t] == i)
        image_rank.append(sum(sim[t, i] >= best for t in range(n_t) if owner[t] != i))
    return text_rank, image_rank


@pytest.mark.parametrize("chunk", [1, 4, 7, 1000])
def test_chunked_ranks_equal_full_matrix(chunk):
    gen = torch.Generator().manual_seed(chunk)
    images = torch.nn.functional.normalize(torch.randn(13, 8, generator=gen), dim=-1)
    owner = torch.cat([torch.arange(13), torch.randint(0, 13, (37,), generator=gen)])
    texts = torch.nn.functional.normalize(images[owner] + torch.randn(50, 8, generator=gen), dim=-1)
    text_rank, image_rank = retrieval_ranks(texts, images, owner, chunk_size=chunk)
    ref_text, ref_image = _reference_ranks(texts @ images.T, owner)
    assert text_rank.tolist() == [int(r) for r in ref_text]
    assert image_rank.tolist() == [int(r) for r in ref_image]
    assert recall_at_k(texts, images, owner, chunk_size=chunk) == recall_at_k(texts, images, owner,
                                                                                chunk_size=10 ** 6)


def test_recall_needs_caption_per_image():
    with pytest.raises(ValueError, match="every image"):
        recall_at_k(SIM[:2], torch.eye(3), torch.tensor([0, 0]))


def test_compositional_metrics_hand_case():
    trials = [("attribute_swap", 0.9, [0.5]),         # correct
              ("attribute_swap", 0.4, [0.6]),         # wrong
              ("relation_swap", 0.7, [0.2, 0.7]),     # tie -> wrong
              ("relation_swap", 0.8, [0.1, 0.3, 0.2])]  # correct
    m = compositional_metrics(trials)
    assert m["acc"] == pytest.approx(0.5)
    assert m["acc_attribute_swap"] == pytest.approx(0.5)
    assert m["acc_relation_swap"] == pytest.approx(0.5)
    assert m["chance_attribute_swap"] == pytest.approx(0.5)
    assert m["chance_relation_swap"] == pytest.approx((1 / 3 + 1 / 4) / 2)
    assert m["chance"] == pytest.approx((0.5 + 0.5 + 1 / 3 + 1 / 4) / 4)
    assert m["n_trials"] == 4 and m["n_trials_relation_swap"] == 2
    with pytest.raises(ValueError, match="at least one trial"):
        compositional_metrics([])


def test_score_trials_pairs_negatives_with_their_image(colour_model):
    # image 0 is red, image 1 is blue; "a red thing" is image 0's caption, etc.
    image_emb = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])
    negatives = [{"attribute_swap": ["a blue thing"], "relation_swap": [], "attribute_replace": ["green"]},
                 {"attribute_swap": ["a red thing", "a blue thing"]}]
    trials = score_trials(image_emb, ["a red thing", "green"], negatives, colour_model,
                          colour_model.tokenize, "cpu")
    assert trials == [("attribute_replace", 1.0, [0.0]),
                      ("attribute_swap", 1.0, [0.0]),
                      ("attribute_swap", 0.0, [0.0, 1.0])]
    m = compositional_metrics(trials)
    assert m["acc_attribute_swap"] == 0.5 and "acc_relation_swap" not in m


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Separable 3-class features, class 0 holding 80% of the examples."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2], [n * 8 // 10, n // 10, n - n * 9 // 10])
    return np.eye(3)[y] * 3 + 0.1 * rng.normal(size=(n, 3)), y


def test_linear_probe_separable_and_grid_choice():
    train_x, train_y = _blobs(60, 0)
    test_x, test_y = _blobs(30, 1)
    m = fit_linear_probe(train_x, train_y, test_x, test_y, c_grid=(1e-6, 1.0, 10.0))
    assert m["lp_acc1"] == pytest.approx(1.0)
    # C = 1e-6 barely moves from the class prior: it predicts the majority class
    assert m["val_acc@C=1e-06"] < 0.9 and m["val_acc@C=1"] == 1.0
    assert m["best_C"] == 1.0  # first of the tied best values in the grid
    ref = LogisticRegression(C=1.0, max_iter=1000).fit(train_x, train_y).predict(test_x)
    assert m["lp_acc1"] == pytest.approx(float((ref == test_y).mean()))
    with pytest.raises(ValueError, match="at least 2 classes"):
        fit_linear_probe(train_x, np.zeros(60, dtype=int), test_x, test_y)


def test_score_trials_encodes_each_distinct_text_once_and_scores_as_every_text_encoded():
    import hiclip
    from hiclip.eval.features import encode_texts
    torch.manual_seed(0)
    model = hiclip.create_model("HiCLIP-Tiny").eval()
    tokenizer = hiclip.get_tokenizer("HiCLIP-Tiny")
    seen = []

    def counting(texts):
        seen.extend(texts)
        return tokenizer(texts)

    image_emb = torch.nn.functional.normalize(torch.randn(2, 128), dim=-1)
    captions = ["a red circle", "a blue square"]
    negatives = [{"attribute_swap": ["a blue circle", "a red square"], "relation_swap": ["a blue square"]},
                 {"attribute_swap": ["a red circle", "a blue circle"]}]
    with torch.no_grad():
        trials = score_trials(image_emb, captions, negatives, model, counting, "cpu")
        every = captions + ["a blue circle", "a red square", "a blue square", "a red circle", "a blue circle"]
        emb = encode_texts(model, tokenizer, every, "cpu")  # each text in its own row, duplicates too
    assert sorted(seen) == sorted(set(every))  # 4 distinct texts, each tokenized and encoded once
    want = [("attribute_swap", float(emb[0] @ image_emb[0]), (emb[2:4] @ image_emb[0]).tolist()),
            ("relation_swap", float(emb[0] @ image_emb[0]), (emb[4:5] @ image_emb[0]).tolist()),
            ("attribute_swap", float(emb[1] @ image_emb[1]), (emb[5:7] @ image_emb[1]).tolist())]
    for (kind, true, negs), (kind_w, true_w, negs_w) in zip(trials, want, strict=True):
        assert kind == kind_w
        assert true == pytest.approx(true_w, abs=1e-6) and negs == pytest.approx(negs_w, abs=1e-6)
