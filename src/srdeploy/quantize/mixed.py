"""Mixed precision for NPU targets: int16 activations on the few tensors whose int8 rounding costs most,
int8 activations elsewhere, int8 per-channel weights everywhere (``sr-export --int8 --act mixed``).

Two steps:

1. **Which tensors.** The INT8 graph is simulated in PyTorch (:class:`.qat.TFLiteGraph`, the converter's
   own scales) on crops of the calibration images; for every activation tensor the error of the whole
   INT8 graph is measured with that one tensor left unquantized (leave-one-out). The tensors whose
   release lowers the error most are widened first. Hand-written because no quantizer exposes a
   per-tensor sensitivity of *this* graph's int8 scheme.
2. **The file.** ``ai-edge-quantizer`` (the ``npu`` extra) quantizes the float graph of the same weights
   with the same activation ranges (srdeploy's chosen or shipped ranges are handed to it as its
   calibration result; it does not tie a concat's inputs to one scale as TF's converter does, so its
   all-int8 model is close to, not identical with, the converter's): a recipe of int8 for every op
   it supports, int16 (symmetric) for the ops that write the chosen tensors, float I/O. Ops it does not
   quantize (LEAKY_RELU, DEPTH_TO_SPACE) stay float between QUANTIZE/DEQUANTIZE: Qualcomm's HTP runs
   them in fp16 inside the same compiled graph (``sr-target check --target qualcomm:SM8650``).

XNNPACK has no 16×8 kernels: on a phone's CPU such a file runs on TFLite's reference kernels, many times
slower than INT8. It is an NPU artifact; check it there, never ship it to the CPU path.
"""
from __future__ import annotations

import contextlib
import io
import re
import warnings

import numpy as np

from ..errors import SrDeployError

__all__ = ["sensitivity", "to_mixed", "convert_mixed", "REQUIREMENT"]

REQUIREMENT = "ai-edge-quantizer==0.10.0"
#: --int16-tensors when not given
DEFAULT_INT16_TENSORS = 16
#: TFLite op names ai-edge-quantizer leaves in float (seen in its 0.10.0 policy)
FLOAT_OPS = ("LEAKY_RELU", "DEPTH_TO_SPACE")


def _tensor_name(t) -> str:
    return t.name.decode() if isinstance(t.name, bytes) else str(t.name)


def sensitivity(calibrated: bytes, images: list[np.ndarray], crops: int = 8, size: int = 64,
                seed: int = 0, progress: bool = False) -> list[tuple[str, float]]:
    """``[(tensor name, PSNR dB of the INT8 graph against float with that tensor unquantized)]``, the
    costliest tensor (highest PSNR once released) first, over the tensors :func:`to_mixed` can make int16;
    ``("", dB)`` first of all holds the all-int8 baseline. *calibrated*: the converter's calibrated float
    graph with the ranges to use."""
    import torch

    from .qat import TFLiteGraph, partial_quant_psnr, qat_patches
    from .ranges import quantize_calibrated

    try:
        graph = TFLiteGraph(calibrated, quantize_calibrated(calibrated, "float32"))
    except SrDeployError as exc:  # its message names --qat-steps, the other user of the simulation
        raise SrDeployError(f"--act mixed cannot rank this graph's tensors: {exc}".split("; export without")[0]
                            + "; use --act int8 or int16") from None
    x = qat_patches(images, crops, size, np.random.default_rng([seed, 0x16]))
    acts = sorted(graph.qparams)
    with torch.no_grad():
        ref = graph(x, quant=False)

    def psnr(quantized: set[int]) -> float:
        return partial_quant_psnr(graph, x, ref, quantized)

    from ..progress import bar

    tensors = graph._model.subgraphs[0].tensors  # noqa: SLF001 — the parsed graph it simulates
    # candidates: tensors an op writes that ai-edge-quantizer can give int16 -- not the graph input (its
    # QUANTIZE comes from the INPUT edge) and not the outputs of the ops it leaves in float (FLOAT_OPS),
    # which would be named int16 in the report and stay float32 in the file
    stays_float = {op.outputs[0] for op in graph.ops if op.kind in FLOAT_OPS} | {graph.input_index}
    candidates = [i for i in acts if i not in stays_float]
    # one simulated forward pass per tensor: minutes for a network of a few hundred tensors on a CPU
    scored = [(_tensor_name(tensors[i]), psnr(set(acts) - {i}))
              for i in bar(candidates, desc="ranking tensors", unit="tensor", enabled=progress)]
    return [("", psnr(set(acts)))] + sorted(scored, key=lambda s: -s[1])


