"""VQA v2 and SNLI-VE readers on tiny files in the official formats; bad files and images."""
import json

import pytest
from PIL import Image

from hiclip import get_tokenizer
from hiclip.vl.data import make_loader
from hiclip.vl.snli_ve import SnliVeTask
from hiclip.vl.tasks import load_task
from hiclip.vl.vqa2 import VQA2Task, answer_vocabulary

TOKENIZER = get_tokenizer("HiCLIP-Tiny")


def _transform(image):
    import torchvision.transforms.functional as F
    return F.to_tensor(image.resize((64, 64)))


def _vqa_root(tmp_path, corrupt_image=True):
    """12 train questions on 3 COCO images, 3 val questions; the third train image is corrupt."""
    mc = ["yes"] * 10 + ["2", "2"]
    for split, n in (("train", 12), ("val", 3)):
        folder = tmp_path / f"{split}2014"
        folder.mkdir()
        questions, annotations = [], []
        for q in range(n):
            image_id = 100 + q % 3
            questions.append({"image_id": image_id, "question": f"is it thing {q}?", "question_id": 1000 * image_id + q})
            answers = [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1}
                       for k, a in enumerate([mc[q]] * 7 + ["Two", "two.", "no"])]
            annotations.append({"question_id": 1000 * image_id + q, "image_id": image_id, "answers": answers,
                                "multiple_choice_answer": mc[q], "answer_type": "yes/no" if mc[q] == "yes" else
                                "number", "question_type": "is it"})
        for image_id in (100, 101, 102):
            path = folder / f"COCO_{split}2014_{image_id:012d}.jpg"
            if image_id == 102 and corrupt_image:
                path.write_bytes(b"not a jpeg")
            else:
                Image.new("RGB", (80, 60), (image_id, 0, 0)).save(path)
        (tmp_path / f"v2_OpenEnded_mscoco_{split}2014_questions.json").write_text(json.dumps(
            {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "license": {},
             "data_subtype": f"{split}2014", "questions": questions}))
        (tmp_path / f"v2_mscoco_{split}2014_annotations.json").write_text(json.dumps(
            {"info": {}, "license": {}, "data_subtype": f"{split}2014", "annotations": annotations}))
    return tmp_path


def test_vqa2_reader_vocabulary_targets_scores(tmp_path):
    root = _vqa_root(tmp_path)
    assert answer_vocabulary(root) == ["yes"]  # "yes" chosen 10 times, "2" only 2 + 1 (val) times
    assert answer_vocabulary(root, min_count=2) == ["yes", "2"]
    task = VQA2Task(str(root), "train", ["yes", "2", "no"])
    assert len(task) == 12 and task.text(0) == "is it thing 0?" and task.example_id(1) == 101001
    assert task.qtype(11) == "number"
    # question 11: "2" x 7, "Two", "two." (normalised to "2"), "no" -> 9 of 10 say 2
    assert task.target(11) == {1: 1.0, 2: pytest.approx(1 / 3)}
    assert task.score(11, "2") == 1.0 and task.score(11, "no") == pytest.approx(0.3)
    # the official rule: human answers that differ get the punctuation step only ("two." -> "two"), while the
    # prediction "two" becomes "2": no human answer matches it
    assert task.score(0, "two") == 0.0 and task.score(0, "yes") == 1.0
    loader = make_loader(task, _transform, TOKENIZER, 4, train=False)
    batches = list(loader)
    assert sum(len(b[3]) for b in batches) == 8 and loader.skips == {"unreadable image": 4}
    images, tokens, targets, indices = batches[0]
    assert images.shape == (len(indices), 3, 64, 64) and targets.shape == (len(indices), 3)
    # training targets normalise every answer: "Two" and "two." count as two votes for "2"
    assert targets[0].tolist() == [1.0, pytest.approx(2 / 3), pytest.approx(1 / 3)]


