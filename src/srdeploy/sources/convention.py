"""I/O conventions of a user's model, and the exact conversion to srdeploy's.

Every artifact srdeploy writes speaks one convention — NCHW (ONNX) / NHWC (TFLite) RGB, float in
[0, 1] (or ``--io uint8`` bytes) — whatever its source speaks. A source's convention is a value
range (1: [0, 1]; 255: [0, 255]) and a channel order (``rgb``, ``bgr``, or ``y``: one channel of
BT.601 luma, the FSRCNN/SRCNN/VDSR convention). The conversion is built as two small torch modules
that become ordinary graph ops around the source's graph:

* :class:`ToSource` — RGB [0, 1] → the source's input: channel reversal (``bgr``), RGB → Y as a
  1×1 convolution with the BT.601 weights and bias 16/255 (``y``), then ×255 (``255``).
* :class:`FromSource` — the source's output (and, for ``y``, the RGB input it was given) → RGB
  [0, 1]: ×(1/255), channel reversal, and for ``y`` the colour path of the classic Y-only SR
  protocol: Cb and Cr of the low-resolution input (1×1 convolution), upscaled bilinearly (half-pixel
  centres: TFLite's RESIZE_BILINEAR, which CPU, GPU and NPU delegates run), concatenated with the
  model's Y and turned back into RGB by the inverse BT.601 matrix (1×1 convolution). PSNR-Y of the
  result is the model's own Y up to float rounding (before the uint8 rounding of the RGB image).

The same formulas are written a second time in numpy float64 (:func:`to_source_np`,
:func:`from_source_np`) for the parity reference, so the gate checks the in-graph conversion
instead of trusting it. Written by hand: no library converts SR I/O conventions.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import SrDeployError

__all__ = ["IOConvention", "ToSource", "FromSource", "SourceIO", "to_source_np", "from_source_np",
           "CHANNELS", "VALUE_RANGES", "YCBCR", "YCBCR_BIAS"]

CHANNELS = ("rgb", "bgr", "y")
VALUE_RANGES = (1, 255)

#: BT.601 (MATLAB ``rgb2ycbcr``) on RGB in [0, 1] → Y, Cb, Cr in [0, 1]: rows of ``M @ rgb + b``
YCBCR = np.array([[65.481, 128.553, 24.966],
                  [-37.797, -74.203, 112.0],
                  [112.0, -93.786, -18.214]], np.float64) / 255.0
YCBCR_BIAS = np.array([16.0, 128.0, 128.0], np.float64) / 255.0
_INV = np.linalg.inv(YCBCR)


@dataclass(frozen=True)
class IOConvention:
    value_range: int = 1
    channels: str = "rgb"

    def __post_init__(self) -> None:
        if self.value_range not in VALUE_RANGES:
            raise SrDeployError(f"--value-range must be 1 or 255, got {self.value_range!r}")
        if self.channels not in CHANNELS:
            raise SrDeployError(f"--channels must be rgb, bgr or y, got {self.channels!r}")

    @property
    def n_channels(self) -> int:
        return 1 if self.channels == "y" else 3

    @property
    def is_native(self) -> bool:
        return self.value_range == 1 and self.channels == "rgb"

    def added_ops(self) -> list[str]:
        """What the conversion puts into the graph, in order (recorded in the manifest)."""
        pre = (["input: reverse channels RGB->BGR"] if self.channels == "bgr" else []) + \
              (["input: RGB->Y (BT.601, 1x1 conv)"] if self.channels == "y" else []) + \
              (["input: x255"] if self.value_range == 255 else [])
        post = (["output: x(1/255)"] if self.value_range == 255 else []) + \
               (["output: reverse channels BGR->RGB"] if self.channels == "bgr" else []) + \
               (["output: Y + bilinear-upscaled Cb/Cr of the input -> RGB (inverse BT.601, 1x1 conv)"]
                if self.channels == "y" else [])
        return pre + post

    def to_json(self) -> dict:
        return {**asdict(self), "layout": "NCHW", "dtype": "float32"}


def _const_conv(x: torch.Tensor, m: np.ndarray, b: np.ndarray | None) -> torch.Tensor:
    w = torch.tensor(m, dtype=x.dtype).reshape(m.shape[0], m.shape[1], 1, 1)
    return F.conv2d(x, w, None if b is None else torch.tensor(b, dtype=x.dtype))


def _reverse(x: torch.Tensor) -> torch.Tensor:
    # slices + concat rather than flip(): a negative-stride slice is not a GPU/NPU-friendly op
    return torch.cat([x[:, 2:3], x[:, 1:2], x[:, 0:1]], dim=1)


class ToSource(nn.Module):
    def __init__(self, conv: IOConvention) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv.channels == "bgr":
            x = _reverse(x)
        elif self.conv.channels == "y":
            x = _const_conv(x, YCBCR[:1], YCBCR_BIAS[:1])
        if self.conv.value_range == 255:
            x = x * 255.0
        return x


class FromSource(nn.Module):
    def __init__(self, conv: IOConvention, scale: int) -> None:
        super().__init__()
        self.conv, self.scale = conv, scale

    def forward(self, y: torch.Tensor, rgb_lr: torch.Tensor) -> torch.Tensor:
        if self.conv.value_range == 255:
            y = y * (1.0 / 255.0)
        if self.conv.channels == "bgr":
            y = _reverse(y)
        elif self.conv.channels == "y":
            cbcr = _const_conv(rgb_lr, YCBCR[1:], YCBCR_BIAS[1:])
            cbcr = F.interpolate(cbcr, scale_factor=float(self.scale), mode="bilinear", align_corners=False)
            ycc = torch.cat([y, cbcr], dim=1)
            y = _const_conv(ycc, _INV, -_INV @ YCBCR_BIAS)
        return y


class SourceIO(nn.Module):
    """A torch model of another convention, speaking srdeploy's: ``FromSource(model(ToSource(x)), x)``."""

    def __init__(self, model: nn.Module, conv: IOConvention, scale: int) -> None:
        super().__init__()
        self.model, self.pre, self.post = model, ToSource(conv), FromSource(conv, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.model(self.pre(x)), x)


