"""sr-sweep: models × sizes × precisions × targets, each cell a Ray task (local by default)."""
from __future__ import annotations

import json
import sys
import time
from typing import Sequence

from ..cli_util import OneLineParser, run_cli
from ..errors import SrDeployError

EPILOG = """\
Each cell (model x size x precision x target) is exported (one export per model x size, shared by
its cells), checked (the host's parity gate, or `sr-target check` on the emulated ARM CPU / GPU /
NPU compiler), evaluated on every --eval folder, and - host cells - timed afterwards in one
interleaved sr-bench run per size on a node reserved for it. A failed cell is a row with its error.

Writes OUT/results.json ("cells": config, status, parity, quality, latency, memory, nodes, errors),
OUT/results.md, OUT/latency_vs_psnr.png and OUT/exports/<model>_x<S>_<H>x<W>/.

examples:
  sr-sweep --model imdn_rtc --model dipnet_lite --size 720x480 --precision fp32 --precision fp16 \\
           --eval ../shared/data/Set5 --out sweeps/a
  sr-sweep --model imdn_rtc --size 64x64 --precision int8 --calib ../shared/data/DIV2K/HR \\
           --target host --target arm64 --target qualcomm:SM8650 --out sweeps/b
  sr-sweep --plan plan.json --out sweeps/c --resume          # finish an interrupted sweep
  sr-sweep ... --address HEAD_IP:6379                         # on a running Ray cluster

A cluster node that has a target set up offers it to the sweep as a Ray resource:
  ray start --address HEAD_IP:6379 --resources "$(sr-sweep --node-resources)"
"""


def build_parser() -> OneLineParser:
    ap = OneLineParser(prog="sr-sweep", description=__doc__, epilog=EPILOG,
                       formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    g = ap.add_argument_group("the grid (repeat a flag for more values)")
    g.add_argument("--model", action="append", default=[], metavar="NAME", help="registry model (sr-export --list)")
    g.add_argument("--onnx", action="append", default=[], metavar="FILE",
                   help="a user's ONNX super-resolution model (with --scale, --value-range, --channels)")
    g.add_argument("--scale", type=int, help="upscaling factor (default: each registry model's first)")
    g.add_argument("--value-range", type=int, default=1, choices=(1, 255), help="--onnx models' input range")
    g.add_argument("--channels", default="rgb", choices=("rgb", "bgr", "y"), help="--onnx models' channels")
    g.add_argument("--size", action="append", default=[], metavar="HxW", help="export (LR input) size")
    g.add_argument("--precision", action="append", default=[], choices=("fp32", "fp16", "int8"),
                   help="artifact precision (default: fp32)")
    g.add_argument("--target", action="append", default=[], metavar="T",
                   help="host (default: this CPU, the export's gate), arm64[:CORE], gpu[:fp32], qualcomm:<SoC>")
    g.add_argument("--calib", metavar="DIR", help="calibration HR images for int8 (e.g. DIV2K HR)")
    g.add_argument("--qat-steps", type=int, default=0, help="quantization-aware fine-tuning steps for int8")
    g.add_argument("--eval", action="append", default=[], metavar="DIR", help="evaluation folder (e.g. Set5)")
    g.add_argument("--eval-size", action="append", default=None, metavar="HxW",
                   help="evaluate only the artifacts of these sizes (default: every size)")
    g.add_argument("--budget-gmac", type=float, help="skip (as a row) cells whose frame costs more GMAC")
    g.add_argument("--anchor", metavar="FILE.tflite", help="a .tflite timed beside each size's artifacts "
                   "where its input fits: every row's ratio to anchor")
    g.add_argument("--plan", metavar="FILE.json", help="the grid as JSON, keys as the flags (models, onnx, sizes, "
                   "precisions, targets, evals, ...); flags given too are added")
    r = ap.add_argument_group("running")
    r.add_argument("--out", metavar="DIR", help="results folder (required)")
    r.add_argument("--address", metavar="ADDR", help="a Ray cluster (HOST:PORT, or 'auto'); default: a local Ray "
                   "started in-process with this machine's CPUs")
    r.add_argument("--cpus", type=int, help="CPUs of the local Ray (default: all of this machine's)")
    r.add_argument("--resume", action="store_true", help="keep the finished rows of OUT/results.json (same config "
                   "hash and srdeploy version) and run the rest")
    r.add_argument("--retries", type=int, default=2, help="times Ray reruns a task whose worker died (default 2)")
    r.add_argument("--runs", type=int, default=5, help="timed runs per artifact (0: no latency)")
    r.add_argument("--threads", type=int, default=2, help="runtime threads when timing")
    r.add_argument("--json", action="store_true", help="print results.json to stdout when done")
    r.add_argument("--node-resources", action="store_true",
                   help="print the Ray resources this machine offers (its set-up targets) as JSON, and exit")
    return ap


def _merge(args, plan_doc: dict) -> dict:
    def both(key, flag):
        return list(plan_doc.get(key, [])) + list(getattr(args, flag) or [])

    def one(key, flag, default):
        v = getattr(args, flag)
        return v if v not in (None, default) else plan_doc.get(key, default)

    return {"models": both("models", "model"), "onnx": both("onnx", "onnx"), "scale": one("scale", "scale", None),
            "sizes": both("sizes", "size"), "precisions": both("precisions", "precision") or ["fp32"],
            "targets": both("targets", "target"), "calib": one("calib", "calib", None),
            "evals": both("evals", "eval"),
            "eval_sizes": (args.eval_size if args.eval_size is not None else plan_doc.get("eval_sizes")),
            "qat_steps": one("qat_steps", "qat_steps", 0), "anchor": one("anchor", "anchor", None),
            "budget_gmac": one("budget_gmac", "budget_gmac", None), "runs": one("runs", "runs", 5),
            "threads": one("threads", "threads", 2), "value_range": one("value_range", "value_range", 1),
            "channels": one("channels", "channels", "rgb")}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.node_resources:
        from .engine import local_resources

        print(json.dumps(local_resources()))
        return 0
    from .engine import _import_ray, run_sweep
    from .plan import build_plan, load_plan_file

    if not args.out:
        raise SrDeployError("--out DIR is required (the sweep's results folder)")
    if args.cpus is not None and not 1 <= args.cpus <= 1024:
        raise SrDeployError(f"--cpus must be 1..1024, got {args.cpus}")
    if args.cpus is not None and args.address:
        raise SrDeployError("--cpus sizes the local Ray; a cluster (--address) has its own")
    _import_ray()  # without Ray: one line, before anything else is checked or computed
    plan = build_plan(**_merge(args, load_plan_file(args.plan) if args.plan else {}))
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    doc = run_sweep(plan, args.out, address=args.address, resume=args.resume, retries=args.retries,
                    num_cpus=args.cpus, log=log)
    counts = {s: sum(1 for c in doc["cells"] if c["status"] == s) for s in ("passed", "failed", "error", "skipped")}
    log(f"sweep done in {time.time() - t0:.0f} s: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        + f"; {args.out}/results.json, results.md, latency_vs_psnr.png")
    if args.json:
        print(json.dumps(doc, indent=1))
    # a sweep that ran is a result even with failed cells; exit 1 says some cell did not pass
    return 0 if not (counts["failed"] or counts["error"]) else 1


def entry() -> None:
    sys.exit(run_cli("sr-sweep", main))


if __name__ == "__main__":
    entry()