def test_vqa2_bad_files_name_file_and_field(tmp_path):
    with pytest.raises(FileNotFoundError, match="v2_OpenEnded_mscoco_train2014_questions.json"):
        load_task(f"vqa2:{tmp_path}", "train", 64)
    root = _vqa_root(tmp_path)
    path = root / "v2_mscoco_train2014_annotations.json"
    data = json.loads(path.read_text())
    del data["annotations"][3]["answers"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"v2_mscoco_train2014_annotations.json: annotations\[3\]: missing field 'answers'"):
        load_task(f"vqa2:{root}", "train", 64)
    data["annotations"][3]["answers"] = []
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"annotations\[3\]: field 'answers' is empty"):
        load_task(f"vqa2:{root}", "train", 64)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_task(f"vqa2:{root}", "train", 64)
    with pytest.raises(ValueError, match="splits"):
        load_task(f"vqa2:{root}", "test", 64)


def _snli_root(tmp_path):
    (tmp_path / "flickr30k_images").mkdir()
    for image in ("111", "222"):
        Image.new("RGB", (50, 40), (0, int(image[0]) * 50, 0)).save(tmp_path / "flickr30k_images" / f"{image}.jpg")
    lines = [{"Flickr30K_ID": "111", "sentence1": "a man", "sentence2": "a person is outside", "gold_label":
              "entailment", "pairID": "p1", "annotator_labels": ["entailment"]},
             {"Flickr30K_ID": "222", "sentence2": "a dog sleeps", "gold_label": "contradiction", "pairID": "p2"},
             {"Flickr30K_ID": "333", "sentence2": "the image is gone", "gold_label": "neutral", "pairID": "p3"},
             {"Flickr30K_ID": "111", "sentence2": "no agreement", "gold_label": "-", "pairID": "p4"}]
    for name in ("snli_ve_train.jsonl", "snli_ve_dev.jsonl", "snli_ve_test.jsonl"):
        (tmp_path / name).write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return tmp_path


def test_snli_ve_reader(tmp_path):
    root = _snli_root(tmp_path)
    task = load_task(f"snli-ve:{root}", "val", 64)
    assert isinstance(task, SnliVeTask) and len(task) == 3 and task.no_label == 1
    assert task.answers == ["entailment", "contradiction", "neutral"] and task.kind == "visual_entailment"
    assert [task.target(i) for i in range(3)] == [0, 1, 2] and task.example_id(1) == "p2"
    loader = make_loader(task, _transform, TOKENIZER, 3, train=False)
    (images, tokens, targets, indices), = list(loader)
    assert indices.tolist() == [0, 1] and targets.tolist() == [0, 1]
    assert loader.skips == {"missing image file": 1}


def test_snli_ve_bad_files(tmp_path):
    root = _snli_root(tmp_path)
    (root / "snli_ve_train.jsonl").write_text(json.dumps({"Flickr30K_ID": "1", "gold_label": "neutral"}) + "\n")
    with pytest.raises(ValueError, match=r"snli_ve_train.jsonl, line 1: missing field 'sentence2'"):
        load_task(f"snli-ve:{root}", "train", 64)
    (root / "snli_ve_train.jsonl").write_text(json.dumps({"Flickr30K_ID": "1", "sentence2": "x",
                                                          "gold_label": "maybe"}) + "\n")
    with pytest.raises(ValueError, match="line 1: field 'gold_label' must be one of"):
        load_task(f"snli-ve:{root}", "train", 64)
    (root / "snli_ve_train.jsonl").write_bytes(b'{"Flickr30K_ID": "1", "sentence2": "x", "gold_label": "neutral"}\n'
                                              b'{"Flickr30K_ID": "2", "sentence2": "caf\xe9", "gold_label": "neutral"}\n')
    with pytest.raises(ValueError, match="snli_ve_train.jsonl, line 2: not UTF-8"):
        load_task(f"snli-ve:{root}", "train", 64)
    (root / "snli_ve_test.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="snli_ve_test.jsonl"):
        load_task(f"snli-ve:{root}", "test", 64)
    with pytest.raises(ValueError, match="unknown task"):
        load_task("snli:x", "test", 64)
