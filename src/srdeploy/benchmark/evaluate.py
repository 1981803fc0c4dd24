"""Quality evaluation the way the papers do it: PSNR-Y / SSIM-Y, border = scale, MATLAB bicubic LR."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import SrDeployError
from ..imaging import IMAGE_SUFFIXES, psnr_y, read_rgb, ssim_y, to_uint8
from ..resize import bicubic_degrade, modcrop

__all__ = ["Dataset", "ImageResult", "DatasetResult", "find_dataset", "evaluate_dataset", "make_predictor"]


@dataclass
class Dataset:
    name: str
    hr_files: list[Path]
    lr_dir: Path | None  # official LR (``LR_bicubic/X{s}``) when present
    skipped: list[str] = field(default_factory=list)  # non-image files


@dataclass
class ImageResult:
    name: str
    psnr_y: float | None = None
    ssim_y: float | None = None
    lr_source: str = ""
    error: str | None = None


@dataclass
class DatasetResult:
    dataset: str
    images: int
    psnr_y: float | None
    ssim_y: float | None
    seconds: float
    per_image: list[ImageResult]
    skipped: list[str]

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "psnr_y": self.psnr_y, "ssim_y": self.ssim_y, "images": self.images,
                "seconds": round(self.seconds, 2), "skipped_files": self.skipped,
                "per_image": [vars(r) for r in self.per_image]}


def find_dataset(folder: str | Path, scale: int) -> Dataset:
    """A folder of HR images, or one with ``HR/`` and optionally ``LR_bicubic/X{scale}/``."""
    d = Path(folder)
    if not d.is_dir():
        raise SrDeployError(f"data folder not found: {d}")
    if (d / "HR").is_dir():
        name, hr_dir, root = d.name, d / "HR", d
    elif d.name == "HR":
        name, hr_dir, root = d.parent.resolve().name, d, d.parent
    else:
        name, hr_dir, root = d.name, d, None
    lr_dir = root / "LR_bicubic" / f"X{scale}" if root is not None else None
    files = sorted(p for p in hr_dir.iterdir() if p.is_file())
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    skipped = [p.name for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    if not images:
        raise SrDeployError(f"no images in {hr_dir}")
    return Dataset(name, images, lr_dir if lr_dir is not None and lr_dir.is_dir() else None, skipped)


def _official_lr(ds: Dataset, hr: Path, scale: int) -> Path | None:
    if ds.lr_dir is None:
        return None
    for cand in ds.lr_dir.glob(f"{hr.stem}x{scale}.*"):
        if cand.suffix.lower() in IMAGE_SUFFIXES:
            return cand
    return None


def load_pair(ds: Dataset, path: Path, scale: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``(LR, HR, where the LR came from)`` for one HR image of *ds*: HR cropped to a multiple of *scale*,
    the dataset's official LR where it has one, else MATLAB-compatible bicubic of the HR."""
    hr = modcrop(read_rgb(path), scale)
    if hr.shape[0] < scale or hr.shape[1] < scale or hr.shape[0] == 0:
        raise SrDeployError(f"HR image {path.name} is smaller than the scale {scale}")
    lr_path = _official_lr(ds, path, scale)
    if lr_path is None:
        return bicubic_degrade(hr, scale), hr, "bicubic (MATLAB-compatible)"
    lr = read_rgb(lr_path)
    if lr.shape[0] * scale != hr.shape[0] or lr.shape[1] * scale != hr.shape[1]:
        raise SrDeployError(f"{lr_path.name} is not HR/{scale} of {path.name}")
    return lr, hr, f"official {lr_path.name}"


def evaluate_dataset(predict: Callable[[np.ndarray], np.ndarray], ds: Dataset, scale: int,
                     progress: Callable[[], None] | None = None) -> DatasetResult:
    """*predict*: uint8 RGB LR → float [0, 1] RGB SR of ``scale×`` the size."""
    t0 = time.perf_counter()
    results = []
    for path in ds.hr_files:
        res = ImageResult(path.name)
        try:
            lr, hr, res.lr_source = load_pair(ds, path, scale)
            sr = to_uint8(predict(lr))
            if sr.shape != hr.shape:
                raise SrDeployError(f"model output {sr.shape[:2]} != HR {hr.shape[:2]} for {path.name}")
            res.psnr_y, res.ssim_y = psnr_y(sr, hr, scale), ssim_y(sr, hr, scale)
        except SrDeployError as exc:
            res.error = str(exc)
        results.append(res)
        if progress:
            progress()
    ok = [r for r in results if r.error is None]
    return DatasetResult(
        ds.name, len(ok),
        float(np.mean([r.psnr_y for r in ok])) if ok else None,
        float(np.mean([r.ssim_y for r in ok])) if ok else None,
        time.perf_counter() - t0, results, ds.skipped)


