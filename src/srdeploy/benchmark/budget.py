"""A memory budget for the phone (issue 20, item 3): of the CPU runtime settings an Android app can
choose when it loads a model, which fit a budget, and what the fastest fitting one costs in latency.

The settings are what LiteRT's CompiledModel lets an app set (``CpuOptions(xnnPackFlags = ...)`` —
the demo app's CPU path): XNNPACK with LiteRT's default flags, and XNNPACK with transient
indirection buffers (flags 0x23: 0x1 QS8 and 0x2 QU8, the int8 kernels any explicit value must
repeat, plus 0x20). The second is what takes the XNNPACK path from ~9x its activation liveness
bound to ~2x (docs/RESULTS.md, "Memory against the activation liveness bound"), at a latency cost
that is measured here, per artifact, in one interleaved run — never assumed.

Each setting's memory is sr-bench's "model's own" figure (its worker's RSS high-water mark after
load, allocation and every run, minus the one before loading). The choice — the fastest setting
whose memory fits — goes into the export's manifest ("runtime") and from there into the app's
bundle ("xnnpack_flags"), so the phone loads the model the way it was measured.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import SrDeployError

__all__ = ["AppSetting", "APP_SETTINGS", "io_floor_mb", "choose", "fit_budget", "format_budget"]


@dataclass(frozen=True)
class AppSetting:
    key: str
    label: str
    xnnpack_flags: int | None  # None: LiteRT's defaults

    def bench(self, model: str, threads: int):
        from .bench import BenchSetting

        return BenchSetting(model, None, threads, "xnnpack", "compiled", self.xnnpack_flags)


APP_SETTINGS = (
    AppSetting("default", "XNNPACK, LiteRT's default flags", None),
    AppSetting("transient-indirection", "XNNPACK, transient indirection buffers (flags 0x23)", 0x23),
)


def io_floor_mb(path: str | Path) -> float:
    """The graph's input and output tensors: what any runtime must hold while it runs the model."""
    from ai_edge_litert import schema_py_generated as schema

    from ..runtime import runtime_tensor_bytes

    m = schema.Model.GetRootAs(Path(path).read_bytes(), 0)
    sg = m.Subgraphs(0)
    size = runtime_tensor_bytes(m, sg)
    ids = {int(t) for t in [*sg.InputsAsNumpy(), *sg.OutputsAsNumpy()]}
    return sum(size.get(t, 0) for t in ids) / 2**20


def choose(candidates: list[dict], budget_mb: float) -> dict | None:
    """The fastest candidate (a row with ``model_memory_mb`` and ``median_ms``) that ran and fits."""
    fits = [c for c in candidates if not c.get("error") and c.get("model_memory_mb") is not None
            and c.get("median_ms") is not None and c["model_memory_mb"] <= budget_mb]
    return min(fits, key=lambda c: c["median_ms"]) if fits else None


def fit_budget(out_dir: Path, manifest: dict, budget_mb: float, runs: int = 3, threads: int = 2,
               log=lambda m: None) -> dict:
    """Measures every TFLite artifact of the export in every app setting (one interleaved run) and
    returns the manifest's ``runtime`` object: per artifact its candidates and its choice (None:
    nothing fits)."""
    from .bench import machine_info, run_benchmarks

    if budget_mb <= 0:
        raise SrDeployError(f"--memory-budget must be a positive number of MB, got {budget_mb:g}")
    files = [a["file"] for a in manifest["artifacts"] if a["file"].endswith(".tflite")]
    floors = {f: io_floor_mb(out_dir / f) for f in files}
    if all(budget_mb < floors[f] for f in files):
        f = min(files, key=floors.get)
        raise SrDeployError(f"--memory-budget {budget_mb:g} MB is below what any runtime must hold for this frame: "
                            f"{f}'s own input and output tensors take {floors[f]:.1f} MB (export a smaller --size "
                            "and let the app tile, or raise the budget)")
    settings = [(f, s) for f in files for s in APP_SETTINGS]
    results = run_benchmarks([s.bench(str(out_dir / f), threads) for f, s in settings], warmup=1, runs=runs,
                             rounds=runs, log=log)
    per_file: dict[str, dict] = {f: {"io_floor_mb": round(floors[f], 6), "candidates": []} for f in files}
    for (f, s), r in zip(settings, results):
        per_file[f]["candidates"].append({
            "setting": s.key, "label": s.label, "xnnpack_flags": s.xnnpack_flags, "error": r.error,
            "model_memory_mb": r.model_memory_mb, "liveness_bound_mb": r.liveness_bound_mb,
            "memory_ratio": r.memory_ratio, "median_ms": r.median_ms, "runs": len(r.times_ms)})
    for f, entry in per_file.items():
        default = next((c for c in entry["candidates"] if c["setting"] == "default"), None)
        base = default and default.get("median_ms")
        for c in entry["candidates"]:
            c["latency_vs_default"] = round(c["median_ms"] / base, 3) if base and c.get("median_ms") else None
        pick = choose(entry["candidates"], budget_mb)
        entry["choice"] = None if pick is None else pick["setting"]
    return {"memory_budget_mb": budget_mb, "threads": threads, "runs": runs, "machine": machine_info(),
            "runtime": "LiteRT CompiledModel, CPU (what the Android demo's CPU path runs)", "artifacts": per_file}


def format_budget(runtime: dict) -> str:
    rows = [f"\nmemory budget {runtime['memory_budget_mb']:g} MB ({runtime['threads']} threads, {runtime['runs']} "
            "interleaved runs, LiteRT CompiledModel CPU; memory = the model's own peak):",
            f"  {'artifact':<20} {'setting':<52} {'own MB':>7} {'bound MB':>9} {'median ms':>10} {'vs default':>10}"]
    for f, entry in runtime["artifacts"].items():
        for c in entry["candidates"]:
            mark = " <- chosen" if c["setting"] == entry["choice"] else ""
            if c.get("error"):
                rows.append(f"  {f:<20} {c['label']:<52} error: {c['error']}")
                continue
            def num(k, fmt):
                return "-" if c.get(k) is None else format(c[k], fmt)
            rows.append(f"  {f:<20} {c['label']:<52} {num('model_memory_mb', '.0f'):>7} "
                        f"{num('liveness_bound_mb', '.1f'):>9} {num('median_ms', '.1f'):>10} "
                        f"{num('latency_vs_default', '.2f'):>10}{mark}")
        if entry["choice"] is None:
            rows.append(f"  {f:<20} nothing fits {runtime['memory_budget_mb']:g} MB")
    return "\n".join(rows)
