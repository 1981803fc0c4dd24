"""The exporter: model by name → ONNX → TFLite FP32/FP16, a parity gate after every artifact,
and a manifest describing what was written."""
from __future__ import annotations

import datetime as _dt
import platform
import re
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import ParityError, SrDeployError
from ..fsutil import atomic_copy, atomic_write_json, ensure_writable_dir
from ..models import check_scale, create_model, get_spec
from ..models.registry import ModelSpec
from ..models.weights import resolve_weights, sha256_file
from ..runtime import OnnxRunner, TFLiteRunner, TorchRunner
from ..sample_images import parity_image
from .formats import ONNX_OPSET, convert_onnx2tf, export_onnx
from .fp16 import make_fp16
from .parity import ParityInput, ParityResult, check_parity, format_table

__all__ = ["ExportConfig", "Exporter", "parse_size", "tool_versions", "ARTIFACT_FILES"]

ARTIFACT_FILES = {"onnx": "model.onnx", "fp32": "model_fp32.tflite", "fp16": "model_fp16.tflite"}
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


def parse_size(text: str | None, spec: ModelSpec) -> tuple[int, int]:
    """``"HxW"`` → (H, W), validated against the architecture's constraints."""
    if text is None:
        return spec.default_size
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) <= 0 or int(m.group(2)) <= 0:
        raise SrDeployError(f"--size must be HxW with positive integers (e.g. 720x480), got {text!r}")
    h, w = int(m.group(1)), int(m.group(2))
    k = spec.size_multiple
    if h % k or w % k:
        raise SrDeployError(f"{spec.name} needs H and W divisible by {k}, got {h}x{w}")
    if min(h, w) < spec.min_size:
        raise SrDeployError(f"{spec.name} needs H and W of at least {spec.min_size}, got {h}x{w}")
    return h, w


@dataclass
class ExportConfig:
    model: str
    scale: int | None = None
    weights: str | None = None
    random_weights: bool = False
    size: str | None = None
    fp16: bool = False
    out: str | None = None
    parity: bool = True
    seed: int = 0
    #: exact ONNX graph transforms to apply (see srdeploy.export.rewrites); () for the plain graph
    rewrites: tuple[str, ...] = ("dcr",)