#: with ``auto_tile``, PyTorch runs images above this many LR pixels in tiles of AUTO_TILE (a whole
#: 4096x4096 frame through a 64-channel network would need tens of GB)
AUTO_TILE_PIXELS = 1 << 20
AUTO_TILE = (512, 512)


def make_predictor(model_name: str | None, scale: int, artifact: str | None = None, weights: str | None = None,
                   tile: tuple[int, int] | None = None, overlap: int = 8, threads: int | None = None,
                   auto_tile: bool = False):
    """Return ``(predict, description)``: PyTorch by name (whole image, or tiled when *tile*; with
    *auto_tile*, images above AUTO_TILE_PIXELS are tiled too), or an exported artifact run tile by
    tile at its fixed input size."""
    if overlap < 0:
        raise SrDeployError(f"--overlap must be >= 0, got {overlap}")
    from ..models import create_model, get_spec
    from ..runtime import TorchRunner, open_artifact
    from ..tiling import upscale_tiled

    if artifact:
        runner = open_artifact(artifact, threads)
        n, h, w, c = runner.input_shape
        probe = runner(np.zeros((1, h, w, 3), np.float32))
        art_scale = probe.shape[1] // h
        if probe.shape[1] != h * art_scale or probe.shape[2] != w * art_scale or art_scale != scale:
            raise SrDeployError(f"{Path(artifact).name} upscales x{probe.shape[1] / h:g} "
                                f"but --scale is {scale}")
        tile = tile or (h, w)
        if tile != (h, w):
            raise SrDeployError(f"{Path(artifact).name} has a fixed {h}x{w} input; --tile must be {h}x{w}")
        if 2 * overlap >= min(h, w):
            raise SrDeployError(f"--overlap {overlap} is too large for the {h}x{w} tiles of {Path(artifact).name} "
                                f"(must be below {min(h, w) / 2:g})")

        def predict(lr: np.ndarray) -> np.ndarray:
            return upscale_tiled(runner, lr.astype(np.float32) / 255.0, scale, tile, overlap)

        from ..export.bundle import artifact_source, describe_source

        source, warning = artifact_source(artifact)
        if warning:
            import sys

            print(f"warning: {warning}", file=sys.stderr)
        origin = f"; {describe_source(source)}" if source else ""
        return predict, f"{Path(artifact).name} ({runner.kind}, tiles {h}x{w}, overlap {overlap}{origin})"
    spec = get_spec(model_name)
    if spec.scales == (1,):
        raise SrDeployError(f"{spec.name} maps a bicubic-upscaled image to one of the same size; "
                            "sr-eval evaluates x2/x3/x4 super-resolution models")
    runner = TorchRunner(create_model(spec.name, scale, weights=weights))
    k = max(spec.size_multiple, 1)
    if tile and (tile[0] % k or tile[1] % k):
        raise SrDeployError(f"{spec.name} needs tile sides divisible by {k}")
    if tile and 2 * overlap >= min(tile):
        raise SrDeployError(f"--tile {tile[0]}x{tile[1]} is too small for --overlap {overlap}")
    if tile and tile[0] * tile[1] > 2 * AUTO_TILE_PIXELS:
        raise SrDeployError(f"--tile {tile[0]}x{tile[1]} is above {2 * AUTO_TILE_PIXELS / 1e6:.1f} MP: a PyTorch tile "
                            "that large takes many GB (e.g. --tile 1024x1024)")

    def predict(lr: np.ndarray) -> np.ndarray:
        x = lr.astype(np.float32) / 255.0
        if tile:
            return upscale_tiled(runner, x, scale, tile, overlap)
        if auto_tile and x.shape[0] * x.shape[1] > AUTO_TILE_PIXELS:
            return upscale_tiled(runner, x, scale, AUTO_TILE, max(overlap, 8))
        h, w = x.shape[:2]
        ph, pw = -h % k, -w % k  # e.g. IMDN_RTE's stride-2 head: pad symmetric, crop the output
        if ph or pw:
            x = np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="symmetric")
        return runner(x[None])[0][: h * scale, : w * scale]

    how = (f"tiles {tile[0]}x{tile[1]}, overlap {overlap}" if tile else
           f"whole image; above {AUTO_TILE_PIXELS / 1e6:.1f} MP in {AUTO_TILE[0]}x{AUTO_TILE[1]} tiles" if auto_tile
           else "whole image")
    return predict, f"{spec.name} x{scale} (PyTorch, {how})"
