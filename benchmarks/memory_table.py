"""Memory against the activation liveness bound, per model and runtime setting (issue 20).

One interleaved sr-bench run (every setting in its own worker process, timed runs in rounds), so
the latency cost of a memory setting is a ratio within the run:

    python benchmarks/memory_table.py MODEL.tflite [...] --runs 3 --out benchmarks/results/memory_table.json

Settings: LiteRT Interpreter with its default XNNPACK delegate (what apps get), CompiledModel with
LiteRT's default XNNPACK flags, CompiledModel with flags 0x23 (0x1 QS8 and 0x2 QU8, XNNPACK's int8
kernels, which any explicit flags value must repeat, plus 0x20, transient indirection buffers),
and, for inputs up to 720x480, the built-in kernels without XNNPACK (memory reference); ``--flags`` adds
CompiledModel settings with other XNNPACK flags.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from srdeploy.benchmark.bench import BenchSetting, machine_info, run_benchmarks

SETTINGS = [("Interpreter + XNNPACK (default)", "xnnpack", "interpreter", None),
            ("CompiledModel, default flags", "xnnpack", "compiled", None),
            ("CompiledModel, xnnpack_flags 0x23", "xnnpack", "compiled", 0x23),
            ("Interpreter, no XNNPACK", "none", "interpreter", None)]


def _hw(path: str) -> tuple[int, int]:
    from ai_edge_litert import schema_py_generated as schema

    m = schema.Model.GetRootAs(Path(path).read_bytes(), 0)
    sg = m.Subgraphs(0)
    shape = sg.Tensors(int(sg.InputsAsNumpy()[0])).ShapeAsNumpy()
    return int(shape[1]), int(shape[2])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/memory_table.json")
    ap.add_argument("--flags", nargs="+", default=[], metavar="N",
                    help="more CompiledModel settings: XNNPACK delegate flags, e.g. 0x103 (0x100: Slinky, XNNPACK's "
                         "tiled scheduling, where the build has it) — any explicit value must repeat 0x3 for the int8 "
                         "kernels")
    args = ap.parse_args()
    extra = [(f"CompiledModel, xnnpack_flags {f}", "xnnpack", "compiled", int(f, 0)) for f in args.flags]
    settings, labels = [], []
    for m in args.models:
        h, w = _hw(m)
        for label, delegate, runtime, flags in SETTINGS + extra:
            if delegate == "none" and h * w > 720 * 480:
                continue  # the built-in kernels take many seconds a frame at 1080x1920: memory reference at 720x480
            settings.append(BenchSetting(m, None, args.threads, delegate, runtime, flags))
            labels.append(label)
    t0 = time.time()
    results = run_benchmarks(settings, warmup=1, runs=args.runs, rounds=args.runs,
                             log=lambda s: print(f"  {s}", file=sys.stderr, flush=True))
    base = {}
    rows = []
    for label, r in zip(labels, results):
        row = {"setting": label, **r.to_json()}
        if label.startswith("Interpreter + XNNPACK") and r.median_ms:
            base[r.model] = r.median_ms
        rows.append(row)
    for row in rows:
        b = base.get(row["model"])
        row["latency_vs_default"] = (row["median_ms"] / b) if b and row.get("median_ms") else None
    doc = {"command": "python benchmarks/memory_table.py " + " ".join(sys.argv[1:]), "date": time.strftime("%Y-%m-%d"),
           "machine": machine_info(), "seconds": round(time.time() - t0), "rows": rows}
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print("| model | LR size | setting | model's own MB | liveness bound MB | own / bound | median ms | vs default |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        def f(k, fmt):
            return "-" if row.get(k) is None else format(row[k], fmt)
        size = "x".join(map(str, row["size"])) if row.get("size") else "?"
        err = f" error: {row['error']}" if row.get("error") else ""
        print(f"| {Path(row['model']).parent.name}/{Path(row['model']).name} | {size} | {row['setting']}{err} | "
              f"{f('model_memory_mb', '.0f')} | {f('liveness_bound_mb', '.1f')} | {f('memory_ratio', '.2f')} | "
              f"{f('median_ms', '.1f')} | {f('latency_vs_default', '.2f')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
