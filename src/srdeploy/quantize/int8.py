"""Full-integer TFLite from the float SavedModel onnx2tf wrote, with TensorFlow's converter.

Per-channel symmetric int8 weights, per-tensor asymmetric int8 activations calibrated on the
frames given (``act="int16"``: the 16×8 mode, int16 activations and int8 weights). I/O:

* ``float32`` — float in and out (QUANTIZE/DEQUANTIZE at the boundary),
* ``int8`` — the converter's int8 I/O with its calibrated scales,
* ``uint8`` — uint8 RGB 0..255 in and out, exactly what an Android bitmap holds: the input and
  output tensors' quantization is set to scale 1/255, zero point 0, so byte ``v`` means ``v/255``
  and the output bytes are ``round(clamp(y, 0, 1) · 255)`` — the normalisation, clamp and
  rounding happen inside the model (the boundary QUANTIZE ops requantize to the calibrated
  internal scales).

Activation ranges: the converter's min/max, a percentile, or ``auto`` (see :mod:`.ranges`).
Optionally quantization-aware fine-tuning against the converter's own scheme (:mod:`.qat`).

TFLite's 16×8 quantizer has no DEPTH_TO_SPACE kernel, so with ``act="int16"`` ops without a 16×8
kernel fall back to float (builtin float ops allowed) and I/O stays float32. ``act="mixed"``: int16 on
the costliest activation tensors only, int8 elsewhere (:mod:`.mixed`, for NPU targets).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import SrDeployError

__all__ = ["check_int8_options", "convert_int8", "set_uint8_io_exact"]


def check_int8_options(io: str, act: str, ranges: str, qat_steps: int = 0) -> str:
    """Validate the INT8 options (before anything is written); return the ranges to use."""
    from .ranges import parse_ranges

    if qat_steps < 0:
        raise SrDeployError(f"--qat-steps must be >= 0, got {qat_steps}")
    if qat_steps and act != "int8":
        raise SrDeployError(f"--qat-steps simulates int8 activations everywhere; it does not apply to --act {act}")

    if io not in ("float32", "uint8", "int8"):
        raise SrDeployError(f"--io must be float32, uint8 or int8, got {io!r}")
    if act not in ("int8", "int16", "mixed"):
        raise SrDeployError(f"--act must be int8, int16 or mixed, got {act!r}")
    if act == "mixed" and io != "float32":
        raise SrDeployError("--act mixed keeps float32 I/O (its DEPTH_TO_SPACE and LeakyReLUs run in float); "
                            "use --io float32")
    ranges = parse_ranges(ranges)
    if act == "int16":  # 16x8: the converter's own min/max (the MLIR quantizer has no 16x8 path)
        if io != "float32":
            raise SrDeployError("--act int16 keeps float32 I/O (TFLite's 16x8 mode has no DEPTH_TO_SPACE kernel, "
                                "so the pixel shuffle runs in float); use --io float32")
        if ranges not in ("minmax", "auto"):
            raise SrDeployError("--act int16 uses min/max ranges; drop --ranges or use --ranges minmax")
        return "minmax"
    return ranges


def convert_int8(saved_model_dir: Path, frames: np.ndarray, io: str = "float32", act: str = "int8",
                 ranges: str = "minmax", held_out: np.ndarray | None = None, seed: int = 0,
                 log=print, qat_steps: int = 0, qat_images: list[np.ndarray] | None = None,
                 progress: bool = False, params=None, params_out: list | None = None,
                 int16_tensors: int | None = None, job_out: list | None = None) -> tuple[bytes, dict]:
    """Return ``(tflite bytes, how it was quantized)``; *ranges* as in :mod:`.ranges`; with
    ``qat_steps`` the weights (and ranges) are fine-tuned first (:mod:`.qat`) on patches of
    *qat_images*, and judged on *held_out* against the plain post-training model.

    *params* (:class:`.int8_params.Int8Params`, e.g. a registry model's shipped quantization-ready
    weights and ranges) replace range selection and QAT: the converter quantizes the calibrated
    graph with exactly those weights and ranges. *params_out*, when a list, receives the
    :class:`.int8_params.Int8Params` of the graph that was quantized (``--save-int8-params``).

    ``act="mixed"``: the same weights and ranges, then int16 activations on the *int16_tensors*
    costliest tensors and int8 elsewhere (:mod:`.mixed`, an NPU artifact).

    *job_out*, when a list, defers QAT: instead of running the *qat_steps* here it receives a
    :class:`.qat_job.QATJob` (the graphs and images QAT needs, for a GPU machine without TensorFlow),
    and the INT8 model returned is the one QAT would have started from."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from ..runtime import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    from .ranges import PIXEL_RANGE, calibrate, converter_for, quantize_calibrated, select_ranges

    ranges = check_int8_options(io, act, ranges, qat_steps)
    if ranges == "auto" and held_out is None:
        raise SrDeployError("--ranges auto needs held-out calibration crops")
    try:
        if act == "int16":
            converter = converter_for(saved_model_dir, frames, [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
                tf.lite.OpsSet.TFLITE_BUILTINS])
            from ..runtime import native_stderr_filtered

            with native_stderr_filtered():
                return converter.convert(), {"ranges": {"method": "minmax"}}
        from . import int8_params

        if params is not None:
            # the ranges come from the file: two frames give the converter its calibrated structure
            calibrated = calibrate(saved_model_dir, frames[:2])
            final = int8_params.apply(calibrated, params)
            blob = quantize_calibrated(final, io)
            how = {"ranges": {"method": "int8-params"}, "int8_params": params.describe()}
        else:
            calibrated = calibrate(saved_model_dir, frames)
            blob, choice = select_ranges(calibrated, frames, held_out, ranges, io, seed, log)
            how, final = {"ranges": choice.to_json()}, choice.calibrated
        # QAT from *final*, toward the float model of *calibrated*'s weights; with a parameter file it resumes
        # from the file's weights and ranges
        judge, resumed = held_out if held_out is not None else frames, params is not None
        if qat_steps and job_out is not None:
            how["qat"] = _qat_job(job_out, calibrated, final, qat_steps, qat_images, judge, seed, resumed)
        elif qat_steps:
            blob, how["qat"], final = _quantization_aware(calibrated, final, blob, io, qat_steps, qat_images,
                                                          judge, seed, progress, log, resumed=resumed)
        if qat_steps and resumed:
            how["qat"]["continued_from"] = {k: params.meta[k] for k in ("made_at", "made_with")
                                            if k in params.meta} or params.describe()
        if act == "int8":  # (--act mixed quantizes through ai-edge-quantizer, with its own image ranges)
            how["pixel_grid"] = {"tensors": ["input", "output"], "range": list(PIXEL_RANGE), "scale": "1/255",
                                 "zero_point": -128, "note": "int8 level q is byte q+128 (values clamped to [0, 1])"}
        if params_out is not None:
            params_out.append(int8_params.extract(final))
        from .ranges import xnnpack_safe_ranges

        _, widened = xnnpack_safe_ranges(final)
        if widened:  # quantize_calibrated widened them: say so
            how["ranges"]["widened_for_xnnpack"] = widened
            log(f"  {len(widened)} conv output range(s) widened so XNNPACK accepts the INT8 model "
                "(an output constant on every calibration crop)")
        if act == "mixed":
            from .mixed import DEFAULT_INT16_TENSORS, convert_mixed

            blob, how["mixed"] = convert_mixed(final, qat_images or [],
                                               DEFAULT_INT16_TENSORS if int16_tensors is None else int16_tensors,
                                               seed, log, progress)
    except SrDeployError:
        raise
    except Exception as exc:  # converter errors are long MLIR dumps: keep the first line
        from ..export.formats import ExportFailed

        raise ExportFailed(f"INT8 conversion failed: {str(exc).strip().splitlines()[0][:300]}") from None
    if io == "uint8":
        blob = set_uint8_io_exact(blob)
    return blob, how


