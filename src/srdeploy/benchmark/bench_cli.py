"""``sr-bench``: latency, memory and roofline of .tflite / .onnx / PyTorch models, side by side."""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Sequence

from ..cli_util import OneLineParser, check_output_file, check_threads, parse_hw, run_cli
from ..errors import SrDeployError

PROG = "sr-bench"


def build_parser() -> OneLineParser:
    p = OneLineParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Benchmark models the way TFLite's benchmark_model does: Init, First inference, then "
            "warm-up and timed runs (min/median/mean/p90/std), peak memory footprint (RSS high-water "
            "mark of the process that ran the model) and, with --profile, time per op type. Each model "
            "runs in its own process; timed runs are interleaved across models in rounds so ratios hold "
            "on a noisy machine. MODEL is a .tflite, an .onnx (onnxruntime) or a registry name, "
            "optionally NAME:xS (PyTorch eager)."),
        epilog=("examples:\n"
                "  sr-bench ../shared/anchors/imdn_rtc_time.tflite exports/imdn_rtc_x2_720x480/model_fp32.tflite\n"
                "  sr-bench model.tflite --threads 1 --profile --json bench.json\n"
                "  sr-bench model_fp32.tflite --gpu-check\n\n"
                "exit codes: 0 ok, 1 a model failed (its row shows the error) or --gpu-check found issues, "
                "2 bad input."))
    p.add_argument("models", nargs="*", metavar="MODEL")
    p.add_argument("--compare", nargs="+", metavar="JSON",
                   help="no timing: print the rows of earlier --json files side by side (e.g. the Android "
                        "demo's bench.json, pulled with adb, and this machine's), ratios to the first row")
    p.add_argument("--size", metavar="HxW", help="input H x W (dynamic-shape models and PyTorch; fixed-shape "
                   "models must match)")
    p.add_argument("--threads", default="2", help="threads, or a comma list to sweep (default 2)")
    p.add_argument("--delegate", choices=("xnnpack", "none", "gpu", "gpu:fp32"), default="xnnpack",
                   help="TFLite delegate (default xnnpack; 'none' = reference kernels). gpu: LiteRT's GPU "
                        "accelerator alone (its FP16 default; gpu:fp32 = enforce_f32) on this machine's GPU, "
                        "else on the software Vulkan GPU of `sr-target setup gpu`; the row names the adapter. "
                        "It fails rather than fall back to the CPU")
    p.add_argument("--warmup", type=int, default=1, help="warm-up runs after the first inference (default 1)")
    p.add_argument("--runs", type=int, default=10, help="timed runs per model (default 10)")
    p.add_argument("--rounds", type=int, help="interleaving rounds (default: one run per round)")
    p.add_argument("--profile", action="store_true", help="time per op type (TFLite; one-op models)")
    p.add_argument("--roofline", action="store_true",
                   help="count MACs and compare achieved GFLOP/s with this machine's attainable FP32/INT8")
    p.add_argument("--gpu-check", action="store_true",
                   help="only check which ops/tensors the TFLite GPU delegate cannot run; no timing")
    p.add_argument("--json", metavar="FILE", help="write every figure and machine facts as JSON")
    from .bench import DEFAULT_MEMORY_LIMIT_MB, DEFAULT_TIMEOUT_S

    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help="seconds one step of a model (load, a round of runs, profile) may take before its "
                        "worker process is killed and the row reports the time-out (default 600)")
    p.add_argument("--runtime", choices=("interpreter", "compiled"), default="interpreter",
                   help="TFLite API: interpreter (default; LiteRT's Interpreter with its default XNNPACK delegate) "
                        "or compiled (LiteRT's CompiledModel on the CPU, which takes --xnnpack-flags)")
    p.add_argument("--xnnpack-flags", metavar="N", help="XNNPACK flags for --runtime compiled, decimal or 0x hex "
                   "(e.g. 0x20: transient indirection buffers, less memory, slower); default: LiteRT's")
    p.add_argument("--memory-limit", type=float, default=DEFAULT_MEMORY_LIMIT_MB, metavar="MB",
                   help="address space each model's worker process may map (default 16384 MB; a worker itself "
                        "takes about 200 MB): a model that needs more fails with an error row")
    return p


