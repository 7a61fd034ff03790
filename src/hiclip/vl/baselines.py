"""Text-only baselines: how far the question (VQA) or the hypothesis (visual entailment) alone goes.

A logistic regression (scikit-learn) on word 1-3-gram counts of the text, trained on the
training split and scored on another split with the task's own accuracy. An example whose
answer is not among the classes (VQA v2) trains on nothing; it is still scored.
"""
from __future__ import annotations

from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from .evaluate import summarise
from .tasks import VLTask


def _label(task: VLTask, i: int) -> int | None:
    target = task.target(i)
    if isinstance(target, int):
        return target
    return max(target, key=target.get) if target else None


def text_only_baseline(train: VLTask, test: VLTask, max_train: int | None = None) -> dict[str, float]:
    """Accuracy (overall and per type, as ``hiclip.vl.evaluate``) of a text-only classifier."""
    n = len(train) if max_train is None else min(max_train, len(train))
    pairs = [(train.text(i), y) for i in range(n) if (y := _label(train, i)) is not None]
    if len({y for _, y in pairs}) < 2:
        raise ValueError("the training split has fewer than two answers in the vocabulary")
    vectorizer = CountVectorizer(ngram_range=(1, 3), token_pattern=r"[^\s?]+")
    features = vectorizer.fit_transform([t for t, _ in pairs])
    classifier = LogisticRegression(max_iter=2000, C=1.0).fit(features, [y for _, y in pairs])
    predicted = classifier.predict(vectorizer.transform([test.text(i) for i in range(len(test))]))
    scores = [test.score(i, test.answers[int(c)]) for i, c in enumerate(predicted)]
    out = summarise(scores, [test.qtype(i) for i in range(len(test))])
    out["samples"] = float(len(test))
    return out
