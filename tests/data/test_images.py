"""The one image loader: pixel limit, draft decoding, EXIF orientation, transparency, bad files."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from hiclip.data.images import ImagePolicy, load_image
from hiclip.data.skips import Skip


def reason(source, policy=ImagePolicy()) -> str:
    with pytest.raises(Skip) as info:
        load_image(source, policy)
    return info.value.reason


def test_pixel_limit_skips_without_decoding(tmp_path, huge_png):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no PIL DecompressionBombWarning either
        assert reason(str(huge_png(tmp_path / "bomb.png"))) == "image too large"  # PIL would raise its own error
        big = str(huge_png(tmp_path / "big.png", 10_000, 10_000))  # 100 MP: under the default limit, decoded
        assert reason(big) == "unreadable image"  # (this one has no pixel data)
        assert reason(big, ImagePolicy(max_pixels=50_000_000)) == "image too large"
    Image.new("RGB", (100, 60)).save(tmp_path / "small.png")
    assert reason(str(tmp_path / "small.png"), ImagePolicy(max_pixels=5999)) == "image too large"
    assert load_image(str(tmp_path / "small.png"), ImagePolicy(max_pixels=6000)).size == (100, 60)
    assert load_image(str(tmp_path / "small.png"), ImagePolicy(max_pixels=None)).size == (100, 60)


def test_bad_files_are_counted_reasons(tmp_path):
    Image.new("RGB", (64, 64), (9, 9, 9)).save(tmp_path / "ok.png")
    Image.new("RGB", (64, 64), (9, 9, 9)).save(tmp_path / "ok.jpg")
    for name in ("ok.png", "ok.jpg"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut-{name}").write_bytes(data[: len(data) // 2])
        assert reason(str(tmp_path / f"cut-{name}")) == "unreadable image"
    assert reason(b"\x89PNG\r\n\x1a\n not really") == "unreadable image"
    assert reason(str(tmp_path / "absent.png")) == "missing image file"


def test_palette_transparency_composited_on_white_without_warnings(tmp_path):
    im = Image.new("P", (4, 1))
    im.putpalette([255, 0, 0, 0, 0, 255, 0, 255, 0] + [0] * 759)
    im.putdata([0, 1, 2, 2])
    im.save(tmp_path / "p.png", transparency=bytes([0, 255, 128] + [255] * 253))  # red clear, green half
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rgb = load_image(str(tmp_path / "p.png"))
    assert rgb.mode == "RGB"
    assert rgb.getpixel((0, 0)) == (255, 255, 255)  # fully transparent red -> white background
    assert rgb.getpixel((1, 0)) == (0, 0, 255)  # opaque blue stays blue
    green = rgb.getpixel((2, 0))  # 128/255 green over white
    expected = [round(c * 128 / 255 + 255 * (1 - 128 / 255)) for c in (0, 255, 0)]
    assert all(abs(a - b) <= 1 for a, b in zip(green, expected)), (green, expected)
    Image.new("LA", (2, 2), (10, 0)).save(tmp_path / "la.png")
    assert load_image(str(tmp_path / "la.png")).getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)  # left half red
    pixels[:, 20:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    upright = np.asarray(load_image(str(tmp_path / "phone.jpg")))
    expected = np.rot90(pixels, k=-1)  # clockwise: the left column becomes the top row
    assert upright.shape == expected.shape == (40, 20, 3)
    assert np.abs(upright.astype(int) - expected).mean() < 4


def test_decoding_at_the_needed_size(tmp_path):
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (600, 800, 3), dtype=np.uint8))
    photo.save(tmp_path / "big.jpg", quality=90)
    photo.save(tmp_path / "big.png")
    drafted = load_image(str(tmp_path / "big.jpg"), ImagePolicy(min_side=64))
    assert drafted.size == (100, 75)  # DCT scale 1/8: the smallest with both sides >= 64
    reduced = load_image(str(tmp_path / "big.png"), ImagePolicy(min_side=64))
    assert reduced.size == (89, 67)  # integer box reduction by 600 // 64 = 9, rounding up
    full = np.asarray(photo, dtype=float)[:594, :792].reshape(66, 9, 88, 9, 3).mean(axis=(1, 3))
    assert np.abs(np.asarray(reduced, dtype=float)[:66, :88] - full).max() <= 1
    assert load_image(str(tmp_path / "big.png"), ImagePolicy(min_side=400)).size == (800, 600)


def test_sixteen_bit_grey_scaled(tmp_path):
    Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16)).save(tmp_path / "g16.png")
    assert [load_image(str(tmp_path / "g16.png")).getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]
