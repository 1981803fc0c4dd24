"""Activation ranges for INT8: the converter's min/max, or percentile ranges chosen on held-out crops.

TensorFlow's converter calibrates with min/max: one outlier pixel in 16 frames of 720×480 widens a
tensor's range and costs every other value resolution (measured: 4 calibration frames gave a
*better* IMDN_RTC than 16 or 48, docs/RESULTS.md). Clipping the tails at a percentile trades a
little error on rare values for a finer grid everywhere else. The converter has no percentile
option, so we use its own two-step flow (the one TFLite's QuantizationDebugger is built on):
``_experimental_calibrate_only`` gives a float model whose tensors carry the calibrated min/max,
we rewrite those min/max, and the MLIR quantizer (``mlir_quantize``, what ``convert()`` calls
next) builds the integer model from them — same-scale rules, per-channel weights and I/O
handling stay the converter's. Written by hand because no library exposes range selection for
TFLite's converter.

``auto`` picks, among min/max and a few percentiles, the ranges whose INT8 model is closest to
the float model (PSNR of the outputs, on the worst crop) on *held-out* crops of the calibration
folder — never on evaluation images. Measured on IMDN_RTC x2 at 720×480 (docs/RESULTS.md):
p99.9 clips too much (worse than min/max), so the candidates stop at p99.99.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import SrDeployError

__all__ = ["PERCENTILES", "RangeChoice", "activation_samples", "calibrate", "parse_ranges", "worst_crop_psnr",
           "image_on_pixel_grid", "quantize_calibrated", "select_ranges", "with_ranges",
           "xnnpack_safe_ranges"]

#: candidates of ``--ranges auto`` besides min/max (upper tail kept; the lower tail mirrored)
PERCENTILES = (99.999, 99.99)
#: memory the per-tensor statistics pass may hold for one frame (every intermediate tensor is kept)
STATS_BUDGET_BYTES = 1_500_000_000
SAMPLES_PER_FRAME = 100_000
#: ``auto`` tries percentiles only when the calibration crops hold at least this many LR pixels:
#: from fewer, the tails are guesses (16 crops of 64×64 = 65 k pixels chose p99.99 on held-out
#: crops, yet it cut a saturated Set5 image to 29.6 dB in the parity gate); 16 frames of 720×480
#: hold 5.5 M
MIN_PIXELS_FOR_PERCENTILES = 1_000_000


def parse_ranges(text: str) -> str:
    """``auto``, ``minmax`` or ``pNN.NNN`` (a percentile in (50, 100))."""
    if text in ("auto", "minmax"):
        return text
    if text.startswith("p"):
        try:
            p = float(text[1:])
        except ValueError:
            p = -1.0
        if 50.0 < p < 100.0:
            return f"p{p:g}"
    raise SrDeployError(f"--ranges must be auto, minmax or pNN.NN (a percentile, e.g. p99.99), got {text!r}")


def converter_for(saved_model_dir, frames: np.ndarray, supported_ops):
    """TensorFlow's converter for post-training integer quantization calibrated on *frames*."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from ..runtime import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([f[None].astype(np.float32)] for f in frames)
    converter.target_spec.supported_ops = supported_ops
    return converter


def calibrate(saved_model_dir, frames: np.ndarray) -> bytes:
    """The converter's calibration only: a float TFLite model whose activations carry min/max."""
    from ..runtime import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    converter = converter_for(saved_model_dir, frames, [tf.lite.OpsSet.TFLITE_BUILTINS_INT8])
    converter._experimental_calibrate_only = True  # noqa: SLF001 — the documented debugger flow
    from ..runtime import native_stderr_filtered

    with native_stderr_filtered():
        return converter.convert()