@dataclass
class Exporter:
    """Validates everything up front (nothing is written on bad input), then exports."""

    cfg: ExportConfig
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr, flush=True))

    def __post_init__(self) -> None:
        cfg = self.cfg
        self.spec = get_spec(cfg.model)
        self.scale = check_scale(self.spec, cfg.scale)
        self.size = parse_size(cfg.size, self.spec)
        self.weights_info = self._resolve_weights()
        from .rewrites import REWRITES

        unknown = [r for r in cfg.rewrites if r not in REWRITES]
        if unknown:
            raise SrDeployError(f"unknown rewrite(s) {', '.join(unknown)}; available: {', '.join(REWRITES)}")
        h, w = self.size
        default_out = Path("exports") / f"{self.spec.name}_x{self.scale}_{h}x{w}"
        self.out_dir = Path(cfg.out) if cfg.out else default_out
        torch.manual_seed(cfg.seed)
        self.model = create_model(self.spec.name, self.scale, pretrained=not cfg.random_weights,
                                  weights=cfg.weights)
        self.results: list[ParityResult] = []
        self.artifacts: list[dict] = []

    # ------------------------------------------------------------------ setup
    def _resolve_weights(self) -> dict:
        cfg, spec = self.cfg, self.spec
        if cfg.weights and cfg.random_weights:
            raise SrDeployError("--weights and --random-weights exclude each other")
        if cfg.weights:
            p = Path(cfg.weights).expanduser()
            if not p.is_file():
                raise SrDeployError(f"weights file not found: {p}")
            return {"source": "file", "file": str(p), "sha256": sha256_file(p)}
        if cfg.random_weights:
            return {"source": "random", "seed": cfg.seed}
        if self.scale not in spec.weights:
            raise SrDeployError(
                f"{spec.name} x{self.scale} has no public weights: pass --weights PATH, "
                f"or --random-weights to export a randomly initialised network (for timing only)")
        ws = spec.weights[self.scale]
        p = resolve_weights(ws)
        return {"source": "official", "file": ws.file, "sha256": ws.sha256, "url": ws.url, "origin": ws.source}

    # ------------------------------------------------------------------ parity
    def _parity_inputs(self) -> list[ParityInput]:
        h, w = self.size
        img, desc = parity_image(h, w, self.scale)
        real = (img.astype(np.float32) / 255.0)[None]
        rnd = np.random.default_rng(self.cfg.seed).random((1, h, w, 3), dtype=np.float32)
        # float32 reference, with the exact (float64) one computed only where it decides (see parity.py)
        ref, exact = TorchRunner(self.model), TorchRunner(self.model, float64=True)
        return [ParityInput(desc, real, ref(real), exact),
                ParityInput(f"uniform random (seed {self.cfg.seed})", rnd, ref(rnd), exact)]

    def _gate(self, key: str, precision: str, runner, inputs) -> dict:
        if not self.cfg.parity:
            return {"status": "skipped"}
        res = check_parity(ARTIFACT_FILES[key], precision, runner, inputs)
        self.results.append(res)
        return res.to_json()

    def _install(self, key: str, src: Path, precision: str, fmt: str, parity: dict, **extra) -> None:
        dest = self.out_dir / ARTIFACT_FILES[key]
        atomic_copy(src, dest)
        self.artifacts.append({
            "file": dest.name, "format": fmt, "precision": precision, "bytes": dest.stat().st_size,
            "sha256": sha256_file(dest), "parity": parity, **extra,
        })

    # ------------------------------------------------------------------ run
    def run(self) -> dict:
        created = ensure_writable_dir(self.out_dir)
        try:
            return self._run()
        except BaseException:
            if created and not any(self.out_dir.iterdir()):
                self.out_dir.rmdir()
            raise

    def _run(self) -> dict:
        cfg = self.cfg
        h, w = self.size
        if not cfg.parity:
            self.log("WARNING: --no-parity: artifacts are NOT checked against PyTorch")
        steps = 3 if cfg.fp16 else 2
        inputs = self._parity_inputs() if cfg.parity else []
        with tempfile.TemporaryDirectory(prefix="srdeploy-export-") as tmp:
            work = Path(tmp)
            self.log(f"[1/{steps}] ONNX (opset {ONNX_OPSET}) {self.spec.name} x{self.scale} at {h}x{w}")
            onnx_path = work / "model.onnx"
            self.rewrites_applied = export_onnx(self.model, onnx_path, self.size, tuple(cfg.rewrites))
            self._install("onnx", onnx_path, "fp32", "onnx", self._gate("onnx", "fp32", OnnxRunner(onnx_path), inputs))
            self._stop_if_failed()

            self.log(f"[2/{steps}] TFLite FP32 via onnx2tf")
            tfl = convert_onnx2tf(onnx_path, work / "onnx2tf")
            self._install("fp32", tfl["fp32"], "fp32", "tflite",
                          self._gate("fp32", "fp32", TFLiteRunner(tfl["fp32"]), inputs))
            self._stop_if_failed()
            if cfg.fp16:
                self.log(f"[3/{steps}] TFLite FP16 (float16 weights, sensitive ones kept FP32 if needed)")
                fp16_path = work / "model_fp16.tflite"
                report = make_fp16(tfl["fp32"], fp16_path, log=self.log)
                self._install("fp16", fp16_path, "fp16", "tflite",
                              self._gate("fp16", "fp16", TFLiteRunner(fp16_path), inputs),
                              fp16=report.to_json())
                self._stop_if_failed()
        produced = {a["file"] for a in self.artifacts}
        for name in ARTIFACT_FILES.values():  # drop stale artifacts of an earlier export into this folder
            if name not in produced:
                (self.out_dir / name).unlink(missing_ok=True)
        return self._write_manifest("passed" if cfg.parity else "unchecked")

    def _stop_if_failed(self) -> None:
        if self.results and not self.results[-1].passed:
            self._write_manifest("failed")
            raise ParityError(f"parity gate failed for {self.results[-1].artifact} "
                              f"(details in {self.out_dir / 'manifest.json'})")

    def _write_manifest(self, status: str) -> dict:
        h, w = self.size
        s = self.scale
        manifest = {
            "model": self.spec.name,
            "scale": s,
            "description": self.spec.description,
            "weights": self.weights_info,
            "parameters": int(sum(p.numel() for p in self.model.parameters())),
            "io": {
                "tflite": {"layout": "NHWC", "input_shape": [1, h, w, 3], "output_shape": [1, h * s, w * s, 3]},
                "onnx": {"layout": "NCHW", "input_shape": [1, 3, h, w], "output_shape": [1, 3, h * s, w * s]},
                "dtype": "float32", "color": "RGB", "value_range": [0.0, 1.0],
            },
            "status": status,
            "graph_rewrites": getattr(self, "rewrites_applied", {}),
            "parity_thresholds": {"fp32_and_onnx_max_abs": 1e-4, "fp16_psnr_db": 50.0},
            "artifacts": self.artifacts,
            "tools": tool_versions(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        if self.spec.scale_note:
            manifest["scale_note"] = self.spec.scale_note
        atomic_write_json(self.out_dir / "manifest.json", manifest)
        return manifest

    def report(self) -> str:
        return format_table(self.results) if self.results else "parity gate skipped (--no-parity)"
