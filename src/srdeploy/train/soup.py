"""Uniform weight averaging of fine-tuned runs ("model soup", Wortsman et al., ICML 2022).

Runs fine-tuned from one ancestor stay in one loss basin, so the mean of their weights is a model
of the same architecture that is often better than each run. The deploy form is a plain conv net
whose function is linear in each layer's weights, so averaging deploy-form files equals fusing
the averaged training forms.
"""
from __future__ import annotations

import os

import torch

from ..errors import SrDeployError

__all__ = ["average_weights"]


def average_weights(paths: list[str | os.PathLike]) -> dict:
    """Mean state dict of deploy-form ``.pth`` files of one shape."""
    if len(paths) < 2:
        raise SrDeployError("--average needs at least two weight files")
    states = []
    for p in paths:
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise SrDeployError(f"weights not found: {p}") from None
        except Exception as exc:
            raise SrDeployError(f"cannot read weights {p}: {type(exc).__name__}") from None
        sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
        if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise SrDeployError(f"{p} holds no state dict of tensors")
        if states and (sd.keys() != states[0].keys()
                       or any(sd[k].shape != states[0][k].shape for k in sd)):
            raise SrDeployError(f"{p} does not have the shapes of {paths[0]}: only runs of one architecture average")
        states.append(sd)
    return {k: torch.stack([s[k].float() for s in states]).mean(0).to(states[0][k].dtype) for k in states[0]}