#: XNNPACK refuses a quantized convolution whose requantization scale (input scale × weight scale / output
#: scale) is 256 or more, and with it the whole delegated graph ("failed to prepare"); ranges are widened to
#: keep every ratio at most this (a little under the limit, for the quantizer's nudging of ranges to hold zero;
#: a graph XNNPACK already takes is left as it is)
MAX_REQUANT_RATIO = 250.0
_CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _span(q) -> float:
    """Width of a calibrated range once it holds zero (what the quantizer's scale × 255 is)."""
    return max(float(q.max[0]), 0.0) - min(float(q.min[0]), 0.0)


def xnnpack_safe_ranges(calibrated: bytes) -> tuple[bytes, list[int]]:
    """*calibrated* with the output range of every convolution that XNNPACK would refuse widened just
    enough (returned unchanged when none is), and the widened tensors.

    The case: a conv whose output is (almost) constant on every calibration crop — e.g. a ReLU after
    the channel attention's reduction that no crop switches on (IMDN x2: range 0..2e-6, requantization
    ratio 27 000). Its values stay what they were (the range only grows), so this costs nothing; without
    it no int8 model of the network loads with the default delegate. Written by hand: the converter
    checks no runtime's limits."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    from ..benchmark.profile import op_kind, op_name_map

    model = fu.convert_bytearray_to_object(bytearray(calibrated))
    sg, names, widened = model.subgraphs[0], op_name_map(), []
    for op in sg.operators:
        if op_kind(model, op, names) not in _CONV_OPS or len(op.inputs) < 2:
            continue
        x, w, y = (sg.tensors[int(i)] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
        qx, qy, buf = x.quantization, y.quantization, model.buffers[w.buffer].data
        if qx is None or qx.min is None or qy is None or qy.min is None or buf is None or w.type != 0:
            continue
        weights = np.frombuffer(np.asarray(buf, np.uint8).tobytes(), np.float32).reshape([int(d) for d in w.shape])
        w_scale = float(np.abs(weights).max()) / 127.0  # the largest per-channel scale
        need = _span(qx) * w_scale / MAX_REQUANT_RATIO  # smallest output span (scale × 255) XNNPACK takes
        if _span(qy) < need:
            lo, hi = float(qy.min[0]), float(qy.max[0])
            if hi > 0 or lo >= 0:  # grow upward (a ReLU's output, or a positive range)
                qy.min, qy.max = [min(lo, 0.0)], [min(lo, 0.0) + need]
            else:
                qy.min, qy.max = [max(hi, 0.0) - need], [max(hi, 0.0)]
            widened.append(int(op.outputs[0]))
    if not widened:
        return calibrated, []
    return bytes(fu.convert_object_to_bytearray(model)), widened


#: every artifact's output is RGB in [0, 1] (sources/convention.py) that the metric, and every phone
#: consumer, clamps and rounds to bytes
PIXEL_RANGE = (0.0, 1.0)


def image_on_pixel_grid(calibrated: bytes) -> tuple[bytes, list[int]]:
    """*calibrated* with the image tensors — the graph input, the graph output and what feeds the output
    through rearranging ops (e.g. the conv before DEPTH_TO_SPACE) — given the range [0, 1], and the
    tensors whose range moved.

    The quantizer then gives them scale 1/255 and zero point -128: int8 level q is the byte q + 128.
    Output: the INT8 output lies on the pixel grid and the final rounding to bytes adds nothing. With
    the calibrated range (IMDN_RTC 720x480: [-0.119, 1.145], scale 0.00496) it was rounded twice, once
    onto a coarser grid that is not the pixels'; the values outside [0, 1] it kept are the ones every
    consumer clamps (measured on the three shipped INT8 files of issue 17: lower drops on Set5 and
    Set14 for each, docs/RESULTS.md). Input: a byte image is taken exactly, whatever the calibration
    crops held — calibrated on dark images the input range was [0, 0.5] and every brighter pixel was
    clipped before the first conv. Written by hand: the converter has no option for it."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.convert_bytearray_to_object(bytearray(calibrated))
    sg, moved = model.subgraphs[0], []
    for i in sorted(_image_tensors(model)):
        q = sg.tensors[i].quantization
        if q is None or q.min is None or len(q.min) != 1:
            continue
        if (float(q.min[0]), float(q.max[0])) != PIXEL_RANGE:
            q.min, q.max = [PIXEL_RANGE[0]], [PIXEL_RANGE[1]]
            moved.append(i)
    if not moved:
        return calibrated, []
    return bytes(fu.convert_object_to_bytearray(model)), moved


