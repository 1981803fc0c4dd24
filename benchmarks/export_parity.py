"""Export every registered model (ONNX + FP32 + FP16) and tabulate the parity gate and file sizes.

    python benchmarks/export_parity.py [--size 64x64] [--out benchmarks/results/export_parity.json]

Prints a markdown table (for docs/RESULTS.md) and writes the full manifests as JSON.
Models without public weights are exported with random weights.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from srdeploy.export import ExportConfig, Exporter
from srdeploy.models import get_spec, list_models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="64x64")
    ap.add_argument("--out", default="benchmarks/results/export_parity.json")
    args = ap.parse_args()
    rows, manifests = [], []
    for name in list_models():
        spec = get_spec(name)
        for scale in spec.scales:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                m = Exporter(ExportConfig(model=name, scale=scale, size=args.size, fp16=True, out=tmp,
                                          random_weights=not spec.weights), log=lambda s: None).run()
                secs = time.perf_counter() - t0
            manifests.append(m)
            arts = {a["file"]: a for a in m["artifacts"]}

            def worst(file: str, key: str) -> float:
                vals = [c[key] for c in arts[file]["parity"]["checks"] if c[key] is not None]
                return max(vals) if key == "max_abs" else min(vals)

            fp16 = arts["model_fp16.tflite"]
            kept = len(fp16["fp16"]["kept_fp32"])
            rows.append(
                f"| {name} x{scale} | {m['parameters']:,} | {worst('model.onnx', 'max_abs'):.1e} | "
                f"{worst('model_fp32.tflite', 'max_abs'):.1e} | {worst('model_fp16.tflite', 'psnr_db'):.1f} | "
                f"{arts['model_fp32.tflite']['bytes'] / 1024:.0f} | {fp16['bytes'] / 1024:.0f} | {kept} | "
                f"{m['status']} | {secs:.0f} |")
            print(rows[-1], flush=True)
    header = ("| model | params | ONNX max abs | FP32 max abs | FP16 min PSNR (dB) | FP32 KiB | FP16 KiB | "
              "FP16 tensors kept FP32 | gate | export s |\n|---|---|---|---|---|---|---|---|---|---|")
    print("\n" + header + "\n" + "\n".join(rows))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"size": args.size, "machine": platform.platform(), "processor": platform.processor(),
                               "manifests": manifests}, indent=1))


if __name__ == "__main__":
    main()
