"""Quantization-aware fine-tuning against the exact INT8 scheme TFLite's converter will build.

Post-training quantization of these SR networks loses 0.3–1.3 dB (docs/RESULTS.md); the error is
spread over every layer and comes partly from the converter's own rules (each CONCATENATION gives
all its inputs one scale, propagated back through the slices onto the LeakyReLU outputs). QAT fixes
that only if it simulates *those* scales, so the simulation here is built from the converter's
output, not from the PyTorch model:

1. the calibrated float TFLite graph (``_experimental_calibrate_only``, ranges already chosen) is
   turned into a torch module op for op, its conv weights and biases as trainable parameters;
2. every activation tensor is fake-quantized with the scale and zero point that tensor has in the
   INT8 model the converter made from those same ranges (per-tensor asymmetric int8), weights
   per-channel symmetric [-127, 127] with scales from their current max-abs, biases on the int32
   grid of input scale × weight scale — TFLite's int8 scheme;
3. the weights, and the scale / zero point of each group of tensors that share one scale, are
   fine-tuned so the fake-quantized graph matches the float graph (the original weights, no fake
   quantization) on random crops of the calibration images, Adam + cosine decay, deterministic
   from the seed;
4. the trained float weights are written back into the calibrated graph, each learned range as the
   min/max from which the converter derives exactly that scale and zero point, and the converter
   quantizes it again — so the activation scales are the ones the training saw, and the integer
   model is still the converter's own.

Written by hand because no library fine-tunes against TFLite's converter: PyTorch's QAT and
litert-torch's PT2E flow quantize the PyTorch graph, whose scale-sharing differs from what
onnx2tf + the MLIR quantizer emit. The fixed-scale and per-channel fake quantizers are torch's own
(``torch.fake_quantize_per_tensor_affine`` / ``_per_channel_affine``, straight-through gradients); the
learnable per-tensor one is :func:`fake_quant_learnable` (LSQ+ written as plain tensor ops, so that
``torch.compile`` fuses it into one loop: see there).
"""
from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import SrDeployError

__all__ = ["QATResult", "TFLiteGraph", "fake_quant_learnable", "finetune", "qat_device", "qat_patches"]

#: NHWC axis -> NCHW axis (the simulation runs NCHW for torch's convolutions)
_NCHW = {0: 0, 1: 2, 2: 3, 3: 1, -1: 1}


def _const(model, tensor) -> np.ndarray | None:
    from ai_edge_litert import schema_py_generated as schema

    buf = model.buffers[tensor.buffer].data if tensor.buffer < len(model.buffers) else None
    if buf is None or len(buf) == 0:
        return None
    dtype = {schema.TensorType.FLOAT32: np.float32, schema.TensorType.INT32: np.int32,
             schema.TensorType.INT64: np.int64, schema.TensorType.INT8: np.int8,
             schema.TensorType.FLOAT16: np.float16}[tensor.type]
    return np.frombuffer(bytes(bytearray(buf)), dtype=dtype).reshape([int(d) for d in (tensor.shape if tensor.shape is not None else ())])


def _activation(x: torch.Tensor, fused: int) -> torch.Tensor:
    # ActivationFunctionType: 0 NONE, 1 RELU, 2 RELU_N1_TO_1, 3 RELU6
    if fused == 0:
        return x
    if fused == 1:
        return F.relu(x)
    if fused == 2:
        return x.clamp(-1, 1)
    if fused == 3:
        return x.clamp(0, 6)
    raise SrDeployError(f"QAT: fused activation {fused} is not simulated")


