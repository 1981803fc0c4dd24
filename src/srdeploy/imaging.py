"""Image I/O and the papers' quality metrics (PSNR on BT.601 Y, border crop, uint8 outputs)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import SrDeployError

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image as HxWx3 uint8 RGB (grayscale is repeated to three channels, alpha dropped)."""
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data is not None and data.size else None
    if img is None:
        raise SrDeployError(f"cannot read image {path}")
    if img.dtype != np.uint8:
        img = (img / 257).round().astype(np.uint8) if img.dtype == np.uint16 else img.astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def to_uint8(img01: np.ndarray) -> np.ndarray:
    """[0, 1] float → uint8 with rounding (what the papers evaluate)."""
    return np.clip(np.round(img01 * 255.0), 0, 255).astype(np.uint8)


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma on 0..255 (MATLAB ``rgb2ycbcr``): 16 + (65.481 R + 128.553 G + 24.966 B) / 255."""
    img = img.astype(np.float64)
    return 16.0 + (65.481 * img[..., 0] + 128.553 * img[..., 1] + 24.966 * img[..., 2]) / 255.0


def crop_border(img: np.ndarray, border: int) -> np.ndarray:
    return img[border:-border, border:-border, ...] if border > 0 else img


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak * peak / mse)


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    """PSNR on the Y channel of two uint8 RGB images, *border* pixels cropped on each side."""
    if sr.shape != hr.shape:
        raise SrDeployError(f"PSNR needs equal shapes, got {sr.shape} and {hr.shape}")
    return psnr(crop_border(rgb_to_y(sr), border), crop_border(rgb_to_y(hr), border))
