"""A user's ``nn.Module`` (``srdeploy.export(module, ...)``), in any I/O convention, optionally in a
training form that :func:`srdeploy.models.fuse.fuse_branches` folds exactly before export."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from ..errors import SrDeployError
from .base import TorchSource, export_name
from .convention import IOConvention, SourceIO

__all__ = ["ModuleSource"]


class ModuleSource(TorchSource):
    kind = "module"
    quality_label = "pytorch_fp32"

    def __init__(self, module: nn.Module, scale: int, convention: IOConvention = IOConvention(),
                 name: str | None = None, fuse: bool = False, default_size: tuple[int, int] | None = None) -> None:
        if not isinstance(module, nn.Module):
            raise SrDeployError(f"expected a torch.nn.Module or an ONNX path, got {type(module).__name__}")
        if not isinstance(scale, int) or not 1 <= scale <= 16:
            raise SrDeployError(f"scale must be an integer 1..16, got {scale!r}")
        self.name = export_name(name, type(module).__name__.lower())
        self.scale, self.convention, self.default_size = scale, convention, default_size
        self.description = f"user module {type(module).__name__}"
        module = copy.deepcopy(module).eval()
        self.fused = 0
        self.unfused_parameters = int(sum(p.numel() for p in module.parameters()))
        if fuse:
            from ..models.fuse import fuse_branches

            module, self.fused = fuse_branches(module)
        self.source_module = module
        self.model = module if convention.is_native else SourceIO(module, convention, scale).eval()

    def check_output(self, h: int, w: int) -> None:
        c = self.convention.n_channels
        try:
            with torch.no_grad():
                out = self.source_module(torch.zeros(1, c, h, w))
        except Exception as exc:
            raise SrDeployError(f"{self.name} does not run on a 1x{c}x{h}x{w} input: {type(exc).__name__}: "
                                f"{(str(exc).splitlines() or [''])[0]}") from None
        _check_shape(self.name, tuple(out.shape), c, h, w, self.scale)

    @property
    def weights_info(self) -> dict:
        return {"source": "module", "fused_branches": self.fused}

    @property
    def parameters(self) -> int:
        return int(sum(p.numel() for p in self.source_module.parameters()))

    def describe(self) -> dict:
        return {**super().describe(), "class": type(self.source_module).__name__, "fused_branches": self.fused,
                "parameters_before_fusion": self.unfused_parameters}


def _check_shape(name: str, shape: tuple, c: int, h: int, w: int, scale: int) -> None:
    """The output must be ``1×c×sH×sW`` for the stated scale."""
    if len(shape) != 4 or shape[0] != 1 or shape[1] != c:
        raise SrDeployError(f"{name}: output shape {list(shape)} for a 1x{c}x{h}x{w} input; expected 1x{c}xHxW")
    if shape[2] != h * scale or shape[3] != w * scale:
        r = shape[2] / h
        raise SrDeployError(f"{name}: a {h}x{w} input gives a {shape[2]}x{shape[3]} output (x{r:g}), "
                            f"which contradicts --scale {scale}")
