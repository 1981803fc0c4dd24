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
* ``concat_conv`` — a channel Concat read only by a 1×1 Conv becomes one 1×1 Conv per part,
  summed (``W·[a; b] + bias = W_a·a + W_b·b + bias``): exact up to float summation order. For INT8:
  TFLite's CONCATENATION gives all its inputs one scale and pushes it back through the
  STRIDED_SLICEs that feed it, so each IMDN distillation block's three LeakyReLU outputs and its
  last conv share the widest range of the four; summed per-part convs let each keep its own.
* ``slice_conv`` — a channel Slice read only by convs becomes zero rows in their weights: each
  conv reads the whole tensor, with zero weights on the channels the slice dropped (exact: the
  dropped channels add exact zeros; only the summation order changes). STRIDED_SLICE is a copy
  that XNNPACK runs at memory speed: measured on imdn_rtc's 30 slices at 720×480, 28 % of FP32
  and 51 % of INT8 time, while a 3×3 conv with 12 input channels costs about what one with 9 does.
  After ``concat_conv`` every slice of an IMDN distillation block is read only by convs.
* ``slice_select`` — every channel slice still left (e.g. IMDN's distilled piece going into the
  concat) becomes a 1×1 conv with a 0/1 selection matrix: bit-identical in float, faster than the
  STRIDED_SLICE copy, and in INT8 it ends the scale sharing between the concat and the whole
  activation the slice was cut from (a slice must keep its input's scale; a conv need not).
* ``conv_split`` — a conv whose output (directly, or through one LeakyRelu / Relu) is read only by
  channel Slices becomes one conv per slice, each computing just that slice's output channels (its
  rows of the weights and bias), followed by its own copy of the activation: the same products and
  sums, exact up to the summation order a kernel picks for another output width (onnxruntime: a few
  ulps apart on some shapes), with the same MACs and no STRIDED_SLICE copy. For INT8 it gives what
  ``slice_select`` gives — each part its own scale (a slice must keep its input's) — without
  ``slice_select``'s 1×1 selection convs or ``slice_conv``'s zero-padded conv inputs, which cost
  imdn x4 17 % of its INT8 time (docs/RESULTS.md, issue 17 item 3). Runs before the two slice
  rewrites, which then find no slices left where it applied.
* ``gelu`` — the exact GELU (``x·½·(1 + erf(x/√2))``, as PyTorch exports it) in builtin ops with no
  division that int8 can turn into a division by zero (see :func:`erf_gelu`); TFLite has no ERF.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["REWRITES", "DEFAULT_REWRITES", "apply_rewrites", "depth_to_space_dcr", "concat_conv", "conv_split", "slice_conv"]


def _channel_counts(model) -> tuple[dict, dict]:
    """``{tensor: channels}`` and ``{tensor: onnx element type}`` of every 4-D tensor whose channel
    count shape inference knows (values, graph inputs and outputs)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    channels, dtypes = {}, {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].HasField("dim_value"):
            channels[vi.name] = dims[1].dim_value
            dtypes[vi.name] = vi.type.tensor_type.elem_type
    return channels, dtypes


def _attrs(node) -> dict:
    """A node's attributes as ``{name: python value}``."""
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _constants(graph) -> dict:
    """``{tensor: TensorProto}`` of every initializer and every Constant node's value (an unsimplified
    export carries e.g. Slice bounds as Constant nodes)."""
    consts = {t.name: t for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = n.attribute[0].t
    return consts


def _consumers(graph, name: str) -> list:
    """Nodes reading *name*, plus the graph output of that name (a consumer too)."""
    return [n for n in graph.node if name in n.input] + [o for o in graph.output if o.name == name]


def depth_to_space_dcr(model) -> int:
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    changed = 0
    for node in graph.node:
        if node.op_type != "DepthToSpace":
            continue
        attrs = _attrs(node)
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
        attrs = _attrs(node)
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


def concat_conv(model) -> int:
    """``Conv1x1(Concat(p1..pK, axis=1))`` → ``Conv1x1(p1) + … + Conv1x1(pK)``, the bias on the last.

    Only where the Concat has no other reader, the conv is a plain 1×1 (group 1, stride 1, no
    padding or dilation) with constant weights of its own, and every part's channel count is
    known from shape inference."""
    from onnx import helper, numpy_helper

    graph = model.graph
    channels, _ = _channel_counts(model)
    inits = {t.name: t for t in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    replace: dict[int, list] = {}
    drop: set[int] = set()
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        cat = producers.get(node.input[0])
        if cat is None or cat.op_type != "Concat" or len(_consumers(graph, node.input[0])) != 1:
            continue
        attrs = _attrs(node)
        cat_axis = _attrs(cat).get("axis")
        plain = (attrs.get("group", 1) == 1 and all(v == 1 for v in attrs.get("strides", [1, 1]))
                 and all(v == 1 for v in attrs.get("dilations", [1, 1])) and not any(attrs.get("pads", [0]))
                 and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"))
        weights = [n for n in node.input[1:] if n]
        if cat_axis not in (1, -3) or not plain or any(n not in inits or len(_consumers(graph, n)) != 1
                                                         for n in weights):
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        parts = list(cat.input)
        sizes = [channels.get(p) for p in parts]
        if w.shape[2:] != (1, 1) or None in sizes or sum(sizes) != w.shape[1] or len(parts) < 2:
            continue
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        new, off, partial = [], 0, None
        for k, (part, c) in enumerate(zip(parts, sizes)):
            wname = f"{node.name or node.output[0]}_part{k}_w"
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w[:, off:off + c]), wname))
            off += c
            last = k == len(parts) - 1
            out = f"{node.output[0]}_part{k}"
            new.append(helper.make_node("Conv", [part, wname] + ([bias] if last and bias else []), [out],
                                        name=f"{node.name}_part{k}", kernel_shape=[1, 1]))
            if partial is None:
                partial = out
            else:
                total = node.output[0] if last else f"{node.output[0]}_sum{k}"
                new.append(helper.make_node("Add", [partial, out], [total], name=f"{node.name}_sum{k}"))
                partial = total
        idx = list(graph.node).index(node)
        replace[idx] = new
        drop.add(list(graph.node).index(cat))
    if replace:
        nodes = list(graph.node)
        out_nodes = []
        for i, n in enumerate(nodes):
            if i in drop:
                continue
            out_nodes += replace.get(i, [n])
        del graph.node[:]
        graph.node.extend(out_nodes)
    return len(replace)


def _slice_channels(node, inits: dict, channels: int | None) -> tuple[int, int] | None:
    """``(start, stop)`` of a constant step-1 Slice along axis 1 (of a tensor of *channels*), else None."""
    from onnx import numpy_helper

    if len(node.input) < 3 or channels is None:
        return None
    consts = []
    for name in node.input[1:]:
        if not name:
            consts.append(None)
            continue
        if name not in inits:
            return None
        consts.append([int(v) for v in numpy_helper.to_array(inits[name]).reshape(-1)])
    starts, ends = consts[0], consts[1]
    axes = consts[2] if len(consts) > 2 and consts[2] is not None else list(range(len(starts)))
    steps = consts[3] if len(consts) > 3 and consts[3] is not None else [1] * len(starts)
    if len(starts) != 1 or [a % 4 for a in axes] != [1] or steps != [1]:
        return None
    start, stop = starts[0], ends[0]
    start = max(0, start + channels if start < 0 else start)
    stop = min(channels, stop + channels if stop < 0 else stop)
    return (start, stop) if 0 <= start < stop <= channels else None


def slice_conv(model) -> int:
    """A channel Slice whose every reader is a Conv's data input → those convs read the Slice's
    input, their weights zero-padded on the dropped channels (group-1 convs with private constant
    weights only; any other reader leaves the Slice alone)."""
    from onnx import numpy_helper

    graph = model.graph
    channels, _ = _channel_counts(model)
    inits = {t.name: t for t in graph.initializer}
    consts = _constants(graph)  # Slice bounds may come from Constant nodes (an unsimplified export)
    changed, dead = 0, set()
    for index, node in enumerate(graph.node):
        if node.op_type != "Slice":
            continue
        span = _slice_channels(node, consts, channels.get(node.input[0]))
        readers = _consumers(graph, node.output[0])
        if span is None or not readers:
            continue

        def fits(r) -> bool:
            if not hasattr(r, "op_type") or r.op_type != "Conv" or list(r.input).count(node.output[0]) != 1 \
                    or r.input[0] != node.output[0]:
                return False
            attrs = _attrs(r)
            return (attrs.get("group", 1) == 1 and r.input[1] in inits and len(_consumers(graph, r.input[1])) == 1
                    and numpy_helper.to_array(inits[r.input[1]]).shape[1] == span[1] - span[0])

        if not all(fits(r) for r in readers):
            continue
        full = channels[node.input[0]]
        for r in readers:
            w = numpy_helper.to_array(inits[r.input[1]])
            padded = np.zeros((w.shape[0], full, *w.shape[2:]), w.dtype)
            padded[:, span[0]:span[1]] = w
            inits[r.input[1]].CopyFrom(numpy_helper.from_array(padded, r.input[1]))
            r.input[0] = node.input[0]
        dead.add(index)
        changed += 1
    if dead:
        keep = [n for i, n in enumerate(graph.node) if i not in dead]
        del graph.node[:]
        graph.node.extend(keep)
    return changed


def _split_channels(node, consts: dict, channels: int) -> list[tuple[int, int]] | None:
    """The ``(start, stop)`` of each output of a Split along axis 1 with constant sizes (or equal parts)."""
    from onnx import numpy_helper

    attrs = _attrs(node)
    if attrs.get("axis", 0) % 4 != 1:
        return None
    if len(node.input) > 1 and node.input[1]:
        if node.input[1] not in consts:
            return None
        sizes = [int(v) for v in numpy_helper.to_array(consts[node.input[1]]).reshape(-1)]
    elif "split" in attrs:  # opset < 13
        sizes = [int(v) for v in attrs["split"]]
    else:
        n = len(node.output)
        if channels % n:
            return None
        sizes = [channels // n] * n
    if len(sizes) != len(node.output) or sum(sizes) != channels or min(sizes) <= 0:
        return None
    starts = np.cumsum([0, *sizes])
    return [(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]


#: elementwise activations conv_split copies onto each part (their output channel c depends on input channel c only)
_ELEMENTWISE = ("LeakyRelu", "Relu")


def conv_split(model) -> int:
    """A group-1 Conv with private constant weights whose output -- directly or through one LeakyRelu /
    Relu read by nothing else -- is read only by constant step-1 channel Slices, or by one channel Split,
    → one Conv (+ activation) per Slice or Split output, writing that output (see the module docstring).
    Returns how many convs were split."""
    from onnx import helper, numpy_helper

    graph = model.graph
    channels, _ = _channel_counts(model)
    inits = {t.name: t for t in graph.initializer}
    consts = _constants(graph)
    producers = {o: n for n in graph.node for o in n.output}
    replace: dict[int, list] = {}  # node index -> nodes taking its place
    drop: set[int] = set()
    index_of = {id(n): i for i, n in enumerate(graph.node)}
    for conv in graph.node:
        if conv.op_type != "Conv" or _attrs(conv).get("group", 1) != 1 or len(conv.input) < 2:
            continue
        wnames = [n for n in conv.input[1:] if n]
        if any(n not in inits or len(_consumers(graph, n)) != 1 for n in wnames):
            continue  # shared or computed weights: leave this one alone
        readers = _consumers(graph, conv.output[0])
        act = None
        if (len(readers) == 1 and getattr(readers[0], "op_type", None) in _ELEMENTWISE
                and producers.get(readers[0].input[0]) is conv):
            act = readers[0]
            readers = _consumers(graph, act.output[0])
        tensor = (act or conv).output[0]
        full = channels.get(tensor)
        if full is None or not readers:
            continue
        if len(readers) == 1 and getattr(readers[0], "op_type", None) == "Split":
            spans = _split_channels(readers[0], consts, full)  # one Split: each of its outputs is a part
            if spans is None or readers[0].input[0] != tensor:
                continue
            outputs = list(readers[0].output)
        else:
            spans = [(_slice_channels(r, consts, full) if getattr(r, "op_type", None) == "Slice"
                      and r.input[0] == tensor else None) for r in readers]
            if any(s is None for s in spans):
                continue
            outputs = [r.output[0] for r in readers]
        w = numpy_helper.to_array(inits[conv.input[1]])
        b = numpy_helper.to_array(inits[conv.input[2]]) if len(conv.input) > 2 and conv.input[2] else None
        attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        new = []
        for k, (target, (lo, hi)) in enumerate(zip(outputs, spans)):
            stem = f"{conv.name or conv.output[0]}_split{k}"
            ins = [conv.input[0], f"{stem}_w"]
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w[lo:hi]), ins[1]))
            if b is not None:
                ins.append(f"{stem}_b")
                graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(b[lo:hi]), ins[2]))
            out = target if act is None else f"{stem}_out"
            new.append(helper.make_node("Conv", ins, [out], name=stem, **attrs))
            if act is not None:
                new.append(helper.make_node(act.op_type, [out], [target], name=f"{stem}_act",
                                            **{a.name: helper.get_attribute_value(a) for a in act.attribute}))
        drop.update(index_of[id(r)] for r in readers)
        replace[index_of[id(conv)]] = new
        if act is not None:
            drop.add(index_of[id(act)])
    if replace:
        nodes = []
        for i, n in enumerate(graph.node):
            if i in drop:
                continue
            nodes += replace.get(i, [n])
        del graph.node[:]
        graph.node.extend(nodes)
        _prune(graph)  # the split convs' old weights (so a direct call leaves no dead ones either)
    return len(replace)


