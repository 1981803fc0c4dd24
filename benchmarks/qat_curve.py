"""The INT8 cost of every export on record against its QAT steps: the curve, per model, from the manifests.

usage: python benchmarks/qat_curve.py [PATH ...] [--model NAME:SCALE ...] [--plot PNG] [--json OUT] [--target DB]

Each PATH is an sr-export manifest (JSON with `artifacts` and `quality`) or a folder searched for them
(default: benchmarks/results/int8_params). Nothing is re-measured: each point is one manifest's own quality
report (Set5 / Set14 PSNR-Y drop of its INT8 TFLite against PyTorch FP32 of the official weights) and the QAT
history recorded with its INT8 parameters — a fresh run's steps, or a chain of resumed runs (`continued_from`),
summed. A post-training export is a point at 0 steps. Points are grouped into series by what else changes the
result: export size, INT8 graph (default or with the slice rewrites), the output pixel grid (session 19 on),
channel equalization, learned rounding, QAT crops of another size or batch (a run on 128x128 crops resumed
from one on 64x64 is "crops 8x64px then 2x128px"), QAT crops from other images than DIV2K. Identical points (a
QAT export and the default command that re-applies its file at the same size) are drawn once.

Written by hand: no library reads these manifests; matplotlib draws.
"""
from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from pathlib import Path

from srdeploy.export.rewrites import DEFAULT_REWRITES  # sr-export's default --rewrites
from srdeploy.fsutil import atomic_write, atomic_write_json

DEFAULT_DIR = Path(__file__).resolve().parent / "results" / "int8_params"


def _runs(qat: dict | None) -> list[dict]:
    """The QAT record of a run and of the runs it continued from, oldest first."""
    runs: list[dict] = []
    while qat:
        runs.insert(0, qat)
        prev = qat.get("continued_from") or {}
        qat = (prev.get("made_with") or {}).get("qat")
    return runs


def point(manifest: dict) -> dict | None:
    """One curve point from a manifest, or None when it holds no INT8 artifact with a quality report."""
    int8 = [a for a in manifest.get("artifacts", []) if a.get("precision") == "int8"]
    quality = manifest.get("quality") or {}
    if not int8 or not all("int8_tflite" in (quality.get(s) or {}) for s in ("Set5", "Set14")):
        return None
    q = int8[0].get("quantization") or {}
    if q.get("activations", "int8") != "int8":
        return None  # int16 / mixed activations are another curve
    params = q.get("int8_params") or {}
    own = q.get("qat")
    if own and own.get("deferred_to_job"):
        return None  # an export that wrote a QAT job (--qat-job): its INT8 artifact is where QAT starts, not a result
    # a QAT export: its own run (and what it resumed from); else the file it re-applied (the default command),
    # or post-training (no chain)
    runs = _runs(own or (params.get("made_with") or {}).get("qat"))
    chain = [int(r["steps"]) for r in runs]
    h, w = manifest["io"]["tflite"]["input_shape"][1:3]
    images = (q.get("calibration") or {}).get("images") or []
    tags = []
    # the INT8 graph's rewrites beyond the default ones (the whole export's when the INT8 graph has none of its own)
    counts = q.get("graph_rewrites") or manifest.get("graph_rewrites") or {}
    extra = sorted(k for k, n in counts.items() if n and k not in DEFAULT_REWRITES)
    if extra:
        tags.append("no slices" if extra == ["slice_conv", "slice_select"] else "+" + ",".join(extra))
    if q.get("pixel_grid") or "pixel grid" in str((q.get("output") or {}).get("note", "")):
        tags.append("pixel grid")
    eq = q.get("equalization") or (params.get("made_with") or {}).get("equalization")
    if eq and eq.get("tensors", 0) > 0:
        tags.append("equalized")
    if own and own.get("rounding"):
        tags.append(f"rounding {own['rounding']}")
    crops = [f"{r.get('batch', 8)}x{r.get('patch', 64)}px" for r in runs]
    if any(c != "8x64px" for c in crops):  # a run on other crops than sr-export's batch 8 of 64x64
        # consecutive runs on the same crops said once ("2x128px x2"): the legend stays readable
        spans = [(c, len(list(g))) for c, g in itertools.groupby(crops)]
        tags.append("crops " + " then ".join(c if n == 1 else f"{c} x{n}" for c, n in spans))
    if images and not all(re.fullmatch(r"\d{4}\.png", Path(i).name) for i in images):
        tags.append("non-DIV2K crops")
    return {
        "model": f"{manifest['model']} x{manifest['scale']}",
        "size": f"{h}x{w}",
        "steps": sum(chain),
        "chain": chain,
        "series": ", ".join([f"{h}x{w}"] + tags),
        "set5_drop_db": round(quality["Set5"]["int8_tflite"]["drop_db"], 3),
        "set14_drop_db": round(quality["Set14"]["int8_tflite"]["drop_db"], 3),
        "created": manifest.get("created", ""),
    }


