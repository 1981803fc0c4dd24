"""INT8 with int16 on the costliest activation tensors (``sr-export --act mixed``): the curve of how many
tensors are widened → Set5/Set14 drop, optionally checked on the Snapdragon NPU's simulator.

Every point is the product's own command (``sr-export --int8 --act mixed --int16-tensors K --quality``,
K = 0 is the plain ``--act int8`` export), run in a child process; nothing here chooses anything on
Set5/Set14 (the tensors are ranked on crops of --calib).

    python benchmarks/mixed_precision.py --model imdn_rtc --size 64x64 --k 0 1 2 4 8 16 32 all \\
        --npu 16 --json benchmarks/results/mixed_precision_imdn_rtc_64.json --plot benchmarks/results/mixed_precision.png
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ALL = 10_000


def export(model: str, size: str, calib: str, k: int, out: Path) -> dict:
    cmd = ["sr-export", "--model", model, "--size", size, "--int8", "--calib", calib, "--quality", "--out", str(out),
           "--no-parity"]
    if k:
        cmd += ["--act", "mixed", "--int16-tensors", str(k)]
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    m = json.loads((out / "manifest.json").read_text())
    q = next(a for a in m["artifacts"] if a["file"] == "model_int8.tflite")["quantization"]
    mixed = q.get("mixed", {})
    row = {"k": len(mixed.get("int16_tensors", [])), "command": " ".join(cmd[:-3] + ["--quality"]),
           "seconds": round(time.time() - t0, 1), "int8_params": q.get("int8_params_choice"),
           "activation_tensor_types": mixed.get("activation_tensor_types"),
           "tensors_ranked": mixed.get("tensors_ranked")}
    for d, rows in m["quality"].items():
        row[d] = {"fp32": round(rows["pytorch_fp32"]["psnr_y"], 3), "int8": round(rows["int8_tflite"]["psnr_y"], 3),
                  "drop_db": round(rows["int8_tflite"]["drop_db"], 3)}
    return row


def npu(out: Path, soc: str) -> dict:
    r = subprocess.run(["sr-target", "check", str(out), "--target", f"qualcomm:{soc}", "--artifact",
                        "model_int8.tflite", "--json"], capture_output=True, text=True)
    try:
        rows = json.loads(r.stdout)
    except json.JSONDecodeError:
        return {"error": (r.stderr.strip().splitlines() or ["no output"])[-1]}
    return {"exit": r.returncode, "rows": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="imdn_rtc")
    p.add_argument("--size", default="64x64")
    p.add_argument("--calib", default=str(Path(os.environ.get("SRDEPLOY_DATA", "../shared/data")) / "div2k" / "HR"))
    p.add_argument("--k", nargs="+", default=["0", "1", "2", "4", "8", "16", "32", "all"])
    p.add_argument("--npu", nargs="*", default=[], help="K values also checked on the HTP simulator")
    p.add_argument("--soc", default="SM8650")
    p.add_argument("--json", required=True)
    p.add_argument("--plot")
    a = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in a.k:
            n = ALL if k == "all" else int(k)
            out = Path(tmp) / f"k{k}"
            row = export(a.model, a.size, a.calib, n, out)
            if k in a.npu:
                row["npu"] = npu(out, a.soc)
            rows.append(row)
            print(json.dumps({x: row[x] for x in ("k", "Set5", "Set14", "seconds")}), flush=True)
    res = {"model": a.model, "size": a.size, "date": time.strftime("%Y-%m-%d"), "rows": rows}
    Path(a.json).write_text(json.dumps(res, indent=1))
    if a.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ks = [max(r["k"], 0.5) for r in rows]
        for d, mark in (("Set5", "o-"), ("Set14", "s-")):
            ax.plot(ks, [r[d]["drop_db"] for r in rows], mark, label=d)
        ax.axhline(0.10, color="grey", ls="--", lw=1, label="0.10 dB")
        ax.set_xscale("log")
        ax.set_xlabel("activation tensors in int16 (0 plotted at 0.5)")
        ax.set_ylabel("PSNR-Y drop vs PyTorch FP32 (dB)")
        ax.set_title(f"{a.model} {a.size}: INT8 with int16 on the costliest tensors")
        ax.legend()
        fig.tight_layout()
        fig.savefig(a.plot, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
