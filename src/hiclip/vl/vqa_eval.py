"""The official VQA accuracy and its answer normalisation, written from the rules of the
VQA evaluation (Antol et al. 2015; VQA v2, Goyal et al. 2017).

Normalisation of an answer: newlines and tabs become spaces, ends are stripped; then

1. punctuation: each of ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !`` is deleted when the
   text has it next to a space or has a comma between two digits, else replaced by a
   space; a period not followed by a digit is deleted ("3.5" keeps its period);
2. digits and articles: lower case, split on whitespace, number words ("zero" .. "ten",
   "none") become digits, the articles "a", "an", "the" are dropped, and the contractions
   of the official table written without their apostrophe ("dont") get it back ("don't").

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
# The contraction table of the official evaluation, "spelling:contraction" entries, kept exactly
# as it is, quirks included: the keys "Im", "Ive", "Id've", "I'dve" never match (answers are
# lower-cased first), "somebody'd" maps to "somebodyd", and a spelling absent here ("im",
# "couldntve") stays as it is.
_CONTRACTION_TABLE = (
    "aint:ain't arent:aren't cant:can't couldve:could've couldnt:couldn't couldn'tve:couldn't've "
    "couldnt've:couldn't've didnt:didn't doesnt:doesn't dont:don't hadnt:hadn't hadnt've:hadn't've "
    "hadn'tve:hadn't've hasnt:hasn't havent:haven't hed:he'd hed've:he'd've he'dve:he'd've hes:he's "
    "howd:how'd howll:how'll hows:how's Id've:I'd've I'dve:I'd've Im:I'm Ive:I've isnt:isn't itd:it'd "
    "itd've:it'd've it'dve:it'd've itll:it'll let's:let's maam:ma'am mightnt:mightn't "
    "mightnt've:mightn't've mightn'tve:mightn't've mightve:might've mustnt:mustn't mustve:must've "
    "neednt:needn't notve:not've oclock:o'clock oughtnt:oughtn't ow's'at:'ow's'at 'ows'at:'ow's'at "
    "'ow'sat:'ow's'at shant:shan't shed've:she'd've she'dve:she'd've she's:she's shouldve:should've "
    "shouldnt:shouldn't shouldnt've:shouldn't've shouldn'tve:shouldn't've somebody'd:somebodyd "
    "somebodyd've:somebody'd've somebody'dve:somebody'd've somebodyll:somebody'll "
    "somebodys:somebody's someoned:someone'd someoned've:someone'd've someone'dve:someone'd've "
    "someonell:someone'll someones:someone's somethingd:something'd somethingd've:something'd've "
    "something'dve:something'd've somethingll:something'll thats:that's thered:there'd "
    "thered've:there'd've there'dve:there'd've therere:there're theres:there's theyd:they'd "
    "theyd've:they'd've they'dve:they'd've theyll:they'll theyre:they're theyve:they've twas:'twas "
    "wasnt:wasn't wed've:we'd've we'dve:we'd've weve:we've werent:weren't whatll:what'll "
    "whatre:what're whats:what's whatve:what've whens:when's whered:where'd wheres:where's "
    "whereve:where've whod:who'd whod've:who'd've who'dve:who'd've wholl:who'll whos:who's "
    "whove:who've whyll:why'll whyre:why're whys:why's wont:won't wouldve:would've wouldnt:wouldn't "
    "wouldnt've:wouldn't've wouldn'tve:wouldn't've yall:y'all yall'll:y'all'll y'allll:y'all'll "
    "yall'd've:y'all'd've y'alld've:y'all'd've y'all'dve:y'all'd've youd:you'd youd've:you'd've "
    "you'dve:you'd've youll:you'll youre:you're youve:you've")
CONTRACTIONS = dict(entry.split(":", 1) for entry in _CONTRACTION_TABLE.split())


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
