"""Peak memory of srdeploy's tools on small hostile or limit-sized inputs (issue 19).

Makes each input here (nothing shipped), runs the command in a child process and polls the
resident memory of it and its children (psutil, every 50 ms); writes one JSON row per case.

    python benchmarks/limits_memory.py --out benchmarks/results/limits_memory.json

Cases: a 4096x4096 PNG under 1 MB (the default pixel limit) upscaled x2 with the embedded
dipnet_lite (PyTorch, 512x512 tiles); a 20000x20000 1-bit PNG under 1 MB (refused from its header);
a ~100 KB .tflite declaring a 30000x30000 input, through sr-eval and sr-bench (refused before
allocation); a 3 GB-input .tflite through sr-bench with a 1000 MB worker limit.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def peak(cmd: list[str]) -> dict:
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p, top = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            top = max(top, p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True)))
        except psutil.Error:
            pass
        time.sleep(0.05)
    _, err = proc.communicate()
    return {"command": " ".join(Path(c).name if "/" in c and not c.startswith("-") else c for c in cmd),
            "exit_code": proc.returncode, "peak_rss_mb": round(top / 2**20), "seconds": round(time.perf_counter() - t0, 1),
            "stderr_last_line": (err.strip().splitlines() or [""])[-1][:300]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/limits_memory.json")
    args = ap.parse_args()
    import cv2
    from PIL import Image

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests import hostile_models as hm

    py = [sys.executable, "-m"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        img = np.zeros((4096, 4096, 3), np.uint8)
        img[:, :2048] = (200, 120, 40)
        cv2.imwrite(str(t / "flat4096.png"), img)
        Image.new("1", (20000, 20000)).save(t / "bomb20000.png")
        exp = t / "exp"
        subprocess.run(py + ["srdeploy.export.cli", "--model", "dipnet_lite", "--size", "24x24", "--out", str(exp)],
                       check=True, capture_output=True)
        hm.edited(exp / "model_fp32.tflite", t / "huge_input.tflite", "huge_input")
        hm.edited(exp / "model_fp32.tflite", t / "big_input.tflite", "big_input")
        (t / "set").mkdir()
        cv2.imwrite(str(t / "set" / "a.png"), img[:32, :32])
        sizes = {f.name: f.stat().st_size for f in t.iterdir() if f.is_file()}
        cases = [
            ("4096x4096 PNG (default limit), x2 dipnet_lite", "flat4096.png",
             py + ["srdeploy.upscale", str(t / "flat4096.png"), "-o", str(t / "o1.png"), "--model", "dipnet_lite"]),
            ("20000x20000 1-bit PNG", "bomb20000.png",
             py + ["srdeploy.upscale", str(t / "bomb20000.png"), "-o", str(t / "o2.png"), "--model", "dipnet_lite"]),
            (".tflite declaring a 30000x30000 input, sr-eval", "huge_input.tflite",
             py + ["srdeploy.benchmark.eval_cli", "--artifact", str(t / "huge_input.tflite"), "--scale", "2",
                   "--data", str(t / "set")]),
            (".tflite declaring a 30000x30000 input, sr-bench", "huge_input.tflite",
             py + ["srdeploy.benchmark.bench_cli", str(t / "huge_input.tflite"), "--runs", "1"]),
            (".tflite with a 3 GB input, sr-bench --memory-limit 1000", "big_input.tflite",
             py + ["srdeploy.benchmark.bench_cli", str(t / "big_input.tflite"), "--runs", "1", "--memory-limit", "1000"]),
        ]
        for what, f, cmd in cases:
            row = {"case": what, "input_bytes": sizes[f], **peak(cmd)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    Path(args.out).write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                          "date": time.strftime("%Y-%m-%d"), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