def collect(paths: list[Path]) -> list[dict]:
    files: list[Path] = []
    for p in paths:
        files += sorted(p.rglob("*.json")) if p.is_dir() else [p]
    seen, points = set(), []
    for f in files:
        try:
            m = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        try:
            pt = point(m) if isinstance(m, dict) else None
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            pt = None  # JSON that is not an sr-export manifest of this shape: not a point
        if pt is None:
            continue
        key = (pt["model"], pt["series"], tuple(pt["chain"]), pt["set5_drop_db"], pt["set14_drop_db"])
        if key in seen:
            continue
        seen.add(key)
        pt["manifest"] = f.name
        points.append(pt)
    points.sort(key=lambda p: (p["model"], p["series"], p["steps"], p["created"]))
    return points


def plot(points: list[dict], out: str, target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    models = sorted({p["model"] for p in points})
    # each row as tall as its legend (≈ 0.15 in an entry at fontsize 7), so one model's legend never runs into the next
    heights = [max(3.2, 0.15 * len({p["series"] for p in points if p["model"] == m}) + 0.8) for m in models]
    fig, axes = plt.subplots(len(models), 2, figsize=(14, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for row, model in zip(axes, models):
        mine = [p for p in points if p["model"] == model]
        for series in sorted({p["series"] for p in mine}):
            pts = sorted((p for p in mine if p["series"] == series), key=lambda p: p["steps"])
            for ax, key in zip(row, ("set5_drop_db", "set14_drop_db")):
                xs = [p["steps"] for p in pts]
                line, = ax.plot(xs, [p[key] for p in pts], marker="o", ms=4, lw=1, label=series)
                for p, x in zip(pts, xs):
                    if len(p["chain"]) > 1:  # a resumed chain: ring it
                        ax.plot([x], [p[key]], marker="o", ms=9, mfc="none", color=line.get_color())
        for ax, name in zip(row, ("Set5", "Set14")):
            ax.axhline(target, color="grey", ls="--", lw=1)
            ax.set_xscale("symlog", linthresh=100)  # post-training (0 steps) on the same axis
            ax.set_xlim(0, 1.5 * max(p["steps"] for p in mine) + 100)
            ax.set_yscale("log")
            for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
                axis(matplotlib.ticker.FormatStrFormatter("%.2f"))
            ax.set_title(f"{model}: {name}", fontsize=10)
            ax.set_ylabel("INT8 drop (dB)")
            ax.grid(alpha=0.3, which="both")
        row[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), title="export size, INT8 graph",
                      title_fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("QAT steps (0 = post-training; ringed = a chain of resumed runs)")
    fig.suptitle(f"INT8 drop against PyTorch FP32 vs QAT steps (dashed: the {target} dB target)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    atomic_write(Path(out), lambda tmp: fig.savefig(tmp, dpi=100, format="png"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", type=Path, default=[DEFAULT_DIR])
    ap.add_argument("--model", action="append", metavar="NAME:SCALE",
                    help="only this model (repeatable), e.g. imdn_rtc:2, or imdn for every scale")
    ap.add_argument("--plot", help="write the curve here (PNG)")
    ap.add_argument("--json", help="write the points here")
    ap.add_argument("--target", type=float, default=0.10, help="target line, dB (default 0.10)")
    args = ap.parse_args(argv)
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        print(f"qat_curve: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    points = collect(args.paths)
    if args.model:  # NAME:SCALE, or NAME for every scale
        points = [p for p in points if any(p["model"] == m.replace(":", " x") or p["model"].split(" x")[0] == m
                                           for m in args.model)]
    if not points:
        print("qat_curve: no manifest with an INT8 quality report found"
              + (f" for {', '.join(args.model)}" if args.model else ""), file=sys.stderr)
        return 2
    for p in points:
        print(f"{p['model']:<16} {p['series']:<44} {'+'.join(map(str, p['chain'])) or '0':>12}  "
              f"{p['set5_drop_db']:.3f} / {p['set14_drop_db']:.3f}  {p['manifest']}")
    if args.json:
        atomic_write_json(Path(args.json), points)
    if args.plot:
        plot(points, args.plot, args.target)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
