"""``vqa2:ROOT``: VQA v2 from its official files.

ROOT holds, as distributed by visualqa.org and cocodataset.org::

    v2_OpenEnded_mscoco_train2014_questions.json   {"questions": [{"question_id", "image_id", "question"}, ...]}
    v2_mscoco_train2014_annotations.json           {"annotations": [{"question_id", "answers": [{"answer"}, ...],
                                                                      "multiple_choice_answer", "answer_type"}, ...]}
    v2_OpenEnded_mscoco_val2014_questions.json, v2_mscoco_val2014_annotations.json
    train2014/COCO_train2014_000000000009.jpg ...  val2014/COCO_val2014_000000000042.jpg ...

Split 'train' is train2014, 'val' is val2014 (test-dev / test answers are not public).
Answer vocabulary: the normalised ``multiple_choice_answer`` s that occur at least 9 times
over train and val (3,129 answers on the full data), most frequent first. Targets: for each
vocabulary answer given by n of the annotators (normalised), the soft score min(n / 3, 1),
trained with binary cross-entropy. Accuracy: the official VQA accuracy (``vqa_eval``);
per-type accuracy by ``answer_type`` (yes/no, number, other).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

from .readers import field, list_field, read_json
from .task_base import VLTask
from .vqa_eval import normalize_answer, vqa_accuracy

MIN_COUNT = 9
COCO = {"train": "train2014", "val": "val2014"}


def _paths(root: Path, split: str) -> tuple[Path, Path]:
    coco = COCO[split]
    return (root / f"v2_OpenEnded_mscoco_{coco}_questions.json", root / f"v2_mscoco_{coco}_annotations.json")


def read_split(root: str | Path, split: str) -> list[dict]:
    """Questions of ``split`` joined with their annotations: dicts with ``question_id``,
    ``image_id``, ``question``, ``answers`` (list of str), ``answer_type``, ``multiple_choice_answer``."""
    q_path, a_path = _paths(Path(root), split)
    questions = read_json(q_path, "VQA v2 questions")
    annotations = read_json(a_path, "VQA v2 annotations")
    by_id = {}
    for n, ann in list_field(annotations, "annotations", str(a_path)):
        where = f"{a_path}: annotations[{n}]"
        qid = field(ann, "question_id", int, where)
        answers = [field(a, "answer", str, f"{where}.answers[{k}]") for k, a in list_field(ann, "answers", where)]
        if not answers:
            raise ValueError(f"{where}: field 'answers' is empty (the VQA accuracy needs the human answers)")
        by_id[qid] = {"answers": answers, "answer_type": field(ann, "answer_type", str, where),
                      "multiple_choice_answer": field(ann, "multiple_choice_answer", str, where)}
    rows = []
    for n, q in list_field(questions, "questions", str(q_path)):
        where = f"{q_path}: questions[{n}]"
        qid = field(q, "question_id", int, where)
        if qid not in by_id:
            raise ValueError(f"{where}: question_id {qid} has no entry in {a_path}")
        rows.append({"question_id": qid, "image_id": field(q, "image_id", int, where),
                     "question": field(q, "question", str, where), **by_id[qid]})
    return rows


def answer_vocabulary(root: str | Path, min_count: int = MIN_COUNT) -> list[str]:
    """Normalised answers chosen (``multiple_choice_answer``) at least ``min_count`` times over
    train and, when present, val; most frequent first, ties alphabetical."""
    counts: Counter = Counter()
    for split in COCO:
        if split == "val" and not _paths(Path(root), "val")[1].is_file():
            continue
        counts.update(normalize_answer(r["multiple_choice_answer"]) for r in read_split(root, split))
    vocab = sorted((a for a, c in counts.items() if c >= min_count), key=lambda a: (-counts[a], a))
    if not vocab:
        raise ValueError(f"no answer of {root} occurs {min_count} times or more; the answer vocabulary is empty")
    return vocab


def soft_scores(answers: Sequence[str], index: dict[str, int]) -> dict[int, float]:
    """{class: min(#annotators who gave it / 3, 1)} over the answers in the vocabulary ``index``."""
    counts = Counter(normalize_answer(a) for a in answers)
    return {index[a]: min(c / 3, 1.0) for a, c in counts.items() if a in index}


class VQA2Task(VLTask):
    """A VQA v2 split (module docstring); ``answers``: a fixed vocabulary (else computed)."""

    objective = "bce"

    def __init__(self, root: str, split: str, answers: Sequence[str] | None = None):
        self.root, self.name, self.split = Path(root), f"vqa2:{root}", split
        self.rows = read_split(root, split)
        self.answers = list(answers) if answers is not None else answer_vocabulary(root)
        self.images = self.root / COCO[split]

    def __len__(self) -> int:
        return len(self.rows)

    def text(self, i: int) -> str:
        return self.rows[i]["question"]

    def qtype(self, i: int) -> str:
        return self.rows[i]["answer_type"]

    def gold(self, i: int) -> list[str]:
        return self.rows[i]["answers"]

    def example_id(self, i: int) -> int:
        return self.rows[i]["question_id"]

    def image_path(self, i: int) -> Path:
        return self.images / f"COCO_{COCO[self.split]}_{self.rows[i]['image_id']:012d}.jpg"

    def target(self, i: int) -> dict[int, float]:
        return soft_scores(self.rows[i]["answers"], self._index)

    def score(self, i: int, answer: str) -> float:
        return vqa_accuracy(answer, self.rows[i]["answers"])
