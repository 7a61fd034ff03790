"""Zero-shot image-text retrieval (after CLIP_benchmark's ``zeroshot_retrieval``).

Each image has one or more captions. With cosine similarities s(text, image):

- ``image_retrieval_recall@k`` (text -> image): the fraction of captions whose own image
  is ranked within the top k of all images;
- ``text_retrieval_recall@k`` (image -> text): the fraction of images with at least one
  of their captions ranked within the top k of all captions (as in CLIP papers).

A positive's rank is the number of *negatives* scoring at least as high as it (for
image -> text, as the image's best-scoring caption): ties count against the model, so a
collapsed model scores 0, not 1. This is the one retrieval metric of hiclip: training's
validation R@1 (``hiclip.train.evaluate``) is :func:`recall_at_k` with one caption per image.
``skipped`` counts images left out (unreadable, or without a usable caption) and
``skipped_captions`` the empty, blank or non-UTF-8 captions dropped. Similarities are computed in blocks of at most
``chunk_size`` texts x ``chunk_size`` images; the result equals the full-matrix one.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader

from ..protocols import ImageTextModel
from .features import count_skipped, encode_images, encode_texts, iter_batches


def _blocks(texts: torch.Tensor, images: torch.Tensor, chunk_size: int
            ) -> Iterator[tuple[slice, slice, torch.Tensor]]:
    """(text slice, image slice, similarities (t, i)) over all blocks, in a fixed order."""
    for t0 in range(0, len(texts), chunk_size):
        ts = slice(t0, t0 + chunk_size)
        for i0 in range(0, len(images), chunk_size):
            ims = slice(i0, i0 + chunk_size)
            yield ts, ims, texts[ts] @ images[ims].T


def retrieval_ranks(text_emb: torch.Tensor, image_emb: torch.Tensor, text_to_image: torch.Tensor,
                    chunk_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """text_emb (T, E), image_emb (I, E), text_to_image (T,) -> ranks of each caption's image
    among images (T,) and of each image's best caption among captions (I,); rank 0 is best.

    Two passes over the same blocks: the first gathers positive scores (per caption, and the
    best per image), the second counts negatives scoring at least as high."""
    if text_emb.shape[0] != text_to_image.shape[0]:
        raise ValueError(f"expected one image index per text, got {text_to_image.shape[0]} "
                         f"for {text_emb.shape[0]} texts")
    n_images = image_emb.shape[0]
    image_ids = torch.arange(n_images)
    pos_text = torch.empty(text_emb.shape[0])
    best_pos_image = torch.full((n_images,), -torch.inf)
    for ts, ims, sim in _blocks(text_emb, image_emb, chunk_size):
        is_pos = text_to_image[ts, None] == image_ids[None, ims]
        rows, cols = is_pos.nonzero(as_tuple=True)
        pos_text[ts.start + rows] = sim[rows, cols]
        best_pos_image.scatter_reduce_(0, ims.start + cols, sim[rows, cols], reduce="amax")
    text_rank = torch.zeros(text_emb.shape[0], dtype=torch.long)
    image_rank = torch.zeros(n_images, dtype=torch.long)
    for ts, ims, sim in _blocks(text_emb, image_emb, chunk_size):
        is_neg = text_to_image[ts, None] != image_ids[None, ims]
        text_rank[ts] += ((sim >= pos_text[ts, None]) & is_neg).sum(dim=1)
        image_rank[ims] += ((sim >= best_pos_image[None, ims]) & is_neg).sum(dim=0)
    return text_rank, image_rank


def recall_at_k(text_emb: torch.Tensor, image_emb: torch.Tensor, text_to_image: torch.Tensor,
                recall_k_list: Sequence[int] = (1, 5, 10), chunk_size: int = 1024
                ) -> dict[str, float]:
    """Retrieval recalls (see module docstring) from features text_emb (T, E), image_emb (I, E)
    and text_to_image (T,), the index of each caption's image; every image needs a caption."""
    if torch.bincount(text_to_image, minlength=image_emb.shape[0]).min() == 0:
        raise ValueError("every image needs at least one caption")
    text_rank, image_rank = retrieval_ranks(text_emb, image_emb, text_to_image, chunk_size)
    metrics = {}
    for k in recall_k_list:
        metrics[f"image_retrieval_recall@{k}"] = (text_rank < k).double().mean().item()
        metrics[f"text_retrieval_recall@{k}"] = (image_rank < k).double().mean().item()
    return metrics


def _base(dataset):
    """The dataset inside a :class:`~hiclip.eval.datasets.SkipBadImages` wrapper (or itself)."""
    return getattr(dataset, "base", dataset)


def extract_caption_features(model: ImageTextModel, dataloader: DataLoader, tokenizer: Callable,
                             device: str | torch.device, amp: bool = False
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loader of (images (B, 3, H, W), captions: B lists of str) -> image features (I, E),
    text features (T, E), text_to_image (T,) over the readable images."""
    images, texts, owners = [], [], []
    n_images = 0
    for batch_images, batch_captions in iter_batches(dataloader, "retrieval features"):
        images.append(encode_images(model, batch_images, device, amp))
        flat = [c for captions in batch_captions for c in captions]
        texts.append(encode_texts(model, tokenizer, flat, device, amp))
        owners += [n_images + j for j, captions in enumerate(batch_captions) for _ in captions]
        n_images += len(batch_captions)
    if not images:
        raise ValueError("no readable images in the dataset "
                         f"({len(dataloader.dataset)} items, all skipped)")
    return torch.cat(images), torch.cat(texts), torch.tensor(owners, dtype=torch.long)


def evaluate(model: ImageTextModel, dataloader: DataLoader, tokenizer: Callable, device: str | torch.device,
             amp: bool = False, recall_k_list: Sequence[int] = (1, 5, 10),
             chunk_size: int = 1024) -> dict[str, float]:
    """Image-text retrieval recalls (module docstring) plus ``skipped`` unreadable images."""
    image_emb, text_emb, text_to_image = extract_caption_features(model, dataloader, tokenizer,
                                                                  device, amp)
    metrics = recall_at_k(text_emb, image_emb, text_to_image, recall_k_list, chunk_size)
    metrics["skipped"] = count_skipped(dataloader, len(image_emb))
    metrics["skipped_captions"] = sum(getattr(_base(dataloader.dataset), "caption_skips", {}).values())
    return metrics
