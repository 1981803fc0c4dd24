"""Quality against compute at equal footing (issue 21): Set5/Set14 PSNR-Y against GMAC per 720x480 frame.

    python benchmarks/psnr_vs_gmac.py --model imdn_rtc --model dipnet_lite \
        --model "dipnet_lite=runs/lite22/dipnet_lite_x2.pth:candidate" \
        --model "dipnet_lite=runs/prune/dipnet_lite_x2_pruned.pth:pruned" \
        --json benchmarks/results/psnr_vs_gmac.json --plot benchmarks/results/psnr_vs_gmac.png

Each ``--model`` is ``NAME`` (the registry's weights: official or embedded) or ``NAME=WEIGHTS[:LABEL]`` (a
deploy-form checkpoint, e.g. a pruned one that records its own widths). MACs are counted on the PyTorch
deploy form at the LR size given (every conv's output elements x its kernel volume; the elementwise ops are
left out, as papers count), PSNR-Y with sr-eval's own code (whole images, border = scale, uint8 outputs).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _parse(entry: str) -> tuple[str, str | None, str]:
    name, _, rest = entry.partition("=")
    if not rest:
        return name, None, name
    weights, _, label = rest.partition(":")
    return name, weights, label or f"{name} ({Path(weights).name})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, metavar="NAME[=WEIGHTS[:LABEL]]")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--size", default="720x480", help="LR frame for the MAC count (default 720x480)")
    ap.add_argument("--json", required=True)
    ap.add_argument("--plot", default=None)
    args = ap.parse_args()

    from srdeploy.benchmark.roofline import count_macs_torch
    from srdeploy.models import create_model
    from srdeploy.paths import data_dir
    from srdeploy.train.trainer import evaluate_psnr

    h, w = (int(v) for v in args.size.lower().split("x"))
    root = data_dir()
    if root is None:
        print("psnr_vs_gmac: no SRDEPLOY_DATA (Set5/Set14) found", file=sys.stderr)
        return 2
    rows = []
    for entry in args.model:
        name, weights, label = _parse(entry)
        model = create_model(name, args.scale, weights=weights)
        params = sum(p.numel() for p in model.parameters())
        gmac = count_macs_torch(model, (h, w)) / 1e9
        row = {"label": label, "model": name, "weights": weights or "registry", "params": params,
               "gmac": round(gmac, 3), "size": f"{h}x{w}"}
        for ds in ("Set5", "Set14"):
            t0 = time.perf_counter()
            row[f"{ds.lower()}_psnr_y"] = round(evaluate_psnr(model, root / ds, args.scale), 3)
            row[f"{ds.lower()}_s"] = round(time.perf_counter() - t0, 1)
        print(f"{label}: {params:,} params, {gmac:.2f} GMAC at {h}x{w}, Set5 {row['set5_psnr_y']:.3f} / "
              f"Set14 {row['set14_psnr_y']:.3f} dB", file=sys.stderr)
        rows.append(row)
    out = {"command": "python benchmarks/psnr_vs_gmac.py " + " ".join(f"--model {m}" for m in args.model),
           "date": time.strftime("%Y-%m-%d"), "scale": args.scale, "rows": rows}
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, ds in zip(axes, ("set5", "set14")):
            for r in rows:
                ax.scatter(r["gmac"], r[f"{ds}_psnr_y"], s=30)
                ax.annotate(r["label"], (r["gmac"], r[f"{ds}_psnr_y"]), fontsize=7, xytext=(4, 3),
                            textcoords="offset points")
            ax.set_xlabel(f"GMAC per {h}x{w} LR frame")
            ax.set_ylabel(f"{ds.capitalize()} PSNR-Y (dB), x{args.scale}")
            ax.grid(alpha=0.3)
            ax.margins(x=0.3, y=0.1)  # room for the labels right of the points
        fig.suptitle("quality against compute (sr-eval conventions; MACs of the deploy form)")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
