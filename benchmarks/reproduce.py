"""Reproduce the papers' PSNR/SSIM tables with sr-eval's code path.

    python benchmarks/reproduce.py [--data ../shared/data] [--out benchmarks/results/reproduce.json]

Set5 uses the official LR files; Set14 LR is made with the MATLAB-compatible bicubic.
Prints a markdown table (ours next to the published / authors'-code numbers).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from srdeploy.benchmark.evaluate import evaluate_dataset, find_dataset, make_predictor
from srdeploy.paths import data_dir

# (model, scale): (reference label, Set5, Set14)
REFERENCE = {
    ("imdn", 2): ("IMDN paper", 38.00, 33.63),
    ("imdn", 3): ("IMDN paper", 34.36, 30.32),
    ("imdn", 4): ("IMDN paper", 32.21, 28.58),
    ("imdn_plus", 4): ("authors' code (paper: 32.11 / 28.63)", 32.129, 28.645),
    ("dipnet", 4): ("authors' code", 31.807, 28.441),
    ("imdn_rtc", 2): ("authors' code (MEASUREMENTS.md)", 37.32, 32.976),
    ("imdn_rte", 2): ("-", None, None),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None)
    ap.add_argument("--out", default="benchmarks/results/reproduce.json")
    args = ap.parse_args()
    root = Path(args.data) if args.data else data_dir()
    rows, results = [], []
    for (name, scale), (ref_label, ref5, ref14) in REFERENCE.items():
        predict, _ = make_predictor(name, scale)
        cells = []
        for ds_name in ("Set5", "Set14"):
            r = evaluate_dataset(predict, find_dataset(root / ds_name, scale), scale)
            results.append({"model": name, "scale": scale, **r.to_json()})
            cells.append(r)
        def fmt(x, nd=3):
            return "-" if x is None else f"{x:.{nd}f}"
        rows.append(f"| {name} x{scale} | {fmt(cells[0].psnr_y)} / {fmt(cells[0].ssim_y, 4)} | "
                    f"{fmt(cells[1].psnr_y)} / {fmt(cells[1].ssim_y, 4)} | {fmt(ref5, 3)} / {fmt(ref14, 3)} | "
                    f"{ref_label} |")
        print(rows[-1], flush=True)
    print("\n| model | Set5 PSNR-Y / SSIM-Y | Set14 PSNR-Y / SSIM-Y | reference Set5 / Set14 | reference |\n"
          "|---|---|---|---|---|\n" + "\n".join(rows))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"results": results}, indent=1))


if __name__ == "__main__":
    main()
