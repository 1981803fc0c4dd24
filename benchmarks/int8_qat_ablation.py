"""QAT ablations and the per-group error diagnosis behind docs/RESULTS.md (issue 3).

The product's ``sr-export --int8 --qat-steps N`` runs one configuration (learned ranges, Adam 3e-4)
and never looks at Set5/Set14. This script runs the same functions (calibrate-only, percentile
ranges, ``TFLiteGraph`` + ``finetune``, write-back, ``mlir_quantize``) with other settings and
reports each one's held-out fidelity and Set5/Set14 drop — a diagnostic, not a way to choose.

    # where the PTQ error sits (seconds)
    python benchmarks/int8_qat_ablation.py imdn_rtc 2 720 480 --ranges p99.99 --diagnose
    # variants NAME=STEPS:LR:learned|fixed (minutes to hours on a 2-core CPU)
    python benchmarks/int8_qat_ablation.py imdn_rtc 2 720 480 --ranges p99.99 \
        --variant fixed300=300:1e-4:fixed --variant learned300=300:1e-4:learned --json out.json
    # intermediate-tensor distillation (block outputs, weight 1) against output-only, with the curve
    python benchmarks/int8_qat_ablation.py imdn_rtc 2 720 480 --ranges p99.99 --curve-every 250 \
        --variant out1000=1000:3e-4:learned --variant add1000=1000:3e-4:learned:1:add
    # learned rounding (AdaRound-style, mode learned+round) against more QAT, both resumed from the
    # shipped INT8 file on its own graph
    python benchmarks/int8_qat_ablation.py imdn_rtc 2 720 480 --rewrites split_mean,dcr,gelu,slice_conv,slice_select \
        --start src/srdeploy/models/zoo/imdn_rtc_x2_int8.npz --curve-every 500 \
        --variant nearest1000=1000:3e-4:learned --variant round1000=1000:3e-4:learned+round
"""
from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from srdeploy.benchmark.evaluate import evaluate_dataset, find_dataset, make_predictor
from srdeploy.export.formats import convert_onnx2tf, export_onnx
from srdeploy.models import create_model
from srdeploy.paths import data_dir
from srdeploy.quantize.calibration import calibration_frames
from srdeploy.quantize.qat import TFLiteGraph, error_by_group, finetune
from srdeploy.quantize.ranges import (activation_samples, calibrate, parse_ranges, quantize_calibrated,
                                      with_ranges, worst_crop_psnr)
from srdeploy.runtime import TFLiteRunner


#: intermediate tensors a variant can distil on: operator kinds whose outputs are matched
FEATURES = {"add": ("ADD",), "concat": ("CONCATENATION",), "add+concat": ("ADD", "CONCATENATION"), "all": ("*",)}


def _variant(text: str) -> tuple[str, int, float, bool, float, tuple[str, ...], str]:
    """NAME=STEPS:LR:learned|fixed[+round][:FEATURE_WEIGHT[:add|concat|add+concat|all]]"""
    name, _, spec = text.partition("=")
    parts = spec.split(":")
    if len(parts) not in (3, 4, 5):
        raise argparse.ArgumentTypeError(f"expected NAME=STEPS:LR:learned|fixed[+round][:W[:KINDS]], got {text!r}")
    steps, lr, mode = parts[:3]
    mode, plus, rounding = mode.partition("+")
    if mode not in ("learned", "fixed") or (plus and rounding != "round"):
        raise argparse.ArgumentTypeError(f"range mode must be learned or fixed (+round: learned rounding), got {parts[2]!r}")
    weight = float(parts[3]) if len(parts) > 3 else 0.0
    kinds = parts[4] if len(parts) > 4 else "add"
    if kinds not in FEATURES:
        raise argparse.ArgumentTypeError(f"feature tensors must be one of {', '.join(FEATURES)}, got {kinds!r}")
    return name, int(steps), float(lr), mode == "learned", weight, FEATURES[kinds], "learned" if plus else "nearest"


