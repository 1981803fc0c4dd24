"""Seconds per QAT step, three ways in one interleaved run: torch's learnable fake-quantize kernel with the
simulation in NCHW (the code before 2026-12-06), the same expression fused by torch.compile in NCHW, and
fused in channels-last (the default now). Writes a JSON; a timing, never a test.

    python benchmarks/qat_step_time.py --model imdn_rtc:2 --model dipnet:4 --steps 20 --rounds 3 \\
        --json benchmarks/results/qat_step_time.json

Each model is exported at 64x64 (ONNX -> onnx2tf -> the converter's calibration on 8 DIV2K crops,
p99.99 ranges), then each configuration runs `finetune` for --steps steps (batch 8 of 64x64 crops, one
thread), --rounds times in turn; the first call of the fused form compiles it (its seconds are reported
apart and not in the per-step figure). The PSNR of each configuration's fine-tuned INT8 simulation
against float on the same crops is reported beside it (they should agree to noise: same forward values).
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from srdeploy.export.formats import convert_onnx2tf, export_onnx
from srdeploy.models import create_model
from srdeploy.paths import data_dir
from srdeploy.quantize import qat
from srdeploy.quantize.calibration import calibration_frames
from srdeploy.quantize.ranges import activation_samples, calibrate, parse_ranges, quantize_calibrated, with_ranges


def _torch_kernel(x, scale, zero, log=None):
    return torch._fake_quantize_learnable_per_tensor_affine(x, scale, zero, -128, 127, 1.0)


#: name -> (fake quantizer, memory format)
CONFIGS = {"torch kernel, NCHW (before)": (_torch_kernel, torch.contiguous_format),
           "fused, NCHW": (qat.fake_quant_learnable, torch.contiguous_format),
           "fused, channels-last (default)": (qat.fake_quant_learnable, torch.channels_last)}


def _graph(model: str, scale: int, work: Path):
    export_onnx(create_model(model, scale).eval(), work / "model.onnx", (64, 64))
    convert_onnx2tf(work / "model.onnx", work / "tf")
    cal = calibration_frames(data_dir() / "div2k" / "HR", scale, (64, 64), n=8, seed=0)
    calibrated = calibrate(work / "tf" / "saved_model", cal.frames)
    chosen = with_ranges(calibrated, parse_ranges("p99.99"), activation_samples(calibrated, cal.frames))
    return qat.TFLiteGraph(chosen, quantize_calibrated(chosen, "float32")), cal.images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], metavar="NAME:SCALE")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = {"command": "python benchmarks/qat_step_time.py " + " ".join(
               f"--model {m}" for m in args.model) + f" --steps {args.steps} --rounds {args.rounds}",
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
           "machine": f"{platform.processor() or platform.machine()}, {args.threads} thread(s)", "models": {}}
    for spec in args.model or ["imdn_rtc:2"]:
        name, scale = spec.split(":")
        with tempfile.TemporaryDirectory() as tmp:
            base, images = _graph(name, int(scale), Path(tmp))
        t0 = time.perf_counter()  # the fused form's first use compiles it (a second time for no_grad)
        qat.finetune(copy.deepcopy(base), images, 1, batch=8, patch=64, log=lambda m: None)
        compile_s = time.perf_counter() - t0
        per_step: dict[str, list[float]] = {c: [] for c in CONFIGS}
        fidelity: dict[str, float] = {}
        for r in range(args.rounds):
            for c, (fq, fmt) in CONFIGS.items():
                saved = qat.fake_quant_learnable
                qat.fake_quant_learnable, qat.TFLiteGraph.memory_format = fq, fmt
                try:
                    g = copy.deepcopy(base)
                    res = qat.finetune(g, images, args.steps, batch=8, patch=64, seed=r, log=lambda m: None)
                finally:
                    qat.fake_quant_learnable, qat.TFLiteGraph.memory_format = saved, torch.channels_last
                per_step[c].append(res.seconds / args.steps)
                if r == 0:
                    fidelity[c] = round(10 * np.log10(1 / res.loss_last), 3)
        med = {c: float(np.median(v)) for c, v in per_step.items()}
        first = next(iter(CONFIGS))
        out["models"][spec] = {
            "first_call_with_compile_s": round(compile_s, 1),
            "seconds_per_step": {c: [round(v, 4) for v in vs] for c, vs in per_step.items()},
            "median_s_per_step": {c: round(v, 4) for c, v in med.items()},
            "speedup_vs_before": {c: round(med[first] / v, 2) for c, v in med.items()},
            "training_crops_fidelity_db_last_steps": fidelity}
        print(spec, json.dumps(out["models"][spec], indent=1), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
