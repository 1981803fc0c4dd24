"""The performance suite, as a sweep plan: every registry model × {FP32, FP16} × {720×480,
1080×1920} on the host, Set5 quality at the first size, and the authors' IMDN_RTC timing model as
the reference row — run by sr-sweep's engine (one code path; Ray in-process here, a cluster with
--address).

    python benchmarks/run_suite.py [--threads 2] [--runs 5] [--budget-gmac 300] [--address ADDR]
    python benchmarks/run_suite.py --resume exports/suite_sweep/<stamp>     # finish an interrupted one
    python benchmarks/run_suite.py --render-only                          # re-render from suite.json

Writes benchmarks/results/suite.json (the sweep's results.json), benchmarks/results/latency_vs_psnr.png
and the table between the suite markers in docs/RESULTS.md; the sweep's own folder (exports, the
same files) is exports/suite_sweep/<stamp>. Models whose frame costs more than --budget-gmac are
rows marked skipped (on this CPU they take tens of seconds per frame; use sr-upscale's tiling).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from srdeploy.models import list_models  # noqa: E402
from srdeploy.paths import data_dir  # noqa: E402
from srdeploy.sweep.engine import run_sweep  # noqa: E402
from srdeploy.sweep.plan import build_plan  # noqa: E402
from srdeploy.sweep.report import markdown, plot  # noqa: E402

ANCHOR = "anchors/imdn_rtc_time.tflite"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="720x480,1080x1920")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--budget-gmac", type=float, default=300.0)
    ap.add_argument("--models", default=",".join(list_models()))
    ap.add_argument("--address", help="a Ray cluster (default: a local Ray in-process)")
    ap.add_argument("--resume", metavar="DIR", help="finish the sweep in DIR (an earlier run's folder)")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--no-docs", action="store_true", help="do not rewrite docs/RESULTS.md")
    ap.add_argument("--render-only", action="store_true",
                    help="re-render the table, plot and docs from an existing suite.json (no measuring)")
    args = ap.parse_args()
    results = Path(args.results)
    command = "python benchmarks/run_suite.py " + " ".join(sys.argv[1:])
    if args.render_only:
        doc = json.loads((results / "suite.json").read_text())
        publish(doc, results, args.no_docs, doc.get("command", command))
        return
    sizes = args.sizes.split(",")
    data = data_dir()
    anchor = data.parent / ANCHOR if data and (data.parent / ANCHOR).is_file() else None
    plan = build_plan(args.models.split(","), [], None, sizes, ["fp32", "fp16"], ["host"],
                      evals=[str(data / "Set5")] if data else [], eval_sizes=sizes[:1],
                      anchor=str(anchor) if anchor else None, budget_gmac=args.budget_gmac, runs=args.runs,
                      threads=args.threads)
    out = Path(args.resume) if args.resume else ROOT / "exports" / "suite_sweep" / time.strftime("%Y%m%d-%H%M%S")
    log(f"suite as a sweep into {out}")
    doc = run_sweep(plan, out, address=args.address, resume=bool(args.resume), log=log)
    doc["command"] = command
    results.mkdir(parents=True, exist_ok=True)
    tmp = results / "suite.json.partial"
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(results / "suite.json")
    publish(doc, results, args.no_docs, command)
    log(f"suite done in {doc['seconds']:.0f} s (sweep wall time)")


def publish(doc: dict, results_dir: Path, no_docs: bool, command: str) -> None:
    table = markdown(doc, command)
    print(table)
    plot(doc, results_dir / "latency_vs_psnr.png")
    if not no_docs:
        res = ROOT / "docs" / "RESULTS.md"
        text = res.read_text()
        block = f"<!-- suite:begin -->\n{table}\n<!-- suite:end -->"
        text = re.sub(r"<!-- suite:begin -->.*<!-- suite:end -->", lambda _: block, text, flags=re.S) \
            if "<!-- suite:begin -->" in text else text + "\n" + block + "\n"
        res.write_text(text)


if __name__ == "__main__":
    main()
