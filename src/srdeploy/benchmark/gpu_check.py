"""Will the TFLite GPU delegate run this model whole? A static check of the flatbuffer.

The rules follow the delegate's own compatibility checker (``CheckGpuDelegateCompatibility`` in
TensorFlow Lite's ``tools/versioning/gpu_compatibility.cc``) for the ops SR graphs use, plus the
delegate's tensor constraint (BHWC: no tensor above 4-D) and its types (float32/float16, int32
constants; int8/uint8 only through its quantized-model path). Anything not on the list fails,
so an unknown op cannot pass silently. ``tf.lite.experimental.Analyzer(gpu_compatibility=True)``
is not used: in TF 2.21 it calls every model compatible, even one with TOPK_V2.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .profile import _is_const, op_name_map, read_tflite

__all__ = ["GpuIssue", "GpuReport", "gpu_check"]

# ops whose parameters need no further check beyond tensor rank/type
_PLAIN = {
    "ABS", "CONCATENATION", "COS", "DEPTHWISE_CONV_2D", "ELU", "EXP", "FLOOR", "GELU", "HARD_SWISH",
    "LEAKY_RELU", "LOG", "LOGISTIC", "MAXIMUM", "MINIMUM", "NEG", "PACK", "PRELU", "RELU", "RELU6",
    "RELU_N1_TO_1", "RSQRT", "SIN", "SPLIT", "SPLIT_V", "SQRT", "SQUARE", "SQUARED_DIFFERENCE", "SUB",
    "TANH", "DIV", "POW", "AVERAGE_POOL_2D", "MAX_POOL_2D", "FULLY_CONNECTED", "BATCH_MATMUL",
    "RESIZE_NEAREST_NEIGHBOR", "SOFTMAX", "SPACE_TO_DEPTH", "QUANTIZE", "SLICE", "TILE", "TRANSPOSE",
    "TRANSPOSE_CONV", "CAST",
}
_ONE_RUNTIME_INPUT = {"RESHAPE", "MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "PAD", "PADV2",
                      "MIRROR_PAD", "TRANSPOSE", "TILE", "RESIZE_BILINEAR", "DEPTH_TO_SPACE"}
_GOOD_ACT = {0, 1, 2, 3, 4, 6}  # NONE, RELU, RELU_N1_TO_1, RELU6, TANH, SIGN_BIT? (6: SIGMOID in newer schemas)
_FLOAT_TYPES = {0, 1}  # FLOAT32, FLOAT16
_INT_OK = {2, 4}  # INT32, INT64 (shape/index constants)
_QUANT_TYPES = {3, 9}  # UINT8, INT8


@dataclass
class GpuIssue:
    op_index: int
    op: str
    reason: str


@dataclass
class GpuReport:
    model: str
    ops: int
    issues: list[GpuIssue] = field(default_factory=list)
    quantized: bool = False
    #: why the file is not a valid, loadable TFLite model (then it cannot pass)
    error: str | None = None

    @property
    def passed(self) -> bool:
        return not self.issues and self.error is None

    def to_json(self) -> dict:
        return {"model": self.model, "ops": self.ops, "passed": self.passed, "quantized": self.quantized,
                "issues": [vars(i) for i in self.issues], "error": self.error}


def structure_errors(model) -> list[str]:
    """What makes a parsed flatbuffer an unrunnable graph: no subgraph, no graph input or output,
    tensor/buffer/opcode indices out of range, negative dimensions. (The flatbuffer parser accepts
    all of these; the interpreter then fails or misbehaves.)"""
    errs = []
    if not model.subgraphs:
        return ["no subgraph"]
    n_buf, n_codes = len(model.buffers or []), len(model.operatorCodes or [])
    for g, sg in enumerate(model.subgraphs):
        n = len(sg.tensors or [])
        ins, outs = list(sg.inputs if sg.inputs is not None else []), list(sg.outputs if sg.outputs is not None else [])
        if g == 0 and (not ins or not outs):
            errs.append("the main graph has no input" if not ins else "the main graph has no output")
        for i in ins + outs:
            if not 0 <= i < n:
                errs.append(f"graph input/output tensor {i} does not exist ({n} tensors)")
        for t_i, t in enumerate(sg.tensors or []):
            if t.shape is not None and any(int(d) < 0 for d in t.shape):
                errs.append(f"tensor {t_i} has a negative dimension {list(t.shape)}")
            if not 0 <= t.buffer < max(n_buf, 1):
                errs.append(f"tensor {t_i} refers to buffer {t.buffer} of {n_buf}")
        for k, op in enumerate(sg.operators or []):
            if not 0 <= op.opcodeIndex < n_codes:
                errs.append(f"op {k} has opcode index {op.opcodeIndex} of {n_codes}")
            for i in list(op.inputs if op.inputs is not None else []) + list(op.outputs if op.outputs is not None else []):
                if not -1 <= i < n:
                    errs.append(f"op {k} refers to tensor {i} ({n} tensors)")
    return errs[:5]


def gpu_check(path, check_load: bool = False) -> GpuReport:
    """Static check of *path* against the GPU delegate's rules. A file that is not a valid TFLite
    graph gets ``error`` set (and fails); *check_load* also requires LiteRT to load it."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fu

    report = GpuReport(str(path), 0)
    try:
        model = read_tflite(path)
    except Exception as exc:  # random bytes, truncated files: the flatbuffer reader raises anything
        report.error = f"not a TFLite flatbuffer ({type(exc).__name__} while parsing)"
        return report
    errs = structure_errors(model)
    if errs:
        report.error = "; ".join(errs)
        return report
    if check_load:
        from .bench import probe_load

        report.error = probe_load(path)
        if report.error:
            return report
    names = op_name_map()
    for sg_i, sg in enumerate(model.subgraphs):
        def is_const(i):
            return _is_const(model, sg, i)

        for k, op in enumerate(sg.operators):
            report.ops += 1
            code = fu.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex])
            name = names.get(code, f"#{code}")
            if sg_i > 0:
                report.issues.append(GpuIssue(k, name, "control flow / subgraphs are not supported"))
                continue
            ins = [i for i in op.inputs if i >= 0]
            runtime = [i for i in ins if not is_const(i)]
            opts = op.builtinOptions
            reasons = []
            for i in ins + list(op.outputs):
                t = sg.tensors[i]
                rank = len(t.shape) if t.shape is not None else 0
                if rank > 4:
                    reasons.append(f"{rank}-D tensor {list(t.shape)} (the GPU delegate handles at most 4-D)")
                if t.type in _QUANT_TYPES:
                    report.quantized = True
                elif t.type not in _FLOAT_TYPES and not (t.type in _INT_OK and is_const(i)):
                    reasons.append(f"tensor type {t.type} is not float32/float16")
            if name in ("ADD", "MUL"):
                if len(ins) != 2:
                    reasons.append(f"{name} needs two inputs")
                if opts is not None and getattr(opts, "fusedActivationFunction", 0) not in _GOOD_ACT:
                    reasons.append("unsupported fused activation")
                if name == "MUL" and len(ins) == 2:
                    # (a scalar, e.g. ai-edge-quantizer's constants, has no shape: it broadcasts)
                    a, b = (list(sg.tensors[i].shape if sg.tensors[i].shape is not None else ()) for i in ins)
                    if len(a) == len(b) and any(x < y for x, y in zip(a, b)) and any(y < x for x, y in zip(a, b)):
                        reasons.append("MUL needs one input not smaller than the other in every dimension")
            elif name == "CONV_2D":
                if opts is not None and opts.fusedActivationFunction not in _GOOD_ACT:
                    reasons.append("unsupported fused activation")
                if opts is not None and (opts.dilationHFactor != 1 and opts.strideH != 1):
                    reasons.append("dilation together with stride is not supported")
            elif name == "STRIDED_SLICE":
                if opts is not None and (opts.ellipsisMask or opts.newAxisMask or opts.shrinkAxisMask):
                    reasons.append("ellipsis/new-axis/shrink-axis masks are not supported")
                if len(sg.tensors[ins[0]].shape) not in (3, 4):
                    reasons.append("STRIDED_SLICE needs a 3-D or 4-D input")
            elif name == "DEPTH_TO_SPACE":
                if opts is None or opts.blockSize <= 1:
                    reasons.append("DEPTH_TO_SPACE block size must be > 1")
            elif name == "DEQUANTIZE":
                if sg.tensors[ins[0]].type == schema.TensorType.INT16:
                    reasons.append("int16 dequantize is not supported")
            elif name == "RESIZE_BILINEAR":
                if opts is not None and opts.alignCorners and opts.halfPixelCenters:
                    reasons.append("align_corners with half_pixel_centers")
            elif name not in _PLAIN and name not in _ONE_RUNTIME_INPUT:
                reasons.append(f"{name} is not supported by the GPU delegate")
            if name in _ONE_RUNTIME_INPUT and len(runtime) != 1:
                reasons.append(f"{name} needs exactly one runtime input, has {len(runtime)}")
            for r in reasons:
                report.issues.append(GpuIssue(k, name, r))
    return report
