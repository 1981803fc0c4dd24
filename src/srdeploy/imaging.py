"""Image I/O and the papers' quality metrics (PSNR on BT.601 Y, border crop, uint8 outputs)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import SrDeployError

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


#: default limit on the pixels of one decoded image (4096×4096 = 16.8 MP): a 389 KB PNG can claim
#: 20000×20000 and decode into gigabytes. ``SRDEPLOY_MAX_PIXELS`` or a tool's ``--max-pixels`` raises it.
DEFAULT_MAX_PIXELS = 1 << 24
_max_pixels: int | None = None


def max_pixels() -> int:
    if _max_pixels is not None:
        return _max_pixels
    try:
        return max(1, int(os.environ.get("SRDEPLOY_MAX_PIXELS", DEFAULT_MAX_PIXELS)))
    except ValueError:
        return DEFAULT_MAX_PIXELS


def set_max_pixels(n: int | None) -> None:
    """Set the decoded-pixel limit for this process (``None``: back to the default/environment)."""
    global _max_pixels
    if n is not None and n < 1:
        raise SrDeployError(f"--max-pixels must be >= 1, got {n}")
    _max_pixels = n


def _check_pixels(path, h: int, w: int) -> None:
    limit = max_pixels()
    if h * w > limit:
        raise SrDeployError(f"{Path(path).name} is {w}x{h} = {h * w / 1e6:.1f} MP, above the limit of "
                            f"{limit / 1e6:.1f} MP (raise it with --max-pixels or SRDEPLOY_MAX_PIXELS)")


def _header_size(path) -> tuple[int, int] | None:
    """``(h, w)`` from the file's header without decoding the pixels (Pillow reads headers lazily);
    None for a format Pillow does not know (OpenCV's own pixel limit still applies then)."""
    try:
        import warnings

        from PIL import Image

        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # srdeploy's own limit decides
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(path) as im:
                    w, h = im.size
        finally:
            Image.MAX_IMAGE_PIXELS = limit
        return h, w
    except Exception:
        return None


def _to_uint8(img: np.ndarray, path) -> np.ndarray:
    """8-bit as is; 16-bit by its range (/257); float by its range when it lies in [0, 1]."""
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return (img / 257.0).round().astype(np.uint8)
    if img.dtype in (np.float32, np.float64, np.float16):
        lo, hi = (float(np.nanmin(img)), float(np.nanmax(img))) if img.size else (0.0, 0.0)
        if not np.isfinite(img).all() or lo < -1e-6 or hi > 1 + 1e-6:
            raise SrDeployError(f"{Path(path).name}: floating-point image with values outside [0, 1] "
                                f"(min {lo:g}, max {hi:g}); save it as an 8- or 16-bit image")
        return np.clip(np.round(img.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    raise SrDeployError(f"{Path(path).name}: {img.dtype} pixels are not supported (8-bit, 16-bit or float in [0, 1])")


def read_image(path: str | Path) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """``(rgb uint8 HxWx3, alpha uint8 HxW or None, was_grayscale)`` — for tools that write images back.

    Refused with a one-line error: unreadable files, images above :func:`max_pixels` (checked from
    the header before decoding), pixel types other than 8/16-bit integer or float in [0, 1]."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise SrDeployError(f"cannot read image {path}")
    hw = _header_size(path)
    if hw is not None:
        _check_pixels(path, *hw)
    data = np.fromfile(str(path), dtype=np.uint8)
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except cv2.error:
        img = None
    if img is None:
        raise SrDeployError(f"cannot read image {path}")
    _check_pixels(path, img.shape[0], img.shape[1])
    img = _to_uint8(img, path)
    alpha = None
    gray = img.ndim == 2 or img.shape[2] == 1
    if gray:
        img = img.reshape(img.shape[0], img.shape[1])
        rgb = np.repeat(img[:, :, None], 3, axis=2)
    elif img.shape[2] == 4:
        alpha = np.ascontiguousarray(img[:, :, 3])
        rgb = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    elif img.shape[2] == 3:
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    else:
        raise SrDeployError(f"{path.name}: {img.shape[2]}-channel images are not supported")
    return np.ascontiguousarray(rgb.astype(np.uint8)), alpha, gray


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image as HxWx3 uint8 RGB (grayscale is repeated to three channels, alpha dropped)."""
    return read_image(path)[0]


def write_image(path: str | Path, rgb: np.ndarray, alpha: np.ndarray | None = None, gray: bool = False) -> None:
    """Write uint8 RGB (optionally with alpha, or as single-channel grey) atomically (temp name, rename)."""
    import os
    import tempfile

    import cv2

    path = Path(path)
    if gray:
        out = np.round(rgb.astype(np.float32).mean(axis=2)).astype(np.uint8)
    elif alpha is not None:
        out = cv2.cvtColor(np.dstack([rgb, alpha]), cv2.COLOR_RGBA2BGRA)
    else:
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(path.suffix or ".png", out)
    if not ok:
        raise SrDeployError(f"cannot encode {path.name} (unsupported extension {path.suffix!r}?)")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(buf.tobytes())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def files_under(folder: str | Path) -> list[Path]:
    """Every file under ``folder``, sorted, with linked sub-folders followed.

    A folder of links to dataset folders is how people assemble a calibration or training set, and
    ``Path.rglob`` does not descend into linked folders before Python 3.13 (such a folder looked empty).
    os.walk follows them; each real folder is walked once, so a link loop ends.
    """
    seen: set[str] = set()
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        out += [Path(dirpath, f) for f in filenames if os.path.isfile(os.path.join(dirpath, f))]
    return sorted(out)


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


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two 2-D images on 0..255 as in Wang et al. (11×11 Gaussian, σ = 1.5, K1 = 0.01,
    K2 = 0.03, statistics over the 'valid' region) — what the SR papers report."""
    import cv2

    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    k = cv2.getGaussianKernel(11, 1.5)
    win = k @ k.T

    def filt(x):
        return cv2.filter2D(x, -1, win, borderType=cv2.BORDER_REFLECT)[5:-5, 5:-5]

    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))


def ssim_y(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    """SSIM on the Y channel of two uint8 RGB images, *border* pixels cropped on each side."""
    if sr.shape != hr.shape:
        raise SrDeployError(f"SSIM needs equal shapes, got {sr.shape} and {hr.shape}")
    return ssim(crop_border(rgb_to_y(sr), border), crop_border(rgb_to_y(hr), border))


def psnr01(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two float images in [0, 1] units, both clipped to [0, 1] first (peak 1)."""
    return psnr(np.clip(a, 0, 1), np.clip(b, 0, 1), peak=1.0)


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    """PSNR on the Y channel of two uint8 RGB images, *border* pixels cropped on each side."""
    if sr.shape != hr.shape:
        raise SrDeployError(f"PSNR needs equal shapes, got {sr.shape} and {hr.shape}")
    return psnr(crop_border(rgb_to_y(sr), border), crop_border(rgb_to_y(hr), border))
