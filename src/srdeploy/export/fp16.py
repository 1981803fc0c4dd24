"""FP16 TFLite from the validated FP32 TFLite, keeping the most sensitive weights in FP32 when needed.

TFLite's float16 format stores constant tensors as FLOAT16 and adds a DEQUANTIZE op per
tensor (what ``TFLiteConverter`` with ``supported_types=[tf.float16]`` emits). Its converter
offers no per-layer choice, and some checkpoints are ill-conditioned on inputs outside the
natural-image range: IMDN+ on uniform noise loses 46 dB of PSNR with every weight rounded to
float16, while the same model on a photo keeps 77 dB. So this module rewrites the FP32
flatbuffer itself (with LiteRT's ``flatbuffer_utils``), rounding every conv weight to float16
except the few whose rounding costs most, chosen greedily until the FP16 model matches the
FP32 model to ``target_db`` on *selection* inputs (noise and image crops with their own seeds,
never the parity gate's inputs). Biases stay FP32 (a few hundred bytes; they are not where
the size is).

Hand-written because no converter exposes mixed FP16/FP32 weight storage per tensor.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..imaging import psnr01

__all__ = ["Fp16Report", "make_fp16", "allow_fp16_arithmetic", "fp16_arithmetic_allowed"]

#: selection inputs use their own seeds (the parity gate uses the user's --seed, default 0)
_SELECTION_SEEDS = (1001, 1002)


@dataclass
class Fp16Report:
    target_db: float
    weights_total: int = 0
    weights_fp16: int = 0
    kept_fp32: list[str] = field(default_factory=list)
    selection_psnr_db: float = 0.0
    #: how a phone's CPU computes it: "fp32", or fp16 where the CPU has it (--fp16-arithmetic)
    arithmetic: str = "fp32"

    def to_json(self) -> dict:
        return {"target_db": self.target_db, "selection_psnr_db": round(self.selection_psnr_db, 2),
                "weights_total": self.weights_total, "weights_fp16": self.weights_fp16,
                "kept_fp32": self.kept_fp32, "arithmetic": self.arithmetic}


def _schema():
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    return schema, flatbuffer_utils


def _weight_tensors(model) -> list[int]:
    """Indices of constant FLOAT32 tensors with rank ≥ 2 (conv filters) in subgraph 0."""
    schema, _ = _schema()
    sg = model.subgraphs[0]
    out = []
    for i, t in enumerate(sg.tensors):
        buf = model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
        if t.type == schema.TensorType.FLOAT32 and buf is not None and len(buf) and len(t.shape) >= 2:
            out.append(i)
    return out


def _rewrite(fp32_bytes: bytes, to_half: set[int]) -> bytes:
    """Copy of the model with tensors *to_half* stored as FLOAT16 behind DEQUANTIZE ops."""
    schema, fu = _schema()
    model = fu.convert_bytearray_to_object(bytearray(fp32_bytes))
    sg = model.subgraphs[0]
    deq = None
    for idx, oc in enumerate(model.operatorCodes):
        if fu.get_builtin_code_from_operator_code(oc) == schema.BuiltinOperator.DEQUANTIZE:
            deq = idx
    if deq is None and to_half:
        oc = schema.OperatorCodeT()
        oc.builtinCode = schema.BuiltinOperator.DEQUANTIZE
        oc.deprecatedBuiltinCode = schema.BuiltinOperator.DEQUANTIZE
        oc.version = 3  # float16 → float32 dequantize
        model.operatorCodes.append(oc)
        deq = len(model.operatorCodes) - 1
    new_ops = []
    for i in sorted(to_half):
        t = sg.tensors[i]
        data = np.frombuffer(bytes(model.buffers[t.buffer].data), dtype=np.float32).astype(np.float16)
        buf = schema.BufferT()
        buf.data = np.frombuffer(data.tobytes(), dtype=np.uint8)
        model.buffers.append(buf)
        half = schema.TensorT()
        half.name = t.name + b"_fp16" if isinstance(t.name, bytes) else f"{t.name}_fp16"
        half.type = schema.TensorType.FLOAT16
        half.shape = t.shape
        half.buffer = len(model.buffers) - 1
        sg.tensors.append(half)
        model.buffers[t.buffer].data = None  # drop the float32 copy
        t.buffer = 0  # now a runtime tensor, written by the DEQUANTIZE below (buffer 0 is the empty one)
        op = schema.OperatorT()
        op.opcodeIndex = deq
        op.inputs = [len(sg.tensors) - 1]
        op.outputs = [i]
        new_ops.append(op)
    sg.operators = new_ops + list(sg.operators)
    return bytes(fu.convert_object_to_bytearray(model))


#: TFLite's reduced-precision metadata (``tflite::optimize::kTfLiteReducedPrecisionKey``): inference
#: types, then "acc", then the accumulation type. "fp16accfp16" lets XNNPACK run the graph in fp16 with
#: fp16 accumulation where the CPU has fp16 arithmetic (ARMv8.2 phones); elsewhere it is ignored.
REDUCED_PRECISION_KEY = "reduced_precision_support"
FP16_ARITHMETIC = b"fp16accfp16"


def allow_fp16_arithmetic(blob: bytes) -> bytes:
    """The same model with the metadata that lets a phone's CPU compute it in fp16."""
    schema, fu = _schema()
    model = fu.convert_bytearray_to_object(bytearray(blob))
    buf = schema.BufferT()
    buf.data = np.frombuffer(FP16_ARITHMETIC, dtype=np.uint8)
    model.buffers.append(buf)
    meta = schema.MetadataT()
    meta.name = REDUCED_PRECISION_KEY
    meta.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if _meta_name(m) != REDUCED_PRECISION_KEY] + [meta]
    return bytes(fu.convert_object_to_bytearray(model))


