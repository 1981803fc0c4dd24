"""Random LR/HR training patches made from HR images with the papers' degradation.

Every HR image is mod-cropped and downscaled once with the MATLAB-compatible bicubic (the
degradation the evaluation uses) — through the pair cache of pairs.py, so a second run decodes
nothing —, then each step draws aligned LR/HR patch pairs with random
flips and 90° rotations. The random stream of step *k* is derived from ``(seed, k)`` only, so a
resumed run draws exactly the batches an uninterrupted run would have drawn.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import SrDeployError
from ..imaging import IMAGE_SUFFIXES, files_under

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
    folder_of: list[int] = field(default_factory=list)  # index into folders, per image
    # None: every image equally likely (the sampling of runs made before per-folder weights);
    # otherwise the probability of each folder, an image drawn uniformly within it
    folder_weights: list[float] | None = None
    skipped_non_images: int = 0
    unreadable: list[str] = field(default_factory=list)
    too_small: list[str] = field(default_factory=list)
    cache_hits: int = 0
    cache_misses: int = 0
    seconds_loading: float = 0.0
    cache: str | None = None
    _groups: list = field(default_factory=list, repr=False)

    @classmethod
    def from_folders(cls, folders, scale: int, patch: int, progress: bool = False, weights=None,
                     cache: str | os.PathLike | None = None, forbidden: dict[str, str] | None = None,
                     enhance=None) -> "PatchSampler":
        """Load every image of *folders* as an (LR, target) pair.

        weights: one relative weight per folder (sampling by folder), or None (by image).
        cache: a pair-cache folder (see pairs.py), or None to compute every pair in memory.
        forbidden: pixel hashes of evaluation images (``evaluation_hashes``): a training image
        with the same pixels is refused. enhance: ``(tag, fn)`` replacing each HR target by
        ``fn(hr)`` (the teacher-enhanced ground truth), cached under *tag*.
        """
        import time

        from ..progress import bar as progress_bar
        from .pairs import PairCache

        if patch < 4:
            raise SrDeployError(f"--patch must be at least 4 LR pixels, got {patch}")
        sampler = cls([Path(f) for f in folders], scale, patch, cache=str(cache) if cache is not None else None)
        if weights is not None:
            if len(weights) != len(sampler.folders):
                raise SrDeployError(f"--data-weights has {len(weights)} values for {len(sampler.folders)} --data folders")
            if any(not np.isfinite(w) or w <= 0 for w in weights):
                raise SrDeployError(f"--data-weights must be positive numbers, got {list(weights)}")
        files: list[tuple[int, Path]] = []
        for k, folder in enumerate(sampler.folders):
            if not folder.is_dir():
                raise SrDeployError(f"training data folder not found: {folder}")
            entries = files_under(folder)
            files += [(k, p) for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
            sampler.skipped_non_images += sum(p.suffix.lower() not in IMAGE_SUFFIXES for p in entries)
        store = PairCache(cache)
        t0 = time.perf_counter()
        for k, p in progress_bar(files, desc="training images", unit="img", enabled=progress, leave=False):
            try:
                pair = store.pair(p, scale, patch * scale, enhance)
            except SrDeployError:
                sampler.unreadable.append(p.name)
                continue
            if forbidden and pair.pixel_sha256 in forbidden:
                raise SrDeployError(f"training image {p} has the same pixels as the evaluation image "
                                    f"{forbidden[pair.pixel_sha256]}: remove it from the training data")
            if min(pair.hr.shape[:2]) < patch * scale:
                sampler.too_small.append(p.name)
                continue
            sampler.cache_hits += pair.cached
            sampler.cache_misses += not pair.cached
            sampler.images.append((pair.lr, pair.hr))
            sampler.names.append(p.name)
            sampler.folder_of.append(k)
        sampler.seconds_loading = round(time.perf_counter() - t0, 2)
        where = ", ".join(str(f) for f in sampler.folders)
        if not sampler.images:
            if sampler.too_small:
                raise SrDeployError(
                    f"every image in {where} is smaller than the HR patch ({patch * scale} px = --patch {patch} x "
                    f"scale {scale}); use a smaller --patch")
            raise SrDeployError(f"no usable images in {where} ({len(files)} image files, {len(sampler.unreadable)} "
                                f"unreadable, {sampler.skipped_non_images} non-image files skipped)")
        if weights is not None:
            empty = [str(f) for k, f in enumerate(sampler.folders) if k not in set(sampler.folder_of)]
            if empty:
                raise SrDeployError(f"--data-weights gives weight to {', '.join(empty)}, which has no usable image")
            total = float(sum(weights))
            sampler.folder_weights = [float(w) / total for w in weights]
        sampler._groups = [np.flatnonzero(np.asarray(sampler.folder_of) == k) for k in range(len(sampler.folders))]
        return sampler

    def describe(self) -> dict:
        counts = [self.folder_of.count(k) for k in range(len(self.folders))]
        return {"folders": [str(f) for f in self.folders], "images": len(self.images),
                "images_per_folder": counts,
                "sampling": "by image" if self.folder_weights is None else "by folder",
                **({"folder_weights": [round(w, 6) for w in self.folder_weights]} if self.folder_weights else {}),
                "pair_cache": self.cache, "cache_hits": self.cache_hits, "cache_misses": self.cache_misses,
                "seconds_loading": self.seconds_loading,
                "skipped_non_images": self.skipped_non_images, "unreadable": self.unreadable,
                "smaller_than_patch": self.too_small}

    def _draw(self, rng: np.random.Generator) -> int:
        if self.folder_weights is None:
            return int(rng.integers(len(self.images)))
        group = self._groups[int(rng.choice(len(self._groups), p=self.folder_weights))]
        return int(group[int(rng.integers(len(group)))])

    def batch(self, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` aligned pairs: LR ``(n,3,P,P)`` and HR ``(n,3,sP,sP)``, float32 in [0, 1]."""
        p, s = self.patch, self.scale
        lrs = np.empty((n, p, p, 3), np.uint8)
        hrs = np.empty((n, p * s, p * s, 3), np.uint8)
        for i in range(n):
            lr, hr = self.images[self._draw(rng)]
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
