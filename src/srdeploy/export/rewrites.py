"""Exact ONNX graph transforms that make the converted TFLite graph the one a phone wants.

Each transform takes an ``onnx.ModelProto``, edits it in place, and returns how many places it
changed. They are exact (a permutation of weights, never an approximation); the exporter applies
the ones named in ``--rewrites`` and the parity gate checks the result like any other artifact.

* ``split_mean`` — a ReduceMean over H and W becomes a ReduceMean over W then one over H (the
  same value). TFLite's float32 MEAN accumulates in one pass: over 720×480 pixels its relative
  error is 1.7e-5 (two stages: 6.9e-7), enough to put IMDN's contrast-aware attention 3e-4 off
  the exact result on noise input and fail the FP32 gate. (onnxsim fuses consecutive reductions,
  so this runs after simplification and onnx2tf is told not to simplify again.)
* ``dcr`` — PyTorch exports ``PixelShuffle`` as ``DepthToSpace`` mode CRD, which onnx2tf lowers
  to RESHAPE → 6-D TRANSPOSE → RESHAPE (slow, and the GPU delegate rejects 6-D tensors). Mode DCR
  lowers to one DEPTH_TO_SPACE. CRD reads channel ``c·r² + i·r + j`` for output sub-pixel
  ``(i, j)`` of channel ``c``; DCR reads ``(i·r + j)·C + c``. Permuting the output channels of the
  conv that feeds it by that map makes DCR compute exactly what CRD did.
* ``gelu`` — the exact GELU (``x·½·(1 + erf(x/√2))``, as PyTorch exports it) in builtin ops with no
  division that int8 can turn into a division by zero (see :func:`erf_gelu`); TFLite has no ERF.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["REWRITES", "apply_rewrites", "depth_to_space_dcr"]


def _consumers(graph, name: str) -> list:
    """Nodes reading *name*, plus the graph output of that name (a consumer too)."""
    return [n for n in graph.node if name in n.input] + [o for o in graph.output if o.name == name]


def depth_to_space_dcr(model) -> int:
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    changed = 0
    for node in graph.node:
        if node.op_type != "DepthToSpace":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        mode = attrs.get("mode", b"DCR")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode != "CRD":
            continue
        conv = producers.get(node.input[0])
        if conv is None or conv.op_type != "Conv" or len(_consumers(graph, node.input[0])) != 1:
            continue
        weight_names = [n for n in conv.input[1:] if n]
        if any(n not in inits or len(_consumers(graph, n)) != 1 for n in weight_names):
            continue  # shared or computed weights: leave this one alone
        r = int(attrs["blocksize"])
        w = numpy_helper.to_array(inits[conv.input[1]])
        c = w.shape[0] // (r * r)
        perm = np.array([cc * r * r + i * r + j for i in range(r) for j in range(r) for cc in range(c)])
        for name in weight_names:
            arr = numpy_helper.to_array(inits[name])
            inits[name].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(arr[perm]), name))
        for a in node.attribute:
            if a.name == "mode":
                a.s = b"DCR"
        changed += 1
    return changed


def split_spatial_mean(model) -> int:
    import onnx
    from onnx import helper

    graph = model.graph
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=17)
    changed = 0
    new_nodes = []
    for node in graph.node:
        if node.op_type != "ReduceMean":
            new_nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1:  # opset 18: axes as an input
            inits = {t.name: t for t in graph.initializer}
            axes = list(onnx.numpy_helper.to_array(inits[node.input[1]])) if node.input[1] in inits else None
        rank = 4
        if axes is None or sorted(a % rank for a in axes) != [2, 3] or attrs.get("keepdims", 1) != 1:
            new_nodes.append(node)
            continue
        mid = node.output[0] + "_mean_w"
        if opset >= 18:
            for name, ax in ((mid + "_axes", [3]), (node.output[0] + "_axes_h", [2])):
                graph.initializer.append(onnx.numpy_helper.from_array(np.array(ax, np.int64), name))
            first = helper.make_node("ReduceMean", [node.input[0], mid + "_axes"], [mid], keepdims=1)
            second = helper.make_node("ReduceMean", [mid, node.output[0] + "_axes_h"], list(node.output), keepdims=1)
        else:
            first = helper.make_node("ReduceMean", [node.input[0]], [mid], axes=[3], keepdims=1)
            second = helper.make_node("ReduceMean", [mid], list(node.output), axes=[2], keepdims=1)
        first.name, second.name = node.name + "_w", node.name + "_h"
        new_nodes += [first, second]
        changed += 1
    if changed:
        del graph.node[:]
        graph.node.extend(new_nodes)
    return changed


def _scalar(inits: dict, name: str) -> float | None:
    from onnx import numpy_helper

    if name not in inits:
        return None
    arr = numpy_helper.to_array(inits[name])
    return float(arr.reshape(-1)[0]) if arr.size == 1 else None


#: Abramowitz & Stegun 7.1.26: erf(a) = 1 − t·(a1 + t·(a2 + …))·exp(−a²), t = 1/(1 + p·a), a ≥ 0, |error| ≤ 1.5e-7
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def erf_gelu(model) -> int:
    """The exact GELU as PyTorch exports it — ``Div(x, √2) → Erf → Add(1) → Mul(x) [→ Mul(0.5)]`` —
    rewritten in builtin ops every TFLite runtime has, float and int8 alike. TFLite has no ERF:
    onnx2tf would emit a Flex op no phone runs (its own GELU match does not fire on this form, and its
    GELU op loses the tensor layout before a Transpose, as in BSRN), and its polynomial erf divides
    by ``|x| + 1e-11``, which int8 quantizes to a division by zero. Here the sign disappears instead:
    x·erf(x/√2) = |x|·erf(|x|/√2) (both factors odd), so GELU(x) = ½·(x + |x|·E(|x|/√2)) with E the
    A&S 7.1.26 erf on a ≥ 0, whose only division is by 1 + p·a ≥ 1. Float error ≤ 1e-7·|x|; the
    parity gate checks it. Where onnxsim folded the final ½ into the next op the ½ is left out too."""
    from onnx import helper, numpy_helper

    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)

    def scalar(name):
        arr = consts.get(name)
        return float(arr.reshape(-1)[0]) if arr is not None and arr.size == 1 else None

    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}

    def only(name):
        c = consumers.get(name, [])
        return c[0] if len(c) == 1 and name not in outputs else None

    def other(node, name):
        rest = [i for i in node.input if i != name]
        return rest[0] if len(node.input) == 2 and len(rest) == 1 else None

    added_consts: dict[float, str] = {}

    def const(v: float) -> str:
        if v not in added_consts:
            name = f"srdeploy_gelu_c{len(added_consts)}"
            g.initializer.append(numpy_helper.from_array(np.array(v, np.float32), name))
            added_consts[v] = name
        return added_consts[v]

    drop, new_nodes, changed = set(), {}, 0
    for div in g.node:
        if div.op_type not in ("Div", "Mul") or len(div.input) != 2:
            continue
        x, c = div.input
        k = scalar(c)
        if k is None or k == 0 or abs((k if div.op_type == "Div" else 1 / k) - 2 ** 0.5) > 1e-6:
            continue
        erf = only(div.output[0])
        add = only(erf.output[0]) if erf is not None and erf.op_type == "Erf" else None
        if add is None or add.op_type != "Add" or scalar(other(add, erf.output[0]) or "") != 1.0:
            continue
        mul = only(add.output[0])
        if mul is None or mul.op_type != "Mul" or other(mul, add.output[0]) != x:
            continue
        half = only(mul.output[0])
        halved = half is not None and half.op_type == "Mul" and scalar(other(half, mul.output[0]) or "") == 0.5
        out = (half if halved else mul).output[0]
        pre = f"{out}_gelu"
        nodes, n_id = [], [0]

        def op(kind, *inputs, name=None):
            n_id[0] += 1
            o = name or f"{pre}_{n_id[0]}"
            nodes.append(helper.make_node(kind, list(inputs), [o], name=o))
            return o

        a = op("Abs", x)
        b = op("Mul", a, const(2 ** -0.5))
        t = op("Div", const(1.0), op("Add", op("Mul", b, const(_AS_P)), const(1.0)))
        poly = op("Mul", t, const(_AS_A[-1]))
        for coef in reversed(_AS_A[:-1]):
            poly = op("Mul", op("Add", poly, const(coef)), t)
        e = op("Exp", op("Mul", op("Mul", b, b), const(-1.0)))
        erf_b = op("Sub", const(1.0), op("Mul", poly, e))
        total = op("Add", x, op("Mul", a, erf_b), name=None if halved else out)
        if halved:
            op("Mul", total, const(0.5), name=out)
        new_nodes[id(div)] = nodes
        drop |= {id(n) for n in (erf, add, mul) + ((half,) if halved else ())}
        changed += 1
    if changed:
        kept = []
        for n in g.node:
            if id(n) in new_nodes:
                kept.extend(new_nodes[id(n)])
            elif id(n) not in drop:
                kept.append(n)
        del g.node[:]
        g.node.extend(kept)
    return changed


#: name → transform; the exporter's ``--rewrites`` picks from these (applied in this order)
REWRITES: dict[str, Callable] = {"split_mean": split_spatial_mean, "dcr": depth_to_space_dcr, "gelu": erf_gelu}


def apply_rewrites(model, names) -> dict[str, int]:
    unknown = [n for n in names if n not in REWRITES]
    if unknown:
        from ..errors import SrDeployError

        raise SrDeployError(f"unknown rewrite(s) {', '.join(unknown)}; available: {', '.join(REWRITES)}")
    applied = {n: REWRITES[n](model) for n in names}
    if any(applied.values()):  # constants the rewritten nodes no longer read (onnxruntime warns of each)
        g = model.graph
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        keep = [t for t in g.initializer if t.name in used]
        if len(keep) != len(g.initializer):
            del g.initializer[:]
            g.initializer.extend(keep)
    return applied
