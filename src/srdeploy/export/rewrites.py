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


#: name → transform; the exporter's ``--rewrites`` picks from these (applied in this order)
REWRITES: dict[str, Callable] = {"split_mean": split_spatial_mean, "dcr": depth_to_space_dcr}


def apply_rewrites(model, names) -> dict[str, int]:
    unknown = [n for n in names if n not in REWRITES]
    if unknown:
        from ..errors import SrDeployError

        raise SrDeployError(f"unknown rewrite(s) {', '.join(unknown)}; available: {', '.join(REWRITES)}")
    return {n: REWRITES[n](model) for n in names}