def _check_model_arg(m: str) -> None:
    if m.endswith((".tflite", ".onnx")):
        if not Path(m).is_file():
            raise SrDeployError(f"model file not found: {m}")
        return
    from ..models import get_spec

    name, _, scale = m.partition(":")
    spec = get_spec(name)
    if scale and (not re.fullmatch(r"x?\d+", scale) or int(scale.lstrip("x")) not in spec.scales):
        raise SrDeployError(f"{m}: scale must be one of {', '.join(f'x{s}' for s in spec.scales)}")


def _fmt(v, nd=1) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _size_str(size) -> str:
    return f"{size[0]}x{size[1]}" if size and len(size) == 2 else "?"


def _gpu_check(models: list[str], json_path: str | None) -> int:
    from ..fsutil import atomic_write_json
    from .gpu_check import gpu_check

    for m in models:
        if not m.endswith(".tflite"):
            raise SrDeployError(f"--gpu-check needs .tflite models, got {m}")
    reports = []
    for m in models:
        r = gpu_check(m, check_load=True)
        reports.append(r)
        if r.error and len(models) == 1:  # the only input is not a model: bad input, one line
            raise SrDeployError(f"{m} is not a loadable TFLite model: {r.error}")
        if r.error:
            print(f"{m}: GPU delegate: FAIL (not a loadable TFLite model: {r.error})")
            continue
        verdict = "PASS" if r.passed else f"FAIL ({len(r.issues)} issue(s))"
        print(f"{m}: {r.ops} ops, GPU delegate: {verdict}" + (" [quantized model]" if r.quantized else ""))
        for i in r.issues:
            print(f"  op {i.op_index} {i.op}: {i.reason}")
    if json_path:
        atomic_write_json(Path(json_path), {"gpu_check": [r.to_json() for r in reports]})
    return 0 if all(r.passed for r in reports) else 1


#: largest --compare file read (a bench JSON is a few KB per row)
MAX_COMPARE_BYTES = 16 << 20


