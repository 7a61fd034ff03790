"""The one image decoder of hiclip: training, evaluation, ``parse`` / ``groups`` / ``induce-eval``
and ``prepare`` all read image files and bytes through :func:`load_image`.

Policy (:class:`ImagePolicy`), applied in this order:

1. **Pixel limit.** An image whose header declares more than ``max_pixels`` pixels is not
   decoded: ``Skip("image too large")``. PIL's own decompression-bomb error (above twice
   ``PIL.Image.MAX_IMAGE_PIXELS``) gives the same skip; its warning is silenced, since the
   limit here is the one that counts.
2. **Decode at the needed size.** With ``min_side`` set, a JPEG is decoded in draft mode at
   the smallest DCT scale (1/2, 1/4, 1/8) whose shorter side is still at least ``min_side``;
   any other image larger than twice ``min_side`` is shrunk by an integer box filter
   (``Image.reduce``) to a shorter side of at least ``min_side``.
3. **EXIF orientation** is applied (a phone photo stored sideways comes out upright).
4. **RGB.** Transparency (RGBA, LA, palette or single-colour transparency) is composited on
   ``background`` (white), never dropped, and without PIL's palette warning; 16-bit
   greyscale is scaled to 8 bits.

A missing file gives ``Skip("missing image file")``; anything PIL cannot decode completely
(random bytes, a truncated or corrupt file) ``Skip("unreadable image")``.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from hiclip.data.skips import IMAGE_TOO_LARGE, MISSING_IMAGE, UNREADABLE_IMAGE, Skip

DEFAULT_MAX_PIXELS = 178_956_970
"""PIL's own hard limit (2 x ``Image.MAX_IMAGE_PIXELS``): about 179 megapixels."""
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_WIDE_GREY = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


@dataclass(frozen=True)
class ImagePolicy:
    """How :func:`load_image` treats real-world images (module docstring). ``max_pixels`` None:
    no limit of hiclip's own; ``min_side`` None: decode at full size."""
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    min_side: int | None = None
    background: tuple[int, int, int] = (255, 255, 255)

    def __post_init__(self) -> None:
        for name in ("max_pixels", "min_side"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 (or None), got {value}")


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """An RGB copy of ``image``; transparent parts composited on ``background``."""
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        out = Image.new("RGB", image.size, background)
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    if image.mode in _WIDE_GREY:
        image = image.convert("I").point(lambda v: v / 256).convert("L")
    return image.convert("RGB")


def _decode(image: Image.Image, policy: ImagePolicy) -> Image.Image:
    width, height = image.size
    if policy.max_pixels is not None and width * height > policy.max_pixels:
        raise Skip(IMAGE_TOO_LARGE)
    side = policy.min_side
    if side is not None and image.format == "JPEG":
        image.draft(None, (side, side))  # DCT scaling; both sides stay >= side
    image.load()
    ImageOps.exif_transpose(image, in_place=True)
    rgb = to_rgb(image, policy.background)
    factor = min(rgb.size) // side if side else 1
    return rgb.reduce(factor) if factor >= 2 else rgb


def load_image(source: bytes | str | Path, policy: ImagePolicy = ImagePolicy()) -> Image.Image:
    """Decode an image file (path) or encoded image (bytes) as RGB under ``policy``; raises
    :class:`~hiclip.data.skips.Skip` for a missing, too large or undecodable image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
                return _decode(image, policy)
    except Skip:
        raise
    except FileNotFoundError:
        raise Skip(MISSING_IMAGE) from None
    except Image.DecompressionBombError:
        raise Skip(IMAGE_TOO_LARGE) from None
    except Exception:  # PIL raises many kinds (OSError, SyntaxError, ValueError, struct.error ...) for bad files
        raise Skip(UNREADABLE_IMAGE) from None
