"""DIPNet (NTIRE 2023 efficient SR; RLFN-style backbone with re-parameterizable RRFB blocks).

Deploy form from the official checkpoint (feature 44, mid 38, 4 RRFB with ESA, convs without
bias). The training form replaces the three 3×3 convs of every RRFB by :class:`RepConv`
blocks (DIPNet paper, "reparameterized residual feature block"). ``dipnet_lite`` is the
x2 variant without ESA, feature 32, mid 24 (≈0.093 M parameters).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from .layers import ESA, make_act, make_conv

__all__ = ["RRFB", "DIPNet", "DIPNET_BRANCHES"]

#: Training-form branch set used for RRFB convs: 3×3, 1×1 and a 1×1→3×3 expansion (×2).
DIPNET_BRANCHES: tuple[str, ...] = ("3x3", "1x1", "expand:2")


class RRFB(nn.Module):
    """Three 3×3 conv + LeakyReLU, residual, 1×1 conv, optional ESA."""

    def __init__(self, channels: int, mid: int, esa: bool = True, esa_channels: int = 16,
                 rep: Sequence[str] | None = None) -> None:
        super().__init__()
        self.c1_r = make_conv(channels, mid, 3, bias=False, rep=rep)
        self.c2_r = make_conv(mid, mid, 3, bias=False, rep=rep)
        self.c3_r = make_conv(mid, channels, 3, bias=False, rep=rep)
        self.c5 = make_conv(channels, channels, 1, bias=False)
        self.act = make_act("lrelu")
        if esa:
            self.esa = ESA(channels, esa_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.c1_r(x))
        out = self.act(self.c2_r(out))
        out = self.act(self.c3_r(out))
        out = self.c5(out + x)
        return self.esa(out) if hasattr(self, "esa") else out


class DIPNet(nn.Module):
    def __init__(self, scale: int = 4, channels: int = 44, mid: int = 38, n_blocks: int = 4,
                 esa: bool = True, in_channels: int = 3, out_channels: int = 3,
                 rep: Sequence[str] | None = None) -> None:
        super().__init__()
        self.scale = scale
        self.stride = 1
        #: what rebuilds this network (pruned variants differ in ``mid``)
        self.arch = dict(channels=channels, mid=mid, n_blocks=n_blocks, esa=esa)
        self.form = "train" if rep is not None else "deploy"
        self.conv_1 = make_conv(in_channels, channels, 3, bias=False)
        for i in range(1, n_blocks + 1):
            setattr(self, f"block_{i}", RRFB(channels, mid, esa=esa, rep=rep))
        self.n_blocks = n_blocks
        self.conv_2 = make_conv(channels, channels, 3, bias=False)
        self.upsampler = nn.Sequential(
            nn.Conv2d(channels, out_channels * scale * scale, 3, padding=1, bias=False),
            nn.PixelShuffle(scale),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.conv_1(x)
        h = fea
        for i in range(1, self.n_blocks + 1):
            h = getattr(self, f"block_{i}")(h)
        return self.upsampler(self.conv_2(h) + fea)
