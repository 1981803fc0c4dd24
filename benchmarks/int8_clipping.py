"""Which activation ranges an image leaves: clipping of an INT8 parameter file's ranges, image vs held-out crops.

Builds the converter's INT8 graph from a quantization-ready parameter file (``--save-int8-params``, or a
registry model's shipped one), runs it in float on one HR image's bicubic LR and on the held-out DIV2K crops
the exporter judges with, and lists the tensors whose values fall outside their int8 range most (by the
clipped error's mean square), with the share of values clipped and the fidelity (PSNR against the float
graph) with only that tensor quantized; then the held-out crops' error group by group (weights only,
activations only, each op kind: ``qat.error_by_group``). A diagnostic for docs/RESULTS.md; nothing is
chosen by it.

    python benchmarks/int8_clipping.py imdn_rtc 2 src/srdeploy/models/zoo/imdn_rtc_x2_int8.npz \
        ../shared/data/Set14/HR/ppt3.png --json benchmarks/results/int8_per_image/imdn_rtc_x2_clipping_ppt3.json
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from srdeploy.export.formats import convert_onnx2tf, export_onnx
from srdeploy.fsutil import atomic_write_json
from srdeploy.imaging import read_rgb
from srdeploy.models import create_model
from srdeploy.paths import data_dir
from srdeploy.quantize import int8_params
from srdeploy.quantize.calibration import calibration_frames
from srdeploy.quantize.qat import TFLiteGraph, error_by_group, partial_quant_psnr
from srdeploy.quantize.ranges import calibrate, quantize_calibrated
from srdeploy.resize import bicubic_degrade, modcrop


def clipping(graph: TFLiteGraph, x: torch.Tensor, top: int) -> dict:
    with torch.no_grad():
        ref = graph(x, quant=False, keep=set(graph.qparams))
    env = dict(graph.kept)
    graph.kept = {}
    kind = {op.outputs[0]: op.kind for op in graph.ops}
    rows = []
    for i, (s, z) in graph.qparams.items():
        if i not in env:
            continue
        t = env[i]
        lo, hi = (-128 - z) * s, (127 - z) * s
        outside = (t < lo - s / 2) | (t > hi + s / 2)
        over = float(torch.clamp(t - hi, min=0).pow(2).mean() + torch.clamp(lo - t, min=0).pow(2).mean())
        rows.append({"tensor": i, "op": kind.get(i, "input"), "range": [round(lo, 3), round(hi, 3)],
                     "seen": [round(float(t.min()), 3), round(float(t.max()), 3)],
                     "clipped_pct": round(100 * float(outside.float().mean()), 4), "clipped_mse": over})
    rows.sort(key=lambda r: -r["clipped_mse"])
    for r in rows[:top]:
        r["fidelity_db_this_tensor_only"] = round(partial_quant_psnr(graph, x, ref, {r["tensor"]}, False), 2)
    return {"fidelity_db_all": round(partial_quant_psnr(graph, x, ref, None), 2), "tensors": rows[:top]}


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("scale", type=int)
    ap.add_argument("params", help="an INT8 parameter file (.npz)")
    ap.add_argument("image", help="an HR image; its MATLAB-bicubic LR is what the graph sees")
    ap.add_argument("--top", type=int, default=6)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    params = int8_params.load(args.params)
    rewrites = tuple(params.meta.get("rewrites", ()))
    size = (128, 128)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        export_onnx(create_model(args.model, args.scale).eval(), work / "m.onnx", size, rewrites=rewrites)
        convert_onnx2tf(work / "m.onnx", work / "tf")
        cal = calibration_frames(data_dir() / "div2k" / "HR", args.scale, size, n=16, seed=0, held_out=4)
        calibrated = int8_params.apply(calibrate(work / "tf" / "saved_model", cal.frames[:2]), params)
        graph = TFLiteGraph(calibrated, quantize_calibrated(calibrated, "float32"))
    lr = bicubic_degrade(modcrop(read_rgb(args.image), args.scale), args.scale).astype(np.float32) / 255.0
    inputs = {Path(args.image).name: torch.from_numpy(lr).permute(2, 0, 1)[None].contiguous(),
              "held-out DIV2K crops": torch.from_numpy(np.ascontiguousarray(cal.held_out)).permute(0, 3, 1, 2)}
    out = {"model": args.model, "scale": args.scale, "params": args.params, "rewrites": list(rewrites), "inputs": {}}
    for name, x in inputs.items():
        res = out["inputs"][name] = clipping(graph, x.float(), args.top)
        print(f"{name}: fake-quantized graph {res['fidelity_db_all']:.2f} dB from float")
        for r in res["tensors"]:
            print(f"  t{r['tensor']:<4} {r['op']:<12} range {r['range']} seen {r['seen']} "
                  f"clipped {r['clipped_pct']:.4f} % (this tensor alone {r['fidelity_db_this_tensor_only']:.2f} dB)")
    # where the held-out crops' error comes from, group by group (weights, activations, op kinds)
    groups = error_by_group(graph, inputs["held-out DIV2K crops"].float())
    out["error_by_group_db_held_out"] = {k: round(v, 2) for k, v in groups.items()}
    print("held-out DIV2K crops, one group quantized at a time:",
          ", ".join(f"{k} {v:.2f}" for k, v in out["error_by_group_db_held_out"].items()))
    if args.json:
        atomic_write_json(Path(args.json), out)
    return out


if __name__ == "__main__":
    main()
