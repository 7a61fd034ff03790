"""The official VQA accuracy and its answer normalisation, written from the rules of the
VQA evaluation (Antol et al. 2015; VQA v2, Goyal et al. 2017).

Normalisation of an answer: newlines and tabs become spaces, ends are stripped; then

1. punctuation: each of ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !`` is deleted when the
   text has it next to a space or has a comma between two digits, else replaced by a
   space; a period not followed by a digit is deleted ("3.5" keeps its period);
2. digits and articles: lower case, split on whitespace, number words ("zero" .. "ten",
   "none") become digits, the articles "a", "an", "the" are dropped, and contractions
   written without their apostrophe ("dont") get it back ("don't").

Accuracy of one predicted answer against the 10 human answers: for each of the 10
leave-one-out subsets of 9, ``min(1, #subset answers equal to the prediction / 3)``,
averaged; with k equal answers among 10 this is 0, 0.3, 0.6, 0.9 and 1 for k = 0, 1, 2,
3 and >= 4. The prediction is always normalised; the human answers get step 1 only, and
only when they are not all the same (as the official evaluation does).
"""
from __future__ import annotations

import re
from typing import Sequence

_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
_COMMA_IN_NUMBER = re.compile(r"\d,\d")
_PERIOD = re.compile(r"\.(?!\d)")
_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
            "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
# contractions as they are spelled; their apostrophe-less spellings map back to them. Forms whose
# spelling without apostrophes is an ordinary word (we'll / well, it's / its, i'd / id ...) are left out.
_CONTRACTED = (
    "ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't haven't "
    "he'd've he's how'd how'll how's i'd've i'm i've isn't it'd it'd've it'll ma'am mightn't mightn't've "
    "might've mustn't must've needn't not've o'clock oughtn't shan't she'd've she's should've shouldn't "
    "shouldn't've somebody'd somebody'd've somebody'll somebody's someone'd someone'd've someone'll someone's "
    "something'd something'd've something'll something's that's there'd there'd've there're there's they'd "
    "they'd've they'll they're they've 'twas wasn't we'd've we've weren't what'll what're what's what've "
    "when's where'd where's where've who'd who'd've who'll who's who've why'll why're why's won't would've "
    "wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll you're you've").split()


def _contractions() -> dict[str, str]:
    """Spellings with every apostrophe, or one of two, left out -> the contraction."""
    out = {}
    for form in _CONTRACTED:
        out[form.replace("'", "")] = form
        if form.count("'") == 2:
            first = form.index("'")
            second = form.index("'", first + 1)
            out[form[:first] + form[first + 1:]] = form
            out[form[:second] + form[second + 1:]] = form
    return out


CONTRACTIONS = _contractions()


def process_punctuation(text: str) -> str:
    """Step 1 of the normalisation (module docstring)."""
    out = text
    delete = _COMMA_IN_NUMBER.search(text) is not None
    for p in _PUNCT:
        out = out.replace(p, "" if (delete or p + " " in text or " " + p in text) else " ")
    return _PERIOD.sub("", out)


def process_digits_articles(text: str) -> str:
    """Step 2 of the normalisation (module docstring)."""
    words = [_NUMBERS.get(w, w) for w in text.lower().split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def normalize_answer(answer: str) -> str:
    """The official normalisation of a predicted answer (both steps)."""
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    return process_digits_articles(process_punctuation(text))


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """The VQA accuracy of ``prediction`` given the human ``answers`` (usually 10)."""
    if not answers:
        raise ValueError("vqa_accuracy needs at least one human answer")
    pred = normalize_answer(prediction)
    gts = [process_punctuation(a) for a in answers] if len(set(answers)) > 1 else list(answers)
    equal = [g == pred for g in gts]
    total = sum(equal)
    return sum(min(1.0, (total - e) / 3) for e in equal) / len(gts)
