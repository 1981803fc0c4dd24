"""A sweep's results as a markdown table and the PSNR–latency / memory plot (``results.md``,
``latency_vs_psnr.png`` beside ``results.json``). The performance suite renders through here too."""
from __future__ import annotations

from pathlib import Path

__all__ = ["markdown", "plot", "publish"]


def _num(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _parity(row: dict) -> str:
    """The artifact's gate on this host, then the target's own figures."""
    p = row.get("parity") or {}
    text = p.get("status", "-")
    checks = p.get("checks") or []
    if checks:
        worst = min(checks, key=lambda c: c.get("psnr_db", float("inf")) if c.get("psnr_db") is not None else float("inf"))
        if row["config"]["precision"] == "fp32":
            text += f" (max abs Δ {max(c.get('max_abs', 0.0) for c in checks):.1e})"
        elif worst.get("psnr_db") is not None:
            text += f" ({worst['psnr_db']:.1f} dB)"
    t = row.get("target")
    if t:
        if "ops_offloaded" in t:
            text += f"; {t['ops_offloaded']}/{t['ops_total']} ops on the NPU ({t['status']})"
        elif t.get("checks"):
            c = t["checks"][0]
            text += f"; on target {t['status']}: {c['max_abs_vs_reference']:.1e} / {c['psnr_db_vs_reference']:.1f} dB"
        else:
            text += f"; on target {t.get('status')}"
    return text


def markdown(doc: dict, command: str | None = None) -> str:
    evals = sorted({name for r in doc["cells"] for name in r.get("quality", {})})
    machine = next((r["machine"] for r in doc["cells"] if r.get("machine")), None)
    head = f"`{command or doc.get('command', 'sr-sweep')}` — {doc['started'][:10]}, "
    if machine:
        head += f"latency on {machine['cpu']} ({machine['cores']} cores, {', '.join(machine['isa'])}), "
    plan = doc["plan"]
    head += (f"{plan['threads']} threads, XNNPACK, {plan['runs']} interleaved timed runs per row; Ray "
             f"{doc['address']} ({doc.get('cluster', {}).get('nodes', '?')} node(s)); sweep wall time "
             f"{doc['seconds'] / 60:.1f} min.")
    cols = ["model", "precision", "LR size", "target", "status", "GMAC", "parity", *[f"{e} PSNR-Y" for e in evals],
            "median ms", "ratio to anchor", "model's own MB", "liveness bound MB", "memory / bound", "node"]
    lines = [head, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for size, a in (doc.get("anchor") or {}).items():
        cells = [f"anchor {a.get('file', '')}", "fp32", size, "host", "reference", "-", "-", *["-"] * len(evals),
                 _num(a.get("median_ms"), ".1f"), "1.000", _num(a.get("model_memory_mb"), ".0f"),
                 _num(a.get("liveness_bound_mb"), ".1f"), _num(a.get("memory_ratio"), ".2f"),
                 (a.get("node") or {}).get("host", "-")]
        lines.append("| " + " | ".join(cells) + " |")
    for r in doc["cells"]:
        c = r["config"]
        lat, mem = r.get("latency") or {}, r.get("memory") or {}
        status = r["status"] or "not run"
        if r.get("errors"):
            status += ": " + r["errors"][-1][:120].replace("|", "/")
        q = []
        for e in evals:
            v = (r.get("quality") or {}).get(e, {}).get("psnr_y")
            q.append("random weights" if r.get("random_weights") and v is not None else _num(v, ".3f"))
        node = (r.get("nodes") or {}).get("bench") or (r.get("nodes") or {}).get("check") or \
            (r.get("nodes") or {}).get("export") or {}
        cells = [f"{c['model']} x{c['scale']}", c["precision"], f"{c['size'][0]}x{c['size'][1]}", c["target"], status,
                 _num(r.get("gmac"), ".1f"), _parity(r) if r["status"] != "skipped" else "-", *q,
                 _num(lat.get("median_ms"), ".1f"), _num(lat.get("ratio_to_anchor"), ".3f"),
                 _num(mem.get("model_memory_mb"), ".0f"), _num(mem.get("liveness_bound_mb"), ".1f"),
                 _num(mem.get("memory_ratio"), ".2f"), node.get("host", "-")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _points(doc: dict) -> list[dict]:
    """Host rows with a latency, flattened for plotting (PSNR on the first evaluation folder)."""
    pts = []
    for r in doc["cells"]:
        if r["config"]["target"] != "host" or not (r.get("latency") or {}).get("median_ms"):
            continue
        q = r.get("quality") or {}
        psnr = next((v["psnr_y"] for _, v in sorted(q.items())), None) if not r.get("random_weights") else None
        pts.append({"model": f"{r['config']['model']} x{r['config']['scale']}", "precision": r["config"]["precision"],
                    "size": r["config"]["size"], "median_ms": r["latency"]["median_ms"], "psnr": psnr,
                    **{k: (r.get("memory") or {}).get(k) for k in ("model_memory_mb", "liveness_bound_mb")}})
    return pts


def plot(doc: dict, path: Path) -> bool:
    """Latency vs quality (first size that has PSNR) and memory vs its liveness bound; False when
    there is nothing to draw (or matplotlib is missing)."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _points(doc)
    pts = [r for r in rows if r.get("psnr") is not None]
    if pts:
        first = pts[0]["size"]
        pts = [r for r in pts if r["size"] == first]
    mem = [r for r in rows if r.get("model_memory_mb") and r.get("liveness_bound_mb")]
    if not pts and not mem:
        return False
    fig, (ax, mx) = plt.subplots(1, 2, figsize=(13, 4.8), dpi=120)
    colors: dict[str, str] = {}
    markers = {"fp32": ("o", True), "fp16": ("s", False), "int8": ("^", True)}

    def scatter(axis, subset, x, y, label, fontsize):
        """One point per row: filled circle FP32, open square FP16, filled triangle INT8; a colour per model."""
        for r in subset:
            c = colors.setdefault(r["model"], f"C{len(colors) % 10}")
            marker, filled = markers[r["precision"]]
            axis.scatter(r[x], r[y], marker=marker, s=45 if filled else 70, facecolors=c if filled else "none",
                         edgecolors=c)
            if r["precision"] == "fp32":
                axis.annotate(label(r), (r[x], r[y]), fontsize=fontsize, xytext=(6, 4), textcoords="offset points")

    if pts:
        scatter(ax, pts, "median_ms", "psnr", lambda r: r["model"], 8)
        ax.set_xscale("log")
        ax.set_xlabel(f"median latency at {pts[0]['size'][0]}x{pts[0]['size'][1]} LR (ms, log scale)")
    ax.set_ylabel("PSNR-Y (dB), model's own scale")
    ax.set_title("Latency vs quality (TFLite, XNNPACK): ● FP32, □ FP16, ▲ INT8")
    ax.grid(True, alpha=0.3)
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
    tmp = path.with_name(path.stem + ".partial.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return True


def publish(doc: dict, out: Path, command: str | None = None) -> str:
    """Write ``results.md`` and ``latency_vs_psnr.png`` beside ``results.json``; returns the table."""
    from ..fsutil import atomic_write

    table = markdown(doc, command)
    atomic_write(Path(out) / "results.md", lambda tmp: tmp.write_text(table + "\n"))
    plot(doc, Path(out) / "latency_vs_psnr.png")
    return table
