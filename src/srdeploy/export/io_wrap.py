"""``--io uint8`` for float models: bitmap bytes in, bitmap bytes out, inside the graph.

The wrapper runs before the ONNX export, so the normalisation (÷255), clamp and rounding are
ordinary graph ops (CAST, MUL, ADD, MINIMUM/RELU, CAST) that every runtime executes the same way:
output = trunc(clamp(y·255 + 0.5, 0, 255)) — round-half-up, since float→uint8 casts truncate in
ONNX Runtime and TFLite alike. The Android app then hands ``Bitmap`` bytes straight in.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["Uint8IO", "bytes_to_unit", "unit_to_bytes"]


def bytes_to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 → float [0, 1]."""
    return x.float() * (1.0 / 255.0)


def unit_to_bytes(y: torch.Tensor) -> torch.Tensor:
    """float [0, 1] → uint8, clamped, rounded half up."""
    return torch.clamp(y * 255.0 + 0.5, 0.0, 255.0).to(torch.uint8)


class Uint8IO(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return unit_to_bytes(self.model(bytes_to_unit(x)))
