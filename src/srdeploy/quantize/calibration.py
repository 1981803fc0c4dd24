"""Calibration frames for INT8: what the model sees at run time, from a folder of HR images.

HR images (DIV2K by default) are downscaled by the model's scale with the MATLAB-compatible
bicubic — the degradation the networks were trained on — and random crops of the export input
size are taken (deterministic with ``seed``). A downscaled image smaller than the crop is
mirror-padded up to it. Values are plain RGB in [0, 1]: no mean/std normalisation (onnx2tf's
calibration defaults to ImageNet mean/std, which is wrong for SR inputs). ``held_out`` more crops
(seed + 1) of the same images serve to judge quantization choices without evaluation images.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SrDeployError
from ..imaging import IMAGE_SUFFIXES, files_under, read_rgb
from ..resize import bicubic_degrade
from ..sample_images import random_crop

__all__ = ["CalibrationSet", "calibration_frames"]


class CalibrationSet:
    def __init__(self, frames: np.ndarray, files: list[str], skipped: list[str], unreadable: list[str],
                 held_out: np.ndarray | None = None, images: list[np.ndarray] | None = None) -> None:
        self.frames, self.files, self.skipped, self.unreadable = frames, files, skipped, unreadable
        #: other crops of the same images (seed + 1), for judging choices without evaluation images
        self.held_out = held_out
        #: the whole downscaled (LR, uint8) images the crops come from: QAT's training patches
        self.images = images or []

    def describe(self) -> dict:
        return {"frames": int(self.frames.shape[0]), "crop": list(self.frames.shape[1:3]), "images": self.files,
                "skipped_non_images": len(self.skipped), "unreadable_images": self.unreadable}


def calibration_frames(folder: str | Path, scale: int, size: tuple[int, int], n: int = 16, seed: int = 0,
                       progress: bool = False, held_out: int = 0) -> CalibrationSet:
    folder = Path(folder)
    if not folder.is_dir():
        raise SrDeployError(f"calibration folder not found: {folder}")
    entries = files_under(folder)
    if not entries:
        raise SrDeployError(f"calibration folder {folder} is empty")
    images = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
    skipped = [p.name for p in entries if p.suffix.lower() not in IMAGE_SUFFIXES]
    if n < 1:
        raise SrDeployError("--calib-samples must be >= 1")
    h, w = size
    lrs, names, unreadable = [], [], []
    from ..progress import bar as progress_bar

    for p in progress_bar(images, desc="calibration images", unit="img", enabled=progress, leave=False):
        try:
            hr = read_rgb(p)
        except SrDeployError:
            unreadable.append(p.name)
            continue
        if hr.shape[0] < scale or hr.shape[1] < scale:
            unreadable.append(f"{p.name} (smaller than the scale)")
            continue
        lrs.append(bicubic_degrade(hr, scale) if scale > 1 else hr)
        names.append(p.name)
    if not lrs:
        raise SrDeployError(f"no readable images in {folder} ({len(skipped)} non-image files skipped, "
                            f"{len(unreadable)} unreadable)")

    def crops(count: int, crop_seed: int) -> np.ndarray:
        rng = np.random.default_rng(crop_seed)
        out = np.empty((count, h, w, 3), np.float32)
        for i in range(count):
            out[i] = random_crop(lrs[i % len(lrs)], h, w, rng).astype(np.float32) / 255.0
        return out

    return CalibrationSet(crops(n, seed), names, skipped, unreadable, crops(held_out, seed + 1) if held_out else None,
                          images=lrs)
