"""Generic exact fusion of training-form convolutions, for any traceable ``nn.Module``.

Finds, in the torch.fx graph of a module in eval mode:

* sums of parallel linear branches on one input — ``k×k`` convs, smaller odd convs (``1×1``), the
  identity, each optionally followed by a BatchNorm (RepVGG, ECB, ACNet, MobileOne style) — and
  replaces each sum by one convolution;
* a convolution followed by its BatchNorm (and nothing else reading the conv) — folded into the conv.

Exact up to float rounding: every branch is a linear map with the same stride and centred "same"
zero padding, so kernels add after zero-padding the smaller ones to the largest size, and a
BatchNorm in eval mode is the affine map ``γ (x − μ) / √(σ² + ε) + β``. Branches that do not fit
(other strides, dilations, asymmetric padding, padding modes, non-eval BatchNorm) are left as they
are. Written by hand because torch's own fusion helpers (``torch.ao.quantization.fuse_modules``,
``torch.fx.experimental.optimization.fuse``) fold conv + BN only, not parallel branches.
"""
from __future__ import annotations

import copy
import operator

import torch
import torch.nn as nn

from ..errors import SrDeployError

__all__ = ["fuse_branches"]

_ADD = {operator.add, torch.add, operator.iadd}


def _bn_affine(bn: nn.BatchNorm2d, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    std = torch.sqrt(bn.running_var.double() + bn.eps)
    g = bn.weight.double() if bn.weight is not None else torch.ones(channels, dtype=torch.float64)
    b = bn.bias.double() if bn.bias is not None else torch.zeros(channels, dtype=torch.float64)
    return g / std, b - bn.running_mean.double() * g / std


class _Branch:
    """One linear branch: weight [out, in/groups, k, k] (float64), bias [out], stride, groups, the
    graph nodes it is made of (empty for the identity) and whether it holds a convolution."""

    def __init__(self, weight, bias, stride, groups, nodes, conv=None):
        self.weight, self.bias, self.stride, self.groups, self.nodes, self.conv = \
            weight, bias, stride, groups, nodes, conv


def _identity(channels: int) -> _Branch:
    return _Branch(torch.ones(channels, 1, 1, 1, dtype=torch.float64), torch.zeros(channels, dtype=torch.float64),
                   (1, 1), channels, [])


def _conv_ok(conv) -> bool:
    if not isinstance(conv, nn.Conv2d):
        return False
    k = conv.kernel_size
    return (k[0] == k[1] and k[0] % 2 == 1 and conv.dilation == (1, 1) and conv.padding_mode == "zeros"
            and tuple(conv.padding) == (k[0] // 2, k[1] // 2))


def _module(gm, node):
    return gm.get_submodule(node.target) if getattr(node, "op", None) == "call_module" else None


def _leaf(gm, node) -> tuple[object, _Branch] | None:
    """``(input node, branch)`` for conv(x), bn(conv(x)) and bn(x); None for anything else."""
    mod = _module(gm, node)
    nodes, bn = [node], None
    if isinstance(mod, nn.BatchNorm2d):
        if mod.training or not mod.track_running_stats or mod.running_mean is None or len(node.args) != 1:
            return None
        bn, inner = mod, node.args[0]
        if not (_conv_ok(_module(gm, inner)) and len(inner.users) == 1):
            c = bn.num_features  # bn(x): the identity with an affine
            scale, shift = _bn_affine(bn, c)
            return inner, _Branch(scale.view(c, 1, 1, 1), shift, (1, 1), c, nodes)
        node, mod = inner, _module(gm, inner)
        nodes.append(node)
    if not _conv_ok(mod) or len(node.args) != 1:
        return None
    w = mod.weight.detach().double()
    b = mod.bias.detach().double() if mod.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    if bn is not None:
        scale, shift = _bn_affine(bn, w.shape[0])
        w, b = w * scale.view(-1, 1, 1, 1), b * scale + shift
    return node.args[0], _Branch(w, b, tuple(mod.stride), mod.groups, nodes, mod)


def _as_dense(br: _Branch, k: int, c_in: int) -> torch.Tensor:
    """The branch as an ungrouped ``k×k`` kernel [out, c_in, k, k]."""
    w = br.weight
    out, per, kk = w.shape[0], w.shape[1], w.shape[2]
    dense = torch.zeros(out, c_in, k, k, dtype=torch.float64)
    o0 = (k - kk) // 2
    per_out = out // br.groups
    for g in range(br.groups):
        dense[g * per_out:(g + 1) * per_out, g * per:(g + 1) * per, o0:o0 + kk, o0:o0 + kk] = \
            w[g * per_out:(g + 1) * per_out]
    return dense


def _is_add(node) -> bool:
    return (node.op == "call_function" and node.target in _ADD or node.op == "call_method" and node.target == "add") \
        and len(node.args) == 2 and not node.kwargs and all(hasattr(a, "op") for a in node.args)


def _terms(node, root: bool = True) -> list:
    """The terms of a tree of two-operand additions (inner sums read by nothing else)."""
    if not _is_add(node) or (not root and len(node.users) != 1):
        return [node]
    return [t for a in node.args for t in _terms(a, root=False)]


def _plan(gm, node) -> tuple[object, list[_Branch]] | None:
    """``(input, branches)`` when *node* is a fusable sum of branches or a conv → BN; else None."""
    if not _is_add(node):
        leaf = _leaf(gm, node) if isinstance(_module(gm, node), nn.BatchNorm2d) else None
        return (leaf[0], [leaf[1]]) if leaf and leaf[1].conv is not None else None
    terms = _terms(node)
    leaves = [_leaf(gm, t) for t in terms]
    srcs = {id(lf[0]): lf[0] for lf in leaves if lf and lf[1].conv is not None}
    if len(srcs) != 1:
        return None
    src = next(iter(srcs.values()))
    branches = []
    for t, lf in zip(terms, leaves):
        if lf is not None and lf[0] is src and all(len(n.users) == 1 for n in lf[1].nodes):
            branches.append(lf[1])
        elif t is src:
            branches.append(None)  # the identity; its size is known once the convs are
        else:
            return None
    return src, branches


def fuse_branches(model: nn.Module) -> tuple[nn.Module, int]:
    """Return ``(fused copy, number of fusions)``; the model's own parameters are left untouched."""
    import torch.fx as fx

    model = copy.deepcopy(model).eval()
    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:
        raise SrDeployError(f"fuse=True needs a module torch.fx can trace: {type(exc).__name__}: "
                            f"{(str(exc).splitlines() or [''])[0]}") from None
    fused = 0
    for node in list(gm.graph.nodes):
        if getattr(node, "_erased", False):
            continue
        plan = _plan(gm, node)
        if plan is None:
            continue
        src, branches = plan
        convs = [b.conv for b in branches if b is not None and b.conv is not None]
        real = [b for b in branches if b is not None]
        c_in, out = convs[0].in_channels, real[0].weight.shape[0]
        strides = {b.stride for b in real}
        if len(strides) != 1 or any(b.weight.shape[0] != out for b in real) or \
                any(c.in_channels != c_in for c in convs):
            continue
        if any(b is None or b.conv is None for b in branches) and (c_in != out or strides != {(1, 1)}):
            continue
        k = max(b.weight.shape[-1] for b in real)
        weight = torch.zeros(out, c_in, k, k, dtype=torch.float64)
        bias = torch.zeros(out, dtype=torch.float64)
        for b in branches:
            b = b if b is not None else _identity(out)
            weight += _as_dense(b, k, c_in)
            bias += b.bias
        groups = _common_groups(weight, min(c.groups for c in convs))
        pi, po = c_in // groups, out // groups
        compact = torch.cat([weight[g * po:(g + 1) * po, g * pi:(g + 1) * pi] for g in range(groups)], 0)
        conv = nn.Conv2d(c_in, out, k, stride=strides.pop(), padding=k // 2, groups=groups, bias=True)
        conv.weight.data.copy_(compact.to(conv.weight.dtype))
        conv.bias.data.copy_(bias.to(conv.bias.dtype))
        name = f"srdeploy_fused_{fused}"
        gm.add_submodule(name, conv)
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(name, (src,))
        node.replace_all_uses_with(new)
        _erase_dead(gm.graph, node)
        fused += 1
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm, fused


def _common_groups(dense: torch.Tensor, limit: int) -> int:
    """The largest group count ≤ *limit* whose block-diagonal structure holds the fused kernel."""
    out, c_in = dense.shape[:2]
    for g in range(limit, 1, -1):
        if out % g or c_in % g:
            continue
        mask = torch.ones_like(dense, dtype=torch.bool)
        po, pi = out // g, c_in // g
        for i in range(g):
            mask[i * po:(i + 1) * po, i * pi:(i + 1) * pi] = False
        if not dense[mask].any():
            return g
    return 1


def _erase_dead(graph, node) -> None:
    """Erase *node* and every producer that nothing reads any more (the branch convs and BNs)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if n.users or n.op in ("placeholder", "output"):
            continue
        inputs = [a for a in n.all_input_nodes]
        graph.erase_node(n)
        stack.extend(inputs)