def _qat_job(job_out: list, calibrated: bytes, chosen: bytes, steps: int, images: list[np.ndarray] | None,
             held_out: np.ndarray, seed: int, resumed: bool) -> dict:
    """QAT deferred to a job file (:mod:`.qat_job`): the job into *job_out*, the manifest's note returned."""
    from .qat_job import QATJob, held_out_uint8
    from .ranges import quantize_calibrated

    if not images:
        raise SrDeployError("--qat-steps needs the calibration images")
    job = QATJob(calibrated, chosen, quantize_calibrated(chosen, "float32"), list(images), held_out_uint8(held_out),
                 steps, seed, resumed)
    job_out.append(job)
    return {"steps": steps, "deferred_to_job": True, "resumed": resumed,
            "note": "not run in this export: the INT8 model here is the one QAT starts from; run the job "
                    "(python -m srdeploy.quantize.qat_job), then export with --int8-params on its result"}


def _quantization_aware(calibrated: bytes, chosen: bytes, ptq_blob: bytes, io: str, steps: int,
                        images: list[np.ndarray] | None, judge: np.ndarray, seed: int, progress: bool,
                        log, resumed: bool = False) -> tuple[bytes, dict, bytes]:
    """QAT from the chosen ranges (returns the INT8 model, the report and the calibrated graph it was
    quantized from); keep it only if it is closer to the float model than PTQ on the
    worst *judge* crop (held-out crops when there are any), else keep the PTQ model and say so.

    *resumed*: *chosen* holds another run's fine-tuned weights and ranges (an INT8 parameter file) and
    *ptq_blob* its INT8 model; the target stays the float model of *calibrated*'s own weights."""
    from .qat import TFLiteGraph, finetune
    from .ranges import quantize_calibrated, worst_crop_psnr
    from ..runtime import TFLiteRunner

    if not images:
        raise SrDeployError("--qat-steps needs the calibration images")
    ptq_float_io = quantize_calibrated(chosen, "float32")  # the scales to simulate, and the baseline
    graph = TFLiteGraph(chosen, ptq_float_io)
    # the float model to match: the source's own weights (same graph, so the same tensor indices)
    teacher = TFLiteGraph(calibrated, ptq_float_io) if resumed else None
    result = finetune(graph, images, steps, seed=seed, progress=progress, log=log, teacher=teacher)
    tuned = graph.calibrated_with_weights()
    reference_runner = TFLiteRunner(model_content=calibrated)
    reference = [reference_runner(f[None])[0] for f in judge]
    before = worst_crop_psnr(ptq_float_io, reference, judge)
    report = {**result.to_json(), "learned_ranges": graph.learn_ranges, "fidelity_db_before": round(before, 3)}
    try:
        after = worst_crop_psnr(quantize_calibrated(tuned, "float32"), reference, judge)
    except SrDeployError as exc:  # e.g. XNNPACK refusing a scale ratio: never lose the export to QAT
        log(f"  QAT: the fine-tuned INT8 model does not run ({exc}); the post-training model is kept")
        return ptq_blob, {**report, "fidelity_db_after": None, "kept": False, "error": str(exc)}, chosen
    kept = after > before
    log(f"  QAT: INT8 vs float on the worst of {len(judge)} held-out crops {before:.2f} -> {after:.2f} dB"
        + ("" if kept else " (worse: the " + ("INT8 parameter file's" if resumed else "post-training")
                               + " model is kept)"))
    report.update({"fidelity_db_after": round(after, 3), "kept": kept})
    return (quantize_calibrated(tuned, io) if kept else ptq_blob), report, (tuned if kept else chosen)


def set_uint8_io_exact(blob: bytes) -> bytes:
    """Give the uint8 model input/output tensors scale 1/255 and zero point 0 (bytes = pixels)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.convert_bytearray_to_object(bytearray(blob))
    sg = model.subgraphs[0]
    for idx in list(sg.inputs) + list(sg.outputs):
        t = sg.tensors[idx]
        if t.type != schema.TensorType.UINT8:
            raise SrDeployError(f"expected uint8 I/O, found tensor type {t.type}")
        q = t.quantization or schema.QuantizationParametersT()
        q.scale = [1.0 / 255.0]
        q.zeroPoint = [0]
        t.quantization = q
    return bytes(fu.convert_object_to_bytearray(model))
