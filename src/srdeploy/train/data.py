"""Random LR/HR training patches made from HR images with the papers' degradation.

Every HR image is mod-cropped and downscaled once with the MATLAB-compatible bicubic (the
degradation the evaluation uses), then each step draws aligned LR/HR patch pairs with random
flips and 90° rotations. The random stream of step *k* is derived from ``(seed, k)`` only, so a
resumed run draws exactly the batches an uninterrupted run would have drawn.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import SrDeployError
from ..imaging import IMAGE_SUFFIXES, read_rgb
from ..resize import bicubic_degrade, modcrop

__all__ = ["PatchSampler", "step_rng"]


def step_rng(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    """The random generator of one training step (independent of any earlier step)."""
    return np.random.default_rng([seed, step, stream])


@dataclass
class PatchSampler:
    folders: list[Path]
    scale: int
    patch: int  # LR patch side
    images: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (lr, hr) uint8
    names: list[str] = field(default_factory=list)
    skipped_non_images: int = 0
    unreadable: list[str] = field(default_factory=list)
    too_small: list[str] = field(default_factory=list)

    @classmethod
    def from_folders(cls, folders, scale: int, patch: int, progress: bool = False) -> "PatchSampler":
        if patch < 4:
            raise SrDeployError(f"--patch must be at least 4 LR pixels, got {patch}")
        sampler = cls([Path(f) for f in folders], scale, patch)
        files: list[Path] = []
        for folder in sampler.folders:
            if not folder.is_dir():
                raise SrDeployError(f"training data folder not found: {folder}")
            entries = sorted(p for p in folder.rglob("*") if p.is_file())
            files += [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
            sampler.skipped_non_images += sum(p.suffix.lower() not in IMAGE_SUFFIXES for p in entries)
        from ..progress import bar as progress_bar

        for p in progress_bar(files, desc="training images", unit="img", enabled=progress, leave=False):
            try:
                hr = read_rgb(p)
            except SrDeployError:
                sampler.unreadable.append(p.name)
                continue
            if min(hr.shape[:2]) < patch * scale:
                sampler.too_small.append(p.name)
                continue
            hr = modcrop(hr, scale)  # keep the HR that bicubic_degrade's LR belongs to
            sampler.images.append((bicubic_degrade(hr, scale), hr))
            sampler.names.append(p.name)
        where = ", ".join(str(f) for f in sampler.folders)
        if not sampler.images:
            if sampler.too_small:
                raise SrDeployError(
                    f"every image in {where} is smaller than the HR patch ({patch * scale} px = --patch {patch} x "
                    f"scale {scale}); use a smaller --patch")
            raise SrDeployError(f"no usable images in {where} ({len(files)} image files, {len(sampler.unreadable)} "
                                f"unreadable, {sampler.skipped_non_images} non-image files skipped)")
        return sampler

    def describe(self) -> dict:
        return {"folders": [str(f) for f in self.folders], "images": len(self.images),
                "skipped_non_images": self.skipped_non_images, "unreadable": self.unreadable,
                "smaller_than_patch": self.too_small}

    def batch(self, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` aligned pairs: LR ``(n,3,P,P)`` and HR ``(n,3,sP,sP)``, float32 in [0, 1]."""
        p, s = self.patch, self.scale
        lrs = np.empty((n, p, p, 3), np.uint8)
        hrs = np.empty((n, p * s, p * s, 3), np.uint8)
        for i in range(n):
            lr, hr = self.images[int(rng.integers(len(self.images)))]
            y = int(rng.integers(lr.shape[0] - p + 1))
            x = int(rng.integers(lr.shape[1] - p + 1))
            a, b = lr[y:y + p, x:x + p], hr[y * s:(y + p) * s, x * s:(x + p) * s]
            k, flip = int(rng.integers(4)), bool(rng.integers(2))
            a, b = np.rot90(a, k), np.rot90(b, k)
            if flip:
                a, b = a[:, ::-1], b[:, ::-1]
            lrs[i], hrs[i] = a, b

        def to_tensor(arr: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0).contiguous()

        return to_tensor(lrs), to_tensor(hrs)
