"""Where an INT8 drop comes from, image by image, and the fidelity 0.10 dB would need (issue 17's "why").

For each Set5/Set14 image: PSNR-Y of PyTorch FP32 and of the INT8 TFLite against HR (sr-eval's
convention: official LR where there is one, else MATLAB bicubic; border = scale), and PSNR-Y of the
INT8 output against the FP32 output (the INT8 model's own error). Per set it also gives the drop that
error would cause if it were uncorrelated with the float model's error (10·log10(1 + MSE_q / MSE_f))
and the INT8-vs-FP32 PSNR-Y that a 0.10 dB drop needs under that model (the float PSNR + 16.3 dB).
A diagnostic: it reads evaluation images, so nothing in the product may be chosen by it.

    python benchmarks/int8_per_image.py imdn_rtc 2 runs/qat/rtc_ss_r2000/model_int8.tflite \
        --json benchmarks/results/int8_per_image/imdn_rtc_x2.json
    # every image of several such files: float PSNR against INT8-vs-float PSNR, with the 0.10 dB line
    python benchmarks/int8_per_image.py plot OUT.png A.json B.json ...
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from srdeploy.benchmark.evaluate import find_dataset, load_pair, make_predictor
from srdeploy.fsutil import atomic_write, atomic_write_json
from srdeploy.imaging import psnr_y, to_uint8
from srdeploy.paths import data_dir

#: 10·log10(1 / (10^(0.10/10) − 1)): INT8-vs-float PSNR above the float PSNR that costs 0.10 dB when uncorrelated
MARGIN_FOR_0_10_DB = 10 * math.log10(1 / (10 ** 0.01 - 1))


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("scale", type=int)
    ap.add_argument("int8", help="the INT8 .tflite")
    ap.add_argument("--weights", default=None, help="float weights (default: the registry's)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    float_predict, _ = make_predictor(args.model, args.scale, None, weights=args.weights)
    int8_predict, _ = make_predictor(args.model, args.scale, args.int8)
    out: dict = {"model": args.model, "scale": args.scale, "int8": args.int8, "sets": {}}
    for name in ("Set5", "Set14"):
        ds = find_dataset(data_dir() / name, args.scale)
        rows = []
        for path in ds.hr_files:
            lr, hr, _ = load_pair(ds, path, args.scale)
            f, q = to_uint8(float_predict(lr)), to_uint8(int8_predict(lr))
            rows.append({"image": path.name, "float_psnr_y": psnr_y(f, hr, args.scale),
                         "int8_psnr_y": psnr_y(q, hr, args.scale), "int8_vs_float_psnr_y": psnr_y(q, f, args.scale)})
        fl = np.array([r["float_psnr_y"] for r in rows])
        q8 = np.array([r["int8_psnr_y"] for r in rows])
        qf = np.array([r["int8_vs_float_psnr_y"] for r in rows])
        uncorrelated = fl + 10 * np.log10(10 ** (-fl / 10) + 10 ** (-qf / 10))
        for r, u in zip(rows, uncorrelated):
            r["drop_db"] = round(r["float_psnr_y"] - r["int8_psnr_y"], 3)
            r["drop_if_uncorrelated_db"] = round(float(u), 3)
            for k in ("float_psnr_y", "int8_psnr_y", "int8_vs_float_psnr_y"):
                r[k] = round(r[k], 3)
        out["sets"][name] = {
            "drop_db": round(float((fl - q8).mean()), 3),
            "drop_if_uncorrelated_db": round(float(uncorrelated.mean()), 3),
            "int8_vs_float_psnr_y_mean": round(float(qf.mean()), 2),
            "int8_vs_float_psnr_y_worst": round(float(qf.min()), 2),
            "int8_vs_float_needed_for_0.10_db": round(float(fl.mean() + MARGIN_FOR_0_10_DB), 2),
            "images": rows}
        s = out["sets"][name]
        print(f"{name}: drop {s['drop_db']:.3f} dB (uncorrelated model {s['drop_if_uncorrelated_db']:.3f}); INT8 vs "
              f"float {s['int8_vs_float_psnr_y_mean']:.2f} dB mean, {s['int8_vs_float_psnr_y_worst']:.2f} worst; "
              f"0.10 dB needs ~{s['int8_vs_float_needed_for_0.10_db']:.2f}")
        for r in sorted(rows, key=lambda r: -r["drop_db"])[:3]:
            print(f"   {r['image']:<16} drop {r['drop_db']:.3f}  INT8 vs float {r['int8_vs_float_psnr_y']:.2f} dB")
    if args.json:
        atomic_write_json(Path(args.json), out)
    return out


def plot(out: str, files: list[str]) -> None:
    """One point per image and model: where 0.10 dB would need it to be (above the line, if uncorrelated)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    lo, hi = 1e9, -1e9
    for f, colour in zip(files, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")):
        data = json.loads(Path(f).read_text())
        for name, marker in (("Set5", "o"), ("Set14", "s")):
            rows = data["sets"][name]["images"]
            x = [r["float_psnr_y"] for r in rows]
            y = [r["int8_vs_float_psnr_y"] for r in rows]
            lo, hi = min(lo, *x), max(hi, *x)
            ax.scatter(x, y, c=colour, marker=marker, s=28, label=f"{data['model']} x{data['scale']} {name}")
            for r in rows:
                if r["drop_db"] > 0.5:
                    ax.annotate(f"{r['image'].split('.')[0]} {r['drop_db']:.2f} dB", (r["float_psnr_y"],
                                r["int8_vs_float_psnr_y"]), fontsize=7, xytext=(4, -8), textcoords="offset points")
    xs = np.linspace(lo - 0.5, hi + 0.5, 2)
    ax.plot(xs, xs + MARGIN_FOR_0_10_DB, "k--", lw=1, label="0.10 dB drop if uncorrelated (float + 16.3 dB)")
    ax.set_xlabel("FP32 PSNR-Y against HR (dB), per image")
    ax.set_ylabel("INT8 PSNR-Y against FP32 (dB)")
    ax.set_title("Default INT8 files: each image's fidelity and what 0.10 dB would need")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    atomic_write(Path(out), lambda tmp: fig.savefig(tmp, dpi=120, format="png"))


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 3 and sys.argv[1] == "plot":
        plot(sys.argv[2], sys.argv[3:])
    else:
        main()
