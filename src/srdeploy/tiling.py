"""Any image size through a fixed-shape model: overlapping tiles blended without seams.

``overlap`` is the context margin, in LR pixels, that a tile carries on each inner side beyond
the part it contributes (the IMDN paper's adaptive-cropping idea): tiles of exactly the model's
input size are spread evenly over each axis so that neighbours share at least ``2·overlap``
pixels. A tile's output is distorted near an inner edge, where it sees zero padding instead of
the image (IMDN_RTC: 48 grey levels at the edge, 0.5 at 8 LR pixels, 0 beyond 13, measured on
Set14). So each tile's weight is 0 for its first ``overlap/2`` pixels from an inner edge, rises
linearly to 1 at ``3·overlap/2``, and the weighted sum is divided by the sum of weights: the
seam is a smooth cross-fade in the middle of the shared band, made only of pixels at least
``overlap/2`` from any tile edge, mostly ≥ ``overlap``. Edges on the image border are not
ramped: there a tile sees exactly what whole-image inference sees. Images smaller than a tile
are reflect-padded up to it and cropped back.

The same arithmetic (tile rectangles and weights) is what the Android app does; golden files
written from :func:`plan_tiles` / :func:`blend_weights` keep the two in step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["Tile", "axis_starts", "plan_tiles", "blend_weights", "upscale_tiled"]


@dataclass(frozen=True)
class Tile:
    y: int  # LR top
    x: int  # LR left
    h: int  # LR tile height (the model's input height)
    w: int


def axis_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spread starts of tiles of size *tile* covering ``[0, length)``, neighbours sharing ≥ 2·*overlap*."""
    shared = 2 * overlap
    if tile <= 0 or overlap < 0 or shared >= tile:
        raise ValueError(f"need 0 <= 2*overlap < tile, got tile {tile}, overlap {overlap}")
    if length <= tile:
        return [0]
    n = math.ceil((length - shared) / (tile - shared))
    n = max(n, 2)
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def plan_tiles(h: int, w: int, tile_h: int, tile_w: int, overlap: int) -> list[Tile]:
    """Tiles (row-major) covering an ``h×w`` LR image; tiles may extend past a small image (padding)."""
    return [Tile(y, x, tile_h, tile_w) for y in axis_starts(h, tile_h, overlap)
            for x in axis_starts(w, tile_w, overlap)]


def _ramp(n: int, start_ramp: bool, end_ramp: bool, margin: float, width: float) -> np.ndarray:
    """1-D weights: 0 within *margin* of a ramped end, then linear up to 1 over *width*."""
    dist = np.arange(n, dtype=np.float64) + 0.5  # distance of each pixel centre from the start
    w = np.ones(n)
    if width > 0:
        if start_ramp:
            w = np.minimum(w, np.clip((dist - margin) / width, 0.0, 1.0))
        if end_ramp:
            w = np.minimum(w, np.clip((n - dist - margin) / width, 0.0, 1.0))
    return w


def blend_weights(tile: Tile, h: int, w: int, scale: int, overlap: int) -> np.ndarray:
    """Output-space weight map ``(tile.h·s, tile.w·s)`` of one tile in an ``h×w`` LR image."""
    s = scale
    margin, width = overlap * s / 2, overlap * s
    wy = _ramp(tile.h * s, tile.y > 0, tile.y + tile.h < h, margin, width)
    wx = _ramp(tile.w * s, tile.x > 0, tile.x + tile.w < w, margin, width)
    return np.outer(wy, wx)


def upscale_tiled(run: Callable[[np.ndarray], np.ndarray], img: np.ndarray, scale: int,
                  tile: tuple[int, int], overlap: int, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Upscale an ``H×W×3`` float image with *run* (``1×th×tw×3 → 1×th·s×tw·s×3``) tile by tile."""
    h, w = img.shape[:2]
    th, tw = tile
    ph, pw = max(h, th), max(w, tw)
    if (ph, pw) != (h, w):  # smaller than one tile: reflect-pad (symmetric) and crop afterwards
        img = np.pad(img, ((0, ph - h), (0, pw - w), (0, 0)), mode="symmetric")
    s = scale
    # float32 sums: at most four weighted terms meet in a pixel, so float64 would only double the
    # memory of the largest buffer (a 16 MP input at x2: 0.8 GB instead of 1.6 GB)
    acc = np.zeros((ph * s, pw * s, img.shape[2]), np.float32)
    wsum = np.zeros((ph * s, pw * s, 1), np.float32)
    for t in plan_tiles(ph, pw, th, tw, overlap):
        out = run(np.ascontiguousarray(img[None, t.y:t.y + th, t.x:t.x + tw]))[0]
        wt = blend_weights(t, ph, pw, s, overlap)[..., None].astype(np.float32)
        acc[t.y * s:(t.y + th) * s, t.x * s:(t.x + tw) * s] += out * wt
        wsum[t.y * s:(t.y + th) * s, t.x * s:(t.x + tw) * s] += wt
        if progress:
            progress(1)
    acc = acc[: h * s, : w * s]
    acc /= wsum[: h * s, : w * s]
    return acc


#: (h, w, tile_h, tile_w, overlap, scale) cases the Android tiler is checked against
GOLDEN_CASES = [(720, 480, 720, 480, 8, 2), (1080, 1920, 720, 480, 8, 2), (130, 77, 64, 64, 8, 2),
                (301, 517, 96, 128, 12, 4), (50, 40, 64, 64, 8, 3), (257, 1000, 120, 160, 16, 2)]


def golden_text(cases=GOLDEN_CASES) -> str:
    """Tile rectangles and blend weights as plain text lines (readable by a JVM test without a
    JSON library): ``case h w th tw overlap scale`` then per tile ``tile y x h w``, ``rows ...``,
    ``cols ...`` (the separable weights; a tile's weight map is their outer product)."""
    lines = ["# srdeploy tiler golden file: written by srdeploy.tiling.golden_text; do not edit"]
    for h, w, th, tw, ov, s in cases:
        ph, pw = max(h, th), max(w, tw)  # images smaller than a tile are padded up to it
        lines.append(f"case {h} {w} {th} {tw} {ov} {s}")
        for t in plan_tiles(ph, pw, th, tw, ov):
            wy = _ramp(t.h * s, t.y > 0, t.y + t.h < ph, ov * s / 2, ov * s)
            wx = _ramp(t.w * s, t.x > 0, t.x + t.w < pw, ov * s / 2, ov * s)
            lines.append(f"tile {t.y} {t.x} {t.h} {t.w}")
            lines.append("rows " + " ".join(repr(float(v)) for v in wy))
            lines.append("cols " + " ".join(repr(float(v)) for v in wx))
    return "\n".join(lines) + "\n"
