"""DeCLIP's two text views of a caption: a masked caption (the MLM input) and an EDA caption.

``TextViews(tokenizer, seed, epoch, ...)`` is a drop-in tokenizer for the training
loaders: ``list[str] -> LongTensor (B, 3, ctx)`` with, per caption,

- row 0 (``MASKED``): the caption's tokens with MLM masking: each content token (never the
  start / end token or padding) is chosen with probability ``mlm_prob``; a chosen token
  becomes ``mask_id`` 80% of the time, a random non-special token 10%, itself 10%;
- row 1 (``EDA``): the tokens of an EDA-augmented caption (Wei & Zou 2019, as DeCLIP: one of
  synonym replacement of one word, one random swap of two words, random deletion of each
  word with p 0.1; a caption never loses all its words);
- row 2 (``TARGETS``): the original token at each chosen position, ``IGNORE`` (-100) elsewhere.

Every draw is seeded by ``(seed, epoch, caption)``: a caption gets the same views in any
batch, worker or rank layout, so a resumed run sees exactly the views of an uninterrupted one.
CLIP's vocabulary has no free id for [MASK]; ``mask_id`` defaults to the start-of-text id,
which never occurs at a content position otherwise.
"""
from __future__ import annotations

import re
import zlib
from typing import Callable, Sequence

import numpy as np
import torch

from hiclip.data.skips import sample_seed

MASKED, EDA, TARGETS = 0, 1, 2
IGNORE = -100
EDA_OPS = ("synonym", "swap", "delete")
WORLD_EDA_OPS = ("synonym", "delete")  # a swap makes exactly the world's hard negatives
DELETE_P = 0.1

_GROUPS = (  # words that say the same thing in a caption, both in the world and in web captions
    ("small", "little", "tiny"), ("large", "big"), ("picture", "photo", "image"), ("above", "over"),
    ("below", "under", "beneath"), ("gray", "grey"), ("man", "guy"), ("woman", "lady"),
    ("child", "kid"), ("car", "automobile"), ("road", "street"), ("sofa", "couch"),
    ("photograph", "photo"), ("beautiful", "pretty"), ("near", "close to"), ("shows", "depicts"))
SYNONYMS: dict[str, tuple[str, ...]] = {w: tuple(o for o in g if o != w) for g in _GROUPS for w in g}


def wordnet_synonyms() -> Callable[[str], list[str]] | None:
    """WordNet synonyms from nltk when its corpus is installed locally (never downloaded), else None."""
    try:
        import nltk  # deferred: slow to import (~1 s), needed only for these synonyms
        nltk.data.find("corpora/wordnet")  # raises LookupError when not installed
        from nltk.corpus import wordnet
        wordnet.synsets("dog")
    except (ImportError, LookupError, OSError):
        return None

    def synonyms(word: str) -> list[str]:
        names = {lemma.name().replace("_", " ").lower() for s in wordnet.synsets(word) for lemma in s.lemmas()}
        return sorted(n for n in names if n != word and re.fullmatch(r"[a-z ]+", n))
    return synonyms


def eda(words: list[str], rng: np.random.Generator, ops: Sequence[str] = EDA_OPS,
        lookup: Callable[[str], Sequence[str]] | None = None) -> list[str]:
    """One EDA operation drawn from ``ops`` applied to ``words`` (a new list).

    ``synonym``: one word that has synonyms (the built-in table, then ``lookup``) is
    replaced by one of them; ``swap``: two positions exchange their words; ``delete``: each
    word is dropped with probability 0.1, keeping one at random if all would go.
    """
    op = ops[rng.integers(len(ops))]
    words = list(words)
    if op == "synonym":
        options = [(i, SYNONYMS.get(w) or (lookup(w) if lookup else ())) for i, w in enumerate(words)]
        options = [(i, alts) for i, alts in options if alts]
        if options:
            i, alts = options[rng.integers(len(options))]
            words[i] = alts[rng.integers(len(alts))]
    elif op == "swap" and len(words) > 1:
        i, j = rng.choice(len(words), 2, replace=False)
        words[i], words[j] = words[j], words[i]
    elif op == "delete" and words:
        kept = [w for w, drop in zip(words, rng.random(len(words)) < DELETE_P) if not drop]
        words = kept or [words[rng.integers(len(words))]]
    return words


def mask_row(tokens: torch.Tensor, rng: np.random.Generator, prob: float, mask_id: int, random_below: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """MLM masking of one tokenised caption (N,): -> (masked tokens (N,), targets (N,)).

    Content positions lie strictly between the start token (position 0) and end-of-text
    (the largest id); random replacements are drawn from ``[0, random_below)``.
    """
    n_content = int(tokens.argmax()) - 1
    chosen = np.flatnonzero(rng.random(n_content) < prob) + 1
    how = rng.random(len(chosen))  # < 0.8: [MASK]; < 0.9: random token; else kept
    randoms = rng.integers(0, random_below, len(chosen))
    masked, targets = tokens.clone(), torch.full_like(tokens, IGNORE)
    targets[chosen] = tokens[chosen]
    masked[chosen[how < 0.8]] = mask_id
    swap = (how >= 0.8) & (how < 0.9)
    masked[chosen[swap]] = torch.as_tensor(randoms[swap], dtype=tokens.dtype)
    return masked, targets


class TextViews:
    """Tokenizer of DeCLIP's text views (see the module docstring): list[str] -> (B, 3, ctx)."""

    def __init__(self, tokenizer: Callable[[list[str]], torch.Tensor], seed: int, epoch: int, *,
                 mlm_prob: float = 0.15, ops: Sequence[str] = EDA_OPS, wordnet: bool = True,
                 mask_id: int | None = None):
        self.tokenizer, self.seed, self.epoch, self.mlm_prob, self.ops = tokenizer, seed, epoch, mlm_prob, tuple(ops)
        self.sot = int(tokenizer(["a"])[0, 0])  # the start token's id; specials are the ids from it on
        self.mask_id = self.sot if mask_id is None else mask_id
        self.lookup = wordnet_synonyms() if wordnet else None

    def _rng(self, caption: str) -> np.random.Generator:
        key = zlib.crc32(caption.encode("utf-8", "surrogatepass"))
        return np.random.default_rng(sample_seed(self.seed, self.epoch, key))

    def __call__(self, captions: list[str]) -> torch.Tensor:
        rngs = [self._rng(c) for c in captions]
        augmented = [" ".join(eda(c.split(), rng, self.ops, self.lookup)) for c, rng in zip(captions, rngs)]
        originals, eda_tokens = self.tokenizer(list(captions)), self.tokenizer(augmented)
        rows = [mask_row(t, rng, self.mlm_prob, self.mask_id, self.sot) for t, rng in zip(originals, rngs)]
        masked = torch.stack([m for m, _ in rows])
        targets = torch.stack([t for _, t in rows])
        return torch.stack([masked, eda_tokens, targets], 1)
