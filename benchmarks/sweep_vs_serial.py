"""The suite as a sweep against the serial suite of before (issue 23, item 4): wall time, and whether
quality and parity figures are identical.

    git show 9323843:benchmarks/run_suite.py > /tmp/run_suite_serial.py   # the serial suite
    python /tmp/run_suite_serial.py --no-docs --results benchmarks/results/serial   # (its exports: exports/suite/)
    python benchmarks/run_suite.py                                       # the sweep (exports/suite_sweep/<stamp>/)
    python benchmarks/sweep_vs_serial.py benchmarks/results/suite.json benchmarks/results/serial/suite.json

Prints a markdown table (one row per model × precision × size) and writes
benchmarks/results/sweep_vs_serial.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _parity(manifest: Path, artifact: str) -> list | None:
    try:
        m = json.loads(manifest.read_text())
    except OSError:
        return None
    for a in m["artifacts"]:
        if a["file"] == artifact:
            return [(c["input"], c.get("max_abs"), c.get("psnr_db")) for c in a["parity"].get("checks", [])]
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep", help="the sweep's suite.json (results.json)")
    ap.add_argument("serial", help="the serial suite's suite.json")
    ap.add_argument("--serial-exports", default=str(ROOT / "exports" / "suite"))
    ap.add_argument("--sweep-folder", help="the sweep's folder (default: the one its results name)")
    args = ap.parse_args()
    sweep, serial = json.loads(Path(args.sweep).read_text()), json.loads(Path(args.serial).read_text())
    folder = args.sweep_folder or sweep.get("folder")
    sweep_dir = Path(folder) if folder else None
    rows = []
    old = {(r["model"], r["precision"], tuple(r["size"])): r for r in serial["rows"]}
    for c in sweep["cells"]:
        if c["status"] == "skipped":
            continue
        cfg = c["config"]
        key = (f"{cfg['model']} x{cfg['scale']}", cfg["precision"], tuple(cfg["size"]))
        o = old.get(key)
        psnr_new = (c.get("quality") or {}).get("Set5", {}).get("psnr_y")
        h, w = cfg["size"]
        name = f"{cfg['model']}_x{cfg['scale']}_{h}x{w}"
        art = f"model_{cfg['precision']}.tflite"
        p_new = _parity(sweep_dir / "exports" / name / "manifest.json", art) if sweep_dir else None
        p_old = _parity(Path(args.serial_exports) / name / "manifest.json", art)
        rows.append({"model": key[0], "precision": key[1], "size": f"{h}x{w}",
                     "psnr_sweep": psnr_new, "psnr_serial": o.get("psnr") if o else None,
                     "psnr_identical": (psnr_new == (o or {}).get("psnr")),
                     "parity_identical": p_new is not None and p_new == p_old,
                     # the gate's own figures differ at float-rounding level between runs (the
                     # reference's thread split; onnx2tf's output is not byte-stable): their largest gap
                     "parity_max_abs_gap": max((abs(a[1] - b[1]) for a, b in zip(p_new or [], p_old or [])), default=None),
                     "parity_psnr_gap_db": max((abs(a[2] - b[2]) for a, b in zip(p_new or [], p_old or [])), default=None),
                     "parity_relative_gap": max((abs(a[1] - b[1]) / max(a[1], b[1], 1e-12)
                                                 for a, b in zip(p_new or [], p_old or [])), default=None),
                     "median_ms_sweep": (c.get("latency") or {}).get("median_ms"),
                     "median_ms_serial": (o or {}).get("median_ms")})
    doc = {"sweep_seconds": sweep["seconds"], "serial_seconds": serial["seconds"], "rows": rows,
           "machine": serial.get("machine")}
    out = ROOT / "benchmarks" / "results" / "sweep_vs_serial.json"
    out.write_text(json.dumps(doc, indent=1))
    print(f"wall time: sweep {sweep['seconds'] / 60:.1f} min, serial {serial['seconds'] / 60:.1f} min "
          f"(ratio {sweep['seconds'] / serial['seconds']:.2f})\n")
    print("| model | precision | LR size | Set5 PSNR-Y sweep | serial | identical | parity identical "
          "(largest gap: max abs / dB) | median ms sweep | serial |")
    print("|---|---|---|---|---|---|---|---|---|")

    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    for r in rows:
        print(f"| {r['model']} | {r['precision']} | {r['size']} | {f(r['psnr_sweep'], '.4f')} | "
              f"{f(r['psnr_serial'], '.4f')} | {'yes' if r['psnr_identical'] else 'NO'} | "
              f"{'yes' if r['parity_identical'] else 'no'} ({f(r['parity_max_abs_gap'], '.1e')} / "
              f"{f(r['parity_psnr_gap_db'], '.3f')}) | {f(r['median_ms_sweep'], '.1f')} | "
              f"{f(r['median_ms_serial'], '.1f')} |")
    # quality must be identical; the gate's figures the same within float rounding
    # (a dB gap means nothing at 140 dB: the max |Δ| itself, within 1e-6 or 0.1 % of its value)
    if not all(r["psnr_identical"] and ((r["parity_max_abs_gap"] or 0) <= 1e-6 or (r["parity_relative_gap"] or 0) <= 1e-3)
               for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
