"""LR/HR training pairs decoded and degraded once, kept in a cache folder and memory-mapped.

Why by hand: no library caches "decode an image, mod-crop, MATLAB-bicubic degrade" keyed by the
file's content, and the degradation is the costly part (float64 antialiased bicubic: ~0.1 s per
BSD200 image here), so 400 images would otherwise cost a minute at every start.

An entry is keyed by the sha256 of the file's bytes, the scale and the degradation's version, so
an edited file (same name, other bytes) simply maps to another entry: a changed file is never
served from a stale one. Each entry is a folder ``<key>/`` holding ``lr.npy``, ``hr.npy`` (uint8,
read with ``mmap_mode="r"`` and no pickles) and ``meta.json`` (the decoded image's pixel hash and
shapes); it is written under a temporary name and renamed whole. An entry that does not parse, or
whose arrays disagree with its meta, is rebuilt, never trusted.

Targets enhanced by a teacher (DIPNet's model-guided ground-truth enhancement) are cached the
same way beside the pair, keyed by the teacher's identity as well.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import SrDeployError
from ..fsutil import sha256_file
from ..imaging import IMAGE_SUFFIXES, files_under, read_rgb
from ..resize import bicubic_degrade, modcrop

__all__ = ["PairCache", "pixel_sha256", "evaluation_hashes", "DEGRADATION"]

#: bump when the degradation (or the cache layout) changes: older entries are then never read
DEGRADATION = "matlab-bicubic-modcrop-v1"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def pixel_sha256(img: np.ndarray) -> str:
    """Hash of a decoded image's pixels and shape: equal for a lossless re-encode (PNG ↔ BMP)."""
    h = hashlib.sha256(repr(tuple(img.shape)).encode())
    h.update(np.ascontiguousarray(img, np.uint8).tobytes())
    return h.hexdigest()


def evaluation_hashes(folders) -> dict[str, str]:
    """``pixel hash → "folder/name"`` of every image under the evaluation folders (HR and LR)."""
    out: dict[str, str] = {}
    for folder in folders:
        root = Path(folder)
        if not root.is_dir():
            continue
        for p in files_under(root):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                try:
                    out[pixel_sha256(read_rgb(p))] = f"{root.name}/{p.relative_to(root)}"
                except SrDeployError:
                    continue  # an unreadable evaluation file cannot be trained on either
    return out


@dataclass
class Pair:
    lr: np.ndarray
    hr: np.ndarray  # the training target: the HR, or its teacher-enhanced version
    pixel_sha256: str
    cached: bool  # served from the cache (no decode, no degradation)


class PairCache:
    """``root=None``: no cache folder, every pair computed in memory (``--no-cache``)."""

    def __init__(self, root: str | os.PathLike | None) -> None:
        self.root = Path(root) / DEGRADATION if root is not None else None
        self.rebuilt = 0

    def _entry(self, key: str) -> Path | None:
        return self.root / key[:2] / key if self.root is not None else None

    # -- reading ----------------------------------------------------------------------------------
    def _load(self, entry: Path, names: tuple[str, ...]) -> tuple[dict, list[np.ndarray]] | None:
        try:
            meta = json.loads((entry / "meta.json").read_text())
            arrays = [np.load(entry / f"{n}.npy", mmap_mode="r", allow_pickle=False) for n in names]
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        if not isinstance(meta, dict) or not isinstance(meta.get("pixel_sha256"), str) \
                or not _HEX64.fullmatch(meta["pixel_sha256"]):
            return None
        for n, a in zip(names, arrays):
            if a.dtype != np.uint8 or list(a.shape) != meta.get(f"{n}_shape"):
                return None
        return meta, arrays

    def _store(self, entry: Path | None, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        if entry is None:
            return
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.parent / f".{entry.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for n, a in arrays.items():
            np.save(tmp / f"{n}.npy", np.ascontiguousarray(a), allow_pickle=False)
            meta[f"{n}_shape"] = list(a.shape)
        (tmp / "meta.json").write_text(json.dumps(meta))
        if entry.exists():  # a broken entry being rebuilt, or another process won the race
            shutil.rmtree(entry, ignore_errors=True)
        try:
            os.rename(tmp, entry)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- the pair of one file ---------------------------------------------------------------------
    def pair(self, path: Path, scale: int, min_hr_side: int,
             enhance: tuple[str, Callable[[np.ndarray], np.ndarray]] | None = None) -> Pair | None:
        """The (LR, target) pair of *path*; None when the image is smaller than *min_hr_side*.

        Raises SrDeployError for a file that is not a readable image."""
        digest = sha256_file(path) if self.root is not None else ""
        key = hashlib.sha256(f"{digest}|x{scale}|{DEGRADATION}".encode()).hexdigest()
        got = self._load(self._entry(key), ("lr", "hr")) if self.root is not None else None
        cached = got is not None
        if got is None:
            if self.root is not None and self._entry(key).exists():
                self.rebuilt += 1
            img = read_rgb(path)
            hr = modcrop(img, scale)  # keep the HR that bicubic_degrade's LR belongs to
            meta = {"pixel_sha256": pixel_sha256(img), "source": path.name, "scale": scale}
            lr = bicubic_degrade(hr, scale) if min(img.shape[:2]) >= scale else np.zeros((0, 0, 3), np.uint8)
            self._store(self._entry(key), meta, {"lr": lr, "hr": hr})
        else:
            meta, (lr, hr) = got
        if min(hr.shape[:2]) < min_hr_side:
            return Pair(lr, hr, meta["pixel_sha256"], cached)
        if enhance is not None:
            tag, fn = enhance
            ekey = hashlib.sha256(f"{key}|enhanced|{tag}".encode()).hexdigest()
            got_e = self._load(self._entry(ekey), ("ehr",)) if self.root is not None else None
            if got_e is None or list(got_e[1][0].shape) != list(hr.shape):
                ehr = fn(np.asarray(hr))
                if ehr.shape != hr.shape or ehr.dtype != np.uint8:
                    raise SrDeployError(f"ground-truth enhancement of {path.name} returned {ehr.shape} {ehr.dtype}, "
                                        f"expected {hr.shape} uint8")
                self._store(self._entry(ekey), {"pixel_sha256": meta["pixel_sha256"], "enhanced_by": tag},
                            {"ehr": ehr})
                cached = False
            else:
                ehr = got_e[1][0]
            hr = ehr
        return Pair(lr, hr, meta["pixel_sha256"], cached)
