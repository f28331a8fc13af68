"""The image loader on the odd files students bring: every mode becomes (H, W, 3) uint8 RGB, upright, and
every broken file becomes a DataError that names the file and says what is wrong."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deeppose_lab import images
from deeppose_lab.images import DataError, image_size, load_image


def save(img: Image.Image, path: Path, **kwargs) -> Path:
    img.save(path, **kwargs)
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares ``width``×``height`` but holds no pixel data: a decompression bomb's header, cheaply."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def check_rgb(arr: np.ndarray, h: int, w: int) -> None:
    assert arr.shape == (h, w, 3) and arr.dtype == np.uint8


# --- modes ----------------------------------------------------------------------------------------

def test_rgb_jpeg_and_png(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, size=(9, 13, 3), dtype=np.uint8)
    arr = load_image(save(Image.fromarray(rgb), tmp_path / "a.png"))
    assert np.array_equal(arr, rgb)  # lossless: exactly the pixels, rows = y, columns = x
    check_rgb(load_image(save(Image.fromarray(rgb), tmp_path / "a.jpg")), 9, 13)


@pytest.mark.parametrize("mode", ["L", "1"])
def test_grayscale_becomes_three_equal_channels(tmp_path, mode):
    grey = Image.fromarray(np.tile(np.array([0, 255], dtype=np.uint8), (4, 3))).convert(mode)
    arr = load_image(save(grey, tmp_path / "g.png"))
    check_rgb(arr, 4, 6)
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
    assert arr[0, :2, 0].tolist() == [0, 255]


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = [255, 0, 0, 255]  # opaque red
    rgba[0, 1] = [255, 0, 0, 0]  # fully transparent: white background shows
    rgba[1, 0] = [0, 0, 0, 128]  # half black
    arr = load_image(save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.png"))
    assert arr[0, 0].tolist() == [255, 0, 0]
    assert arr[0, 1].tolist() == [255, 255, 255]
    assert 120 <= arr[1, 0, 0] <= 135


def test_palette_image_with_and_without_transparency(tmp_path):
    pal = Image.new("P", (3, 1))
    pal.putpalette([0, 0, 255, 10, 200, 30] + [0] * 762)
    pal.putdata([0, 1, 1])
    assert load_image(save(pal, tmp_path / "p.png")).tolist() == [[[0, 0, 255], [10, 200, 30], [10, 200, 30]]]
    arr = load_image(save(pal, tmp_path / "pt.png", transparency=0))
    assert arr[0, 0].tolist() == [255, 255, 255] and arr[0, 1].tolist() == [10, 200, 30]


def test_la_image(tmp_path):
    la = Image.fromarray(np.array([[[100, 255], [100, 0]]], dtype=np.uint8), "LA")
    assert load_image(save(la, tmp_path / "la.png")).tolist() == [[[100] * 3, [255] * 3]]


def test_16_bit_png_is_scaled_by_its_bit_depth_not_stretched(tmp_path):
    a = np.array([[0, 1000, 32768]], dtype=np.uint16)  # a dark-ish photo: nothing near 65535
    path = save(Image.fromarray(a), tmp_path / "g16.png")
    assert Image.open(path).mode.startswith("I")
    arr = load_image(path)
    check_rgb(arr, 1, 3)
    assert arr[0, :, 0].tolist() == [0, 4, 128]  # value / 65535 · 255; stretching to the maximum would give 255
    full = load_image(save(Image.fromarray(np.array([[65535, 0]], dtype=np.uint16)), tmp_path / "w16.png"))
    assert full[0, :, 0].tolist() == [255, 0]


def test_cmyk_jpeg(tmp_path):
    cmyk = Image.new("CMYK", (8, 6), (0, 255, 255, 0))  # no cyan, full magenta + yellow: red
    path = save(cmyk, tmp_path / "c.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    arr = load_image(path)
    check_rgb(arr, 6, 8)
    assert arr[3, 4, 0] > 230 and arr[3, 4, 1] < 25 and arr[3, 4, 2] < 25


def test_exif_rotated_photo_is_loaded_upright_with_swapped_dimensions(tmp_path):
    raw = np.zeros((20, 30, 3), dtype=np.uint8)  # stored 30 wide, 20 high
    raw[:5, :5] = [255, 0, 0]  # red in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = save(Image.fromarray(raw), tmp_path / "phone.jpg", exif=exif, quality=95)
    arr = load_image(path)
    check_rgb(arr, 30, 20)
    assert arr[1, -2, 0] > 200 and arr[1, -2, 1] < 60  # the corner is now top-right, as a viewer shows it
    assert image_size(path) == (30, 20)  # header-only size agrees with the decoded one
    assert load_image(path, apply_exif=False).shape == (20, 30, 3)


def test_one_by_one_image(tmp_path):
    path = save(Image.new("RGB", (1, 1), (1, 2, 3)), tmp_path / "dot.png")
    assert load_image(path).tolist() == [[[1, 2, 3]]]
    assert image_size(path) == (1, 1)


def test_image_size_is_height_then_width(tmp_path):
    assert image_size(save(Image.new("RGB", (17, 5)), tmp_path / "w.jpg")) == (5, 17)


# --- broken files -------------------------------------------------------------------------------------

def expect_error(path: Path, words: str, loader=load_image) -> DataError:
    with pytest.raises(DataError) as info:
        loader(path)
    message = str(info.value)
    assert message.startswith(str(path)), message  # names the file ...
    assert words in message, message  # ... and the problem
    assert info.value.path == path
    return info.value


def test_missing_image(tmp_path):
    expect_error(tmp_path / "nope.jpg", "not found")
    expect_error(tmp_path / "nope.jpg", "not found", loader=image_size)


def test_folder_is_not_an_image(tmp_path):
    expect_error(tmp_path, "is a folder, not an image")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    expect_error(path, "empty")
    expect_error(path, "not a readable image", loader=image_size)


def test_garbage_bytes(tmp_path):
    path = tmp_path / "fake.jpg"
    path.write_bytes(b"<html>this mirror has moved</html>" * 20)
    expect_error(path, "not a readable image")
    expect_error(path, "not a readable image", loader=image_size)


def test_truncated_jpeg(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    good = save(Image.fromarray(noise), tmp_path / "good.jpg", quality=95)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    expect_error(cut, "truncated")
    assert image_size(cut) == (64, 64)  # the header alone is intact


def test_decompression_bomb_header_is_refused_without_allocating(tmp_path):
    huge = png_header_only(tmp_path / "bomb.png", 100_000, 100_000)  # 10 gigapixels declared, 57 bytes on disk
    assert huge.stat().st_size < 100
    expect_error(huge, "too large")
    expect_error(huge, "too large", loader=image_size)
    big = png_header_only(tmp_path / "big.png", 10_000, 10_000)  # between Pillow's warning and error limits
    expect_error(big, "too large")


def test_our_own_pixel_limit_applies_even_if_pillow_limit_is_off(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    monkeypatch.setattr(images, "MAX_PIXELS", 50)
    path = save(Image.new("RGB", (10, 10)), tmp_path / "a.png")
    expect_error(path, "safety limit")


def test_data_error_is_a_value_error():
    err = DataError("x/y.jpg", "broken")
    assert isinstance(err, ValueError)
    assert str(err) == "x/y.jpg: broken" and err.problem == "broken" and err.path == Path("x/y.jpg")