def _float_graph_and_ranges(calibrated: bytes) -> tuple[bytes, dict[str, dict[str, np.ndarray]]]:
    """The calibrated graph without its min/max annotations (a plain float model, with a signature,
    which ai-edge-quantizer's calibration API needs) and those ranges in its QSV format."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.convert_bytearray_to_object(bytearray(calibrated))
    sg = model.subgraphs[0]
    qsv = {}
    for t in sg.tensors:
        q = t.quantization
        if q is not None and q.min is not None and len(q.min):
            qsv[_tensor_name(t)] = {"min": np.array([float(q.min[0])], np.float32),
                                    "max": np.array([float(q.max[0])], np.float32)}
            t.quantization = None
    if not model.signatureDefs:
        def tmap(i):
            m = schema.TensorMapT()
            m.name, m.tensorIndex = sg.tensors[i].name, int(i)
            return m

        sig = schema.SignatureDefT()
        sig.signatureKey, sig.subgraphIndex = "serving_default", 0
        sig.inputs, sig.outputs = [tmap(i) for i in sg.inputs], [tmap(i) for i in sg.outputs]
        model.signatureDefs = [sig]
    return bytes(fu.convert_object_to_bytearray(model)), qsv


def _entry(regex: str, bits: int) -> dict:
    return {"regex": regex, "operation": "*", "algorithm_key": "min_max_uniform_quantize",
            "op_config": {"activation_tensor_config": {"num_bits": bits, "symmetric": bits == 16,
                                                       "granularity": "TENSORWISE", "dtype": "INT"},
                          "weight_tensor_config": {"num_bits": 8, "symmetric": True, "granularity": "CHANNELWISE",
                                                   "dtype": "INT"},
                          "compute_precision": "INTEGER", "explicit_dequantize": False, "skip_checks": False,
                          "min_weight_elements": 0}}


def to_mixed(calibrated: bytes, wide: list[str]) -> bytes:
    """The mixed-precision TFLite of *calibrated*'s weights and ranges: int16 activations for the ops
    that write the tensors named in *wide*, int8 for every other op ai-edge-quantizer supports, float
    I/O."""
    try:
        from ai_edge_quantizer import quantizer
    except ImportError:
        raise SrDeployError(f"--act mixed needs {REQUIREMENT}: pip install 'srdeploy[npu]'") from None
    from ..runtime import native_stderr_filtered, quiet_tensorflow

    quiet_tensorflow()
    float_graph, qsv = _float_graph_and_ranges(calibrated)
    recipe = [_entry(".*", 8)]
    if wide:
        # an op's scope is its output tensors' names, each followed by ';' (ai-edge-quantizer's convention)
        recipe.append(_entry("|".join(f"^{re.escape(n)};$" for n in wide), 16))
    recipe += [{"regex": ".*", "operation": edge, "algorithm_key": "no_quantize"} for edge in ("INPUT", "OUTPUT")]
    # its progress bar ignores enable_progress_bar on one path, and its validation interpreter warns about
    # a debugging mode it sets itself: nothing a user can act on
    with native_stderr_filtered(), contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantizer.Quantizer(bytearray(float_graph), recipe)
        return bytes(q.quantize(qsv, enable_progress_report=False, enable_progress_bar=False).quantized_model)


def convert_mixed(calibrated: bytes, images: list[np.ndarray], n_wide: int, seed: int = 0,
                  log=print, progress: bool = False) -> tuple[bytes, dict]:
    """``(tflite bytes, report)``: *n_wide* tensors chosen by :func:`sensitivity`, the file by
    :func:`to_mixed`."""
    import time
    from importlib import metadata

    if not images:
        raise SrDeployError("--act mixed needs the calibration images (its tensor choice runs on their crops)")
    t0 = time.time()
    scored = sensitivity(calibrated, images, seed=seed, progress=progress)
    (_, base), ranked = scored[0], scored[1:]
    n_wide = min(n_wide, len(ranked))
    wide = [name for name, _ in ranked[:n_wide]]
    log(f"  mixed precision: int16 activations on {n_wide} of {len(ranked)} tensors (simulated INT8 vs float "
        f"{base:.2f} dB; the costliest alone {ranked[0][1] - base:+.2f} dB), int8 elsewhere")
    blob = to_mixed(calibrated, wide)
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.convert_bytearray_to_object(bytearray(blob))
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    count: dict[str, int] = {}
    for t in model.subgraphs[0].tensors:
        if t.buffer and model.buffers[t.buffer].data is not None:
            continue  # weights and constants
        count[types.get(t.type, str(t.type))] = count.get(types.get(t.type, str(t.type)), 0) + 1
    report = {"int16_tensors": wide, "int16_requested": n_wide, "tensors_ranked": len(ranked),
              "simulated_int8_db": round(base, 3),
              "release_gain_db": [round(db - base, 3) for _, db in ranked[:n_wide]],
              "activation_tensor_types": dict(sorted(count.items())), "float_ops": list(FLOAT_OPS),
              "tool": f"ai-edge-quantizer {metadata.version('ai-edge-quantizer')}",
              "seconds": round(time.time() - t0, 1)}
    return blob, report
