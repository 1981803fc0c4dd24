"""The performance suite: every registry model × {FP32, FP16} × {720×480, 1080×1920}, plus the
authors' IMDN_RTC timing model as the reference row, interleaved in one run per size.

    python benchmarks/run_suite.py [--threads 2] [--runs 5] [--budget-gmac 300]

Writes benchmarks/results/suite.json, benchmarks/results/latency_vs_psnr.png and the table
between the suite markers in docs/RESULTS.md. Exports are cached in exports/suite/ (reused
when their manifest passed). Models whose frame costs more than --budget-gmac are skipped at
that size, with the reason in the table (on this CPU they take tens of seconds per frame; use
sr-upscale's tiling). INT8 rows appear once sr-export --int8 exists (issue 3).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from srdeploy.benchmark.bench import BenchSetting, machine_info, run_benchmarks  # noqa: E402
from srdeploy.benchmark.evaluate import evaluate_dataset, find_dataset, make_predictor  # noqa: E402
from srdeploy.benchmark.roofline import count_macs_torch  # noqa: E402
from srdeploy.export import ExportConfig, Exporter  # noqa: E402
from srdeploy.models import create_model, get_spec, list_models  # noqa: E402
from srdeploy.errors import SrDeployError  # noqa: E402
from srdeploy.paths import data_dir  # noqa: E402

ANCHOR = "anchors/imdn_rtc_time.tflite"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def export_cached(name: str, scale: int, size: tuple[int, int]) -> Path:
    out = ROOT / "exports" / "suite" / f"{name}_x{scale}_{size[0]}x{size[1]}"
    man = out / "manifest.json"
    if man.is_file():
        m = json.loads(man.read_text())
        if m.get("status") == "passed" and {a["file"] for a in m["artifacts"]} >= {"model_fp32.tflite",
                                                                                   "model_fp16.tflite"}:
            return out
    log(f"export {name} x{scale} {size[0]}x{size[1]}")
    Exporter(ExportConfig(model=name, scale=scale, size=f"{size[0]}x{size[1]}", fp16=True, out=str(out),
                          random_weights=not get_spec(name).weights), log=lambda m: None).run()
    return out


def set5_psnr(name: str, scale: int, artifact: Path | None) -> float | None:
    if not get_spec(name).weights or get_spec(name).scales == (1,):
        return None  # random weights (quality meaningless) / any-scale model (no SR scale to evaluate)
    predict, _ = make_predictor(name, scale, str(artifact) if artifact else None)
    return evaluate_dataset(predict, find_dataset(data_dir() / "Set5", scale), scale).psnr_y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="720x480,1080x1920")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--budget-gmac", type=float, default=300.0)
    ap.add_argument("--models", default=",".join(list_models()))
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--no-docs", action="store_true", help="do not rewrite docs/RESULTS.md")
    ap.add_argument("--render-only", action="store_true",
                    help="re-render the table, plot and docs from an existing suite.json (no measuring)")
    args = ap.parse_args()
    if args.render_only:
        doc = json.loads((Path(args.results) / "suite.json").read_text())
        for r in doc["rows"]:  # rows of older runs kept the artifact path under "model"
            m = re.search(r"/([a-z_]+)_x(\d+)_\d+x\d+/model_", r["model"])
            if m:
                r.setdefault("artifact", r["model"])
                r["model"] = f"{m.group(1)} x{m.group(2)}"
            elif r["model"].endswith("imdn_rtc_time.tflite"):
                r.setdefault("artifact", r["model"])
                r["model"] = "anchor imdn_rtc_time (authors')"
        (Path(args.results) / "suite.json").write_text(json.dumps(doc, indent=1))
        publish(doc, Path(args.results), args.no_docs)
        return
    t_start = time.time()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    anchor = (data_dir().parent / ANCHOR) if data_dir() else None
    rows, skipped = [], []
    for size in sizes:
        settings, meta = [], []
        if anchor and anchor.is_file() and size == (720, 480):
            settings.append(BenchSetting(str(anchor), size, args.threads, "xnnpack"))
            meta.append({"model": "anchor imdn_rtc_time (authors')", "precision": "fp32", "psnr": None})
        for name in args.models.split(","):
            spec = get_spec(name)
            scale = spec.scales[0]
            gmac = count_macs_torch(create_model(name, scale, pretrained=False), size) / 1e9
            if gmac > args.budget_gmac:
                skipped.append({"model": f"{name} x{scale}", "size": list(size), "gmac": gmac,
                                "reason": f"{gmac:.0f} GMAC per frame > budget {args.budget_gmac:.0f}"})
                continue
            try:
                out = export_cached(name, scale, size)
            except SrDeployError as exc:  # a failed parity gate is a result too: report it, go on
                skipped.append({"model": f"{name} x{scale}", "size": list(size), "gmac": gmac,
                                "reason": f"export failed: {exc}"})
                continue
            for prec in ("fp32", "fp16"):
                art = out / f"model_{prec}.tflite"
                settings.append(BenchSetting(str(art), size, args.threads, "xnnpack"))
                meta.append({"model": f"{name} x{scale}", "precision": prec, "gmac": gmac,
                             "psnr": set5_psnr(name, scale, art) if size == sizes[0] else None,
                             "random_weights": not spec.weights})
        log(f"benchmark {len(settings)} settings at {size[0]}x{size[1]}, {args.runs} interleaved runs")
        results = run_benchmarks(settings, warmup=1, runs=args.runs, log=log)
        base = results[0].median_ms if meta and meta[0]["model"].startswith("anchor") else None
        for m, r in zip(meta, results):
            rows.append({**r.to_json(), **m, "artifact": r.model, "size": list(size),
                         "ratio_to_anchor": (r.median_ms / base) if base and r.median_ms else None})
    results_dir = Path(args.results)
    results_dir.mkdir(parents=True, exist_ok=True)
    doc = {"date": dt.date.today().isoformat(), "command": "python benchmarks/run_suite.py " + " ".join(sys.argv[1:]),
           "machine": machine_info(), "threads": args.threads, "runs": args.runs, "rows": rows,
           "skipped": skipped, "seconds": time.time() - t_start}
    (results_dir / "suite.json").write_text(json.dumps(doc, indent=1))
    publish(doc, results_dir, args.no_docs)
    log(f"suite done in {time.time() - t_start:.0f} s")


def publish(doc: dict, results_dir: Path, no_docs: bool) -> None:
    table = markdown(doc)
    print(table)
    plot(doc["rows"], results_dir / "latency_vs_psnr.png")
    if not no_docs:
        res = ROOT / "docs" / "RESULTS.md"
        text = res.read_text()
        block = f"<!-- suite:begin -->\n{table}\n<!-- suite:end -->"
        text = re.sub(r"<!-- suite:begin -->.*<!-- suite:end -->", lambda _: block, text, flags=re.S) \
            if "<!-- suite:begin -->" in text else text + "\n" + block + "\n"
        res.write_text(text)


def markdown(doc: dict) -> str:
    m = doc["machine"]
    lines = [f"`{doc['command']}` — {doc['date']}, {m['cpu']}, {m['cores']} cores ({', '.join(m['isa'])}), "
             f"{doc['threads']} threads, XNNPACK, {doc['runs']} interleaved timed runs per row "
             f"(suite wall time {doc['seconds'] / 60:.1f} min).", "",
             "| model | precision | LR size | GMAC | median ms | min ms | ratio to anchor | peak RSS MB | "
             "model's own MB | liveness bound MB | memory / bound | Set5 PSNR-Y |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        size = f"{r['size'][0]}x{r['size'][1]}"
        if r.get("error"):
            lines.append(f"| {r['model']} | {r['precision']} | {size} | | error: {r['error']} | | | | | | | |")
            continue
        psnr = "random weights" if r.get("random_weights") else ("-" if r.get("psnr") is None else f"{r['psnr']:.3f}")
        ratio = "-" if r.get("ratio_to_anchor") is None else f"{r['ratio_to_anchor']:.3f}"
        gmac = "-" if r.get("gmac") is None else f"{r['gmac']:.1f}"
        def num(key, fmt):
            return "-" if r.get(key) is None else format(r[key], fmt)

        lines.append(f"| {r['model']} | {r['precision']} | {size} | {gmac} | {r['median_ms']:.1f} | "
                     f"{r['min_ms']:.1f} | {ratio} | {r['peak_rss_mb']:.0f} | {num('model_memory_mb', '.0f')} | "
                     f"{num('liveness_bound_mb', '.1f')} | {num('memory_ratio', '.2f')} | {psnr} |")
    for s in doc["skipped"]:
        lines.append(f"| {s['model']} | fp32/fp16 | {s['size'][0]}x{s['size'][1]} | {s['gmac']:.0f} | skipped: "
                     f"{s['reason']} | | | | | | | |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in rows if r.get("psnr") and r.get("median_ms")]
    if not pts:
        return
    fig, (ax, mx) = plt.subplots(1, 2, figsize=(13, 4.8), dpi=120)
    colors: dict[str, str] = {}

    def scatter(axis, subset, x, y, label, fontsize):
        """One point per row: filled circle FP32, open square FP16, one colour per model."""
        for r in subset:
            c = colors.setdefault(r["model"], f"C{len(colors)}")
            fp32 = r["precision"] == "fp32"
            axis.scatter(r[x], r[y], marker="o" if fp32 else "s", s=40 if fp32 else 70,
                         facecolors=c if fp32 else "none", edgecolors=c)
            if fp32:
                axis.annotate(label(r), (r[x], r[y]), fontsize=fontsize, xytext=(6, 4), textcoords="offset points")

    scatter(ax, pts, "median_ms", "psnr", lambda r: r["model"], 8)
    ax.set_xscale("log")
    ax.set_xlabel(f"median latency at {pts[0]['size'][0]}x{pts[0]['size'][1]} LR (ms, log scale)")
    ax.set_ylabel("Set5 PSNR-Y (dB), model's own scale")
    ax.set_title("Latency vs quality (TFLite, XNNPACK): filled = FP32, open square = FP16")
    ax.grid(True, alpha=0.3)
    # memory: each row's own peak memory against its graph's activation liveness bound
    mem = [r for r in rows if r.get("model_memory_mb") and r.get("liveness_bound_mb")]
    scatter(mx, mem, "liveness_bound_mb", "model_memory_mb", lambda r: f"{r['model']} {r['size'][0]}x{r['size'][1]}", 7)
    if mem:
        lo = min(r["liveness_bound_mb"] for r in mem) / 2
        hi = max(max(r["model_memory_mb"], r["liveness_bound_mb"]) for r in mem) * 2
        for k, style in ((1.0, "-"), (1.5, "--")):
            mx.plot([lo, hi / k], [lo * k, hi], style, color="grey", lw=0.8, label=f"memory = {k:g} x bound")
        mx.legend(fontsize=8)
    mx.set_xscale("log")
    mx.set_yscale("log")
    mx.set_xlabel("activation liveness bound of the graph (MB)")
    mx.set_ylabel("model's own peak memory, XNNPACK (MB)")
    mx.set_title("Memory against its physical limit")
    mx.grid(True, alpha=0.3, which="both")
    fig.tight_layout()
    tmp = path.with_suffix(".partial.png")
    fig.savefig(tmp)
    tmp.replace(path)


if __name__ == "__main__":
    main()
