"""DeCLIP's objective: SimSiam, MLM, multi-view and nearest-neighbour terms, the text queue."""
from __future__ import annotations

import math
from collections import deque

import pytest
import torch
import torch.nn.functional as F

import train_fakes as fakes
from hiclip import create_model
from hiclip.data.text_views import IGNORE
from hiclip.train import contrastive_loss
from hiclip.train.declip import DeCLIPLoss, TextQueue, mlm_loss, simsiam_loss


def test_simsiam_aligned_gives_minus_one_and_no_gradient_through_targets():
    z1 = torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]], requires_grad=True)
    z2 = torch.tensor([[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]], requires_grad=True)
    p1, p2 = (2.5 * z2).detach().requires_grad_(), (0.5 * z1).detach().requires_grad_()  # aligned with targets
    loss = simsiam_loss(p1, z1, p2, z2)
    assert loss.item() == pytest.approx(-1.0, abs=1e-6)
    loss.backward()
    assert z1.grad is None and z2.grad is None  # stop-gradient: no path into the targets
    assert p1.grad is not None
    # a hand case: p1 at 45 degrees from z2, p2 orthogonal to z1
    p1, z2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    p2, z1 = torch.tensor([[0.0, 1.0]]), torch.tensor([[3.0, 0.0]])
    assert simsiam_loss(p1, z1, p2, z2).item() == pytest.approx(-0.5 * (1 / math.sqrt(2) + 0.0), abs=1e-6)


def test_mlm_loss_zero_logits_give_log_vocab_and_matches_explicit_cross_entropy():
    targets = torch.tensor([3, 7, 7, 0])
    assert mlm_loss(torch.zeros(4, 1000, dtype=torch.float64), targets).item() == pytest.approx(math.log(1000))
    logits = torch.randn(4, 10, dtype=torch.float64)
    explicit = sum(-torch.log_softmax(logits[i], 0)[t] for i, t in enumerate(targets.tolist())) / 4
    assert mlm_loss(logits, targets).item() == pytest.approx(explicit.item(), abs=1e-12)
    assert mlm_loss(torch.zeros(0, 10), torch.zeros(0, dtype=torch.long)).item() == 0.0  # nothing masked


def declip_model(tmp_path, **declip):
    torch.manual_seed(0)
    config = fakes.write_config(tmp_path, "declip.json", objective="declip",
                                declip={"queue_size": 64, **declip})
    return create_model(config).double()


def same_views_batch(size=6, seed=0):
    """Both image views equal, masked caption == EDA caption == the caption, nothing masked."""
    images, tokens = fakes.global_batch(seed, 0, 0, size)
    return (torch.stack([images, images], 1).double(),
            torch.stack([tokens, tokens, torch.full_like(tokens, IGNORE)], 1))


def test_identical_views_reduce_multi_view_to_clip_loss(tmp_path):
    model = declip_model(tmp_path)
    images, tokens = same_views_batch()
    terms = DeCLIPLoss(model)(images, tokens)
    out = model(images[:, 0], tokens[:, 0])
    expected = contrastive_loss(out["image_features"], out["text_features"], out["logit_scale"])
    assert terms["loss_clip"].item() == pytest.approx(expected.item(), abs=1e-12)
    assert terms["loss_nn"].item() == 0.0 and terms["loss_mlm"].item() == 0.0  # empty queue, nothing masked


def test_queue_holding_the_batch_texts_reduces_nn_to_image_to_text_clip_loss(tmp_path):
    model = declip_model(tmp_path)
    objective = DeCLIPLoss(model)
    images, tokens = same_views_batch()
    out = model(images[:, 0], tokens[:, 0])
    img, txt, scale = out["image_features"], out["text_features"], out["logit_scale"]
    objective.queue.push(txt.detach(), epoch=3)
    terms = objective(images, tokens, epoch=3)
    explicit = 0.0  # image i's positive is its own text among the 6
    for i in range(6):
        logits = [scale * img[i] @ txt[j] for j in range(6)]
        explicit -= (logits[i] - torch.logsumexp(torch.stack(logits), 0)) / 6
    assert terms["loss_nn"].item() == pytest.approx(explicit.item(), abs=1e-10)
    stale = DeCLIPLoss(model)
    stale.queue.push(txt.detach(), epoch=3)
    assert stale(images, tokens, epoch=4)["loss_nn"].item() == 0.0  # an earlier epoch's texts never match


