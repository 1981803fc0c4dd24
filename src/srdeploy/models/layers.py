"""Small building blocks shared by the architectures (conv factory, activations, attention)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .reparam import RepConv

__all__ = ["make_conv", "make_act", "CCA", "ESA", "Shortcut"]


def make_conv(
    in_ch: int,
    out_ch: int,
    kernel_size: int = 3,
    stride: int = 1,
    bias: bool = True,
    rep: Sequence[str] | None = None,
) -> nn.Module:
    """A same-padded conv; a :class:`RepConv` with branches *rep* when a training form asks."""
    if rep is not None:
        if stride != 1:
            raise ValueError("re-parameterizable convs are stride 1")
        return RepConv(in_ch, out_ch, kernel_size, branches=rep, bias=bias)
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding=kernel_size // 2, bias=bias)


def make_act(kind: str) -> nn.Module:
    kind = kind.lower()
    if kind == "lrelu":
        return nn.LeakyReLU(0.05)
    if kind == "relu":
        return nn.ReLU()
    if kind == "silu":
        return nn.SiLU()
    raise ValueError(f"unknown activation {kind!r}")


class Shortcut(nn.Module):
    """``x + body(x)``."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class CCA(nn.Module):
    """IMDN's contrast-aware channel attention: per-channel (std + mean) → 1×1 → ReLU → 1×1 → sigmoid."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )

    @staticmethod
    def spatial_mean(x: torch.Tensor) -> torch.Tensor:
        # Two-stage reduction (over W, then H), as the authors' code sums: the same value, but an
        # exported graph then reduces <= max(H, W) terms at a time instead of H*W. With one MEAN
        # over 720x480 pixels, TFLite's float32 accumulation put IMDN 3e-4 off the exact result
        # on noise input; two stages keep it within float rounding.
        return x.mean(dim=3, keepdim=True).mean(dim=2, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.spatial_mean(x)
        std = self.spatial_mean((x - mean).pow(2)).sqrt()
        return x * self.conv_du(std + mean)


class ESA(nn.Module):
    """Enhanced spatial attention (RFANet/RLFN form) as used by DIPNet's RRFB."""

    def __init__(self, channels: int, esa_channels: int = 16) -> None:
        super().__init__()
        f = esa_channels
        self.conv1 = nn.Conv2d(channels, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2, padding=0)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1_ = self.conv1(x)
        c1 = self.conv2(c1_)
        v_max = F.max_pool2d(c1, kernel_size=7, stride=3)
        c3 = self.conv3(v_max)
        c3 = F.interpolate(c3, (x.size(2), x.size(3)), mode="bilinear", align_corners=False)
        c4 = self.conv4(c3 + self.conv_f(c1_))
        return x * torch.sigmoid(c4)