def _compare(files: list[str]) -> int:
    """Rows of sr-bench-shaped JSON files (this tool's --json, the app's bench.json) in one table.
    The files are a user's: each is validated before anything is printed."""
    from ..fsutil import read_user_json

    rows = []
    for f in files:
        path = Path(f)
        doc = read_user_json(path, MAX_COMPARE_BYTES, "a bench JSON", label=f"--compare {f}")
        if not isinstance(doc, dict) or not isinstance(doc.get("results"), list) or not isinstance(doc.get("machine"), dict):
            raise SrDeployError(f"--compare {f}: not an sr-bench JSON (needs 'machine' and a 'results' list)")
        m = doc["machine"]
        where = " ".join(str(m.get(k, "")) for k in ("cpu", "platform") if m.get(k))[:40] or path.name
        for i, r in enumerate(doc["results"]):
            ok = isinstance(r, dict) and isinstance(r.get("model"), str) and isinstance(r.get("delegate"), str)
            med = r.get("median_ms") if ok else None
            if not ok or not (med is None or isinstance(med, (int, float))) or \
                    not (r.get("error") is None or isinstance(r.get("error"), str)):
                raise SrDeployError(f"--compare {f}: results[{i}] lacks model/delegate or has a non-numeric median_ms")
            rows.append((where, Path(r["model"]).name, _size_str(r.get("size") if isinstance(r.get("size"), list) else None),
                         r["delegate"], r.get("threads"), med, r.get("p90_ms"), r.get("error")))
    base = next((r[5] for r in rows if r[5] and not r[7]), None)
    print("  ".join(["#", "machine".ljust(40), "model".ljust(32), "size".ljust(9), "delegate".ljust(8), "thr",
                     "median ms", "p90 ms", "ratio"]))
    for i, (where, model, size, dele, thr, med, p90, err) in enumerate(rows):
        head = f"{i + 1}  {where.ljust(40)}  {model[-32:].ljust(32)}  {size.ljust(9)}  {dele[:8].ljust(8)}  {str(thr):>3}"
        if err or med is None:
            print(f"{head}  {'ERROR':>9}  {'':>6}  -  {(err or 'no timing')[:60]}")
            continue
        p90s = f"{p90:6.1f}" if isinstance(p90, (int, float)) else f"{'-':>6}"
        print(f"{head}  {med:9.1f}  {p90s}  {med / base:.3f}" if base else f"{head}  {med:9.1f}  {p90s}  -")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.compare:
        if args.models:
            raise SrDeployError("--compare prints earlier JSON files: give no MODEL with it")
        return _compare(args.compare)
    if not args.models:
        raise SrDeployError("give at least one MODEL (a .tflite, an .onnx or a registry name), or --compare JSON...")
    for m in args.models:
        _check_model_arg(m)
    check_output_file(args.json, "--json")
    if not args.timeout > 0:
        raise SrDeployError(f"--timeout must be > 0, got {args.timeout}")
    flags = None
    if args.xnnpack_flags is not None:
        if args.runtime != "compiled":
            raise SrDeployError("--xnnpack-flags needs --runtime compiled")
        try:
            flags = int(args.xnnpack_flags, 0)
        except ValueError:
            raise SrDeployError(f"--xnnpack-flags must be an integer (e.g. 0x20), got {args.xnnpack_flags!r}") from None
        if not 0 <= flags < 2**32:
            raise SrDeployError(f"--xnnpack-flags must be a 32-bit unsigned value, got {args.xnnpack_flags}")
    if args.runtime == "compiled" and args.delegate != "xnnpack":
        raise SrDeployError("--runtime compiled runs on the CPU (XNNPACK): leave --delegate at its default")
    if args.delegate.startswith("gpu") and not args.gpu_check:
        from ..targets.gpu import run_env

        run_env()  # not set up: one line, exit 2
    if not args.memory_limit >= 256:
        raise SrDeployError(f"--memory-limit must be at least 256 MB, got {args.memory_limit}")
    if args.gpu_check:
        return _gpu_check(args.models, args.json)
    size = parse_hw(args.size, "--size")
    try:
        threads = [int(t) for t in str(args.threads).split(",")]
    except ValueError:
        raise SrDeployError(f"--threads must be an integer or a comma list, got {args.threads!r}") from None
    if any(t < 1 for t in threads) or args.runs < 1 or args.warmup < 0:
        raise SrDeployError("--threads and --runs must be >= 1, --warmup >= 0")
    for t in threads:
        check_threads(t)
    if args.runs > 100_000 or args.warmup > 10_000 or (args.rounds is not None and not 1 <= args.rounds <= args.runs):
        raise SrDeployError("--runs must be at most 100000, --warmup at most 10000, --rounds 1..--runs")

    from ..fsutil import atomic_write_json
    from .bench import BenchSetting, machine_info, run_benchmarks

    settings = [BenchSetting(m, size, t, args.delegate if m.endswith(".tflite") else "cpu",
                             args.runtime if m.endswith(".tflite") else "interpreter",
                             flags if m.endswith(".tflite") else None)
                for t in threads for m in args.models]
    results = run_benchmarks(settings, warmup=args.warmup, runs=args.runs, rounds=args.rounds,
                             profile=args.profile, log=lambda s: print(f"  {s}", file=sys.stderr, flush=True),
                             timeout=args.timeout, memory_limit_mb=args.memory_limit)
    attainable = {}
    if args.roofline:
        from ..models import create_model
        from .roofline import attainable_gflops, count_macs_torch, count_macs_tflite

        for t in threads:
            attainable[t] = attainable_gflops(t)
        for r in results:
            if r.error or r.median_ms is None or r.size is None:
                continue
            if r.model.endswith(".tflite"):
                macs = count_macs_tflite(r.model)
            elif r.model.endswith(".onnx"):
                continue
            else:
                name, _, sc = r.model.partition(":")
                macs = count_macs_torch(create_model(name, int(sc.lstrip("x")) if sc else None,
                                                     pretrained=False), tuple(r.size))
            gflops = 2 * macs / (r.median_ms / 1e3) / 1e9
            int8 = r.input and r.input.get("dtype") in ("int8", "uint8")
            peak = attainable[r.threads]["int8" if int8 else "fp32"]
            r.profile = {**(r.profile or {}), "gmac": macs / 1e9, "gflops": gflops, "attainable_gflops": peak,
                         "pct_of_attainable": 100 * gflops / peak}

    for r in results:
        cpu = r.delegate if r.runtime == "interpreter" else (
            "CompiledModel CPU" + (f", xnnpack_flags {r.xnnpack_flags:#x}" if r.xnnpack_flags is not None else ""))
        how = {"gpu": "GPU accelerator, FP16 default", "gpu:fp32": "GPU accelerator, enforce_f32"}.get(r.delegate, cpu)
        print(f"\n== {r.model}  [{_size_str(r.size)}, {r.threads} thread(s), {how}]")
        if r.error:
            print(f"  ERROR: {r.error}")
            continue
        if r.adapter:
            soft = any(k in r.adapter.lower() for k in ("llvmpipe", "swiftshader"))
            print(f"  GPU adapter: {r.adapter}" + ("  (a software GPU: this checks the GPU path; its time is no "
                                                   "phone's)" if soft else ""))
        print(f"  Init: {_fmt(r.init_ms)} ms   First inference: {_fmt(r.first_ms)} ms   "
              f"Peak memory footprint: {_fmt(r.peak_rss_mb)} MB")
        if r.model_memory_mb is not None:
            bound = (f"   activation liveness bound {_fmt(r.liveness_bound_mb)} MB, ratio {_fmt(r.memory_ratio, 2)}x"
                     if r.liveness_bound_mb else "")
            print(f"  Model's own memory: {_fmt(r.model_memory_mb)} MB{bound}")
        print(f"  Inference ({r.runs} runs): min={_fmt(r.min_ms)} median={_fmt(r.median_ms)} "
              f"avg={_fmt(r.mean_ms)} p90={_fmt(r.p90_ms)} max={_fmt(r.max_ms)} std={_fmt(r.std_ms)} ms")
        print(f"  Input {r.input['shape']} {r.input['dtype']} -> output {r.output['shape']} {r.output['dtype']}")
        if r.profile and "gflops" in r.profile:
            p = r.profile
            print(f"  Work: {p['gmac']:.2f} GMAC; {p['gflops']:.1f} GFLOP/s = {p['pct_of_attainable']:.0f} % of "
                  f"attainable {p['attainable_gflops']:.0f} GFLOP/s")
        if r.profile and "ops" in r.profile:
            p = r.profile
            print(f"  Per op type (one-op models; sum {p['sum_of_ops_ms']:.1f} ms vs whole {p['whole_ms']:.1f} ms):")
            for o in p["ops"]:
                print(f"    {o['op']:<16} {o['count']:>4}  {o['ms']:8.2f} ms  {o['pct']:5.1f} %")
            if p.get("convs"):
                print("  CONV_2D by shape (kernel in->out channels):")
                for c in p["convs"]:
                    print(f"    {c['conv']:<16} {c['count']:>4}  {c['ms']:8.2f} ms  ({c['ms_each']:.2f} ms each)")
        elif r.profile and "error" in r.profile:
            print(f"  profile: {r.profile['error']}")

    ok = [r for r in results if not r.error and r.median_ms]
    if len(results) > 1:
        base = next((r for r in results if r is results[0]), None)
        print("\n" + "  ".join(["#", "model".ljust(48), "size".ljust(9), "thr", "median ms", "ratio"]))
        for i, r in enumerate(results):
            size_s = _size_str(r.size)
            if r.error:
                print(f"{i + 1}  {r.model[-48:].ljust(48)}  {size_s.ljust(9)}  {r.threads:>3}  {'ERROR':>9}  -")
                continue
            ratio = (r.median_ms / base.median_ms) if base and base.median_ms and not base.error else None
            print(f"{i + 1}  {r.model[-48:].ljust(48)}  {size_s.ljust(9)}  {r.threads:>3}  {r.median_ms:9.1f}  "
                  f"{'-' if ratio is None else f'{ratio:.3f}'}"
                  + (f"  (group {r.interleave_group})" if r.interleave_group else ""))
        n_groups = max((r.interleave_group or 0) for r in results)
        if n_groups > 1:
            print(f"(not every model fitted in memory at once: timed in {n_groups} interleaved groups; ratios between "
                  "groups come from different minutes of the machine)")
    if args.json:
        atomic_write_json(Path(args.json), {"machine": {**machine_info(), "attainable_gflops": attainable},
                                            "results": [r.to_json() for r in results]})
    return 0 if len(ok) == len(results) else 1


def entry() -> None:
    sys.exit(run_cli(PROG, main))


if __name__ == "__main__":
    entry()