def quantize_calibrated(calibrated: bytes, io: str, pixel_grid: bool = True) -> bytes:
    """What ``convert()`` does after calibrating: the MLIR quantizer, per-channel weights (after
    :func:`image_on_pixel_grid` unless *pixel_grid* is false, then :func:`xnnpack_safe_ranges`)."""
    from ..runtime import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf
    from tensorflow.lite.python import convert as tf_convert

    dtype = {"float32": tf.float32, "uint8": tf.uint8, "int8": tf.int8}[io]
    from ..runtime import native_stderr_filtered

    if pixel_grid:
        calibrated, _ = image_on_pixel_grid(calibrated)
    calibrated, _ = xnnpack_safe_ranges(calibrated)
    with native_stderr_filtered():
        return tf_convert.mlir_quantize(calibrated, False, input_data_type=dtype, output_data_type=dtype)


#: ops whose output is their input rearranged (same scale): the image-side range runs through them
_SAME_SCALE_OPS = ("DEPTH_TO_SPACE", "RESHAPE", "TRANSPOSE", "SPACE_TO_DEPTH")


def _image_tensors(model) -> set[int]:
    """The graph input and output, and the tensors that feed the output through rearranging ops
    (e.g. the conv before DEPTH_TO_SPACE): their ranges are the image's, and clipping them clips
    pixels — a bright area of a test image that no calibration crop had would be cut off. (In the INT8
    model their range is the pixels' [0, 1]: :func:`image_on_pixel_grid`.)"""
    from ..benchmark.profile import op_kind, op_name_map

    names = op_name_map()
    sg = model.subgraphs[0]
    keep = {int(i) for i in sg.inputs} | {int(i) for i in sg.outputs}
    producer = {int(o): op for op in sg.operators for o in op.outputs}
    frontier = [int(i) for i in sg.outputs]
    while frontier:
        op = producer.get(frontier.pop())
        if op is None:
            continue
        name = op_kind(model, op, names)
        if name in _SAME_SCALE_OPS or name in ("QUANTIZE", "DEQUANTIZE"):
            for i in op.inputs:
                if int(i) >= 0 and int(i) not in keep:
                    keep.add(int(i))
                    frontier.append(int(i))
    return keep


def _stat_tensors(model) -> list[int]:
    """Indices of the activation tensors that carry calibrated min/max and may be clipped
    (the image-side ones excluded, see :func:`_image_tensors`)."""
    sg = model.subgraphs[0]
    image = _image_tensors(model)
    return [i for i, t in enumerate(sg.tensors)
            if i not in image and t.quantization is not None and t.quantization.min is not None
            and len(t.quantization.min) == 1]


