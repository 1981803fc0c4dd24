"""The exporter: a model source (registry name, ONNX file, nn.Module; see srdeploy.sources) → ONNX → TFLite FP32/FP16, a parity gate after every artifact,
and a manifest describing what was written."""
from __future__ import annotations

import datetime as _dt
import platform
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np

from ..cli_util import raise_if_interrupted
from ..errors import ParityError, SrDeployError
from ..fsutil import (FolderLock, atomic_copy, atomic_write_json, ensure_writable_dir, recover_stale_staging,
                      staging_dir, swap_in)
from ..models.weights import sha256_file
from ..quantize.qat_job import MAX_STEPS as MAX_QAT_STEPS  # (one bound for sr-export and QAT jobs)
from ..runtime import (ONNX_MARGIN, TILE_HINT, OnnxRunner, TFLiteRunner, check_declared_memory, check_onnx_memory,
                       onnx_tensor_bytes)
from ..sources import MAX_EXPORT_PIXELS  # noqa: F401  (re-exported: the export size bound)
from ..sample_images import parity_image
from .formats import ONNX_OPSET, convert_onnx2tf
from .fp16 import make_fp16
from .rewrites import DEFAULT_REWRITES, REWRITES
from .parity import ParityInput, ParityResult, check_parity, format_table

__all__ = ["ExportConfig", "Exporter", "tool_versions", "ARTIFACT_FILES"]

ARTIFACT_FILES = {"onnx": "model.onnx", "fp32": "model_fp32.tflite", "fp16": "model_fp16.tflite",
                  "int8": "model_int8.tflite"}
_TOOLS = ("srdeploy", "torch", "onnx", "onnxsim", "onnxruntime", "onnx2tf", "tensorflow", "tf_keras",
          "ai-edge-litert", "numpy")


def tool_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _TOOLS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


MAX_CALIB_SAMPLES = 256


#: crops of the calibration folder (another seed) on which --ranges auto compares its candidates
HELD_OUT_FRAMES = 4


def _check_rewrites(names, what: str) -> None:
    """One line naming the rewrites that do not exist (from the command line or a parameter file)."""
    unknown = [r for r in names if r not in REWRITES]
    if unknown:
        raise SrDeployError(f"{what} {', '.join(unknown)}; available: {', '.join(REWRITES)}")


@dataclass
class ExportConfig:
    #: a registry name, an ``nn.Module`` or a :class:`srdeploy.sources.ModelSource`
    model: object = None
    scale: int | None = None
    #: a user's ONNX file instead of ``model`` (see srdeploy.sources.onnx_file)
    onnx: str | None = None
    #: the source's I/O convention (``--onnx`` files and modules): 1 or 255, rgb | bgr | y
    value_range: int = 1
    channels: str = "rgb"
    #: fold parallel conv branches / BatchNorms of a module exactly before export (srdeploy.models.fuse)
    fuse: bool = False
    #: the export's name (default: the registry name, the ONNX file's stem, the module's class)
    name: str | None = None
    weights: str | None = None
    random_weights: bool = False
    size: str | None = None
    fp16: bool = False
    #: the FP16 artifact lets a phone's CPU compute in fp16 (TFLite reduced-precision metadata)
    fp16_arithmetic: bool = False
    out: str | None = None
    parity: bool = True
    seed: int = 0
    #: exact ONNX graph transforms to apply (see srdeploy.export.rewrites); () for the plain graph
    rewrites: tuple[str, ...] = DEFAULT_REWRITES
    #: the exact rewrites of the graph the INT8 artifact is quantized from, which may differ from the float
    #: artifacts' (a rewrite can help one precision and not the other); None (auto): the rewrites recorded
    #: in the INT8 parameter file in use (a registry model's shipped file or --int8-params FILE), else
    #: ``rewrites``
    int8_rewrites: tuple[str, ...] | None = None
    #: full-integer INT8 (see srdeploy.quantize)
    int8: bool = False
    calib: str | None = None
    calib_samples: int = 16
    io: str = "float32"
    act: str = "int8"
    #: act="mixed": how many activation tensors get int16 (the costliest; see srdeploy.quantize.mixed)
    int16_tensors: int | None = None
    #: activation ranges: auto | minmax | pNN.NN (see srdeploy.quantize.ranges)
    ranges: str = "auto"
    #: quantization-aware fine-tuning steps before the INT8 conversion (0: post-training only)
    qat_steps: int = 0
    #: quantization-ready INT8 weights and ranges (srdeploy.quantize.int8_params): "auto" (a registry
    #: model's shipped file when one fits this export, else post-training quantization), "none", or a file
    int8_params: str = "auto"
    #: write the INT8 weights and ranges this export quantized with (e.g. after --qat-steps) to this file
    save_int8_params: str | None = None
    #: with qat_steps: write a QAT job file (srdeploy.quantize.qat_job) here instead of running QAT
    qat_job: str | None = None
    #: rescale conv output channels exactly (powers of two) so each spans more of its tensor's int8 range,
    #: before post-training quantization / QAT (never with a parameter file: it brings its own weights):
    #: "auto" (int8 activations), "on" (also --act int16 / mixed), "off"
    equalize: str = "auto"
    #: PSNR-Y/SSIM-Y of PyTorch and every TFLite artifact on Set5/Set14 (implied by int8)
    quality: bool = False