def fp16_arithmetic_allowed(blob: bytes) -> bool:
    _, fu = _schema()
    model = fu.convert_bytearray_to_object(bytearray(blob))
    for m in model.metadata or []:
        if _meta_name(m) == REDUCED_PRECISION_KEY:
            return bytes(model.buffers[m.buffer].data).startswith(b"fp16")
    return False


def _meta_name(m) -> str:
    return m.name.decode() if isinstance(m.name, bytes) else str(m.name)


def _selection_inputs(shape: list[int]) -> list[np.ndarray]:
    from ..sample_images import sample_batch

    _, h, w, _ = shape
    xs = [np.random.default_rng(s).random((1, h, w, 3), dtype=np.float32) for s in _SELECTION_SEEDS]
    xs.append(sample_batch(1, (h, w), seed=_SELECTION_SEEDS[0]))
    return xs


def make_fp16(fp32_path: Path, dst: Path, target_db: float = 56.0, log=lambda m: None,
              arithmetic: bool = False) -> Fp16Report:
    """Write an FP16 model of *fp32_path* to *dst* whose outputs stay ≥ *target_db* from FP32's;
    with *arithmetic*, it also allows fp16 computation on phones (:func:`allow_fp16_arithmetic`)."""
    from ..runtime import TFLiteRunner

    fp32_bytes = Path(fp32_path).read_bytes()
    _, fu = _schema()
    model = fu.convert_bytearray_to_object(bytearray(fp32_bytes))
    weights = _weight_tensors(model)
    sizes = {i: int(np.prod(model.subgraphs[0].tensors[i].shape)) for i in weights}
    names = {i: model.subgraphs[0].tensors[i].name for i in weights}
    names = {i: (n.decode() if isinstance(n, bytes) else str(n)) for i, n in names.items()}
    ref_runner = TFLiteRunner(fp32_path)
    inputs = _selection_inputs(ref_runner.input_shape)
    refs = [ref_runner(x) for x in inputs]

    with tempfile.TemporaryDirectory(prefix="srdeploy-fp16-") as tmp:
        probe = Path(tmp) / "probe.tflite"

        def score(to_half: set[int]) -> float:
            probe.write_bytes(_rewrite(fp32_bytes, to_half))
            run = TFLiteRunner(probe)
            return min(psnr01(run(x), r) for x, r in zip(inputs, refs))

        half = set(weights)
        psnr = score(half)
        if psnr < target_db:
            log(f"      all-FP16 weights: {psnr:.1f} dB < {target_db:g} dB; ranking {len(weights)} tensors")
            # cost of rounding each tensor alone (lower PSNR = more sensitive)
            ranked = sorted(weights, key=lambda i: score({i}))
            for i in ranked:
                half.discard(i)
                psnr = score(half)
                if psnr >= target_db:
                    break
        report = Fp16Report(target_db, sum(sizes.values()), sum(sizes[i] for i in half),
                            sorted(names[i] for i in set(weights) - half), psnr)
        blob = _rewrite(fp32_bytes, half)
        dst.write_bytes(allow_fp16_arithmetic(blob) if arithmetic else blob)
    report.arithmetic = "fp16 where the CPU has it (reduced_precision_support=fp16accfp16)" if arithmetic else "fp32"
    return report
