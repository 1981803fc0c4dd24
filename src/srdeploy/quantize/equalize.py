"""Per-channel activation equalization: an exact rescaling of a float graph's channels that suits
per-tensor int8 activations.

TFLite's int8 scheme gives each activation tensor one scale, set by its widest channel; a channel
whose values span a tenth of that range is quantized with a tenth of the levels. In IMDN's
distillation blocks the channels of one conv output are up to 7× apart (imdn_rtc, min..max on 32
DIV2K crops: ``blocks.3.c1`` 6.8 … 46.7; benchmarks/int8_channel_spread.py): per-tensor rounding adds
3–9 dB more noise to those tensors than per-channel would. When a conv's
output reaches only other convs — through positively homogeneous, per-channel ops (ReLU,
LeakyReLU, max pooling, spatial means, a channel attention's product) and channel slices and
concatenations — its output channel ``c`` can be
multiplied by ``s_c > 0`` (the conv's weight row and bias) and every reading conv's input column
divided by ``s_c``: ``leaky(s·x) = s·leaky(x)`` for ``s > 0``, and with ``s_c`` a power of two every
product and sum scales exactly, so the float function is unchanged bit for bit, while every
channel of that tensor spans more of the shared range. This is the activation side of data-free cross-layer equalization (Nagel et al., ICCV 2019) with
statistics from the calibration crops: ``s_c = (R / r_c)^alpha`` (``R``, ``r_c``: the tensor's and
the channel's min..max span) as a power of two, and never so large that the channel reaches past the
tensor's own min or max (:func:`scales_for`), so the tensor's calibrated range does not grow — the
first form, with percentile spans, widened min/max-calibrated tensors and cost imdn_rtc 5 dB at
64×64 on the parity gate's image. ``alpha`` trades the activation's resolution (1: every channel spans the whole range)
against the reading convs' weights, whose per-output-channel int8 scale is set by their largest
column, so a column divided by ``s_c`` gets fewer levels; ``alpha = 0.5`` (measured in
docs/RESULTS.md: 1.0 was worse on imdn_rtc).

Written by hand: neither the TFLite converter nor ai-edge-quantizer has an equalization pass, and
this one must follow channels through the slices and concatenations of the ONNX graph every source
(registry model, ONNX file, ``nn.Module``) is exported to; it runs before the exact rewrites
(``slice_conv``, ``slice_select``) that make the INT8 graph.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..export.rewrites import _attrs, _channel_counts, _constants, _slice_channels

__all__ = ["EqualizationPlan", "plan", "equalize"]

#: per-channel ops for which f(s·x) = s·f(x) for every s > 0, on input 0 (the rest are attributes)
_HOMOGENEOUS = {"Relu", "LeakyRelu", "MaxPool"}
#: no channel is scaled by more than this (a channel that is ~0 on every crop would otherwise get an
#: enormous factor that real images outside the crops would overflow)
MAX_SCALE = 16.0


@dataclass
class _Region:
    """A conv whose output channels may be rescaled, and the conv input columns that undo it."""
    producer: object  # the onnx NodeProto of the conv
    channels: int
    #: (reading conv node, first column, first producer channel, count)
    readers: list = field(default_factory=list)


@dataclass
class EqualizationPlan:
    regions: list
    scales: dict = field(default_factory=dict)  # producer output name -> s (np.ndarray)

    def describe(self) -> dict:
        top = [float(s.max()) for s in self.scales.values()]
        return {"tensors": len(self.regions), "max_scale": round(max(top), 3) if top else 1.0}


def _private_weight(node, inits: dict, readers_of: dict) -> bool:
    """A group-1 Conv whose weight (and bias) initializers no other node reads."""
    if node.op_type != "Conv" or _attrs(node).get("group", 1) != 1:
        return False
    return all(not name or (name in inits and len(readers_of.get(name, ())) == 1) for name in node.input[1:])


def _constant(name: str, consts: dict) -> np.ndarray | None:
    from onnx import numpy_helper

    return numpy_helper.to_array(consts[name]) if name in consts else None


def _walk(graph, at: int, readers_of: dict, channels: dict, inits: dict, consts: dict) -> list | None:
    """The conv input columns that undo a rescaling of *producer*'s output channels, or None when some
    reader would see the rescaling (*at*: the producer's index in the graph's nodes; *readers_of*: tensor
    name → indices of the nodes reading it). One pass over the nodes the producer reaches, in graph
    order (ONNX keeps nodes in topological order, so a node's inputs are settled before it) gives every tensor that carries the producer's channels a state: which of them
    (first, count) at which channel offset, and the *degree* d — the tensor scales by s^d when the
    producer's channels scale by s. Homogeneous ops, slices, concats, spatial means and a product with
    an unrelated tensor keep the degree; a product of two carriers adds degrees, Pow multiplies and Sqrt
    halves it; Add/Sub need two carriers of one state. A conv may read a carrier of degree 1 (its columns
    undo it); any other reader (a graph output, Sigmoid, an Add with an unrelated tensor...) ends the
    walk. This takes IMDN's contrast-aware attention (x · f(std(x) + mean(x))) in its stride."""
    import heapq

    nodes = graph.node
    producer = nodes[at]
    state = {producer.output[0]: (0, channels[producer.output[0]], 0, 1.0)}  # first, count, offset, degree
    readers = []
    # only the nodes the producer reaches, smallest index first: linear in the region, not the graph
    todo, done = list(readers_of.get(producer.output[0], ())), set()
    heapq.heapify(todo)
    while todo:
        i = heapq.heappop(todo)
        if i in done:
            continue
        done.add(i)
        r = nodes[i]
        mine = [k for k, name in enumerate(r.input) if name in state]
        first, count, offset, degree = st = state[r.input[mine[0]]]
        op, out = r.op_type, None
        keeps_channels = r.output[0] in channels and channels[r.output[0]] == channels.get(r.input[mine[0]])
        if op == "Conv" and mine == [0] and degree == 1 and _private_weight(r, inits, readers_of):
            readers.append((r, offset, first, count))
            continue
        if op in _HOMOGENEOUS and mine == [0] and keeps_channels:
            out = st
        elif op == "ReduceMean" and mine == [0] and keeps_channels and _attrs(r).get("keepdims", 1) == 1 \
                and len(r.input) == 1 and {a % 4 for a in _attrs(r).get("axes", [1])} <= {2, 3}:
            out = st
        elif op == "Slice" and mine == [0]:
            span = _slice_channels(r, consts, channels.get(r.input[0]))
            if span is None:
                return None
            lo, hi = max(span[0], offset), min(span[1], offset + count)
            if lo < hi:  # the part of the producer's channels the slice keeps
                out = (first + lo - offset, hi - lo, lo - span[0], degree)
        elif op == "Concat" and len(mine) == 1 and _attrs(r).get("axis") in (1, -3) \
                and all(i in channels for i in r.input):
            base = sum(channels[i] for i in r.input[:mine[0]])
            out = (first, count, base + offset, degree)
        elif op in ("Add", "Sub") and mine == [0, 1] and state[r.input[1]] == st and keeps_channels:
            out = st
        elif op == "Mul" and keeps_channels and len(mine) == 1:
            out = st  # times a tensor the rescaling does not reach (e.g. an attention map)
        elif op == "Mul" and keeps_channels and mine == [0, 1] and state[r.input[1]][:3] == st[:3]:
            out = (first, count, offset, degree + state[r.input[1]][3])
        elif op == "Pow" and mine == [0] and keeps_channels:
            e = _constant(r.input[1], consts)
            if e is None or e.size != 1:
                return None
            out = (first, count, offset, degree * float(e.reshape(-1)[0]))
        elif op == "Sqrt" and mine == [0] and keeps_channels:
            out = (first, count, offset, degree / 2)
        else:
            return None
        if out is not None:
            state[r.output[0]] = out
            for j in readers_of.get(r.output[0], ()):
                heapq.heappush(todo, j)
    if any(o.name in state for o in graph.output):
        return None
    return readers


def plan(model) -> EqualizationPlan:
    """Find every conv whose output can be rescaled channel by channel without changing the graph's
    function (:func:`_walk`): the rescaling reaches only the data input of private-weight convs."""
    graph = model.graph
    channels, _ = _channel_counts(model)
    inits = {t.name: t for t in graph.initializer}
    consts = _constants(graph)  # exponents and slice bounds may also be Constant nodes
    readers_of: dict = {}
    for i, n in enumerate(graph.node):
        for name in set(n.input):
            readers_of.setdefault(name, []).append(i)
    regions = []
    for at, node in enumerate(graph.node):
        if not _private_weight(node, inits, readers_of) or node.output[0] not in channels:
            continue
        readers = _walk(graph, at, readers_of, channels, inits, consts)
        if readers:
            regions.append(_Region(node, channels[node.output[0]], readers))
    return EqualizationPlan(regions)


def _channel_extremes(model, names: list[str], frames: np.ndarray) -> dict:
    """Per-channel (min, max) of each tensor over the frames (NHWC float32 in [0, 1])."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    for name in names:
        if name not in have:
            probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feed = sess.get_inputs()[0].name
    out: dict = {}
    for frame in frames:
        outs = sess.run(names, {feed: np.ascontiguousarray(frame.transpose(2, 0, 1)[None], dtype=np.float32)})
        for name, t in zip(names, outs):
            flat = t[0].reshape(t.shape[1], -1)
            lo, hi = flat.min(axis=1).astype(np.float64), flat.max(axis=1).astype(np.float64)
            if name in out:
                lo, hi = np.minimum(out[name][0], lo), np.maximum(out[name][1], hi)
            out[name] = (lo, hi)
    return out


def scales_for(lo: np.ndarray, hi: np.ndarray, alpha: float) -> np.ndarray:
    """Power-of-two channel factors for a tensor whose channels span [lo_c, hi_c] (min/max on the
    calibration crops): ``(R / r_c)^alpha`` rounded to a power of two (``R``, ``r_c``: the tensor's
    and the channel's span, both including 0), never so large that a scaled channel reaches past
    the tensor's own min or max — so the tensor's min/max range, and with it the int8 scale the
    converter's min/max calibration gives it, never grows; only its narrow channels get more levels."""
    lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
    low, high = lo.min(), hi.max()
    span, r = high - low, hi - lo
    if not np.isfinite(span) or span <= 0:
        return np.ones_like(r, dtype=np.float32)
    k = np.round(alpha * np.log2(span / np.maximum(r, span / MAX_SCALE ** (1 / alpha))))
    with np.errstate(divide="ignore", over="ignore"):  # a channel ~0 on one side has room to spare
        room = np.minimum(np.where(lo < 0, low / np.where(lo < 0, lo, -1.0), np.inf),
                          np.where(hi > 0, high / np.where(hi > 0, hi, 1.0), np.inf))
    k = np.minimum(k, np.floor(np.log2(np.maximum(room, 1.0))))
    return np.exp2(np.clip(k, 0, np.log2(MAX_SCALE))).astype(np.float32)


def equalize(model, frames: np.ndarray, alpha: float = 0.5) -> EqualizationPlan:
    """Rescale, in place, the channels of every conv output :func:`plan` finds by :func:`scales_for`
    of their min/max on *frames* (NHWC float32 [0, 1] crops). Returns the plan with the scales used."""
    from onnx import numpy_helper

    eq = plan(model)
    if not eq.regions or alpha == 0:
        return eq
    inits = {t.name: t for t in model.graph.initializer}
    extremes = _channel_extremes(model, [r.producer.output[0] for r in eq.regions], frames)

    def edit(name, fn):
        arr = numpy_helper.to_array(inits[name]).copy()
        inits[name].CopyFrom(numpy_helper.from_array(fn(arr), name))

    for region in eq.regions:
        # powers of two: multiplying and dividing by 2^k is exact in float, so the rescaled graph
        # computes bit for bit what the original did (no rounding of weights, biases or sums)
        s = scales_for(*extremes[region.producer.output[0]], alpha)
        eq.scales[region.producer.output[0]] = s
        edit(region.producer.input[1], lambda w: w * s.reshape(-1, *([1] * (w.ndim - 1))))
        if len(region.producer.input) > 2 and region.producer.input[2]:
            edit(region.producer.input[2], lambda b: b * s)
        for conv, column, first, count in region.readers:
            part = s[first:first + count]

            def divide(w, column=column, part=part):
                w[:, column:column + len(part)] /= part.reshape(1, -1, *([1] * (w.ndim - 2)))
                return w

            edit(conv.input[1], divide)
    return eq
