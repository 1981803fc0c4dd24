"""Interpolation start for DIPNet-style students (a residual-learning initialisation).

A randomly initialised SR network first spends thousands of steps learning to copy the input
up. Here the first conv's first three channels copy RGB, and the upsampler conv maps those
three channels through a bilinear sub-pixel kernel, so step 0 already computes a bilinear
upscale and training learns only the residual detail (the same idea as the bicubic skip of
VDSR/ESPCN-style nets, folded into existing convs so the architecture is unchanged).
Other weights feeding the output are scaled down so the start stays close to bilinear.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["bilinear_subpixel_kernel", "interpolation_init"]


def _taps(offset: float) -> dict[int, float]:
    """Bilinear weights over LR taps −1, 0, +1 for a sample *offset* LR pixels from the centre."""
    lo = int(torch.floor(torch.tensor(offset)).item())
    frac = offset - lo
    return {lo: 1.0 - frac, lo + 1: frac}


def bilinear_subpixel_kernel(scale: int) -> torch.Tensor:
    """``(scale², 3, 3)``: kernel of output sub-pixel ``i·scale + j`` (PixelShuffle order)."""
    k = torch.zeros(scale * scale, 3, 3)
    for i in range(scale):
        for j in range(scale):
            ty, tx = _taps((i + 0.5) / scale - 0.5), _taps((j + 0.5) / scale - 0.5)
            for dy, wy in ty.items():
                for dx, wx in tx.items():
                    k[i * scale + j, dy + 1, dx + 1] += wy * wx
    return k


@torch.no_grad()
def interpolation_init(model: nn.Module, damp: float = 0.1) -> None:
    """Make a freshly built DIPNet compute (about) a bilinear upscale of its input."""
    conv1, up = model.conv_1, model.upsampler[0]
    conv1 = conv1 if isinstance(conv1, nn.Conv2d) else None
    if conv1 is None or conv1.in_channels != 3 or conv1.out_channels < 3:
        raise ValueError("interpolation_init needs a plain first conv from RGB with at least 3 outputs")
    s = model.scale
    conv1.weight[:3].zero_()
    for c in range(3):
        conv1.weight[c, c, 1, 1] = 1.0
    up.weight.mul_(damp)
    kern = bilinear_subpixel_kernel(s)
    for c in range(3):
        up.weight[c * s * s:(c + 1) * s * s, :3].zero_()
        up.weight[c * s * s:(c + 1) * s * s, c] = kern
    if up.bias is not None:
        up.bias.zero_()
    conv2 = model.conv_2
    if isinstance(conv2, nn.Conv2d):
        conv2.weight.mul_(damp)