def _stats_tile(model, frames: np.ndarray) -> tuple[int, int]:
    """Largest crop (≤ the frame) whose intermediate tensors fit STATS_BUDGET_BYTES."""
    sg = model.subgraphs[0]
    h, w = frames.shape[1:3]
    frame_bytes = 4 * sum(int(np.prod(sg.tensors[i].shape)) for i in _stat_tensors(model))
    side_scale = min(1.0, float(np.sqrt(STATS_BUDGET_BYTES / max(frame_bytes, 1))))
    return max(16, int(h * side_scale) // 8 * 8), max(16, int(w * side_scale) // 8 * 8)


def activation_samples(calibrated: bytes, frames: np.ndarray, seed: int = 0) -> dict[int, np.ndarray]:
    """Run the calibrated float model on *frames* and keep a random sample of every activation.

    Frames too large for the memory budget are cropped (the interpreter is resized to the crop);
    a graph that cannot run on a crop (fixed-shape ops: a resize to a constant size, a reshape to
    constant dimensions) runs on whole frames instead, a memory budget's worth of tensors at a time
    (:func:`_samples_in_groups`)."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.convert_bytearray_to_object(bytearray(calibrated))
    idx = _stat_tensors(model)
    th, tw = _stats_tile(model, frames)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "preserve_all_tensors is for debugging": that is what we do
        it = Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True)
    inp = it.get_input_details()[0]["index"]
    h, w = frames.shape[1:3]
    try:
        if (th, tw) != (h, w):
            it.resize_tensor_input(inp, [1, th, tw, 3])
        it.allocate_tensors()
    except Exception:  # fixed-shape ops refuse the crop (XNNPACK: "failed to reshape runtime")
        if (th, tw) == (h, w):
            raise
        del it
        return _samples_in_groups(model, idx, frames, seed)
    rng = np.random.default_rng(seed)
    samples: dict[int, list[np.ndarray]] = {i: [] for i in idx}
    for f in frames:
        y0, x0 = int(rng.integers(h - th + 1)), int(rng.integers(w - tw + 1))
        it.set_tensor(inp, np.ascontiguousarray(f[None, y0:y0 + th, x0:x0 + tw]).astype(np.float32))
        it.invoke()
        for i in idx:
            v = it.get_tensor(i).ravel()
            samples[i].append(v[rng.integers(0, v.size, min(v.size, SAMPLES_PER_FRAME))])
    return {i: np.concatenate(s) for i, s in samples.items()}


def _samples_in_groups(model, idx: list[int], frames: np.ndarray, seed: int) -> dict[int, np.ndarray]:
    """:func:`activation_samples` on whole frames for a graph that cannot be resized: the tensors
    are split into groups of at most STATS_BUDGET_BYTES, and for each group a copy of the graph with
    those tensors as extra outputs runs every frame (no preserve-all-tensors: only the group is
    kept). Costs one pass over the frames per group. (By hand: the interpreter has no API to keep
    a chosen set of intermediate tensors.)"""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils as fu

    sg = model.subgraphs[0]
    groups: list[list[int]] = [[]]
    used = 0
    for i in idx:
        size = 4 * int(np.prod(sg.tensors[i].shape))
        if groups[-1] and used + size > STATS_BUDGET_BYTES:
            groups.append([])
            used = 0
        groups[-1].append(i)
        used += size
    outputs = list(sg.outputs)
    samples: dict[int, list[np.ndarray]] = {i: [] for i in idx}
    rng = np.random.default_rng(seed)
    try:
        for group in groups:
            sg.outputs = outputs + [i for i in group if i not in outputs]
            it = Interpreter(model_content=bytes(fu.convert_object_to_bytearray(model)))
            it.allocate_tensors()
            inp = it.get_input_details()[0]["index"]
            for f in frames:
                it.set_tensor(inp, np.ascontiguousarray(f[None]).astype(np.float32))
                it.invoke()
                for i in group:
                    v = it.get_tensor(i).ravel()
                    samples[i].append(v[rng.integers(0, v.size, min(v.size, SAMPLES_PER_FRAME))])
            del it
    finally:
        sg.outputs = outputs
    return {i: np.concatenate(s) for i, s in samples.items()}


def with_ranges(calibrated: bytes, method: str, samples: dict[int, np.ndarray] | None) -> bytes:
    """*calibrated* with its activation min/max replaced by the ranges of *method*.

    ``minmax`` leaves the converter's own; ``pNN`` clips each tail at that percentile, never
    beyond the calibrated min/max, always keeping 0 inside (the zero point must be exact)."""
    if method == "minmax":
        return calibrated
    from ai_edge_litert.tools import flatbuffer_utils as fu

    p = float(method[1:])
    model = fu.convert_bytearray_to_object(bytearray(calibrated))
    for i in _stat_tensors(model):
        q = model.subgraphs[0].tensors[i].quantization
        lo, hi = np.percentile(samples[i], [100.0 - p, p])
        q.min = [float(min(max(lo, q.min[0]), 0.0))]
        q.max = [float(max(min(hi, q.max[0]), 0.0))]
    return bytes(fu.convert_object_to_bytearray(model))


@dataclass
class RangeChoice:
    method: str
    #: PSNR (dB) of each candidate's INT8 output against the float model on its worst held-out crop
    fidelity_db: dict[str, float] = field(default_factory=dict)
    held_out_frames: int = 0
    note: str = ""
    #: the calibrated float model with the chosen ranges written in (what QAT starts from)
    calibrated: bytes | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        out = {"method": self.method, "held_out_frames": self.held_out_frames,
               "fidelity_db": {k: round(v, 3) for k, v in self.fidelity_db.items()}}
        return {**out, "note": self.note} if self.note else out


def worst_crop_psnr(int8_blob: bytes, reference: list[np.ndarray], frames: np.ndarray) -> float:
    from ..runtime import TFLiteRunner

    runner = TFLiteRunner(model_content=int8_blob)
    # compared as images ([0, 1], what is displayed): the INT8 output is on the pixel grid, clamped
    mse = [np.mean((np.clip(runner(f[None])[0], 0, 1) - np.clip(r, 0, 1)) ** 2) for f, r in zip(frames, reference)]
    # the worst crop decides: clipping that helps on average can still cut off a rare bright area
    return float(10 * np.log10(1.0 / max(max(mse), 1e-12)))


def select_ranges(calibrated: bytes, frames: np.ndarray, held_out: np.ndarray, method: str,
                  io: str = "float32", seed: int = 0, log=print,
                  min_pixels: int = MIN_PIXELS_FOR_PERCENTILES) -> tuple[bytes, RangeChoice]:
    """Quantize *calibrated* with the ranges of *method*; ``auto`` tries min/max and PERCENTILES and
    keeps the one closest to the float model on *held_out* (float I/O for the comparison)."""
    from ..runtime import TFLiteRunner

    pixels = int(frames.shape[0] * frames.shape[1] * frames.shape[2])
    if method == "auto" and pixels < min_pixels:
        log(f"  ranges: min/max ({pixels} calibration pixels < {min_pixels}: too few to estimate percentiles)")
        choice = RangeChoice("minmax", note=f"auto: {pixels} calibration pixels < {min_pixels}, min/max kept",
                             calibrated=calibrated)
        return quantize_calibrated(calibrated, io), choice
    if method != "auto":
        samples = activation_samples(calibrated, frames, seed) if method != "minmax" else None
        chosen = with_ranges(calibrated, method, samples)
        return quantize_calibrated(chosen, io), RangeChoice(method, calibrated=chosen)
    reference_runner = TFLiteRunner(model_content=calibrated)
    reference = [reference_runner(f[None])[0] for f in held_out]
    samples = activation_samples(calibrated, frames, seed)
    choice = RangeChoice("minmax", held_out_frames=len(held_out))
    ranged: dict[str, bytes] = {}  # each candidate's calibrated graph, and quantized with float I/O
    float_io: dict[str, bytes] = {}
    for cand in ("minmax",) + tuple(f"p{p:g}" for p in PERCENTILES):
        ranged[cand] = with_ranges(calibrated, cand, samples)
        float_io[cand] = quantize_calibrated(ranged[cand], "float32")
        choice.fidelity_db[cand] = worst_crop_psnr(float_io[cand], reference, held_out)
        log(f"  ranges {cand:>8}: INT8 vs float, worst of {len(held_out)} held-out crops {choice.fidelity_db[cand]:.2f} dB")
    choice.method = max(choice.fidelity_db, key=choice.fidelity_db.get)
    choice.calibrated = ranged[choice.method]
    if io == "float32":
        return float_io[choice.method], choice
    return quantize_calibrated(choice.calibrated, io), choice
