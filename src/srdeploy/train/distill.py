"""Teacher → student distillation: output L1 and multi-anchor feature L1.

Feature anchors are the outputs of the networks' residual blocks (DIPNet ``block_i``, IMDN
``blocks[i]``), caught with forward hooks. Student anchor *k* of *K* is matched to teacher
block ``round((k+1)·T/K) − 1``; a learned 1×1 conv per anchor maps the student's channels to the
teacher's (the adapters are training-only and are dropped from the deployed model).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["anchor_modules", "FeatureTap", "feature_channels", "feature_loss", "make_adapters", "pair_anchors"]


def anchor_modules(model: nn.Module) -> list[nn.Module]:
    """The modules whose outputs are the network's block features."""
    if hasattr(model, "blocks") and isinstance(model.blocks, nn.ModuleList):
        return list(model.blocks)
    n = getattr(model, "n_blocks", 0)
    mods = [getattr(model, f"block_{i}") for i in range(1, n + 1) if hasattr(model, f"block_{i}")]
    if not mods:
        raise ValueError(f"{type(model).__name__} has no block features to distil")
    return mods


def pair_anchors(n_student: int, n_teacher: int) -> list[int]:
    return [max(0, round((k + 1) * n_teacher / n_student) - 1) for k in range(n_student)]


class FeatureTap:
    """Record the outputs of the chosen modules during a forward pass."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.features: list[torch.Tensor | None] = [None] * len(modules)
        self._handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(modules)]

    def _hook(self, i: int):
        def hook(_mod, _inp, out):
            self.features[i] = out
        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def feature_channels(model: nn.Module) -> int:
    """Width of the block features: the output channels of the network's first conv."""
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d)).out_channels


def make_adapters(student: nn.Module, teacher: nn.Module) -> nn.ModuleList:
    n = len(anchor_modules(student))
    return nn.ModuleList(nn.Conv2d(feature_channels(student), feature_channels(teacher), 1) for _ in range(n))


def feature_loss(student_feats, teacher_feats, adapters: nn.ModuleList, pairs: list[int]) -> torch.Tensor:
    losses = [F.l1_loss(adapters[k](f), teacher_feats[t]) for k, (f, t) in enumerate(zip(student_feats, pairs, strict=True))]
    return torch.stack(losses).mean()
