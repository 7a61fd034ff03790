"""Fixtures for hiclip.eval tests: a tiny open_clip model, a hand-made fake model, image files."""
from __future__ import annotations

from pathlib import Path

import open_clip
import pytest
import torch
from PIL import Image
from torchvision.transforms import ToTensor

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


class FakeModel(torch.nn.Module):
    """encode_image: mean colour per channel (B, 3); encode_text: a fixed vector per string."""

    def __init__(self, text_vectors: dict[str, list[float]]) -> None:
        super().__init__()
        self.vocab = list(text_vectors)
        self.table = torch.tensor([text_vectors[t] for t in self.vocab])

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return torch.tensor([[self.vocab.index(t)] for t in texts])

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(2, 3))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.table[tokens[:, 0]]


@pytest.fixture
def colour_model() -> FakeModel:
    """Texts naming a colour map to that colour's RGB direction."""
    vectors = {}
    for name, rgb in COLOURS.items():
        vectors[name] = vectors[f"a {name} thing"] = [c / 255 for c in rgb]
    return FakeModel(vectors)


def _save_solid(path: Path, rgb: tuple[int, int, int], size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), rgb).save(path)
    return path


@pytest.fixture
def save_solid():
    """save_solid(path, rgb) writes a solid-colour PNG (creating folders)."""
    return _save_solid


@pytest.fixture
def colours() -> dict[str, tuple[int, int, int]]:
    return dict(COLOURS)


@pytest.fixture
def to_tensor() -> ToTensor:
    return ToTensor()


@pytest.fixture(scope="session")
def tiny_clip() -> tuple[torch.nn.Module, object, object]:
    """(model, eval transform, tokenizer) of a randomly initialised tiny open_clip CLIP."""
    torch.manual_seed(0)
    model = open_clip.model.CLIP(
        embed_dim=32,
        vision_cfg=open_clip.model.CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=8,
                                                 image_size=32),
        text_cfg=open_clip.model.CLIPTextCfg(context_length=16, width=32, heads=2, layers=1)).eval()
    transform = open_clip.transform.image_transform(32, is_train=False)
    return model, transform, open_clip.tokenizer.SimpleTokenizer(context_length=16)


@pytest.fixture(scope="session")
def random_folder(tmp_path_factory) -> Path:
    """root/<class>/*.png with 6 classes x 4 random-noise images, under train/ and test/."""
    root = tmp_path_factory.mktemp("folder")
    gen = torch.Generator().manual_seed(1)
    for part in ("train", "test"):
        for c in range(6):
            for i in range(4):
                pixels = torch.randint(0, 256, (16, 16, 3), generator=gen, dtype=torch.uint8)
                path = root / part / f"class{c}" / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels.numpy()).save(path)
    return root
