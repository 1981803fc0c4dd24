"""MATLAB-compatible bicubic ``imresize`` — the degradation every SR paper evaluates with.

Antialiased cubic kernel (a = −0.5) when downscaling, symmetric border, computed in float64
and rounded to uint8 like MATLAB does for uint8 input. The arithmetic comes from the
``bicubic_pytorch`` package (a maintained port of MATLAB's ``imresize``); this module only
adapts it to HxWxC numpy images and the SR conventions (mod-crop, rounding).
"""
from __future__ import annotations

import numpy as np

__all__ = ["imresize", "modcrop", "bicubic_degrade"]


def imresize(img: np.ndarray, scale: float | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
    """Resize an HxW[xC] image; uint8 in → rounded uint8 out, float in → float64 out."""
    import torch
    from bicubic_pytorch import imresize as _imresize

    x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float64))
    x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)
    y = _imresize(x, scale=scale, sizes=size)
    y = (y[0] if img.ndim == 2 else y.permute(1, 2, 0)).numpy()
    if img.dtype == np.uint8:
        return np.clip(np.round(y), 0, 255).astype(np.uint8)
    return y


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop H and W down to multiples of *scale* (top-left kept, as the papers' scripts do)."""
    h, w = img.shape[0] - img.shape[0] % scale, img.shape[1] - img.shape[1] % scale
    return img[:h, :w]


def bicubic_degrade(hr: np.ndarray, scale: int) -> np.ndarray:
    """The papers' LR: ``imresize(modcrop(hr, s), 1/s)`` on uint8."""
    return imresize(modcrop(hr, scale), 1.0 / scale)