def _drops(name: str, scale: int, blob: bytes, work: Path, root: Path, fp32: dict) -> dict:
    path = work / "candidate.tflite"
    path.write_bytes(blob)
    predict, _ = make_predictor(name, scale, str(path))
    out = {}
    for d in ("Set5", "Set14"):
        psnr = evaluate_dataset(predict, find_dataset(root / d, scale), scale).psnr_y
        out[d] = {"psnr_y": round(psnr, 3), "drop_db": round(fp32[d] - psnr, 3)}
    return out


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("scale", type=int)
    ap.add_argument("height", type=int)
    ap.add_argument("width", type=int)
    ap.add_argument("--ranges", default="p99.99")
    ap.add_argument("--rewrites", default=None, metavar="LIST", help="the exported graph's rewrites (default: sr-export's)")
    ap.add_argument("--start", default=None, metavar="FILE",
                    help="an INT8 parameter file (--save-int8-params) to start every variant from instead of the "
                         "post-training ranges; QAT then aims at the source's float weights, as sr-export's resume")
    ap.add_argument("--diagnose", action="store_true", help="per-group error of PTQ on 2 held-out 256x256 crops")
    ap.add_argument("--variant", type=_variant, action="append", default=[],
                    metavar="NAME=STEPS:LR:learned|fixed[:W[:add|concat|add+concat|all]]",
                    help="W > 0: intermediate-tensor distillation on those operators' outputs, weight W")
    ap.add_argument("--curve-every", type=int, default=0, metavar="K",
                    help="every K steps, convert the current weights and record held-out fidelity and the "
                         "Set5/Set14 drop (the curve steps -> dB; one cosine schedule over the variant's STEPS)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = data_dir()
    method = parse_ranges(args.ranges)
    results: dict = {"model": args.model, "scale": args.scale, "size": [args.height, args.width],
                     "ranges": method, "calibration_crops": 16, "held_out_crops": 4}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rewrites = {} if args.rewrites is None else {"rewrites": tuple(args.rewrites.split(","))}
        export_onnx(create_model(args.model, args.scale).eval(), work / "model.onnx", (args.height, args.width),
                    **rewrites)
        convert_onnx2tf(work / "model.onnx", work / "tf")
        cal = calibration_frames(root / "div2k" / "HR", args.scale, (args.height, args.width), n=16, seed=0,
                                 held_out=4)
        calibrated = calibrate(work / "tf" / "saved_model", cal.frames)
        if args.start:
            from srdeploy.quantize import int8_params

            chosen = int8_params.apply(calibrated, int8_params.load(args.start))
            results["start"] = args.start
        else:
            chosen = with_ranges(calibrated, method, activation_samples(calibrated, cal.frames))
        ptq = quantize_calibrated(chosen, "float32")
        ref_runner = TFLiteRunner(model_content=calibrated)
        reference = [ref_runner(f[None])[0] for f in cal.held_out]
        predict, _ = make_predictor(args.model, args.scale, None)
        fp32 = {d: evaluate_dataset(predict, find_dataset(root / d, args.scale), args.scale).psnr_y
                for d in ("Set5", "Set14")}
        results["pytorch_fp32"] = {d: round(v, 3) for d, v in fp32.items()}
        results["ptq"] = {"fidelity_db": round(worst_crop_psnr(ptq, reference, cal.held_out), 3),
                          **_drops(args.model, args.scale, ptq, work, root, fp32)}
        print("ptq", results["ptq"], flush=True)
        if args.diagnose:
            crops = torch.from_numpy(np.ascontiguousarray(cal.held_out[:2, :256, :256])).permute(0, 3, 1, 2)
            results["error_by_group_db"] = {k: round(v, 2) for k, v in
                                            error_by_group(TFLiteGraph(chosen, ptq), crops.float()).items()}
            for k, v in results["error_by_group_db"].items():
                print(f"  {k:<45} {v:6.2f} dB", flush=True)
        results["variants"] = {}
        # resumed: the float model to match is the source's own weights (same graph, same tensor indices)
        teacher = TFLiteGraph(calibrated, ptq) if args.start else None
        for name, steps, lr, learned, weight, kinds, rounding in args.variant:
            graph = TFLiteGraph(chosen, ptq)
            curve: list[dict] = []

            def point(step, g, steps=steps, curve=curve, name=name):
                if args.curve_every and step % args.curve_every == 0 and step < steps:
                    if g.rounding:  # learned rounding: the weights as rounded now (h >= 0.5 up)
                        g = copy.deepcopy(g)
                        g.finish_learned_rounding()
                    blob = quantize_calibrated(g.calibrated_with_weights(), "float32")
                    curve.append({"step": step, "fidelity_db": round(worst_crop_psnr(blob, reference, cal.held_out), 3),
                                  **_drops(args.model, args.scale, blob, work, root, fp32)})
                    print(" ", name, curve[-1], flush=True)

            t0 = time.perf_counter()
            fit = finetune(graph, cal.images, steps, lr=lr, learn_ranges=learned, seed=0, feature_weight=weight,
                           feature_kinds=kinds, callback=point, teacher=teacher, rounding=rounding)
            tuned = quantize_calibrated(graph.calibrated_with_weights(), "float32")
            results["variants"][name] = {"steps": steps, "lr": lr, "ranges": "learned" if learned else "fixed",
                                         "feature_weight": weight, "feature_ops": list(kinds), "curve": curve,
                                         "rounding": rounding, "rounding_undecided": fit.rounding_undecided,
                                         "seconds": round(time.perf_counter() - t0, 1),
                                         "loss_first": fit.loss_first, "loss_last": fit.loss_last,
                                         "fidelity_db": round(worst_crop_psnr(tuned, reference, cal.held_out), 3),
                                         **_drops(args.model, args.scale, tuned, work, root, fp32)}
            print(name, results["variants"][name], flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
