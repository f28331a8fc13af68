"""Loading an image file into the RGB uint8 array every sample carries, with errors that name the file.

Students bring odd files; every failure here says which file and what is wrong with it rather than
surfacing a Pillow traceback.
"""

from __future__ import annotations

import glob
import os
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DeepPoseError

# Refuse images above ~89 megapixels before decoding them (a decompression bomb would allocate GBs).
MAX_PIXELS = 89_478_485


class DataError(DeepPoseError, ValueError):
    """A data file is missing or malformed; the message starts with the file's path."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


def to_rgb_array(img: Image.Image) -> np.ndarray:
    """Any Pillow mode (grey, palette, RGBA, CMYK, 16-bit) to (H, W, 3) uint8 RGB."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        grey = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        grey = np.clip(arr, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def image_paths(inputs: list[str] | list[Path]) -> list[Path]:
    """The image files that command-line inputs name: a file as it is, a folder's images (sorted, not its
    subfolders'), a glob such as ``photos/*.jpg`` or ``'photos/**/*.png'`` expanded here (quoted, the shell leaves
    it to us). A folder or glob that names no image is an error that says so, not an empty, silent run."""
    out: list[Path] = []
    for item in map(str, inputs):
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(path, f"folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            out += found
        elif glob.has_magic(item) and not path.exists():
            found = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not found:
                raise DataError(item, "no file matches this pattern")
            out += found
        else:
            out.append(path)
    return out


def check_image_path(path: Path) -> None:
    """Say what is wrong with a path given as an image before opening it: missing, a folder, or unreadable."""
    if path.is_dir():
        raise DataError(path, "is a folder, not an image; give the image files (e.g. folder/*.jpg)")
    if not path.is_file():
        raise DataError(path, "image file not found")
    if not os.access(path, os.R_OK):
        raise DataError(path, "image file cannot be read (permission denied)")


def load_image(path: Path | str, apply_exif: bool = True) -> np.ndarray:
    """Decode ``path`` to (H, W, 3) uint8 RGB, upright as a viewer shows it (EXIF orientation applied)."""
    path = Path(path)
    check_image_path(path)
    if path.stat().st_size == 0:
        raise DataError(path, "image file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise DataError(path, f"image is {w}×{h} pixels, above the {MAX_PIXELS}-pixel safety limit")
                img.load()
                if apply_exif:
                    img = ImageOps.exif_transpose(img)
                arr = to_rgb_array(img)
    except DataError:
        raise
    except UnidentifiedImageError:
        raise DataError(path, "not a readable image (unknown or corrupt format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(path, f"image too large to decode safely ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:  # Pillow's ways of saying "corrupt"
        raise DataError(path, f"image is truncated or corrupt ({exc})") from None
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DataError(path, "image has no pixels")
    return np.ascontiguousarray(arr)


def image_size(path: Path | str) -> tuple[int, int]:
    """(height, width) from the header only, EXIF orientation applied; cheap enough to call on every file."""
    path = Path(path)
    check_image_path(path)
    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
    except FileNotFoundError:
        raise DataError(path, "image file not found") from None
    except Image.DecompressionBombError as exc:  # not an OSError: it escaped as a raw Pillow error
        raise DataError(path, f"image too large to decode safely ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        # a corrupt PNG chunk is a SyntaxError, a short IHDR a ValueError (found by tests/test_fuzz.py)
        raise DataError(path, f"not a readable image ({exc})") from None
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)
