"""Per-op-type time of a ``.tflite`` model, by timing each op as a one-op model at its real shapes.

LiteRT's Python API exposes no op profiler and no pip package ships ``benchmark_model``, so
each operator is cut out into a model of its own (same tensors, same constant buffers, the op's
runtime inputs as model inputs), run with the same threads and delegate, and timed; times are
summed per op type and set against the whole model's time (the sum should land within a few
percent: fusion and cache effects between ops are what it cannot see). Ops whose inputs are all
constants (e.g. the DEQUANTIZE of FP16 weights) are computed once at load time and counted as 0.
"""
from __future__ import annotations

import statistics
import time
from collections import defaultdict

import numpy as np

__all__ = ["profile_tflite", "op_name_map", "read_tflite"]


def read_tflite(path):
    from ai_edge_litert.tools import flatbuffer_utils as fu

    return fu.read_model(str(path))


def op_name_map() -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def op_kind(model, op, names: dict[int, str]) -> str:
    """The builtin op name of *op* in *model* (a flatbuffer ModelT), e.g. ``CONV_2D``."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    code = fu.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex])
    return names.get(code, str(code))


def _is_const(model, sg, idx: int) -> bool:
    t = sg.tensors[idx]
    buf = model.buffers[t.buffer].data if 0 < t.buffer < len(model.buffers) else None
    return buf is not None and len(buf) > 0


def _time(interpreter, feeds, runs: int) -> float:
    for idx, arr in feeds:
        interpreter.set_tensor(idx, arr)
    interpreter.invoke()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _random_feeds(interpreter, rng) -> list:
    feeds = []
    for d in interpreter.get_input_details():
        shape, dtype = d["shape"], d["dtype"]
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            arr = rng.integers(max(info.min, -128), min(info.max, 127), shape, endpoint=True).astype(dtype)
        else:
            arr = rng.random(shape).astype(dtype)
        feeds.append((d["index"], arr))
    return feeds


def profile_tflite(path, threads: int = 1, runs: int = 3) -> dict:
    import copy

    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils as fu

    rng = np.random.default_rng(0)
    model = read_tflite(path)
    names = op_name_map()
    sg = model.subgraphs[0]
    whole = Interpreter(model_path=str(path), num_threads=threads)
    whole.allocate_tensors()
    whole_ms = _time(whole, _random_feeds(whole, rng), runs)
    from ai_edge_litert import schema_py_generated as schema

    # Outputs of DEQUANTIZE-of-constant ops (FP16 weights) are constants to the ops using them:
    # XNNPACK folds them at load time, so the one-op models get them as FLOAT32 constants too.
    folded: dict[int, bytes] = {}
    for op in sg.operators:
        code = fu.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex])
        if code == schema.BuiltinOperator.DEQUANTIZE and all(_is_const(model, sg, i) for i in op.inputs):
            src = sg.tensors[op.inputs[0]]
            if src.type == schema.TensorType.FLOAT16:
                data = np.frombuffer(bytes(model.buffers[src.buffer].data), np.float16).astype(np.float32)
                folded[op.outputs[0]] = data.tobytes()
    per_type: dict[str, list[float]] = defaultdict(list)
    per_conv: dict[str, list[float]] = defaultdict(list)  # CONV_2D time by "KHxKW Cin->Cout"
    for op in sg.operators:
        code = fu.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex])
        name = names.get(code, str(code))
        runtime_inputs = [i for i in op.inputs if i >= 0 and not _is_const(model, sg, i) and i not in folded]
        if not runtime_inputs:
            per_type[name].append(0.0)
            continue
        one = copy.copy(model)
        sub = copy.copy(sg)
        if any(i in folded for i in op.inputs):
            one.buffers = list(model.buffers)
            sub.tensors = list(sg.tensors)
            for i in op.inputs:
                if i in folded:
                    buf = schema.BufferT()
                    buf.data = np.frombuffer(folded[i], np.uint8)
                    one.buffers.append(buf)
                    t = copy.copy(sg.tensors[i])
                    t.buffer = len(one.buffers) - 1
                    sub.tensors[i] = t
        sub.operators = [op]
        sub.inputs = runtime_inputs
        sub.outputs = list(op.outputs)
        one.subgraphs = [sub]
        one.signatureDefs = []
        blob = bytes(fu.convert_object_to_bytearray(one))
        it = Interpreter(model_content=blob, num_threads=threads)
        it.allocate_tensors()
        ms = _time(it, _random_feeds(it, rng), runs)
        per_type[name].append(ms)
        if name == "CONV_2D":  # filter is OHWI
            o, kh, kw, i = (int(d) for d in sg.tensors[op.inputs[1]].shape)
            per_conv[f"{kh}x{kw} {i}->{o}"].append(ms)
    total = sum(sum(v) for v in per_type.values())
    ops = sorted(({"op": k, "count": len(v), "ms": sum(v), "pct": 100 * sum(v) / total if total else 0.0}
                  for k, v in per_type.items()), key=lambda r: -r["ms"])
    convs = sorted(({"conv": k, "count": len(v), "ms": sum(v), "ms_each": sum(v) / len(v)}
                    for k, v in per_conv.items()), key=lambda r: -r["ms"])
    return {"whole_ms": whole_ms, "sum_of_ops_ms": total, "ops": ops, "convs": convs}