def _same_pad(x: torch.Tensor, k: tuple[int, int], s: tuple[int, int], d: tuple[int, int]) -> torch.Tensor:
    """TensorFlow's SAME padding (the extra pixel goes bottom/right)."""
    pads = []
    for size, kk, ss, dd in ((x.shape[3], k[1], s[1], d[1]), (x.shape[2], k[0], s[0], d[0])):
        eff = (kk - 1) * dd + 1
        total = max((math.ceil(size / ss) - 1) * ss + eff - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


#: int8 activation grid (TFLite: asymmetric, per tensor)
_QMIN, _QMAX = -128, 127


def _fake_quant_lsq(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """Per-tensor asymmetric int8 fake quantization with a learnable scale and zero point (LSQ+).

    Forward: ``(clamp(round(x / scale) + round(zero), -128, 127) - round(zero)) * scale`` -- the same
    values as ``torch._fake_quantize_learnable_per_tensor_affine`` (x times 1/scale, rounded half to
    even). Gradients by autograd through straight-through roundings, which gives LSQ+'s: x 1 inside the
    range and 0 outside; scale round(x/s) - x/s inside and (clamped level - zero) outside; zero point 0
    inside and -scale outside. (torch's kernel rounds the zero point differently in its backward than
    in its forward, trunc(zero + 0.5) against round-half-even, so on a negative zero point its mask
    is one level off the forward's; here both use the forward's.)"""
    z = zero + (torch.round(zero).clamp(_QMIN, _QMAX) - zero).detach()
    a = x * (1.0 / scale)
    r = a + (torch.round(a) - a).detach()
    return (torch.clamp(r + z, _QMIN, _QMAX) - z) * scale


#: the compiled form of _fake_quant_lsq: None until first used, False where torch.compile is off or failed
_fused_lsq = None


def _to_stderr(msg: str) -> None:  # (stdout may be an export's --json document)
    import sys

    print(msg, file=sys.stderr, flush=True)


def fake_quant_learnable(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, log=None) -> torch.Tensor:
    """:func:`_fake_quant_lsq`, fused by ``torch.compile`` (inductor) into one loop forward and one
    backward. Why: a QAT step of these graphs spends most of its time in the ~80 learnable fake
    quantizers, not in the convolutions -- measured on imdn_rtc (batch 8, 64x64 crops, one thread):
    52 % of the step in torch's fake-quantize kernels (1.5 ms forward + 1.2 ms backward on one
    8x12x64x64 tensor), against 0.8 ms for both with the fused loop. The first call compiles (~20 s,
    cached on disk by torch); without a C++ compiler, or with SRDEPLOY_QAT_COMPILE=0, the same
    expression runs eagerly -- the same values, slower."""
    global _fused_lsq
    if _fused_lsq is None:
        _fused_lsq = False
        if os.environ.get("SRDEPLOY_QAT_COMPILE", "1") != "0":
            try:
                _fused_lsq = torch.compile(_fake_quant_lsq, dynamic=True)
            except Exception as exc:  # noqa: BLE001 -- no inductor on this platform: run eagerly
                (log or _to_stderr)(f"  QAT: torch.compile unavailable ({str(exc).splitlines()[0][:120]}); "
                                    "fake quantizers run eagerly (slower)")
    if _fused_lsq:
        try:
            # one memory layout (channels-last, TFLiteGraph's): a compiled function is specialised on
            # strides, and each other layout (a channel slice, a permuted tensor) would compile it again,
            # up to torch's recompile limit
            return _fused_lsq(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x.contiguous(),
                              scale, zero)
        except Exception as exc:  # noqa: BLE001 -- e.g. no C++ compiler: inductor fails at the first call
            _fused_lsq = False
            (log or _to_stderr)(f"  QAT: the fused fake quantizer could not be built "
                                f"({str(exc).splitlines()[0][:120]}); running it eagerly (the same values, slower)")
    return _fake_quant_lsq(x, scale, zero)


@dataclass
class _Op:
    kind: str
    inputs: list[int]
    outputs: list[int]
    options: object
    #: conv ops only: "w"/"b" -> (key in TFLiteGraph.weights, tensor index in the graph)
    params: dict = field(default_factory=dict)


class TFLiteGraph(nn.Module):
    """A calibrated float TFLite graph as a torch module (NCHW inside, NHWC ↔ NCHW at the edges).

    ``quantized`` (the INT8 model the converter made from the same graph and ranges) supplies the
    scale / zero point of every activation; ``forward(x, quant=True)`` fake-quantizes with them."""

    #: the layout the simulation runs in: channels-last (NHWC in memory, as TFLite) makes torch's CPU
    #: convolutions of these narrow layers ~1.2-2x faster than NCHW, forward and backward (12 channels 3x3:
    #: 8.9 -> 4.4 ms for batch 8 of 64x64); the values are the same up to float summation order
    memory_format = torch.channels_last

    SUPPORTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "LEAKY_RELU", "STRIDED_SLICE", "CONCATENATION", "ADD", "SUB",
                 "MUL", "DEPTH_TO_SPACE", "MEAN", "SQRT", "LOGISTIC", "RELU", "PAD", "MAX_POOL_2D",
                 "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "HARD_SWISH", "GELU", "DIV", "RSQRT")

    def __init__(self, calibrated: bytes, quantized: bytes) -> None:
        super().__init__()
        from ai_edge_litert.tools import flatbuffer_utils as fu

        from ..benchmark.profile import op_kind, op_name_map

        names = op_name_map()
        self._model = fu.convert_bytearray_to_object(bytearray(calibrated))
        sg = self._model.subgraphs[0]
        self.input_index, self.output_index = int(sg.inputs[0]), int(sg.outputs[0])
        self.static_shape = {i: [int(d) for d in (t.shape if t.shape is not None else ())]  # (None: a scalar)
                             for i, t in enumerate(sg.tensors)}
        self.weights = nn.ParameterDict()
        self.const: dict[int, torch.Tensor] = {}
        #: the same constants on the host: the shape-like operands (slice bounds, axes, pads, sizes) are read
        #: from here, so a graph on a GPU never waits for a device-to-host copy inside a step
        self.const_np: dict[int, np.ndarray] = {}
        self.ops: list[_Op] = []
        self.kept: dict[int, torch.Tensor] = {}  # see forward(keep=...)
        for op in sg.operators:
            kind = op_kind(self._model, op, names)
            if kind not in self.SUPPORTED:
                raise SrDeployError(f"QAT cannot simulate the TFLite op {kind}; export without --qat-steps")
            rec = _Op(kind, [int(i) for i in op.inputs], [int(o) for o in op.outputs], op.builtinOptions)
            for i in rec.inputs:
                if i < 0 or i in self.const:
                    continue
                arr = _const(self._model, sg.tensors[i])
                if arr is not None:
                    self.const[i] = torch.from_numpy(arr.copy())
                    self.const_np[i] = arr.copy()
            if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                w, b = rec.inputs[1], rec.inputs[2] if len(rec.inputs) > 2 else -1
                wt = self.const.pop(w).float()
                self.const_np.pop(w)
                # OHWI (conv) / 1HW(C·m) (depthwise) -> OIHW
                wt = wt.permute(0, 3, 1, 2) if kind == "CONV_2D" else wt.permute(3, 0, 1, 2)
                self.weights[f"w{w}"] = nn.Parameter(wt.contiguous())
                rec.params["w"] = (f"w{w}", w)
                if b >= 0:
                    self.weights[f"b{b}"] = nn.Parameter(self.const.pop(b).float().clone())
                    self.const_np.pop(b)
                    rec.params["b"] = (f"b{b}", b)
            self.ops.append(rec)
        self.qparams = self._activation_qparams(sg, quantized)
        self.learn_ranges = False
        #: learned rounding (see start_learned_rounding): weight key -> (scale, floor, fixed mask, nearest)
        self.rounding: dict[str, tuple[torch.Tensor, ...]] = {}
        self.round_v = nn.ParameterDict()
        # what quant=True quantizes (a diagnostic can narrow it: see error_by_group)
        self.quant_only: set[int] | None = None  # activation tensor indices; None = all
        self.quant_weights = True
        self.range_scale = nn.ParameterDict()
        self.range_zero = nn.ParameterDict()
        self.group_of: dict[int, str] = {}
        self.scale_bounds: dict[str, tuple[float, float]] = {}
        from .ranges import _image_tensors

        #: input, output and what feeds the output through rearranging ops: their ranges are the image's
        self.image_tensors = _image_tensors(self._model)
        self._range_groups()

    def _apply(self, fn, *args, **kwargs):
        """``.to(device)`` and friends: also the tensors kept in plain dicts (constant operands, learned
        rounding's fixed grids), which nn.Module does not see."""
        super()._apply(fn, *args, **kwargs)
        self.const = {i: fn(t) for i, t in self.const.items()}
        self.rounding = {k: tuple(fn(t) for t in v) for k, v in self.rounding.items()}
        return self

    # -- learnable ranges --------------------------------------------------------------------------
    #: ops whose output the converter gives its input's scale: one range for all their tensors
    _SAME_SCALE = ("STRIDED_SLICE", "CONCATENATION", "DEPTH_TO_SPACE", "PAD", "MAX_POOL_2D")

    #: a learned scale stays within this factor of the converter's (keeps XNNPACK's scale-ratio limits)
    SCALE_WINDOW = 8.0

    def _learned_scale(self, key: str) -> torch.Tensor:
        lo, hi = self.scale_bounds[key]
        return self.range_scale[key].clamp(lo, hi)

    def _range_groups(self) -> None:
        """Tensors that share one scale (same-scale ops joining equal qparams) form a group with one
        learnable (scale, zero point); the image-side tensors and fixed-range outputs (LOGISTIC's
        1/256) keep the converter's."""
        parent = {i: i for i in self.qparams}

        def find(i):
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        fixed = set(self.image_tensors)
        # pooled statistics (1x1 spatial, e.g. the contrast/mean of channel attention): a batch gives
        # them only N*C values, and learned on so few their scales collapsed to 0 within 60 steps on
        # IMDN x4 (XNNPACK then refuses the model), so they keep the converter's ranges
        fixed |= {i for i in self.qparams if len(self.static_shape.get(i, ())) == 4
                  and self.static_shape[i][1] * self.static_shape[i][2] == 1}
        for op in self.ops:
            if op.kind == "LOGISTIC":
                fixed.add(op.outputs[0])
            if op.kind in self._SAME_SCALE:
                for i in op.inputs[:1] if op.kind != "CONCATENATION" else op.inputs:
                    o = op.outputs[0]
                    if i in parent and o in parent and self.qparams[i] == self.qparams[o]:
                        parent[find(i)] = find(o)
        groups: dict[int, list[int]] = {}
        for i in self.qparams:
            groups.setdefault(find(i), []).append(i)
        for root, members in groups.items():
            if any(m in fixed for m in members):
                continue
            s, z = self.qparams[root]
            key = f"g{root}"
            self.range_scale[key] = nn.Parameter(torch.tensor([s], dtype=torch.float32))
            self.scale_bounds[key] = (s / self.SCALE_WINDOW, s * self.SCALE_WINDOW)
            self.range_zero[key] = nn.Parameter(torch.tensor([float(z)], dtype=torch.float32))
            for m in members:
                self.group_of[m] = key

    def weight_parameters(self) -> list[nn.Parameter]:
        """What QAT trains besides the ranges: every conv weight and bias, or, while learned rounding
        is on, the biases only (the weights are then frozen and their rounding is learned)."""
        return [p for k, p in self.weights.items() if k not in self.rounding]

    # -- learned rounding of weights (AdaRound: Nagel et al., ICML 2020, "Up or Down?") -------------
    # Written here rather than taken from a library: AIMET's and torch.ao's implementations round a
    # torch module layer by layer; this graph is the converter's own TFLite graph, rounded end to end
    # against its float output, with TFLite's per-channel scale max|w|/127 kept fixed.
    #: the rectified sigmoid's stretch (the paper's zeta, gamma): h reaches exactly 0 and 1
    _ZETA, _GAMMA = 1.1, -0.1

    def start_learned_rounding(self) -> None:
        """Freeze the conv weights on TFLite's per-channel grid (scale max|w|/127) and make the rounding
        of each one (down: h = 0, up: h = 1) a learnable soft variable h(V), starting at the weight's
        own fractional position, so the soft graph starts from the float weights."""
        self.rounding = {}
        self.round_v = nn.ParameterDict()
        for key, p in self.weights.items():
            if not key.startswith("w"):
                continue
            w = p.detach()
            scale = self._weight_scale(w).view(-1, 1, 1, 1)
            q = w / scale
            base = torch.floor(q)
            frac = (q - base).clamp(0.01, 0.99)
            # each channel's largest |w| sets its scale: it keeps its nearest rounding (±127), so the
            # converter, which derives the scale from the written weights, finds the same grid
            fixed = q.abs() >= 126.5
            self.rounding[key] = (scale, base, fixed, torch.round(q).clamp(-127, 127))
            self.round_v[key] = nn.Parameter(-torch.log((self._ZETA - self._GAMMA) / (frac - self._GAMMA) - 1))

    def _rounding_h(self, key: str, hard: bool = False) -> torch.Tensor:
        v = self.round_v[key]
        if hard:  # the decision: up where the soft h is past one half (V >= 0)
            return (v >= 0).to(v.dtype)
        return (torch.sigmoid(v) * (self._ZETA - self._GAMMA) + self._GAMMA).clamp(0, 1)

    def _rounded_weight(self, key: str, hard: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        scale, base, fixed, nearest = self.rounding[key]
        grid = torch.where(fixed, nearest, (base + self._rounding_h(key, hard)).clamp(-127, 127))
        return grid * scale, scale.flatten()

    def _over_free_weights(self, f) -> torch.Tensor:
        """``f(h)`` of each layer's soft h, kept for the weights whose rounding is learned (not a channel's
        largest), flattened into one tensor."""
        return torch.cat([f(self._rounding_h(k))[~self.rounding[k][2]] for k in self.rounding])

    def rounding_regularizer(self, beta: float) -> torch.Tensor:
        """The paper's f_reg, summed over the free weights (as the paper does): 0 when every h is 0 or 1."""
        return self._over_free_weights(lambda h: 1 - (2 * h - 1).abs().pow(beta)).sum()

    def rounding_undecided(self) -> float:
        """Share of the free weights whose soft h is still strictly between 0 and 1."""
        with torch.no_grad():
            h = self._over_free_weights(lambda h: h)
        return float(((h > 0) & (h < 1)).float().mean())

    def finish_learned_rounding(self) -> None:
        """Round each weight the way it learned (h >= 0.5 up) and write the grid values back as the
        float weights, which the converter then quantizes to exactly these integers."""
        with torch.no_grad():
            for key in list(self.rounding):
                self.weights[key].data = self._rounded_weight(key, hard=True)[0].clone()
        self.rounding, self.round_v = {}, nn.ParameterDict()

    def learned_qparams(self) -> dict[int, tuple[float, int]]:
        """Each tensor's (scale, zero point) as the simulation uses them now."""
        out = dict(self.qparams)
        if self.learn_ranges:
            for i, key in self.group_of.items():
                out[i] = (float(self._learned_scale(key).detach()),
                          int(torch.round(self.range_zero[key].detach()).clamp(-128, 127)))
        return out

    # -- scales of the INT8 model, by tensor name ------------------------------------------------
    def _activation_qparams(self, sg, quantized: bytes) -> dict[int, tuple[float, int]]:
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.tools import flatbuffer_utils as fu

        from ..benchmark.profile import op_kind, op_name_map

        names = op_name_map()
        qm = fu.convert_bytearray_to_object(bytearray(quantized))
        qsg = qm.subgraphs[0]
        by_name = {t.name: i for i, t in enumerate(qsg.tensors)}

        def params(t):
            q = t.quantization
            if t.type != schema.TensorType.INT8 or q is None or q.scale is None or len(q.scale) != 1:
                return None
            return float(q.scale[0]), int(q.zeroPoint[0])

        # float I/O: the model's input is QUANTIZE'd and its output DEQUANTIZE'd; use those int8 sides
        boundary = {}
        for op in qsg.operators:
            kind = op_kind(qm, op, names)
            if kind == "QUANTIZE":
                boundary.setdefault(int(op.inputs[0]), params(qsg.tensors[int(op.outputs[0])]))
            elif kind == "DEQUANTIZE":
                boundary.setdefault(int(op.outputs[0]), params(qsg.tensors[int(op.inputs[0])]))
        out: dict[int, tuple[float, int]] = {}
        for i, t in enumerate(sg.tensors):
            j = by_name.get(t.name)
            if j is None or i in self.const:
                continue
            p = params(qsg.tensors[j]) or boundary.get(j)
            if p is not None:
                out[i] = p
        missing = [op.kind for op in self.ops for o in op.outputs if o not in out]
        if missing:
            raise SrDeployError(f"QAT: no INT8 scale found for the outputs of {sorted(set(missing))}")
        return out

    # -- fake quantization -------------------------------------------------------------------------
    def _fq(self, x: torch.Tensor, index: int) -> torch.Tensor:
        if self.quant_only is not None and index not in self.quant_only:
            return x
        key = self.group_of.get(index) if self.learn_ranges else None
        if key is not None:  # LSQ+ learnable scale and zero point (fused: fake_quant_learnable)
            scale = self._learned_scale(key)
            zero = self.range_zero[key].clamp(-128, 127)
            return fake_quant_learnable(x, scale, zero)
        s, z = self.qparams[index]
        return torch.fake_quantize_per_tensor_affine(x, s, z, -128, 127)

    def _in_scale(self, index: int) -> torch.Tensor | float:
        key = self.group_of.get(index) if self.learn_ranges else None
        return self._learned_scale(key).detach() if key is not None else self.qparams[index][0]

    @staticmethod
    def _weight_scale(w: torch.Tensor) -> torch.Tensor:
        """TFLite's per-output-channel int8 weight scale, max|w| / 127 (one per channel)."""
        return (w.detach().abs().amax(dim=(1, 2, 3)) / 127.0).clamp_min(1e-12)

    @classmethod
    def _fq_weight(cls, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-output-channel symmetric int8 on [-127, 127], scale = max|w| / 127 (TFLite's)."""
        scale = cls._weight_scale(w)
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127), scale

    # -- the graph -----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, quant: bool = True, keep: frozenset[int] | set[int] = frozenset()
                ) -> torch.Tensor:
        """*x*: NCHW float in [0, 1]; returns NCHW. The tensors named in *keep* are left in
        ``self.kept`` (index -> tensor) for a loss on intermediate tensors."""
        static = self.static_shape[self.input_index]
        x = x.contiguous(memory_format=self.memory_format)
        self._input_ratio = (x.shape[2] / static[1], x.shape[3] / static[2])
        env: dict[int, torch.Tensor] = {self.input_index: self._fq(x, self.input_index) if quant else x}
        for op in self.ops:
            y = self._run(op, env, quant)
            out = op.outputs[0]
            env[out] = self._fq(y, out) if quant else y
        self.kept = {i: env[i] for i in keep if i in env}
        return env[self.output_index]

    def outputs_of(self, kinds: tuple[str, ...]) -> list[int]:
        """The output tensors of every operator of these kinds, in graph order (``("*",)``: all)."""
        return [op.outputs[0] for op in self.ops if "*" in kinds or op.kind in kinds]

    def _arg(self, env, i: int) -> torch.Tensor:
        return env[i] if i in env else self.const[i]

    def _run(self, op: _Op, env, quant: bool) -> torch.Tensor:
        o, k = op.options, op.kind
        # a conv's weights and bias are parameters, not inputs
        a = [self._arg(env, i) for i in (op.inputs[:1] if op.params else op.inputs) if i >= 0]
        if k in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            x = a[0]
            w = self.weights[op.params["w"][0]]
            b = self.weights[op.params["b"][0]] if "b" in op.params else None
            if quant and self.quant_weights:
                w, w_scale = (self._rounded_weight(op.params["w"][0]) if op.params["w"][0] in self.rounding
                              else self._fq_weight(w))
                if b is not None:  # int32 bias on the grid input scale × weight scale
                    b_scale = (self._in_scale(op.inputs[0]) * w_scale).clamp_min(1e-12)
                    b = torch.fake_quantize_per_channel_affine(
                        b, b_scale, torch.zeros_like(b_scale, dtype=torch.int32), 0, -(2 ** 31), 2 ** 31 - 1)
            kh, kw = w.shape[2], w.shape[3]
            stride, dil = (o.strideH, o.strideW), (o.dilationHFactor, o.dilationWFactor)
            if o.padding == 0:  # SAME
                x = _same_pad(x, (kh, kw), stride, dil)
            groups = x.shape[1] if k == "DEPTHWISE_CONV_2D" else 1
            return _activation(F.conv2d(x, w, b, stride, 0, dil, groups), o.fusedActivationFunction)
        if k == "LEAKY_RELU":
            return F.leaky_relu(a[0], o.alpha)
        if k == "RELU":
            return F.relu(a[0])
        if k == "LOGISTIC":
            return torch.sigmoid(a[0])
        if k == "HARD_SWISH":
            return F.hardswish(a[0])
        if k == "GELU":
            return F.gelu(a[0], approximate="tanh" if o is not None and o.approximate else "none")
        if k == "SQRT":
            # clamped above 0: a flat crop has zero variance, and d sqrt/dx at 0 is infinite
            return torch.sqrt(a[0].clamp_min(1e-12))
        if k == "RSQRT":
            return torch.rsqrt(a[0])
        if k in ("ADD", "SUB", "MUL", "DIV"):
            x, y = (self._nchw_const(t) for t in a[:2])
            r = {"ADD": torch.add, "SUB": torch.sub, "MUL": torch.mul, "DIV": torch.div}[k](x, y)
            return _activation(r, getattr(o, "fusedActivationFunction", 0) or 0)
        if k == "CONCATENATION":
            return _activation(torch.cat(a, dim=_NCHW[o.axis if o.axis >= 0 else 4 + o.axis]),
                               o.fusedActivationFunction)
        if k == "STRIDED_SLICE":
            return self._strided_slice(op, a[0])
        if k == "DEPTH_TO_SPACE":  # TF's DCR order: channel = (i·b + j)·C + c
            n, c, h, w = a[0].shape
            bs = o.blockSize
            x = a[0].reshape(n, bs, bs, c // (bs * bs), h, w).permute(0, 3, 4, 1, 5, 2)
            return x.reshape(n, c // (bs * bs), h * bs, w * bs)
        if k == "MEAN":
            axes = sorted(_NCHW[int(v)] for v in np.atleast_1d(self.const_np[op.inputs[1]]))
            return a[0].mean(dim=axes, keepdim=bool(o.keepDims))
        if k == "PAD":
            pads = self.const_np[op.inputs[1]]  # NHWC [[before, after]] * 4
            return F.pad(a[0], [int(pads[2][0]), int(pads[2][1]), int(pads[1][0]), int(pads[1][1])])
        if k == "MAX_POOL_2D":
            x = a[0]
            if o.padding == 0:
                x = _same_pad(x, (o.filterHeight, o.filterWidth), (o.strideH, o.strideW), (1, 1))
            return _activation(F.max_pool2d(x, (o.filterHeight, o.filterWidth), (o.strideH, o.strideW)),
                               o.fusedActivationFunction)
        if k == "RESIZE_BILINEAR":
            size = [int(v) for v in self.const_np[op.inputs[1]]]
            # the target is a constant of the export size (e.g. ESA's upsampling back to the input's
            # size): on crops of another size it scales with the graph input
            run_size = [round(size[0] * self._input_ratio[0]), round(size[1] * self._input_ratio[1])]
            if o.alignCorners:
                return F.interpolate(a[0], size=run_size, mode="bilinear", align_corners=True)
            if not o.halfPixelCenters:
                raise SrDeployError("QAT: RESIZE_BILINEAR without half-pixel centers is not simulated")
            return F.interpolate(a[0], size=run_size, mode="bilinear", align_corners=False)
        if k == "RESIZE_NEAREST_NEIGHBOR":
            size = [int(v) for v in self.const_np[op.inputs[1]]]
            run_size = [round(size[0] * self._input_ratio[0]), round(size[1] * self._input_ratio[1])]
            h, w = a[0].shape[2:]
            # integer factors only: there source = floor(dst / s) with or without half-pixel centres,
            # which is torch's "nearest"
            if o.alignCorners or run_size[0] % h or run_size[1] % w:
                raise SrDeployError("QAT: RESIZE_NEAREST_NEIGHBOR is simulated for integer factors without "
                                    "align_corners only")
            return F.interpolate(a[0], size=run_size, mode="nearest")
        raise SrDeployError(f"QAT cannot simulate the TFLite op {k}")

    def _nchw_const(self, t: torch.Tensor) -> torch.Tensor:
        """Broadcast an NHWC constant (e.g. a per-channel vector) against NCHW activations."""
        if t.dim() == 4 and t.shape[1] == 1 and t.shape[2] == 1 and t.shape[3] > 1:  # (1,1,1,C) constant
            return t.permute(0, 3, 1, 2)
        if t.dim() == 1 and t.numel() > 1:
            return t.view(1, -1, 1, 1)
        return t

    def _strided_slice(self, op: _Op, x: torch.Tensor) -> torch.Tensor:
        o = op.options
        begin, end, strides = (self.const_np[i].astype(int) for i in op.inputs[1:4])
        if o.ellipsisMask or o.newAxisMask or o.shrinkAxisMask:
            raise SrDeployError("QAT: STRIDED_SLICE with ellipsis/new-axis/shrink masks is not simulated")
        static = self.static_shape[op.inputs[0]]
        idx = [slice(None)] * 4
        for d in range(len(begin)):
            run = x.shape[_NCHW[d]]
            b = 0 if (o.beginMask >> d) & 1 else int(begin[d])
            e = run if (o.endMask >> d) & 1 or int(end[d]) >= static[d] else int(end[d])
            b = b + static[d] if b < 0 else b
            e = e + static[d] if e < 0 else e
            if (b, e) == (0, static[d]):  # the whole (static) axis: the whole running axis
                e = run
            idx[_NCHW[d]] = slice(b, e, int(strides[d]))
        return x[tuple(idx)]

    # -- writing back ----------------------------------------------------------------------------------
    def calibrated_with_weights(self) -> bytes:
        """The calibrated graph with this module's current weights and biases, and (when ranges were
        learned) each tensor's min/max set so the converter derives exactly the learned scale and
        zero point: min = (-128 - z)·s, max = (127 - z)·s."""
        from ai_edge_litert.tools import flatbuffer_utils as fu

        model = copy.deepcopy(self._model)
        sg = model.subgraphs[0]
        if self.learn_ranges:
            for i, (s, z) in self.learned_qparams().items():
                q = sg.tensors[i].quantization
                if i in self.group_of and q is not None and q.min is not None:
                    q.min = [float((-128 - z) * s)]
                    q.max = [float((127 - z) * s)]
        for op in self.ops:
            for key, (name, index) in op.params.items():
                v = self.weights[name].detach().cpu()
                if key == "w":
                    v = v.permute(0, 2, 3, 1) if op.kind == "CONV_2D" else v.permute(1, 2, 3, 0)
                arr = np.ascontiguousarray(v.numpy().astype(np.float32))
                t = sg.tensors[index]
                if list(arr.shape) != [int(d) for d in t.shape]:
                    raise SrDeployError(f"QAT write-back: shape {arr.shape} does not fit tensor {t.name}")
                model.buffers[t.buffer].data = np.frombuffer(arr.tobytes(), np.uint8)
        return bytes(fu.convert_object_to_bytearray(model))


def qat_patches(images: list[np.ndarray], n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    """*n* random LR crops (NCHW float [0, 1]) with random flips/rotations from uint8 HWC images."""
    from ..sample_images import random_crop

    out = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        crop = random_crop(images[int(rng.integers(len(images)))], size, size, rng)
        crop = np.rot90(crop, int(rng.integers(4)))
        out[i] = (crop[:, ::-1] if rng.integers(2) else crop).astype(np.float32) / 255.0
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


@dataclass
class QATResult:
    steps: int
    lr: float
    patch: int
    batch: int
    loss_first: float
    loss_last: float
    seconds: float
    rounding: str = "nearest"
    #: learned rounding: share of the weights whose soft rounding was not yet 0 or 1 at the end
    rounding_undecided: float | None = None

    def to_json(self) -> dict:
        out = {"steps": self.steps, "lr": self.lr, "patch": self.patch, "batch": self.batch,
               "loss_first": round(self.loss_first, 8), "loss_last": round(self.loss_last, 8),
               "seconds": round(self.seconds, 1)}
        if self.rounding != "nearest":
            out.update(rounding=self.rounding, rounding_undecided=round(self.rounding_undecided, 5))
        return out


def partial_quant_psnr(graph: TFLiteGraph, x: torch.Tensor, ref: torch.Tensor, acts: set[int] | None,
                       weights: bool = True) -> float:
    """PSNR (dB) against *ref* (the float graph's output on *x*) of *graph* fake-quantizing only the
    activation tensors *acts* (None: all) and, if *weights*, its weights; the graph is left quantizing
    everything again."""
    graph.quant_only, graph.quant_weights = acts, weights
    try:
        with torch.no_grad():
            mse = float(((graph(x, quant=True) - ref) ** 2).mean())
    finally:
        graph.quant_only, graph.quant_weights = None, True
    return 10 * math.log10(1 / max(mse, 1e-20))


def error_by_group(graph: TFLiteGraph, x: torch.Tensor) -> dict[str, float]:
    """Where the INT8 error comes from: PSNR (dB) of the fake-quantized graph against the float graph
    on *x* (NCHW, [0, 1]) with quantization switched on for one group of tensors at a time."""
    with torch.no_grad():
        ref = graph(x, quant=False)

    def psnr(acts: set[int] | None, weights: bool) -> float:
        return partial_quant_psnr(graph, x, ref, acts, weights)

    by_kind: dict[str, set[int]] = {}
    for op in graph.ops:
        by_kind.setdefault(op.kind, set()).add(op.outputs[0])
    concat_scales = {graph.qparams[o][0] for o in by_kind.get("CONCATENATION", set())}
    shared = {i for i in graph.qparams if graph.qparams[i][0] in concat_scales}
    res = {"all": psnr(None, True), "weights only": psnr(set(), True), "activations only": psnr(None, False)}
    for kind, outs in sorted(by_kind.items()):
        res[f"{kind} outputs only ({len(outs)})"] = psnr(outs, False)
    if shared:
        res[f"concat-shared scale group only ({len(shared)})"] = psnr(shared, False)
    res["image input/output only"] = psnr(set(graph.image_tensors), False)
    return res


def qat_device(name: str | torch.device = "cpu") -> torch.device:
    """cpu, cuda, cuda:N, or auto (cuda when this torch sees a CUDA device): one line when it cannot be had."""
    import re

    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise SrDeployError(f"QAT device must be cpu, cuda, cuda:N or auto, got {name!r}")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SrDeployError(f"QAT on {name} asked for, but this torch ({torch.__version__}) sees no CUDA device")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise SrDeployError(f"QAT on {name} asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(name)


def finetune(graph: TFLiteGraph, images: list[np.ndarray], steps: int, lr: float = 3e-4, patch: int = 64,
             batch: int = 8, seed: int = 0, learn_ranges: bool = True, range_lr: float = 3e-4,
             progress: bool = False, log=print, feature_weight: float = 0.0,
             feature_kinds: tuple[str, ...] = ("ADD",), callback=None,
             teacher: "TFLiteGraph | None" = None, rounding: str = "nearest",
             round_lr: float = 3e-2, round_weight: float = 0.01, device: str = "cpu") -> QATResult:
    """Fine-tune *graph*'s weights so its fake-quantized output matches its float output.

    ``feature_weight`` > 0 adds intermediate-tensor distillation: the fake-quantized graph also
    matches the float graph on the outputs of every operator of ``feature_kinds`` (by default the
    residual ADDs that end each block), each as its MSE relative to the float tensor's mean square
    (so every block weighs the same whatever its scale), averaged and weighted. ``callback(step,
    graph)`` runs after each step (the ablation's curve). ``teacher``: the float graph to match when
    *graph* does not start from the float weights (QAT resumed from an INT8 parameter file).

    ``rounding="learned"``: the weights stay where they are and each one's rounding (up or down on
    TFLite's grid) is learned instead (:meth:`TFLiteGraph.start_learned_rounding`), with the biases and
    ranges; the paper's schedule: no regularizer for the first 20 % of the steps, then its weight
    ``round_weight`` (relative to the first step's output loss) with beta annealed from 20 to 2, and
    a hard rounding at the end.

    ``device``: where the steps run (:func:`qat_device`: cpu, cuda, cuda:N or auto); *graph* is back on
    the CPU when this returns."""
    import time

    from ..progress import bar as progress_bar

    if steps < 1:
        raise SrDeployError("--qat-steps must be >= 1")
    dev = qat_device(device)
    torch.manual_seed(seed)
    # the float graph (run with quant=False only): *graph*'s own weights, or *teacher*'s when *graph* starts
    # from weights that were already fine-tuned (a resumed run)
    teacher = copy.deepcopy(graph if teacher is None else teacher).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    graph.to(dev)
    teacher.to(dev)
    if rounding not in ("nearest", "learned"):
        raise SrDeployError(f"QAT rounding must be nearest or learned, got {rounding!r}")
    graph.learn_ranges = learn_ranges
    if rounding == "learned":
        graph.start_learned_rounding()
    groups = [{"params": graph.weight_parameters(), "lr": lr}]
    if learn_ranges:  # ranges move relative to their size: a scale of 0.01 needs a step far below lr
        groups.append({"params": list(graph.range_scale.values()), "lr": range_lr})
        # zero points live on the integer grid: a step of 100× the scale's lr moves them ~0.01–1 per step
        groups.append({"params": list(graph.range_zero.values()), "lr": range_lr * 100})
    cosine = lambda i: 0.5 * (1 + math.cos(math.pi * i / steps))  # noqa: E731
    schedules = [cosine] * len(groups)
    if rounding == "learned":
        # the rounding variables keep the paper's constant Adam rate: their decisions are made at the
        # end, when the regularizer is strongest (weights and ranges follow the cosine schedule)
        groups.append({"params": list(graph.round_v.values()), "lr": round_lr})
        schedules.append(lambda i: 1.0)
    opt = torch.optim.Adam(groups)
    # (nearest rounding keeps torch's own cosine, the schedule the shipped files were made with; they were
    # made with torch's learnable fake-quantize kernel, whose zero-point gradient mask differs from
    # fake_quant_learnable's by one level on negative zero points, so a re-run is close, not bit for bit)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedules) if rounding == "learned" else \
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=0.0)
    rng = np.random.default_rng([seed, 0x9A7])
    warm = int(0.2 * steps)  # learned rounding: steps before its regularizer switches on
    if feature_weight < 0:
        raise SrDeployError("the intermediate-tensor loss weight must be >= 0")
    keep = frozenset(i for i in graph.outputs_of(feature_kinds) if i != graph.output_index) \
        if feature_weight > 0 else frozenset()
    if feature_weight > 0 and not keep:
        raise SrDeployError(f"no {'/'.join(feature_kinds)} outputs in this graph to distil on")
    losses, t0 = [], time.perf_counter()
    bar = progress_bar(range(steps), desc="QAT", unit="step", enabled=progress)
    for _ in bar:
        x = qat_patches(images, batch, patch, rng).to(dev, non_blocking=True)
        with torch.no_grad():
            target = teacher(x, quant=False, keep=keep)
        # the float graph is the target, not the HR: measured on IMDN_RTC x2 (300 steps), an L1-to-HR
        # term gave a larger Set5/Set14 drop (0.78/0.61 dB) than matching the float model (0.71/0.52)
        out_loss = F.mse_loss(graph(x, quant=True, keep=keep), target)
        loss = out_loss
        if keep:
            feat = torch.stack([F.mse_loss(graph.kept[i], t) / t.pow(2).mean().clamp_min(1e-12)
                                for i, t in teacher.kept.items()]).mean()
            loss = out_loss + feature_weight * feat
        step = len(losses)
        if rounding == "learned":
            if step == 0:
                loss_scale = float(out_loss.detach())
            if step >= warm:  # beta from 20 down to 2 over the rest of the run
                beta = 20 - 18 * (step - warm) / max(1, steps - 1 - warm)
                loss = loss + round_weight * loss_scale * graph.rounding_regularizer(beta)
        if not torch.isfinite(loss):
            raise SrDeployError(f"QAT diverged (non-finite loss at step {len(losses) + 1}); export without --qat-steps")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(out_loss.detach()))  # the output's error: what fidelity measures
        if callback is not None:
            callback(len(losses), graph)
        bar.set_postfix(psnr=f"{10 * math.log10(1 / max(np.mean(losses[-50:]), 1e-12)):.2f}dB")
    graph.kept = {}  # drop the last step's intermediate tensors (and their autograd graph)
    graph.to("cpu")
    undecided = None
    if rounding == "learned":
        undecided = graph.rounding_undecided()
        graph.finish_learned_rounding()
        log(f"  QAT: learned rounding, {100 * undecided:.2f} % of the weights still undecided at the end "
            "(rounded at h >= 0.5)")
    k = max(1, min(50, len(losses) // 4))  # first and last quarter (at most 50 steps each)
    res = QATResult(steps, lr, patch, batch, float(np.mean(losses[:k])), float(np.mean(losses[-k:])),
                    time.perf_counter() - t0, rounding, undecided)
    log(f"  QAT: {steps} steps, INT8-vs-float on training crops {10 * math.log10(1 / max(res.loss_first, 1e-12)):.2f}"
        f" -> {10 * math.log10(1 / max(res.loss_last, 1e-12)):.2f} dB")
    return res
