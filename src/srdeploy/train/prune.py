"""Structured channel pruning of DIPNet's residual blocks (DIPNet's iterative pruning).

Inside every RRFB the two inner widths (outputs of ``c1_r`` and ``c2_r``) are cut to the same
``mid`` by L1-norm importance of each output filter; the consumer convs lose the matching input
channels. The block boundaries (``channels``) are kept, so the pruned network is again a
``DIPNet`` with a smaller ``mid`` — same ops, same exporter, same parity gate. The checkpoint
records ``arch`` so ``create_model(..., weights=path)`` rebuilds the right shape.
"""
from __future__ import annotations

import torch

from ..models.dipnet import DIPNet

__all__ = ["prune_dipnet", "pruning_schedule"]


def _keep(weight: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (sorted) of the *k* output filters with the largest L1 norm."""
    score = weight.abs().flatten(1).sum(1)
    return torch.sort(torch.topk(score, k).indices).values


@torch.no_grad()
def prune_dipnet(model: DIPNet, mid: int) -> DIPNet:
    """A deploy-form DIPNet with every block's inner width cut to *mid* channels."""
    if getattr(model, "form", "deploy") != "deploy":
        raise ValueError("prune the deploy form (reparameterize first)")
    arch = dict(model.arch)
    if not 1 <= mid <= arch["mid"]:
        raise ValueError(f"mid must be in 1..{arch['mid']}, got {mid}")
    arch["mid"] = mid
    new = DIPNet(model.scale, **arch)
    src = model.state_dict()
    dst = new.state_dict()
    for key in dst:
        if ".c1_r." not in key and ".c2_r." not in key and ".c3_r." not in key:
            dst[key].copy_(src[key])
    for i in range(1, arch["n_blocks"] + 1):
        b = f"block_{i}"
        w1, w2, w3 = src[f"{b}.c1_r.weight"], src[f"{b}.c2_r.weight"], src[f"{b}.c3_r.weight"]
        k1 = _keep(w1, mid)
        w2 = w2[:, k1]
        k2 = _keep(w2, mid)
        dst[f"{b}.c1_r.weight"].copy_(w1[k1])
        dst[f"{b}.c2_r.weight"].copy_(w2[k2])
        dst[f"{b}.c3_r.weight"].copy_(w3[:, k2])
    new.load_state_dict(dst)
    return new.eval()


def pruning_schedule(mid: int, ratio: float, rounds: int) -> list[int]:
    """Inner widths after each prune round, shrinking linearly from *mid* to ``round(mid·ratio)``."""
    if not 0 < ratio <= 1:
        raise ValueError("prune ratio must be in (0, 1]")
    target = max(1, round(mid * ratio))
    widths = [round(mid - (mid - target) * r / rounds) for r in range(1, rounds + 1)]
    return [w for i, w in enumerate(widths) if i == 0 or w != widths[i - 1]]