def test_weights_combine_the_terms(tmp_path):
    model = declip_model(tmp_path, w_clip=1.0, w_nn=0.0, w_simsiam=3.0, w_mlm=0.5)
    images, tokens = fakes.global_batch(0, 0, 0, 6)
    targets = torch.full_like(tokens, IGNORE)
    targets[:, 1] = tokens[:, 1]
    tokens = torch.stack([tokens, tokens, targets], 1)
    images = torch.stack([images, images.flip(-1)], 1).double()
    terms = DeCLIPLoss(model)(images, tokens)
    assert terms["loss_mlm"].item() > 0
    expected = terms["loss_clip"] + 3 * terms["loss_simsiam"] + 0.5 * terms["loss_mlm"]
    assert terms["loss"].item() == pytest.approx(expected.item(), abs=1e-12)


def test_queue_wraps_like_a_fifo_and_round_trips_its_state():
    queue, reference = TextQueue(5, 2, dtype=torch.float64), deque(maxlen=5)
    counter = 0
    for n in (2, 2, 3, 1, 7, 4):
        rows = torch.arange(counter, counter + n, dtype=torch.float64)[:, None].repeat(1, 2)
        queue.push(rows, epoch=0)
        reference.extend(range(counter, counter + n))
        counter += n
        held = sorted(queue.features[queue.epochs == 0, 0].long().tolist())
        assert held == sorted(reference)
        # the slot after the pointer holds the oldest entry once the queue is full
        if counter >= 5:
            assert int(queue.features[int(queue.ptr), 0]) == reference[0]
    copy = TextQueue(5, 2, dtype=torch.float64)
    copy.load_state_dict(queue.state_dict())
    assert torch.equal(copy.features, queue.features) and int(copy.ptr) == int(queue.ptr)
    with pytest.raises(ValueError, match="queue_size"):
        TextQueue(6, 2).load_state_dict(queue.state_dict())


def test_queue_never_matches_empty_slots_or_other_epochs():
    queue = TextQueue(4, 2)
    assert queue.nearest(torch.tensor([[1.0, 0.0]]), epoch=0) is None
    queue.push(torch.tensor([[1.0, 0.0]]), epoch=0)
    # the query is closer to an empty (zero) slot (cosine 0) than to the only entry (cosine -1)
    assert queue.nearest(torch.tensor([[-1.0, 0.0]]), epoch=0).tolist() == [[1.0, 0.0]]
    queue.push(torch.tensor([[0.0, 1.0]]), epoch=1)
    assert queue.nearest(torch.tensor([[1.0, 0.0]]), epoch=1).tolist() == [[0.0, 1.0]]
    assert queue.nearest(torch.tensor([[1.0, 0.0]]), epoch=2) is None


def test_training_pushes_both_text_views_after_lookup(tmp_path):
    model = declip_model(tmp_path)
    objective = DeCLIPLoss(model)
    images, tokens = same_views_batch(size=4)
    first = objective(images, tokens, epoch=0)
    assert first["loss_nn"].item() == 0.0  # looked up before this step's texts went in
    assert int((objective.queue.epochs == 0).sum()) == 8 and int(objective.queue.ptr) == 8
    objective.eval()
    objective(images, tokens, epoch=0)
    assert int(objective.queue.ptr) == 8  # evaluation leaves the queue alone


def test_bad_batches_and_models_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="objective"):
        DeCLIPLoss(create_model(fakes.write_config(tmp_path)))
    images, tokens = fakes.global_batch(0, 0, 0, 2)
    with pytest.raises(ValueError, match="data views"):
        DeCLIPLoss(declip_model(tmp_path))(images.double(), tokens)