@dataclass
class Exporter:
    """Validates everything up front (nothing is written on bad input), then exports."""

    cfg: ExportConfig
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr, flush=True))

    def __post_init__(self) -> None:
        cfg = self.cfg
        from ..sources import open_source

        if cfg.model is None and cfg.onnx is None:
            raise SrDeployError("nothing to export: give a registry model name, an ONNX file or an nn.Module")
        self.source = open_source(cfg.model, onnx=cfg.onnx, scale=cfg.scale, value_range=cfg.value_range,
                                  channels=cfg.channels, weights=cfg.weights, random_weights=cfg.random_weights,
                                  seed=cfg.seed, fuse=cfg.fuse, name=cfg.name)
        self.scale = self.source.scale

        _check_rewrites((*cfg.rewrites, *(cfg.int8_rewrites or ())), "unknown rewrite(s)")
        self.size = self.source.check_size(cfg.size)
        h, w = self.size
        default_out = Path("exports") / f"{self.source.name}_x{self.scale}_{h}x{w}"
        self.out_dir = Path(cfg.out) if cfg.out else default_out
        self.final_dir = self.out_dir
        self.calibration = None
        if cfg.int8:
            from ..quantize.calibration import calibration_frames
            from ..quantize.int8 import check_int8_options

            if not cfg.calib:
                raise SrDeployError("--int8 needs --calib DIR (a folder of HR images, e.g. DIV2K HR)")
            h, w = self.size
            if not 1 <= cfg.calib_samples <= MAX_CALIB_SAMPLES or cfg.calib_samples * h * w * 12 > 4 << 30:
                raise SrDeployError(f"--calib-samples must be 1..{MAX_CALIB_SAMPLES} and hold at most 4 GB of "
                                    f"{h}x{w} float crops, got {cfg.calib_samples}")
            if cfg.qat_steps > MAX_QAT_STEPS:  # (negative values: check_int8_options below)
                raise SrDeployError(f"--qat-steps must be at most {MAX_QAT_STEPS:,}, got {cfg.qat_steps}")
            self.ranges = check_int8_options(cfg.io, cfg.act, cfg.ranges, cfg.qat_steps)
            if cfg.qat_job and not cfg.qat_steps:
                raise SrDeployError("--qat-job writes a QAT job of --qat-steps N steps: give --qat-steps")
            if cfg.int16_tensors is not None and cfg.act != "mixed":
                raise SrDeployError("--int16-tensors applies to --act mixed")
            if cfg.int16_tensors is not None and not 1 <= cfg.int16_tensors <= 10_000:
                raise SrDeployError(f"--int16-tensors must be 1..10000, got {cfg.int16_tensors}")
            self.int8_params, self.int8_params_note = self._int8_params()
            #: the rewrites of the graph INT8 is quantized from (see ExportConfig.int8_rewrites)
            self.int8_rewrites = self._int8_rewrites()
            # --ranges auto and QAT are judged on other crops of the same folder (never evaluation images)
            judged = self.ranges == "auto" or cfg.qat_steps > 0
            self.calibration = calibration_frames(cfg.calib, self.scale, self.size, cfg.calib_samples, cfg.seed,
                                                  held_out=HELD_OUT_FRAMES if judged else 0)
        elif (cfg.calib or cfg.io == "int8" or cfg.act != "int8" or cfg.ranges != "auto" or cfg.qat_steps
              or cfg.int8_params != "auto" or cfg.save_int8_params or cfg.qat_job or cfg.int8_rewrites is not None
              or cfg.int16_tensors is not None or cfg.equalize != "auto"):
            raise SrDeployError("--calib, --io int8, --act, --int16-tensors, --ranges, --qat-steps, --int8-params, "
                                "--int8-rewrites, --save-int8-params, --qat-job and --equalize apply to --int8 exports")
        if cfg.equalize not in ("auto", "on", "off"):
            raise SrDeployError(f"--equalize must be auto, on or off, got {cfg.equalize!r}")
        if cfg.io not in ("float32", "uint8", "int8"):
            raise SrDeployError(f"--io must be float32, uint8 or int8, got {cfg.io!r}")
        if cfg.fp16_arithmetic and not cfg.fp16:
            raise SrDeployError("--fp16-arithmetic applies to the FP16 artifact: add --fp16")
        #: I/O of the ONNX/FP32/FP16 graphs (INT8 follows --io through its quantization parameters)
        self.graph_io = "uint8" if cfg.io == "uint8" else "float32"
        self.results: list[ParityResult] = []
        self.artifacts: list[dict] = []

    def _int8_params(self):
        """``(Int8Params or None, why)``: what replaces range selection and QAT in this export."""
        from ..quantize import int8_params as ip

        cfg, choice = self.cfg, self.cfg.int8_params
        if cfg.save_int8_params and cfg.act != "int8":
            raise SrDeployError(f"--save-int8-params saves int8 activation ranges; it does not apply to --act {cfg.act}")
        if choice == "none":
            return None, "--int8-params none"
        resumed = f" (QAT resumed from it for {cfg.qat_steps} steps)" if cfg.qat_steps else ""
        if choice != "auto":
            if cfg.ranges != "auto" or cfg.act == "int16":
                raise SrDeployError("--int8-params FILE replaces --ranges and --act int16: give one or the other")
            return ip.load(choice), f"file {choice}{resumed}"
        shipped = getattr(getattr(self.source, "spec", None), "int8_params", {}).get(self.scale)
        if shipped is None:
            return None, "no shipped INT8 parameters for this model"
        why_not = [why for cond, why in (
            (self.source.weights_info.get("source") in ("official", "embedded")
             and self.source.weights_info.get("sha256") == shipped.metrics.get("float_weights_sha256"),
             "other weights than the ones they were made for"),
            (cfg.int8_rewrites is None or tuple(cfg.int8_rewrites) == tuple(shipped.metrics.get("rewrites", ())),
             "other --int8-rewrites"),
            (cfg.ranges == "auto" and cfg.act != "int16", "--ranges/--act int16 given"),
        ) if not cond]
        if why_not:
            return None, f"shipped INT8 parameters not used: {why_not[0]}"
        from ..models.weights import resolve_weights

        return ip.load(resolve_weights(shipped), shipped.sha256), f"shipped {shipped.file}{resumed}"

    def _int8_rewrites(self) -> tuple[str, ...]:
        """The INT8 graph's rewrites: given, else the parameter file's own (it only fits the graph it was
        made on), else the float artifacts' --rewrites."""
        cfg, params = self.cfg, self.int8_params
        if cfg.int8_rewrites is not None:
            return tuple(cfg.int8_rewrites)
        recorded = params.meta.get("rewrites") if params is not None else None
        if isinstance(recorded, list) and all(isinstance(r, str) for r in recorded):
            # a hostile or newer file: say so instead of failing inside the conversion
            _check_rewrites(recorded, "the INT8 parameter file asks for unknown rewrite(s)")
            return tuple(recorded)
        return tuple(cfg.rewrites)

    #: the probe's side: the graph at a small size, whose tensors scale with the pixels
    PROBE_SIDE = 64
    #: how far above the limit a probe's estimate must be before it refuses: ONNX_MARGIN (what the converter fuses),
    #: times 1.05 for the probe's scaling (a 64x64 graph's non-pixel tensors; 0.2 % above the graph written at the
    #: size for imdn x4 at 1080x1920); nearer the limit the graph written at the size decides
    PROBE_MARGIN = ONNX_MARGIN * 1.05

    def _check_memory_estimate(self) -> None:
        """Refuse a size whose FP32 artifact the runners would refuse, in seconds: at 1080x1920 imdn x4 declares
        52.7 GB, and the references, the ONNX export and its simplification there took 4 min 25 s and 11.6 GB
        before the exact check after the ONNX could refuse it. The graph is written at a small size and its
        declared run-time tensors scaled by the pixel ratio (SR networks are convolutional: every large tensor is
        proportional to H x W). Skipped for small sizes and fixed-size sources; a probe that fails leaves the
        decision to the exact check."""
        h, w = self.size
        src, k = self.source, max(1, self.source.size_multiple)
        side = -(-max(self.PROBE_SIDE, src.min_size) // k) * k
        if src.fixed_size or h * w <= 4 * side * side:
            return
        with tempfile.TemporaryDirectory(prefix="srdeploy-probe-") as tmp:
            probe = Path(tmp) / "probe.onnx"
            try:
                src.write_onnx(probe, (side, side), tuple(self.cfg.rewrites), self.graph_io)
                total, largest = onnx_tensor_bytes(probe)
            except Exception:  # noqa: BLE001 -- the export itself reports what is wrong with the source
                return
        f = h * w / (side * side)
        check_declared_memory(f"{src.name} x{self.scale} at {h}x{w} would declare about", int(total * f),
                              int(largest * f), TILE_HINT, margin=self.PROBE_MARGIN)

    # ------------------------------------------------------------------ parity
    def _parity_inputs(self) -> list[ParityInput]:
        h, w = self.size
        img, desc = parity_image(h, w, self.scale)
        real = (img.astype(np.float32) / 255.0)[None]
        rnd = np.random.default_rng(self.cfg.seed).random((1, h, w, 3), dtype=np.float32)
        if self.cfg.io != "float32":  # integer I/O: the reference sees exactly the bytes the artifact sees
            rnd = (np.round(rnd * 255.0) / 255.0).astype(np.float32)
        # float32 reference, with the exact (float64) one computed only where it decides (see parity.py)
        ref, exact = self.source.reference()
        name = "onnxruntime" if self.source.kind == "onnx" else "pytorch-float32"
        return [ParityInput(desc, real, ref(real), exact, name),
                ParityInput(f"uniform random (seed {self.cfg.seed})", rnd, ref(rnd), exact, name)]

    def _rule(self, precision: str) -> str:
        """The parity rule of a float artifact: uint8 graphs are judged on their bytes (see parity.py)."""
        return f"{precision}_uint8" if self.graph_io == "uint8" else precision

    def _gate(self, key: str, precision: str, runner, inputs) -> dict:
        if not self.cfg.parity:
            return {"status": "skipped"}
        res = check_parity(ARTIFACT_FILES[key], precision, runner, inputs)
        self.results.append(res)
        return res.to_json()

    def _install(self, key: str, src: Path, precision: str, fmt: str, parity: dict, **extra) -> None:
        dest = self.out_dir / ARTIFACT_FILES[key]
        atomic_copy(src, dest)
        if fmt == "tflite":  # the project's static check against the GPU delegate's op list and constraints
            from ..benchmark.gpu_check import gpu_check

            report = gpu_check(dest).to_json()
            extra["gpu_check"] = {k: report[k] for k in ("passed", "ops", "quantized", "issues")}
        self.artifacts.append({
            "file": dest.name, "format": fmt, "precision": precision, "bytes": dest.stat().st_size,
            "sha256": sha256_file(dest), "parity": parity, **extra,
        })

    # ------------------------------------------------------------------ run
    def _check_out_dir(self) -> None:
        """An existing --out folder is replaced whole, so it may hold only an earlier export's files."""
        final = self.out_dir
        if final.exists() and not final.is_dir():
            raise SrDeployError(f"output path {final} exists and is not a directory")
        if final.is_dir():
            import re

            ours = set(ARTIFACT_FILES.values()) | {"manifest.json"}
            compiled = re.compile(r"^model_(fp32|fp16|int8)\.[A-Z0-9]{2,16}\.tflite$")  # sr-target's NPU builds
            foreign = sorted(p.name for p in final.iterdir() if p.name not in ours and not compiled.match(p.name))
            if foreign:
                raise SrDeployError(f"{final} holds files that are not an sr-export's ({', '.join(foreign[:3])}"
                                    f"{', ...' if len(foreign) > 3 else ''}); an export replaces its folder whole: "
                                    "choose an empty or new folder, or an earlier export's")

    def run(self) -> dict:
        """Export into a temporary sibling folder and swap it in whole when done (a failed parity gate
        too, for inspection); anything else that stops the export leaves the old folder untouched."""
        import shutil

        final = self.out_dir
        self._check_out_dir()
        created = ensure_writable_dir(final.parent)
        staged = None
        try:
            with FolderLock(final):
                self._check_out_dir()  # again, now that no other writer can change it
                # a killed export (SIGKILL, power loss) leaves its staging folder behind -- hundreds of
                # MB at 1080x1920; holding the lock, this run is the only writer that could own one
                for action, name in recover_stale_staging(final):
                    self.log(f"removed {name}, left beside {final.name} by an export that was killed"
                             if action == "removed" else
                             f"restored the previous {final.name} from {name}, where an export killed mid-swap left it")
                staged = staging_dir(final)
                self.out_dir = staged
                try:
                    manifest = self._run()
                except ParityError:
                    swap_in(staged, final)
                    staged = None
                    raise
                raise_if_interrupted()  # never swap in an export the user interrupted
                swap_in(staged, final)
                staged = None
                return manifest
        except BaseException:
            if staged is not None:  # stopped before its swap: nothing of this run stays
                shutil.rmtree(staged, ignore_errors=True)
                if created is not None:
                    shutil.rmtree(created, ignore_errors=True)
            raise
        finally:
            self.out_dir = final

    def _run(self) -> dict:
        cfg = self.cfg
        h, w = self.size
        if not cfg.parity:
            self.log("WARNING: --no-parity: artifacts are NOT checked against PyTorch")
        steps = 2 + int(cfg.fp16) + int(cfg.int8)
        self._check_memory_estimate()
        inputs = self._parity_inputs() if cfg.parity else []
        with tempfile.TemporaryDirectory(prefix="srdeploy-export-") as tmp:
            work = Path(tmp)
            self.log(f"[1/{steps}] ONNX (opset {ONNX_OPSET}) {self.source.name} x{self.scale} at {h}x{w}"
                     + ("" if self.source.convention.is_native else
                        f" (source convention {self.source.convention.channels}, 0..{self.source.convention.value_range};"
                        " converted inside the graph)"))
            onnx_path = work / "model.onnx"
            self.rewrites_applied = self.source.write_onnx(onnx_path, self.size, tuple(cfg.rewrites), self.graph_io)
            # before the ONNX gate and the conversion: a size whose TFLite the runners would refuse stops here
            check_onnx_memory(f"{self.source.name} x{self.scale} at {h}x{w}", onnx_path)
            self._install("onnx", onnx_path, "fp32", "onnx",
                          self._gate("onnx", self._rule("fp32"), OnnxRunner(onnx_path), inputs))
            self._stop_if_failed()

            self.log(f"[2/{steps}] TFLite FP32 via onnx2tf")
            tfl = self._convert(onnx_path, work / "onnx2tf")
            self._install("fp32", tfl["fp32"], "fp32", "tflite",
                          self._gate("fp32", self._rule("fp32"), TFLiteRunner(tfl["fp32"]), inputs))
            self._stop_if_failed()
            if cfg.fp16:
                self.log(f"[3/{steps}] TFLite FP16 (float16 weights, sensitive ones kept FP32 if needed)")
                fp16_path = work / "model_fp16.tflite"
                report = make_fp16(tfl["fp32"], fp16_path, log=self.log, arithmetic=cfg.fp16_arithmetic)
                self._install("fp16", fp16_path, "fp16", "tflite",
                              self._gate("fp16", self._rule("fp16"), TFLiteRunner(fp16_path), inputs),
                              fp16=report.to_json())
                self._stop_if_failed()
            if cfg.int8:
                from ..quantize.int8 import convert_int8

                self.log(f"[{steps}/{steps}] TFLite INT8 (full integer, {cfg.act} activations, {cfg.io} I/O, "
                         f"{len(self.calibration.frames)} calibration frames)")
                int8_path = work / "model_int8.tflite"
                saved = work / "onnx2tf" / "saved_model"
                self.int8_rewrites_applied = self.rewrites_applied
                params_out: list = []
                job_out: list | None = [] if cfg.qat_job else None
                params = self.int8_params
                equalize = params is None and (cfg.equalize == "on" or (cfg.equalize == "auto" and cfg.act == "int8"))
                equalized = None
                if self.graph_io != "float32" or self.int8_rewrites != tuple(cfg.rewrites) or equalize:
                    # the converter quantizes a float graph and folds the uint8 scale into its I/O
                    # parameters, so it needs the float-I/O SavedModel, not the uint8-wrapped one; and
                    # INT8 may be quantized from a graph with other exact rewrites than the float artifacts
                    if self.int8_rewrites != tuple(cfg.rewrites):
                        self.log(f"  INT8 graph rewrites: {','.join(self.int8_rewrites) or 'none'}")
                    float_onnx = work / "float.onnx"
                    if equalize:
                        self.int8_rewrites_applied, equalized = self._write_equalized(float_onnx)
                    else:
                        self.int8_rewrites_applied = self.source.write_onnx(float_onnx, self.size, self.int8_rewrites)
                    self._convert(float_onnx, work / "onnx2tf_float")
                    saved = work / "onnx2tf_float" / "saved_model"
                if params is not None:
                    self.log(f"  INT8 weights and ranges from {self.int8_params_note}" + (
                        "" if cfg.qat_steps else " (no calibration statistics, no QAT: --int8-params none for "
                                                 "post-training quantization)"))
                try:
                    blob, how = convert_int8(saved, self.calibration.frames, cfg.io, cfg.act, self.ranges,
                                             self.calibration.held_out, cfg.seed, self.log, qat_steps=cfg.qat_steps,
                                             qat_images=self.calibration.images, progress=True, params=params,
                                             params_out=params_out, int16_tensors=cfg.int16_tensors,
                                             job_out=job_out)
                except SrDeployError as exc:
                    if params is None or cfg.int8_params != "auto":
                        raise
                    # a shipped file that no longer fits this converter's graph: say so, never lose the export
                    self.log(f"  WARNING: {exc}; post-training quantization instead")
                    self.int8_params_note = f"shipped INT8 parameters not used: {exc}"
                    blob, how = convert_int8(saved, self.calibration.frames, cfg.io, cfg.act, self.ranges,
                                             self.calibration.held_out, cfg.seed, self.log, progress=True,
                                             params_out=params_out, int16_tensors=cfg.int16_tensors)
                how["int8_params_choice"] = self.int8_params_note
                if equalized is not None:
                    how["equalization"] = equalized

                int8_path.write_bytes(blob)
                # INT8 is gated on the real image only: uniform noise lies outside the calibrated ranges
                gate_inputs = inputs[:1]
                self._install("int8", int8_path, "int8", "tflite",
                              self._gate("int8", "int8", TFLiteRunner(int8_path), gate_inputs),
                              quantization={"io": cfg.io, "activations": cfg.act, "weights": "int8 per-channel",
                                            "calibration": self.calibration.describe(),
                                            "rewrites": list(self.int8_rewrites),
                                            "graph_rewrites": self.int8_rewrites_applied, **how})
                self._stop_if_failed()
                if cfg.save_int8_params:  # only once the INT8 artifact passed its gate
                    from ..quantize import int8_params as ip

                    params_out[0].meta.update(self._int8_params_meta(how))
                    ip.save(params_out[0], cfg.save_int8_params)
                    self.log(f"  INT8 weights and ranges written to {cfg.save_int8_params}")
                if job_out:  # (empty when a shipped file failed and the export fell back to post-training)
                    job_out[0].save(cfg.qat_job, params_meta=self._int8_params_meta(how))
                    self.log(f"  QAT job ({cfg.qat_steps} steps) written to {cfg.qat_job}; run it where a GPU is: "
                             f"python -m srdeploy.quantize.qat_job {cfg.qat_job} --out PARAMS.npz --device cuda, then "
                             "export with --int8-params PARAMS.npz")
        if cfg.quality or cfg.int8:
            self.quality = self._quality_report()
        produced = {a["file"] for a in self.artifacts}
        for name in ARTIFACT_FILES.values():  # drop stale artifacts of an earlier export into this folder
            if name not in produced:
                (self.out_dir / name).unlink(missing_ok=True)
        return self._write_manifest("passed" if cfg.parity else "unchecked")

    def _write_equalized(self, path: Path) -> tuple[dict, dict]:
        """The graph INT8 is quantized from, its conv channels equalized on the calibration crops before the
        INT8 rewrites (which would otherwise cut the slices the equalization follows); bit-identical in float."""
        import onnx

        from ..export.rewrites import apply_rewrites
        from ..quantize.equalize import equalize

        self.source.write_onnx(path, self.size, ())
        proto = onnx.load(str(path))
        eq = equalize(proto, self.calibration.frames)
        applied = apply_rewrites(proto, self.int8_rewrites)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(path))
        described = eq.describe()
        self.log(f"  equalized {described['tensors']} conv outputs channel by channel (largest factor "
                 f"{described['max_scale']:g})")
        return applied, described

    def _int8_params_meta(self, how: dict) -> dict:
        h, w = self.size
        return {"model": self.source.name, "scale": self.scale, "rewrites": list(self.int8_rewrites),
                "float_weights_sha256": self.source.weights_info.get("sha256"),
                "made_at": f"{h}x{w}", "made_with": {k: v for k, v in how.items() if k in ("ranges", "qat", "equalization")},
                "tools": tool_versions()}

    def _convert(self, onnx_path: Path, work: Path) -> dict:
        """onnx2tf; on a user's own graph a converter failure is a property of the input (exit 2)."""
        from .formats import ExportFailed

        try:
            return convert_onnx2tf(onnx_path, work)
        except ExportFailed as exc:
            if self.source.kind == "registry":
                raise
            raise SrDeployError(f"{self.source.name}: {exc}") from None

    def _quality_report(self) -> dict | None:
        """PSNR-Y/SSIM-Y on Set5/Set14 of the source and each TFLite artifact (tiled at its export size)."""
        from ..benchmark.evaluate import evaluate_dataset, find_dataset, make_predictor
        from ..paths import data_dir

        root = data_dir()
        sets = [root / n for n in ("Set5", "Set14")] if root else []
        sets = [d for d in sets if d.is_dir()]
        overlap = min(8, (min(self.size) - 1) // 2)  # tiles of a small export cannot carry 8 pixels each side
        source_predict = self.source.predictor(self.size, overlap) if sets else None
        if not sets or source_predict is None:
            self.log("quality report skipped: no Set5/Set14 under SRDEPLOY_DATA" if not sets else
                     "quality report skipped: any-scale model")
            return None
        self.log(f"quality report on {', '.join(d.name for d in sets)}")
        report: dict = {}
        original = self.source.original(self.size, overlap)  # a variant's original network, or None
        subjects = [(self.source.quality_label, source_predict)] + ([original] if original else []) + [
            (a["precision"] + "_tflite", self.out_dir / a["file"]) for a in self.artifacts if a["file"].endswith(".tflite")]
        for label, subject in subjects:
            predict = subject if callable(subject) else make_predictor(None, self.scale, str(subject), overlap=overlap)[0]
            for d in sets:
                r = evaluate_dataset(predict, find_dataset(d, self.scale), self.scale)
                report.setdefault(d.name, {})[label] = {"psnr_y": r.psnr_y, "ssim_y": r.ssim_y, "images": r.images}
        for rows in report.values():
            base = rows[self.source.quality_label]["psnr_y"]
            orig = rows[original[0]]["psnr_y"] if original else None
            for row in rows.values():
                row["drop_db"] = None if base is None or row["psnr_y"] is None else base - row["psnr_y"]
                if original:  # what a user gives up against the network this variant replaces
                    row["drop_vs_original_db"] = None if orig is None or row["psnr_y"] is None else orig - row["psnr_y"]
        self.quality_original = original[0] if original else None
        return report

    def _stop_if_failed(self) -> None:
        raise_if_interrupted()  # a Ctrl-C that a library swallowed mid-stage stops the export here
        if self.results and not self.results[-1].passed:
            self._write_manifest("failed")
            raise ParityError(f"parity gate failed for {self.results[-1].artifact} "
                              f"(details in {self.final_dir / 'manifest.json'})")

    def _write_manifest(self, status: str) -> dict:
        h, w = self.size
        s = self.scale
        manifest = {
            "model": self.source.name,
            "scale": s,
            "description": self.source.description,
            "source": self.source.describe(),
            "weights": self.source.weights_info,
            "parameters": self.source.parameters,
            "io": {
                "tflite": {"layout": "NHWC", "input_shape": [1, h, w, 3], "output_shape": [1, h * s, w * s, 3]},
                "onnx": {"layout": "NCHW", "input_shape": [1, 3, h, w], "output_shape": [1, 3, h * s, w * s]},
                "dtype": self.graph_io, "color": "RGB",
                "value_range": [0, 255] if self.graph_io == "uint8" else [0.0, 1.0],
                **({"int8_artifact_io": self.cfg.io} if self.cfg.int8 else {}),
            },
            "status": status,
            "graph_rewrites": getattr(self, "rewrites_applied", {}),
            "parity_thresholds": {"fp32_and_onnx_max_abs": 1e-4, "fp16_psnr_db": 50.0},
            "artifacts": self.artifacts,
            "quality": getattr(self, "quality", None),
            # a variant's rows also carry drop_vs_original_db, measured against this label's row
            **({"quality_original": self.quality_original} if getattr(self, "quality_original", None) else {}),
            "tools": tool_versions(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        if self.source.scale_note:
            manifest["scale_note"] = self.source.scale_note
        atomic_write_json(self.out_dir / "manifest.json", manifest)
        return manifest

    def report(self) -> str:
        text = format_table(self.results) if self.results else "parity gate skipped (--no-parity)"
        q = getattr(self, "quality", None)
        if q:
            lines = ["", f"quality (PSNR-Y dB / SSIM-Y, change vs {self.source.quality_label}):"]
            if getattr(self, "quality_original", None):
                lines[-1] = lines[-1][:-2] + f"; then vs {self.quality_original}, the network this one is a variant of):"
            for ds, rows in q.items():
                cells = [f"{label} {r['psnr_y']:.3f}/{r['ssim_y']:.4f} ({-r['drop_db']:+.3f}"
                         + (f"; {-r['drop_vs_original_db']:+.3f})" if r.get("drop_vs_original_db") is not None else ")")
                         for label, r in rows.items() if r["psnr_y"] is not None]
                lines.append(f"  {ds}: " + "; ".join(cells))
            text += "\n".join(lines)
        return text
