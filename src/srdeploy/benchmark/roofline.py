"""Work per inference and how close a run gets to this machine's attainable throughput.

MACs are counted from the graph (TFLite convolutions/fully-connected layers, or the PyTorch
model's convs via hooks). Attainable throughput is measured with a small microbenchmark in the
same runtime the models use: one 3×3 conv 64→64 on 1×128×128×64 (0.6 GMAC) as an FP32 and a
full-INT8 TFLite model run by XNNPACK — the dense-convolution peak an SR network could approach.
The two microbenchmark models are built once with TensorFlow's converter and cached.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from ..paths import cache_dir

__all__ = ["count_macs_tflite", "count_macs_torch", "attainable_gflops"]

_MICRO_SHAPE = (1, 128, 128, 64)


def count_macs_tflite(path) -> int:
    from ai_edge_litert.tools import flatbuffer_utils as fu

    from .profile import op_name_map, read_tflite

    model = read_tflite(path)
    names = op_name_map()
    sg = model.subgraphs[0]
    macs = 0
    for op in sg.operators:
        name = names.get(fu.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex]))
        out = [int(v) for v in sg.tensors[op.outputs[0]].shape]
        if name == "CONV_2D":
            co, kh, kw, ci = (int(v) for v in sg.tensors[op.inputs[1]].shape)
            macs += int(np.prod(out[:-1])) * co * kh * kw * ci
        elif name == "DEPTHWISE_CONV_2D":
            _, kh, kw, _ = (int(v) for v in sg.tensors[op.inputs[1]].shape)
            macs += int(np.prod(out)) * kh * kw
        elif name == "FULLY_CONNECTED":
            macs += int(np.prod(out)) * int(sg.tensors[op.inputs[1]].shape[-1])
    return macs


def count_macs_torch(model, size: tuple[int, int]) -> int:
    import torch

    total = 0

    def hook(mod, inp, out):
        nonlocal total
        kh, kw = mod.kernel_size
        total += out.numel() * (mod.in_channels // mod.groups) * kh * kw

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, *size))
    for h in hooks:
        h.remove()
    return total


def _micro_models() -> dict[str, Path]:
    folder = cache_dir() / "microbench"
    paths = {"fp32": folder / "conv3x3_64_fp32.tflite", "int8": folder / "conv3x3_64_int8.tflite"}
    if all(p.is_file() for p in paths.values()):
        return paths
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from ..runtime import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    kernel = tf.constant(rng.standard_normal((3, 3, 64, 64)).astype(np.float32) * 0.05)

    @tf.function(input_signature=[tf.TensorSpec(_MICRO_SHAPE, tf.float32)])
    def conv(x):
        return tf.nn.conv2d(x, kernel, 1, "SAME")

    for prec, path in paths.items():
        conv_fn = conv.get_concrete_function()
        converter = tf.lite.TFLiteConverter.from_concrete_functions([conv_fn], conv)
        if prec == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([rng.random(_MICRO_SHAPE, dtype=np.float32)] for _ in range(4))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        tmp = path.with_suffix(".partial")
        tmp.write_bytes(converter.convert())
        tmp.replace(path)
    return paths


def attainable_gflops(threads: int = 1, runs: int = 10) -> dict[str, float]:
    """GFLOP/s (2 FLOP per MAC) of the dense 3×3 conv microbenchmark, FP32 and INT8."""
    from ai_edge_litert.interpreter import Interpreter

    out = {}
    for prec, path in _micro_models().items():
        it = Interpreter(model_path=str(path), num_threads=threads)
        it.allocate_tensors()
        d = it.get_input_details()[0]
        x = np.zeros(d["shape"], d["dtype"])
        it.set_tensor(d["index"], x)
        it.invoke()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            it.invoke()
            times.append(time.perf_counter() - t0)
        macs = count_macs_tflite(path)
        out[prec] = 2 * macs / statistics.median(times) / 1e9
    return out
