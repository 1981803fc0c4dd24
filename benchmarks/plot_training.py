"""Plot the Set5 PSNR-Y curve of sr-train runs from their train_report.json files.

usage: python benchmarks/plot_training.py REPORT.json [REPORT.json ...] --out PNG [--target DB]
Later reports continue the step axis of earlier ones (a fine-tune stage after a first stage).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--target", type=float, default=None, help="draw a target line (dB)")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    offset = 0
    for i, path in enumerate(args.reports):
        rep = json.loads(Path(path).read_text())
        hist = rep["history"]
        steps = [offset + h["step"] for h in hist]
        ax.plot(steps, [h["set5_psnr_y"] for h in hist], marker="o", ms=3,
                label=f"stage {i + 1}: patch {rep['config']['patch']}, batch {rep['config']['batch']}, "
                      f"lr {rep['config']['lr']:g}")
        offset += rep["steps"]
    if args.target:
        ax.axhline(args.target, color="grey", ls="--", lw=1, label=f"target {args.target} dB")
    ax.set_xlabel("training step")
    ax.set_ylabel("Set5 PSNR-Y (dB), x2")
    ax.set_title("sr-train dipnet_lite x2 (CPU, 2 cores)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
