"""Local images for everything that needs pictures without the network.

* :func:`parity_image` – a real Set5 LR image fitted to an export size (synthetic if no data).
* :func:`sample_batch` – small RGB crops for tools that want sample data (onnx2tf's
  accuracy check would otherwise download MS-COCO crops from the internet).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .imaging import list_images, read_rgb
from .paths import data_dir

__all__ = ["fit_to_size", "parity_image", "sample_batch", "synthetic_image"]


def fit_to_size(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Resize (keeping aspect, bicubic) to cover ``h×w``, then centre-crop to exactly ``h×w``."""
    import cv2

    ih, iw = img.shape[:2]
    f = max(h / ih, w / iw)
    nh, nw = max(h, round(ih * f)), max(w, round(iw * f))
    if (nh, nw) != (ih, iw):
        interp = cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC
        img = cv2.resize(img, (nw, nh), interpolation=interp)
    top, left = (nh - h) // 2, (nw - w) // 2
    return np.ascontiguousarray(img[top:top + h, left:left + w])


def random_crop(img: np.ndarray, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """An ``h×w`` crop at a random position; an image smaller than the crop is mirror-padded
    (numpy 'symmetric') up to it first."""
    ph, pw = max(0, h - img.shape[0]), max(0, w - img.shape[1])
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="symmetric")
    y = int(rng.integers(0, img.shape[0] - h + 1))
    x = int(rng.integers(0, img.shape[1] - w + 1))
    return img[y:y + h, x:x + w]


def synthetic_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A deterministic, image-like uint8 RGB picture (smooth shading plus edges and texture)."""
    import cv2

    rng = np.random.default_rng(seed)
    low = cv2.resize(rng.random((6, 6, 3), dtype=np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    stripes = 0.15 * np.sin(xx * 0.35 + yy * 0.12)[..., None]
    edges = 0.25 * ((xx // max(1, w // 5) + yy // max(1, h // 4)) % 2)[..., None]
    noise = 0.03 * rng.standard_normal((h, w, 3)).astype(np.float32)
    img = np.clip(0.6 * low + stripes + edges + noise, 0, 1)
    return (img * 255).round().astype(np.uint8)


def parity_image(h: int, w: int, scale: int) -> tuple[np.ndarray, str]:
    """``(uint8 RGB h×w, description)``: Set5 butterfly LR (×scale) fitted to size, else synthetic."""
    root = data_dir()
    if root is not None:
        lr = root / "Set5" / "LR_bicubic" / f"X{scale}" / f"butterflyx{scale}.bmp"
        src = lr if lr.is_file() else root / "Set5" / "HR" / "butterfly.bmp"
        if src.is_file():
            return fit_to_size(read_rgb(src), h, w), f"Set5/{src.parent.name}/{src.name} fitted to {h}x{w}"
    return synthetic_image(h, w), f"synthetic image {h}x{w} (no Set5 found)"


def sample_batch(n: int = 20, size: int | tuple[int, int] = 128, seed: int = 0) -> np.ndarray:
    """``n×H×W×3`` float32 [0, 1] crops from local DIV2K images (synthetic if none); an image smaller
    than the crop is mirror-padded (symmetric) up to it."""
    h, w = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    root = data_dir()
    files: list[Path] = []
    if root is not None and (root / "div2k" / "HR").is_dir():
        files = list_images(root / "div2k" / "HR")
    out = np.empty((n, h, w, 3), np.float32)
    cache: dict[Path, np.ndarray] = {}
    for i in range(n):
        if files:
            f = files[i % len(files)]
            crop = random_crop(cache.setdefault(f, read_rgb(f)), h, w, rng)
        else:
            crop = synthetic_image(h, w, seed=seed + i)
        out[i] = crop.astype(np.float32) / 255.0
    return out
