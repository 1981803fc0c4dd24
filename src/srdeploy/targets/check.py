"""Run an export's ``.tflite`` artifacts on a target and measure them against the reference and
against the host CPU's result for the same file.

Per artifact and target, on the export's parity inputs (the Set5 image fitted to the export size,
and uniform random input; INT8 on the image only, as its gate):

* ``vs_reference``: max |Δ| and PSNR against the reference — the source model itself when called by
  ``sr-export --target``; ``model.onnx`` under onnxruntime for an existing export (the export's gate
  tied it to the source within 1e-4);
* ``vs_host``: max |Δ| against LiteRT on this x86 host running the same file — for INT8 in LSB of
  the output's quantization step, the drift a phone's integer kernels add;
* INT8 only: PSNR-Y on Set5 run on the target tile by tile, the host's, and the reference's — the
  drop *on the target* is the number a user ships with.

Bounds (each can fail): FP32 max |Δ| ≤ 1e-4 against the reference (≤ 1 grey level for uint8-I/O
graphs); FP16 ≥ 50 dB; INT8 ≥ 30 dB against the reference on the image (as the host's gate). The
emulated core's features (read inside the guest), its machine (``aarch64``) and whether LiteRT
applied XNNPACK go into each row, so a reader can see the code ran as ARM. Emulated time is not
phone time: no latency is reported.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import SrDeployError
from ..imaging import psnr01
from . import Target

__all__ = ["check_export", "format_targets"]

BOUNDS = {"fp32": ("max_abs", 1e-4), "fp16": ("psnr_db", 50.0), "int8": ("psnr_db", 30.0)}


def _inputs(h: int, w: int, scale: int, seed: int, integer_io: bool):
    from ..sample_images import parity_image

    img, desc = parity_image(h, w, scale)
    real = (img.astype(np.float32) / 255.0)[None]
    rnd = np.random.default_rng(seed).random((1, h, w, 3), dtype=np.float32)
    if integer_io:
        rnd = (np.round(rnd * 255.0) / 255.0).astype(np.float32)
    return [(desc, real), (f"uniform random (seed {seed})", rnd)]


def _set5_psnr(predict_runner, scale: int, size: tuple[int, int], overlap: int) -> float | None:
    from ..benchmark.evaluate import evaluate_dataset, find_dataset
    from ..paths import data_dir
    from ..tiling import upscale_tiled

    root = data_dir()
    if root is None or not (root / "Set5").is_dir():
        return None

    def predict(lr):
        return upscale_tiled(predict_runner, lr.astype(np.float32) / 255.0, scale, size, overlap)

    return evaluate_dataset(predict, find_dataset(root / "Set5", scale), scale).psnr_y


def _output_step(host) -> float:
    """The output's quantization step: the output's own, or (float-I/O INT8) that of the tensor the
    final DEQUANTIZE reads."""
    scale = float(host.output["quantization"][0])
    if scale:
        return scale
    it = host.interpreter
    out = host.output["index"]
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    for op in it._get_ops_details():
        if out in list(op["outputs"]) and op["op_name"] == "DEQUANTIZE":
            return float(tensors[int(op["inputs"][0])]["quantization"][0])
    return 0.0


def check_artifact(target: Target, art: Path, precision: str, inputs, reference: Callable, scale: int,
                   uint8_graph: bool, log, run_file: Path | None = None) -> dict:
    """*art* on *target* (or *run_file*, what the target runs in its place: the NPU's compiled
    model) against the reference and against this host's LiteRT running *art*."""
    from ..runtime import TFLiteRunner

    t0 = time.monotonic()
    host = TFLiteRunner(art)
    metric, bound = BOUNDS["fp16" if precision == "fp32" and target.computes_fp16 else precision]
    if precision == "fp32" and uint8_graph and not target.computes_fp16:
        metric, bound = "max_grey", 1.0
    rows = []
    try:
        runner = target.runner(run_file or art)
    except SrDeployError as exc:
        return {"status": "error", "error": str(exc)}
    with runner:
        for name, x in (inputs[:1] if precision == "int8" else inputs):
            y_t, y_h, ref = runner(x), host(x), reference(x)
            d_ref = np.abs(y_t.astype(np.float64) - ref)
            grey = float(np.max(np.abs(np.round(y_t * 255.0) - np.round(np.clip(ref, 0, 1) * 255.0))))
            row = {"input": name, "max_abs_vs_reference": float(d_ref.max()),
                   "psnr_db_vs_reference": round(psnr01(y_t, ref), 3),
                   "max_abs_vs_host": float(np.max(np.abs(y_t.astype(np.float64) - y_h))),
                   "max_grey_vs_reference": grey}
            step = _output_step(host)
            if precision == "int8" and step:
                row["max_lsb_vs_host"] = int(round(float(np.max(np.abs(y_t - y_h))) / step))
            value = {"max_abs": row["max_abs_vs_reference"], "max_grey": grey,
                     "psnr_db": row["psnr_db_vs_reference"]}[metric]
            row["passed"] = bool(value <= bound if metric != "psnr_db" else value >= bound)
            rows.append(row)
        result = {"metric": metric, "bound": bound, "checks": rows,
                  "status": "passed" if all(r["passed"] for r in rows) else "failed",
                  "runner": _describe(runner)}
        if precision == "int8":
            _, h, w, _ = runner.input_shape
            overlap = min(8, (min(h, w) - 1) // 2)
            log(f"  {target.label}: Set5 PSNR-Y of {art.name} on the target (tiles {h}x{w})")
            on_target = _set5_psnr(runner, scale, (h, w), overlap)
            if on_target is not None:
                on_host = _set5_psnr(host, scale, (h, w), overlap)
                ref_psnr = _set5_psnr(reference, scale, (h, w), overlap)
                result["set5"] = {"psnr_y_target": on_target, "psnr_y_host": on_host, "psnr_y_reference": ref_psnr,
                                  "drop_db_on_target": ref_psnr - on_target, "target_minus_host_db": on_target - on_host}
    if not runner.applied:
        result["status"] = "failed"
        result["error"] = {"arm64": "LiteRT did not apply XNNPACK on the emulated core: not the kernels a phone runs",
                           "gpu": "no GPU adapter was selected: this did not run on a GPU",
                           "qualcomm": "onnxruntime did not place the graph on the QNN HTP backend"}[target.kind]
    result["wall_s"] = round(time.monotonic() - t0, 1)  # emulated time: how long the check took, not phone time
    return result


def _describe(runner) -> dict:
    """What the artifact ran on, as the target itself reported it."""
    d = {"machine": runner.info["machine"], "litert": runner.info.get("litert"), "python": runner.info.get("python")}
    if runner.kind == "tflite-arm64":
        d.update(core=runner.core, features=runner.info.get("features", []), xnnpack=runner.applied)
    elif runner.kind == "qnn-htp-simulator":
        from .qualcomm import WHEEL

        d.update(backend=f"QNN HTP simulator (x86): libQnnHtp.so of {WHEEL} (QAIRT 2.51)",
                 soc=runner.soc, graph=runner.graph, onnxruntime=runner.info.get("onnxruntime"),
                 providers=runner.info.get("providers"), htp=runner.applied,
                 note="the simulator computes what the HTP computes (float as fp16); it gives no timing")
    else:
        d.update(adapter=runner.adapter, gpu_accelerator=runner.applied,
                 note="LiteRT's WebGPU backend; Android phones run the same GPU accelerator on OpenCL/OpenGL ES "
                      "with the same op set and FP16 default")
    return d


def check_export(export_dir: str | Path, targets: list[Target], artifacts: list[str] | None = None,
                 reference: Callable | None = None, seed: int = 0, log=print) -> dict:
    """``{target label: {artifact file: figures}}`` for the export's ``.tflite`` artifacts."""
    from ..export.bundle import read_export_manifest
    from ..runtime import OnnxRunner

    export_dir = Path(export_dir)
    man_path = export_dir / "manifest.json"
    if not man_path.is_file():
        raise SrDeployError(f"{export_dir} is not an sr-export folder (no manifest.json)")
    manifest = read_export_manifest(man_path)
    arts = {a["file"]: a for a in manifest["artifacts"] if a["file"].endswith(".tflite")}
    chosen = artifacts or sorted(arts)
    unknown = [a for a in chosen if a not in arts]
    if unknown:
        raise SrDeployError(f"no such TFLite artifact in {export_dir}: {', '.join(unknown)} "
                            f"(available: {', '.join(sorted(arts)) or 'none'})")
    for t in targets:
        if not t.ready():
            raise SrDeployError(f"target {t.label} is not set up: run `sudo sr-target setup {t.kind}` once")
    io = manifest.get("io", {})
    _, h, w, _ = io.get("tflite", {}).get("input_shape", [1, 0, 0, 3])
    if not h:
        raise SrDeployError(f"{man_path}: no io.tflite.input_shape")
    uint8_graph = io.get("dtype") == "uint8"
    if reference is None:
        onnx = export_dir / "model.onnx"
        if not onnx.is_file():
            raise SrDeployError(f"{export_dir} has no model.onnx to use as the reference")
        reference = OnnxRunner(onnx)
    inputs = _inputs(h, w, manifest["scale"], seed, uint8_graph or io.get("int8_artifact_io", "float32") != "float32")
    out: dict = {}
    for t in targets:
        for name in chosen:
            log(f"target {t.label}: {name}")
            if t.kind == "qualcomm":
                from .qualcomm import compile_artifact, compiled_name

                try:
                    res = compile_artifact(export_dir / name, t.option, export_dir / compiled_name(name, t.option))
                    if res["status"] == "compiled":  # one NPU partition: run it on the HTP simulator
                        log(f"  {t.label}: {res['compiled_file']} on the HTP simulator")
                        sim = check_artifact(t, export_dir / name, arts[name]["precision"], inputs, reference,
                                             manifest["scale"], uint8_graph, log,
                                             run_file=export_dir / res["compiled_file"])
                        res["simulator"] = sim
                        res["status"] = sim["status"]
                    out.setdefault(t.label, {})[name] = res
                except SrDeployError as exc:
                    out.setdefault(t.label, {})[name] = {"status": "error", "error": str(exc)}
                continue
            try:
                out.setdefault(t.label, {})[name] = check_artifact(
                    t, export_dir / name, arts[name]["precision"], inputs, reference, manifest["scale"], uint8_graph, log)
            except SrDeployError as exc:  # a broken or refused file is an error row, never a lost check
                out.setdefault(t.label, {})[name] = {"status": "error", "error": str(exc)}
    return out


def format_targets(results: dict) -> str:
    rows = [("target", "artifact", "input", "vs reference", "vs host", "result")]
    for label, arts in results.items():
        for name, r in arts.items():
            lab = label
            if "ops_offloaded" in r:
                left = ", ".join(f"{x['op']} ({x['reason']})" for x in r["left_on_cpu"][:3])
                rows.append((label, name, f"-> {r['compiled_file']}",
                             f"{r['ops_offloaded']}/{r['ops_total']} ops offloaded, {r['partitions']} partition(s)",
                             f"on CPU: {left or 'none'}"[:70],
                             "NOT FULLY OFFLOADED" if r["status"] == "partial" else
                             "COMPILED (not run)" if "simulator" not in r else "on the HTP simulator:"))
                if "simulator" not in r:
                    continue
                r = r["simulator"]
                lab = f"{label} sim"
            if r.get("status") == "error" and not r.get("checks"):
                rows.append((lab, name, "-", "-", "-", f"ERROR: {r['error'][:80]}"))
                continue
            for c in r["checks"]:
                ref = (f"{c['max_abs_vs_reference']:.2e} / {c['psnr_db_vs_reference']:.1f} dB")
                host = (f"{c['max_lsb_vs_host']} LSB" if "max_lsb_vs_host" in c else f"{c['max_abs_vs_host']:.2e}")
                rows.append((lab, name, c["input"][:40], ref, host, "PASS" if c["passed"] else "FAIL"))
            if "set5" in r:
                s = r["set5"]
                rows.append((lab, name, "Set5 PSNR-Y", f"{s['psnr_y_target']:.3f} dB (ref {s['psnr_y_reference']:.3f})",
                             f"{s['target_minus_host_db']:+.3f} dB", f"drop {s['drop_db_on_target']:.3f} dB"))
            if r.get("error"):
                rows.append((lab, name, "-", "-", "-", f"FAIL: {r['error'][:80]}"))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(v).ljust(widths[i]) for i, v in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def record_in_manifest(export_dir: Path, results: dict) -> None:
    """Merge *results* into the manifest's top-level ``targets`` object (target → artifact → figures)."""
    import json

    from ..fsutil import atomic_write_json

    path = Path(export_dir) / "manifest.json"
    manifest = json.loads(path.read_text())
    merged = manifest.get("targets") or {}
    for label, arts in results.items():
        merged.setdefault(label, {}).update(arts)
    manifest["targets"] = merged
    atomic_write_json(path, manifest)
