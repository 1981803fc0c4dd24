"""Model × precision × target: parity, LSB drift against the host, Set5 PSNR-Y on the target (issue 16).

Exports each model (FP32, FP16 with fp16 arithmetic allowed, and sr-export's default INT8: the registry's
shipped INT8 parameter file where the model has one (the four models below all do, since 2026-12-05), else
post-training with --ranges auto on 16 DIV2K crops) and checks every artifact on the emulated ARM cores,
one after the other:

    python benchmarks/targets_table.py --out benchmarks/results/targets_table.json [--cores cortex-a76,cortex-a53] [--gpu]
                                       [--qualcomm SM8650,SM8350] [--reuse]

``--qat-steps N``: the INT8 rows of a quantization-aware fine-tuned export (sr-export --qat-steps N),
FP32 beside it, in a folder of their own; their rows carry ``qat_steps`` and merge with the others.

``--qualcomm``: each artifact compiled for those SoCs and, fully offloaded, run on QNN's HTP
simulator. ``--reuse``: an existing export in --work is checked on the requested targets only
(``sr-target check``) instead of exported again.

Writes the JSON (every figure of every row, the machine, the date, the command) and prints the
markdown table for docs/RESULTS.md. Emulated time is not phone time: no latency is reported.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

from srdeploy.paths import data_dir

#: (model, scale, size) as issue 16 lists them
ROWS = [("imdn_rtc", 2, "720x480"), ("imdn", 4, "256x256"), ("dipnet", 4, "256x256"), ("dipnet_lite", 2, "256x256")]


def _table(rows: list[dict]) -> str:
    lines = ["| model | size | artifact | target | max abs vs reference (image / noise) | vs host | Set5 PSNR-Y on target (reference) | drop on target | result |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "ops_offloaded" in r:  # qualcomm: the compile's figures, then the simulator's run
            sim = r.get("simulator") or {}
            r = {**r, "target": f"{r['target']} (HTP simulator; {r['ops_offloaded']}/{r['ops_total']} ops on the NPU)",
                 "checks": sim.get("checks"), "set5": sim.get("set5"), "error": r.get("error") or sim.get("error")}
        c = r.get("checks") or []
        ref = " / ".join(f"{x['max_abs_vs_reference']:.1e} ({x['psnr_db_vs_reference']:.1f} dB)" for x in c) or "-"
        host = " / ".join(f"{x['max_lsb_vs_host']} LSB" if "max_lsb_vs_host" in x else f"{x['max_abs_vs_host']:.1e}"
                          for x in c) or "-"
        s5 = r.get("set5")
        psnr = f"{s5['psnr_y_target']:.3f} ({s5['psnr_y_reference']:.3f})" if s5 else "-"
        drop = f"{s5['drop_db_on_target']:.3f} dB" if s5 else "-"
        status = r["status"] + (f": {r['error'][:60]}" if r.get("error") else "")
        art = r["artifact"] + (f" (QAT, {r['qat_steps']} steps)" if r.get("qat_steps") else "")
        lines.append(f"| {r['model']} x{r['scale']} | {r['size']} | {art} | {r['target']} | {ref} | {host} | "
                     f"{psnr} | {drop} | {status} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/targets_table.json")
    ap.add_argument("--work", default="exports/targets_table")
    ap.add_argument("--cores", default="cortex-a76,cortex-a53")
    ap.add_argument("--gpu", action="store_true", help="also the gpu target in both modes (sr-target setup gpu)")
    ap.add_argument("--qualcomm", help="comma-separated SoCs (e.g. SM8650,SM8350): compile and run on the HTP simulator")
    ap.add_argument("--reuse", action="store_true", help="check existing exports in --work on the targets only")
    ap.add_argument("--only", help="comma-separated model names")
    ap.add_argument("--qat-steps", type=int, default=0, metavar="N",
                    help="INT8 after N steps of quantization-aware fine-tuning (sr-export --qat-steps; FP32 and INT8 "
                         "only, in an export folder of its own, rows marked with the steps)")
    args = ap.parse_args()
    from srdeploy.export.cli import main as export_main
    from srdeploy.targets import parse_target

    calib = data_dir() / "div2k" / "HR"
    targets = [a for c in args.cores.split(",") if c and c != "none" for a in ("--target", f"arm64:{c}")]
    if args.gpu:
        targets += ["--target", "gpu", "--target", "gpu:fp32"]
    if args.qualcomm:
        targets += [a for soc in args.qualcomm.split(",") for a in ("--target", f"qualcomm:{soc}")]
    rows, t0 = [], time.time()
    for model, scale, size in ROWS:
        if args.only and model not in args.only.split(","):
            continue
        out = Path(args.work) / (f"{model}_x{scale}_{size}" + (f"_qat{args.qat_steps}" if args.qat_steps else ""))
        precisions = ["--qat-steps", str(args.qat_steps)] if args.qat_steps else ["--fp16", "--fp16-arithmetic"]
        argv = ["--model", model, "--scale", str(scale), "--size", size, *precisions, "--int8",
                "--calib", str(calib), "--out", str(out), "--json", *targets]
        t = time.time()
        print(f"== {model} x{scale} {size}", file=sys.stderr, flush=True)
        if args.reuse and (out / "manifest.json").is_file():
            from srdeploy.targets.check import check_export, record_in_manifest

            chosen = [parse_target(t) for t in targets[1::2]]
            res = check_export(out, chosen, log=lambda msg: print(msg, file=sys.stderr, flush=True))
            record_in_manifest(out, res)
            rc = 0
        else:
            rc = export_main(argv)
        m = json.loads((out / "manifest.json").read_text())
        wanted = {parse_target(t).label for t in targets[1::2]}
        for label, arts in m.get("targets", {}).items():
            if label not in wanted:  # (a reused export keeps the rows of earlier runs in its manifest)
                continue
            for name, r in arts.items():
                rows.append({"model": model, "scale": scale, "size": size, "artifact": name, "target": label, **r,
                             **({"qat_steps": args.qat_steps} if args.qat_steps else {})})
        print(f"   rc {rc}, {time.time() - t:.0f} s", file=sys.stderr, flush=True)
    out_path = Path(args.out)
    command, earlier = "python " + " ".join(sys.argv), []
    if out_path.is_file() and (args.only or args.reuse):  # keep the rows of other models / targets of earlier runs
        before = json.loads(out_path.read_text())
        earlier = [c for c in before.get("commands", [before.get("command")]) if c]
        done = {(r["model"], r["size"], r["target"], r.get("qat_steps")) for r in rows}
        rows = [r for r in before["rows"] if (r["model"], r["size"], r["target"], r.get("qat_steps")) not in done] + rows
    result = {"command": command, "commands": earlier + [command], "date": dt.date.today().isoformat(),
              "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores", "wall_s": round(time.time() - t0),
              "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
