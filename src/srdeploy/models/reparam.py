"""Structural re-parameterization: one generic multi-branch conv and its exact fusion.

A :class:`RepConv` is what a training form uses in place of a plain ``k×k`` convolution.
It sums a configurable set of linear branches, all of which fold into one ``k×k``
convolution for deployment (RepVGG / ECBSR idea; IMDN+ and DIPNet's RRFB use it):

* ``"kxk"``      – the plain ``k×k`` conv (e.g. ``"3x3"``)
* ``"1x1"``      – a ``1×1`` conv, folded into the centre tap
* ``"identity"`` – the input itself (needs ``in == out``)
* ``"expand:R"`` – ``1×1`` conv to ``R·in`` channels followed by a ``k×k`` conv back to ``out``

Exactness at the border: the ``k×k`` conv of an ``expand`` branch must see, outside the
image, the value its input would have there after fusion. The fused conv zero-pads *x*,
and a ``1×1`` conv of zero is its bias, so the training form pads the ``1×1`` output with
its bias (not zeros). With that, fusion is exact to float rounding everywhere.

This is written by hand because no maintained library exposes re-parameterizable
blocks with a configurable branch set and the bias-padding border rule.
"""
from __future__ import annotations

import copy
import re
from typing import Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["RepConv", "parse_branches", "reparameterize", "DEFAULT_IMDN_PLUS_BRANCHES"]

#: Branch set of IMDN+ (NTIRE 2022 report, "structural re-parameterization" figure).
DEFAULT_IMDN_PLUS_BRANCHES: tuple[str, ...] = ("3x3", "expand:2", "expand:4")

_KXK = re.compile(r"^(\d+)x\1$")
_EXPAND = re.compile(r"^expand:(\d+)$")


def parse_branches(branches: Iterable[str], kernel_size: int) -> list[tuple[str, int]]:
    """Validate a branch list; return ``[(kind, arg)]`` with kind in kxk/1x1/identity/expand."""
    parsed: list[tuple[str, int]] = []
    for spec in branches:
        spec = spec.strip().lower()
        m = _KXK.match(spec)
        if m and int(m.group(1)) == kernel_size:
            parsed.append(("kxk", kernel_size))
        elif spec == "1x1":
            parsed.append(("1x1", 1))
        elif spec == "identity":
            parsed.append(("identity", 0))
        elif _EXPAND.match(spec):
            ratio = int(_EXPAND.match(spec).group(1))
            if ratio < 1:
                raise ValueError(f"expansion ratio must be >= 1, got {spec!r}")
            parsed.append(("expand", ratio))
        else:
            raise ValueError(
                f"unknown branch {spec!r} for a {kernel_size}x{kernel_size} RepConv; "
                f"use '{kernel_size}x{kernel_size}', '1x1', 'identity' or 'expand:R'"
            )
    if not parsed:
        raise ValueError("a RepConv needs at least one branch")
    if len({p for p in parsed}) != len(parsed):
        raise ValueError(f"duplicate branch in {list(branches)}")
    return parsed


