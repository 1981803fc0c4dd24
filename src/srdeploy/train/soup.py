"""Uniform weight averaging of fine-tuned runs ("model soup", Wortsman et al., ICML 2022).

Runs fine-tuned from one ancestor stay in one loss basin, so the mean of their weights is a model
of the same architecture that is often better than each run. The deploy form is a plain conv net
whose function is linear in each layer's weights, so averaging deploy-form files equals fusing
the averaged training forms.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import SrDeployError

__all__ = ["average_models"]


def average_models(models: list[nn.Module], names: list[str]) -> nn.Module:
    """The first model, its weights replaced by the mean of all *models*' (which must share shapes)."""
    if len(models) < 2:
        raise SrDeployError("--average needs at least two weight files")
    states = [m.state_dict() for m in models]
    for sd, name in zip(states[1:], names[1:]):
        if sd.keys() != states[0].keys() or any(sd[k].shape != states[0][k].shape for k in sd):
            raise SrDeployError(f"{name} does not have the shapes of {names[0]}: only runs of one architecture average")
    models[0].load_state_dict({k: torch.stack([s[k].float() for s in states]).mean(0).to(states[0][k].dtype)
                               for k in states[0]})
    return models[0]