def slice_select(model) -> int:
    """Every remaining constant channel Slice of a 4-D tensor → a 1×1 Conv whose weights are a 0/1
    selection matrix (exact for finite values: one term times 1, the rest times 0).

    Why: XNNPACK's STRIDED_SLICE copy is slow (imdn_rtc's 3-of-12-channel slices: 2 ms FP32 and 3 ms
    INT8 each at 720×480, more than a 3×3 conv), and in INT8 a slice must share its input's scale,
    so a concat it feeds pulls the whole input tensor onto the concat's range; a conv's output gets
    a scale of its own."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    channels, dtypes = _channel_counts(model)
    consts = _constants(graph)
    nodes, changed = [], 0
    for node in graph.node:
        full = channels.get(node.input[0]) if node.op_type == "Slice" else None
        span = _slice_channels(node, consts, full) if full else None
        if span is None or dtypes.get(node.input[0]) != onnx.TensorProto.FLOAT:
            nodes.append(node)
            continue
        sel = np.zeros((span[1] - span[0], full, 1, 1), np.float32)
        sel[np.arange(span[1] - span[0]), np.arange(span[0], span[1])] = 1.0
        wname = f"{node.output[0]}_select_w"
        graph.initializer.append(numpy_helper.from_array(sel, wname))
        conv = helper.make_node("Conv", [node.input[0], wname], list(node.output), name=f"{node.name}_select",
                                kernel_shape=[1, 1])
        nodes.append(conv)
        changed += 1
    if changed:
        del graph.node[:]
        graph.node.extend(nodes)
    return changed


#: name → transform; the exporter's ``--rewrites`` picks from these, applied in this order whatever
#: the order asked for (concat_conv must run before slice_conv for the slices it frees to go)
REWRITES: dict[str, Callable] = {"split_mean": split_spatial_mean, "dcr": depth_to_space_dcr, "gelu": erf_gelu,
                                 "concat_conv": concat_conv, "conv_split": conv_split, "slice_conv": slice_conv,
                                 "slice_select": slice_select}

#: the exporter's default. conv_split / slice_conv / slice_select / concat_conv are opt-in until the whole suite and
#: every model's table have been re-run with them (measured so far: docs/RESULTS.md, issue 17 item 3).
DEFAULT_REWRITES: tuple[str, ...] = ("split_mean", "dcr", "gelu")


def apply_rewrites(model, names) -> dict[str, int]:
    unknown = [n for n in names if n not in REWRITES]
    if unknown:
        from ..errors import SrDeployError

        raise SrDeployError(f"unknown rewrite(s) {', '.join(unknown)}; available: {', '.join(REWRITES)}")
    applied = {n: REWRITES[n](model) for n in REWRITES if n in set(names)}
    if any(applied.values()):
        _prune(model.graph)
    return applied


def _prune(g) -> None:
    """Drop the Constant nodes and initializers nothing reads any more (onnxruntime warns of each)."""
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    live = [n for n in g.node if n.op_type != "Constant" or any(o in used for o in n.output)]
    if len(live) != len(g.node):
        del g.node[:]
        g.node.extend(live)
    keep = [t for t in g.initializer if t.name in used]
    if len(keep) != len(g.initializer):
        del g.initializer[:]
        g.initializer.extend(keep)