# ----------------------------------------------------------------------------- numpy reference
def _bilinear_half_pixel(img: np.ndarray, s: int) -> np.ndarray:
    """NCHW bilinear upscaling by an integer factor, half-pixel centres, edge clamped (float64)."""
    _, _, h, w = img.shape

    def axis(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.clip((np.arange(n * s) + 0.5) / s - 0.5, 0, n - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        return lo, hi, src - lo

    y0, y1, fy = axis(h)
    x0, x1, fx = axis(w)
    rows = img[:, :, y0] * (1 - fy)[:, None] + img[:, :, y1] * fy[:, None]
    return rows[..., x0] * (1 - fx) + rows[..., x1] * fx


def to_source_np(x: np.ndarray, conv: IOConvention) -> np.ndarray:
    """NCHW RGB [0, 1] → the source's input (float64)."""
    x = x.astype(np.float64)
    if conv.channels == "bgr":
        x = x[:, ::-1]
    elif conv.channels == "y":
        x = np.einsum("ck,nkhw->nchw", YCBCR[:1], x) + YCBCR_BIAS[:1, None, None]
    return x * conv.value_range


def from_source_np(y: np.ndarray, rgb_lr: np.ndarray, conv: IOConvention, scale: int) -> np.ndarray:
    """The source's NCHW output → RGB [0, 1] (float64)."""
    y = y.astype(np.float64) / conv.value_range
    if conv.channels == "bgr":
        y = y[:, ::-1]
    elif conv.channels == "y":
        cbcr = np.einsum("ck,nkhw->nchw", YCBCR[1:], rgb_lr.astype(np.float64)) + YCBCR_BIAS[1:, None, None]
        ycc = np.concatenate([y, _bilinear_half_pixel(cbcr, scale)], axis=1)
        y = np.einsum("ck,nkhw->nchw", _INV, ycc - YCBCR_BIAS[:, None, None])
    return np.ascontiguousarray(y)