class RepConv(nn.Module):
    """Sum of linear branches that fuses exactly into one ``k×k`` convolution (stride 1)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        branches: Sequence[str] = DEFAULT_IMDN_PLUS_BRANCHES,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError("RepConv needs an odd kernel size")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.padding = kernel_size // 2
        self.use_bias = bias
        self.branch_specs = parse_branches(branches, kernel_size)
        self.branches = nn.ModuleDict()
        for kind, arg in self.branch_specs:
            if kind == "kxk":
                self.branches["kxk"] = nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias)
            elif kind == "1x1":
                self.branches["conv1x1"] = nn.Conv2d(in_channels, out_channels, 1, bias=bias)
            elif kind == "identity":
                if in_channels != out_channels:
                    raise ValueError("an identity branch needs in_channels == out_channels")
            else:  # expand
                mid = arg * in_channels
                self.branches[f"expand{arg}"] = nn.Sequential(
                    nn.Conv2d(in_channels, mid, 1, bias=bias),
                    nn.Conv2d(mid, out_channels, kernel_size, bias=bias),
                )

    def extra_repr(self) -> str:
        names = [f"{k}:{a}" if k == "expand" else k for k, a in self.branch_specs]
        return f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, branches={names}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.padding
        out = None
        for kind, arg in self.branch_specs:
            if kind == "kxk":
                conv = self.branches["kxk"]
                y = F.conv2d(x, conv.weight, conv.bias, padding=p)
            elif kind == "1x1":
                y = self.branches["conv1x1"](x)
            elif kind == "identity":
                y = x
            else:
                squeeze, spread = self.branches[f"expand{arg}"]
                z = squeeze(x)
                if squeeze.bias is not None:
                    # pad with the 1x1 bias, not zeros: what the fused conv sees outside the image
                    b = squeeze.bias.view(1, -1, 1, 1)
                    z = F.pad(z - b, (p, p, p, p)) + b
                else:
                    z = F.pad(z, (p, p, p, p))
                y = spread(z)
            out = y if out is None else out + y
        return out

    @torch.no_grad()
    def fused_weight_bias(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(weight, bias)`` of the single ``k×k`` conv equal to this block."""
        k, c = self.kernel_size, self.kernel_size // 2
        ref = next(self.parameters(), None)
        dtype = ref.dtype if ref is not None else torch.float32
        device = ref.device if ref is not None else None
        w = torch.zeros(self.out_channels, self.in_channels, k, k, dtype=dtype, device=device)
        b = torch.zeros(self.out_channels, dtype=dtype, device=device)
        for kind, arg in self.branch_specs:
            if kind == "kxk":
                conv = self.branches["kxk"]
                w += conv.weight
                if conv.bias is not None:
                    b += conv.bias
            elif kind == "1x1":
                conv = self.branches["conv1x1"]
                w[:, :, c, c] += conv.weight[:, :, 0, 0]
                if conv.bias is not None:
                    b += conv.bias
            elif kind == "identity":
                idx = torch.arange(self.out_channels, device=device)
                w[idx, idx, c, c] += 1.0
            else:
                squeeze, spread = self.branches[f"expand{arg}"]
                a = squeeze.weight[:, :, 0, 0]  # (mid, in)
                w += torch.einsum("omhw,mi->oihw", spread.weight, a)
                if spread.bias is not None:
                    b += spread.bias
                if squeeze.bias is not None:
                    b += torch.einsum("omhw,m->o", spread.weight, squeeze.bias)
        return w, (b if self.use_bias else None)

    def to_conv(self) -> nn.Conv2d:
        """The deploy form: one ``nn.Conv2d`` computing exactly this block."""
        w, b = self.fused_weight_bias()
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size,
                         padding=self.padding, bias=b is not None)
        conv = conv.to(device=w.device, dtype=w.dtype)
        with torch.no_grad():
            conv.weight.copy_(w)
            if b is not None:
                conv.bias.copy_(b)
        return conv

    @torch.no_grad()
    def load_fused(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        """Initialise the branches so that the block equals the given deploy conv exactly.

        The kxk branch takes the weights; every other branch is zeroed (identity is
        compensated in the kxk centre tap). Used to fine-tune from official deploy weights.
        """
        if "kxk" not in self.branches:
            raise ValueError("load_fused needs a kxk branch")
        c = self.kernel_size // 2
        for name, mod in self.branches.items():
            if name == "kxk":
                continue
            last = mod[-1] if isinstance(mod, nn.Sequential) else mod
            last.weight.zero_()
            if last.bias is not None:
                last.bias.zero_()
            if isinstance(mod, nn.Sequential) and mod[0].bias is not None:
                mod[0].bias.zero_()
        kxk = self.branches["kxk"]
        kxk.weight.copy_(weight)
        if any(kind == "identity" for kind, _ in self.branch_specs):
            idx = torch.arange(self.out_channels)
            kxk.weight[idx, idx, c, c] -= 1.0
        if kxk.bias is not None:
            kxk.bias.copy_(bias if bias is not None else torch.zeros_like(kxk.bias))


def reparameterize(model: nn.Module) -> nn.Module:
    """Return a deep copy of *model* with every :class:`RepConv` fused into one ``nn.Conv2d``.

    The result has the deploy form's module tree and state-dict keys, so it loads the
    official (deploy-form) checkpoints. The input model is left untouched.
    """
    deploy = copy.deepcopy(model)
    if isinstance(deploy, RepConv):
        return deploy.to_conv()
    for name, module in list(deploy.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, RepConv):
                setattr(module, child_name, child.to_conv())
    if hasattr(deploy, "form"):
        deploy.form = "deploy"
    return deploy
