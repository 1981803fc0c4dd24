"""``sr-export``: a registered model or the user's own ONNX → ONNX + TFLite FP32 (+ FP16, INT8), each
behind a parity gate."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

from ..cli_util import OneLineParser, run_cli
from ..models import MODELS
from .rewrites import DEFAULT_REWRITES

PROG = "sr-export"


def _model_list() -> str:
    lines = []
    for name, spec in sorted(MODELS.items()):
        scales = "/".join(f"x{s}" for s in spec.scales)
        h, w = spec.default_size
        weights = ("no public weights" if not spec.weights else
                   "embedded weights (trained by srdeploy)" if all(w.embedded for w in spec.weights.values())
                   else "official weights")
        lines.append(f"  {name:<13} {scales:<9} default {f'{h}x{w}':<10} {weights}; {spec.description}")
    return "\n".join(lines)


def _rewrite_list(text: str) -> tuple[str, ...]:
    return tuple(r.strip() for r in text.split(",") if r.strip() and r.strip() != "none")


def build_parser() -> OneLineParser:
    p = OneLineParser(
        prog=PROG,
        description=(
            "Export a super-resolution model to ONNX and TFLite (FP32, optionally FP16 and INT8). After each "
            "artifact is written, a parity gate runs it (onnxruntime / LiteRT) on a Set5 image (a synthetic "
            "picture when no Set5 is under SRDEPLOY_DATA) and on random input and compares with PyTorch: "
            "ONNX and FP32 max |diff| <= 1e-4, FP16 PSNR >= 50 dB. "
            "TFLite I/O is NHWC float32 RGB in [0, 1]; ONNX I/O is NCHW. Runs fully offline."),
        epilog="models:\n" + _model_list() + (
            "\n\nexit codes: 0 ok, 1 parity gate or converter failed, 2 bad input."
            "\nexample: sr-export --model imdn_rtc --fp16"
            "\nyour own model: sr-export --onnx rfdn_x4.onnx --scale 4 --size 256x256 --value-range 255 --fp16"),
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default="auto",
                   help="registered model name (see below); 'auto' (default): imdn_rtc when its official weights "
                        "are found, else dipnet_lite with the weights embedded in the package (no download, no "
                        "external files) at 720x480")
    p.add_argument("--onnx", metavar="FILE",
                   help="export your own ONNX model instead of a registered one (single 4-D NCHW float input; needs "
                        "--scale, and --size when its H/W are dynamic). Its I/O convention is given by --value-range "
                        "and --channels and converted exactly inside the graph, so every artifact speaks srdeploy's: "
                        "RGB in [0, 1] (or --io uint8 bytes); the parity reference is onnxruntime on your file")
    p.add_argument("--value-range", type=int, choices=(1, 255), default=1,
                   help="--onnx: the value range of the model's input and output: 1 ([0, 1], default) or 255")
    p.add_argument("--channels", choices=("rgb", "bgr", "y"), default="rgb",
                   help="--onnx: the model's channels: rgb (default), bgr, or y (one channel of BT.601 luma, the "
                        "FSRCNN/VDSR convention; the export converts RGB->Y, runs the model, adds the input's "
                        "bilinearly upscaled Cb/Cr and converts back to RGB)")
    p.add_argument("--name", help="--onnx: the export's name (default: the file's stem)")
    p.add_argument("--scale", type=int, help="upscaling factor (default: the model's first; required with --onnx)")
    p.add_argument("--weights", metavar="PATH", help="checkpoint to load instead of the official weights")
    p.add_argument("--random-weights", action="store_true",
                   help="export a randomly initialised network (timing only; e.g. dipnet_lite)")
    p.add_argument("--size", metavar="HxW",
                   help="LR input height x width (default 720x480 for imdn_rtc, 1080x1920 for dipnet_lite, else 256x256)")
    p.add_argument("--fp16", action="store_true", help="also write model_fp16.tflite (float16 weights)")
    p.add_argument("--fp16-arithmetic", action="store_true",
                   help="the FP16 artifact also lets a phone's CPU compute in fp16 (TFLite reduced-precision metadata "
                        "fp16accfp16: XNNPACK runs it in fp16 on ARMv8.2 cores with fp16 arithmetic, faster, ~60-75 dB "
                        "from FP32; other CPUs, this host included, ignore it). Check it on such a core: "
                        "--target arm64:cortex-a76")
    p.add_argument("--int8", action="store_true", help="also write model_int8.tflite (full integer; needs --calib)")
    p.add_argument("--calib", metavar="DIR", help="calibration HR images (e.g. DIV2K HR); downscaled by the scale "
                   "with MATLAB bicubic, then random crops of the export size")
    p.add_argument("--calib-samples", type=int, default=16, metavar="N", help="calibration crops (default 16)")
    p.add_argument("--io", choices=("float32", "uint8", "int8"), default="float32",
                   help="model I/O. uint8: every artifact takes and returns uint8 RGB 0..255 (Android bitmap "
                        "bytes; normalisation, clamp and rounding inside the graph; FP32 parity <= 1 grey level). "
                        "int8: INT8 artifact only (float artifacts keep float32)")
    p.add_argument("--act", choices=("int8", "int16", "mixed"), default="int8",
                   help="INT8 activations: int8 (default); int16 (16x8 mode, the converter's min/max); mixed (for NPU "
                        "targets: the int8 ranges and weights -- a shipped file's when one applies -- with int16 "
                        "activations on the --int16-tensors costliest tensors, via ai-edge-quantizer, extra 'npu'; "
                        "XNNPACK has no 16x8 kernels, so on a phone's CPU it is slow: check it with --target "
                        "qualcomm:SM8650)")
    p.add_argument("--int16-tensors", type=int, default=None, metavar="N",
                   help="--act mixed: activation tensors that get int16, the costliest first by a leave-one-out "
                        "simulation of the int8 graph on crops of --calib (default 16)")
    p.add_argument("--ranges", default="auto", metavar="auto|minmax|pNN.NN",
                   help="INT8 activation ranges: minmax (the converter's calibration), pNN.NN (clip each tail at "
                        "that percentile, e.g. p99.99), or auto (default: min/max, p99.999 and p99.99 are each "
                        "quantized and the one closest to the float model on the worst of 4 held-out crops of "
                        "--calib is kept; min/max when the crops hold under 1 M pixels)")
    p.add_argument("--qat-steps", type=int, default=0, metavar="N",
                   help="quantization-aware fine-tuning before the INT8 conversion: N steps (batch 8, 64x64 crops "
                        "of --calib) tuning weights and activation ranges so the simulated converter's int8 graph "
                        "matches the float one; kept only if closer to float on held-out crops (default 0: off; "
                        "e.g. 1000; minutes on a CPU). With INT8 parameters (a registry model's shipped file, or "
                        "--int8-params FILE) QAT resumes from them; --int8-params none starts from post-training "
                        "ranges")
    p.add_argument("--int8-params", default="auto", metavar="auto|none|FILE",
                   help="quantization-ready INT8 weights and activation ranges (QAT's result, valid at every export "
                        "size): auto (default) uses the file shipped with a registry model when one exists for its "
                        "official weights (quantizing the graph with that file's own rewrites, see --int8-rewrites) -- "
                        "the best INT8 in the time of a post-training "
                        "export; none: plain post-training quantization; FILE: one written by --save-int8-params")
    p.add_argument("--equalize", choices=("auto", "on", "off"), default="auto",
                   help="before post-training quantization or QAT (never with an INT8 parameter file), rescale each "
                        "conv output that only other convs read channel by channel, by powers of two undone in the "
                        "reading convs (bit-identical in float), so narrow channels span more of their tensor's "
                        "single int8 scale: auto (default: with int8 activations), on (also --act int16/mixed), "
                        "off. Post-training at 256x256 it lowered imdn_rtc's drop 1.28 -> 1.12 dB (docs/RESULTS.md)")
    p.add_argument("--save-int8-params", metavar="FILE",
                   help="write the INT8 weights and ranges this export quantized with (e.g. after --qat-steps) to "
                        "FILE (.npz), for --int8-params FILE at any other size of the same model")
    p.add_argument("--qat-job", metavar="FILE",
                   help="with --qat-steps N: do not run QAT here; write FILE (.npz), a QAT job holding the graphs and "
                        "crops it needs, for `python -m srdeploy.quantize.qat_job FILE --out PARAMS.npz --device cuda` "
                        "on a GPU machine (PyTorch and ai-edge-litert, no TensorFlow); then export with --int8-params "
                        "PARAMS.npz. This export's INT8 artifact is the model QAT starts from")
    p.add_argument("--quality", action="store_true", help="PSNR-Y/SSIM-Y of every artifact on Set5/Set14 "
                   "(from SRDEPLOY_DATA); implied by --int8")
    p.add_argument("--out", metavar="DIR", help="output folder (default exports/NAME_xS_HxW/)")
    p.add_argument("--no-parity", action="store_true", help="skip the parity gate (not recommended)")
    p.add_argument("--rewrites", default=",".join(DEFAULT_REWRITES), metavar="LIST",
                   help="exact graph transforms, comma-separated, or 'none' (default split_mean,dcr,gelu: "
                        "the exact GELU as one TFLite GELU op instead of an ERF TFLite lacks; global means "
                        "reduced in two stages for float accuracy; pixel shuffle as one DEPTH_TO_SPACE instead of "
                        "RESHAPE/6-D TRANSPOSE/RESHAPE). Also available: conv_split (a conv, or conv + LeakyReLU/ReLU, read "
                        "only by channel slices split into one conv per slice: no slice, the same MACs, each piece "
                        "its own INT8 scale), slice_conv (channel slices read only by "
                        "convs folded into zero weights), slice_select (other channel slices as 0/1 1x1 convs), "
                        "concat_conv (a concat read by a 1x1 conv as summed per-part convs); on imdn_rtc "
                        "slice_conv,slice_select make INT8 faster and 0.12 dB better (docs/RESULTS.md)")
    p.add_argument("--int8-rewrites", default="auto", metavar="auto|LIST",
                   help="exact graph transforms of the graph the INT8 artifact is quantized from, when they should "
                        "differ from the float artifacts' --rewrites (comma-separated, or 'none'); auto (default): "
                        "the ones the INT8 parameter file in use was made with (shipped or --int8-params FILE), "
                        "else --rewrites")
    p.add_argument("--seed", type=int, default=0, help="seed of the random parity input and random weights")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON on stdout instead of the table")
    p.add_argument("--bench", action="store_true",
                   help="after a passing export, time every .tflite with sr-bench (2 threads, interleaved) and add "
                        "latency and peak memory to the table and the manifest")
    p.add_argument("--bench-runs", type=int, default=6, metavar="N", help="timed runs per artifact for --bench")
    p.add_argument("--memory-budget", type=float, metavar="MB",
                   help="after a passing export, measure every .tflite in each CPU setting an app can choose "
                        "(XNNPACK default / transient indirection buffers), pick per artifact the fastest whose own "
                        "peak memory fits MB, report its latency cost and record it in the manifest (\"runtime\") "
                        "and the bundle; exit 2 when the artifact to ship fits in none")
    p.add_argument("--memory-runs", type=int, default=3, metavar="N",
                   help="timed runs per artifact and setting for --memory-budget (default 3)")
    p.add_argument("--target", action="append", metavar="T",
                   help="after a passing export, run every .tflite on a phone's kernels off-device and record the "
                        "figures in the manifest's \"targets\": arm64[:CORE] (LiteRT's ARM CPU kernels under QEMU; "
                        "CORE cortex-a76 default, cortex-a53, ...; set up once with `sudo sr-target setup arm64`). "
                        "Repeatable. Exit 1 when a target check fails")
    p.add_argument("--bundle", metavar="APP_DIR", help="after a passing export, bundle the model into the Android "
                   "demo at APP_DIR (see sr-bundle)")
    p.add_argument("--bundle-artifact", metavar="FILE", help="which .tflite to bundle (default: INT8, else FP16, else FP32)")
    return p


def _auto_model(weights: str | None) -> tuple[str, str]:
    """imdn_rtc when its official checkpoint is at hand, else the embedded dipnet_lite x2."""
    from ..errors import SrDeployError
    from ..models import get_spec
    from ..models.weights import resolve_weights

    if weights is not None:
        raise SrDeployError("--weights needs an explicit --model")
    try:
        resolve_weights(get_spec("imdn_rtc").weights[2])
        return "imdn_rtc", "official weights found"
    except SrDeployError:
        return "dipnet_lite", "no external weights configured: using the weights embedded in srdeploy"


def _bench(out_dir: Path, manifest: dict, runs: int) -> dict:
    """Time each TFLite artifact (one process each, interleaved rounds) and store it in the manifest."""
    from ..benchmark.bench import BenchSetting, machine_info, run_benchmarks
    from ..fsutil import atomic_write_json

    files = [a["file"] for a in manifest["artifacts"] if a["file"].endswith(".tflite")]
    settings = [BenchSetting(str(out_dir / f), None, 2, "cpu") for f in files]
    results = run_benchmarks(settings, warmup=1, runs=runs, rounds=runs,
                             log=lambda m: print(f"bench: {m}", file=sys.stderr))
    manifest["bench"] = {"machine": machine_info(), "threads": 2, "runs": runs,
                         "results": [{**r.to_json(), "model": f} for f, r in zip(files, results)]}
    atomic_write_json(out_dir / "manifest.json", manifest)
    return manifest


def _memory_budget(out_dir: Path, manifest: dict, budget_mb: float, runs: int, ship: str | None) -> dict:
    """--memory-budget: the app setting per artifact (benchmark/budget.py), kept in the manifest; the
    artifact to ship (--bundle-artifact, else the one sr-bundle would take) must fit."""
    from ..benchmark.budget import fit_budget, format_budget
    from ..errors import SrDeployError
    from ..fsutil import atomic_write_json
    from .bundle import default_artifact

    runtime = fit_budget(out_dir, manifest, budget_mb, runs=runs,
                         log=lambda m: print(f"memory budget: {m}", file=sys.stderr))
    manifest["runtime"] = runtime
    atomic_write_json(out_dir / "manifest.json", manifest)
    print(format_budget(runtime), file=sys.stderr)
    arts = runtime["artifacts"]
    ship = ship or default_artifact(arts)  # (every export holds model_fp32.tflite)
    if arts[ship]["choice"] is None:
        mems = [c["model_memory_mb"] for c in arts[ship]["candidates"] if c.get("model_memory_mb") is not None]
        least = f"; the least it took was {min(mems):.0f} MB" if mems else ""
        raise SrDeployError(f"--memory-budget {budget_mb:g} MB: {ship} fits in no CPU setting{least} (the export is "
                            f"complete in {out_dir}; export a smaller --size and let the app tile, or raise the budget)")
    return manifest


def _bench_table(bench: dict) -> str:
    rows = [f"\nlatency ({bench['threads']} threads, {bench['runs']} interleaved runs, LiteRT CPU):",
            f"  {'artifact':<22} {'median ms':>10} {'min ms':>8} {'peak RSS MB':>12}"]
    for r in bench["results"]:
        if r.get("error"):
            rows.append(f"  {r['model']:<22} error: {r['error']}")
        else:
            rows.append(f"  {r['model']:<22} {r['median_ms']:>10.1f} {r['min_ms']:>8.1f} {r['peak_rss_mb']:>12.0f}")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..errors import ParityError, SrDeployError

    if args.bundle and not (Path(args.bundle) / "app" / "build.gradle.kts").is_file():
        raise SrDeployError(f"{args.bundle} is not the Android demo project (no app/build.gradle.kts)")
    if args.bundle_artifact:
        if not args.bundle:
            raise SrDeployError("--bundle-artifact needs --bundle APP_DIR")
        made = ["model_fp32.tflite"] + ["model_fp16.tflite"] * args.fp16 + ["model_int8.tflite"] * args.int8
        if args.bundle_artifact not in made:
            raise SrDeployError(f"--bundle-artifact {args.bundle_artifact!r} is not an artifact this export makes "
                                f"(it makes {', '.join(made)})")
    from .exporter import ExportConfig, Exporter

    targets = []
    if args.target:  # checked before anything is written: a name we do not know, a target not set up
        from ..targets import parse_target

        targets = [parse_target(t) for t in args.target]
        for t in targets:
            if not t.ready():
                raise SrDeployError(f"target {t.label} is not set up: run `sudo sr-target setup {t.kind}` once")

    if args.bench and args.bench_runs < 1:
        raise SrDeployError("--bench-runs must be >= 1")
    if args.memory_budget is not None and not args.memory_budget > 0:
        raise SrDeployError(f"--memory-budget must be a positive number of MB, got {args.memory_budget:g}")
    if args.memory_runs < 1:
        raise SrDeployError("--memory-runs must be >= 1")
    if args.onnx is not None:
        if args.model != "auto":
            raise SrDeployError("--onnx and --model exclude each other")
        args.model = None
    elif args.value_range != 1 or args.channels != "rgb" or args.name:
        raise SrDeployError("--value-range, --channels and --name describe an --onnx model; registry models are RGB in [0, 1]")
    if args.model == "auto":
        args.model, why = _auto_model(args.weights)
        if args.size is None and args.model == "dipnet_lite":
            args.size = "720x480"
        print(f"{PROG}: --model auto -> {args.model} ({why})", file=sys.stderr)
    exporter = Exporter(ExportConfig(
        model=args.model, onnx=args.onnx, value_range=args.value_range, channels=args.channels, name=args.name,
        scale=args.scale, weights=args.weights, random_weights=args.random_weights,
        size=args.size, fp16=args.fp16, fp16_arithmetic=args.fp16_arithmetic, out=args.out, parity=not args.no_parity, seed=args.seed,
        int8=args.int8, calib=args.calib, calib_samples=args.calib_samples, io=args.io, act=args.act, ranges=args.ranges,
        int16_tensors=args.int16_tensors,
        qat_steps=args.qat_steps, int8_params=args.int8_params, save_int8_params=args.save_int8_params,
        qat_job=args.qat_job, equalize=args.equalize,
        quality=args.quality,
        rewrites=_rewrite_list(args.rewrites),
        int8_rewrites=None if args.int8_rewrites == "auto" else _rewrite_list(args.int8_rewrites)))
    try:
        manifest = exporter.run()
    except ParityError:
        print(exporter.report())
        raise
    target_results = None
    if targets:
        from ..targets.check import check_export, format_targets, record_in_manifest

        ref, _ = exporter.source.reference()
        target_results = check_export(exporter.out_dir, targets, reference=ref, seed=args.seed,
                                      log=lambda m: print(m, file=sys.stderr, flush=True))
        record_in_manifest(exporter.out_dir, target_results)
        manifest = json.loads((exporter.out_dir / "manifest.json").read_text())
    if args.bench:
        manifest = _bench(exporter.out_dir, manifest, args.bench_runs)
    if args.memory_budget is not None:
        manifest = _memory_budget(exporter.out_dir, manifest, args.memory_budget, args.memory_runs,
                                  args.bundle_artifact)
    from ..targets import OK_STATUSES

    targets_ok = not target_results or all(r.get("status") in OK_STATUSES for a in target_results.values()
                                           for r in a.values())
    bundled = None
    if args.bundle and not targets_ok:
        print(f"{PROG}: not bundled: a target check failed", file=sys.stderr)
    elif args.bundle:
        from .bundle import bundle, describe_bundle

        bundled = describe_bundle(bundle(exporter.out_dir, args.bundle, args.bundle_artifact))
    if args.json:
        print(json.dumps(manifest, indent=2))
    else:
        print(exporter.report())
        if "bench" in manifest:
            print(_bench_table(manifest["bench"]))
        if target_results:
            print("\ntargets (emulated: parity only, never timing):\n" + format_targets(target_results))
        print(f"\nwrote {exporter.out_dir}/ : " + ", ".join(
            f"{a['file']} ({a['bytes'] / 1024:.0f} KiB)" for a in manifest["artifacts"]) + ", manifest.json")
    if bundled:  # after the parity table: what went into the app, and only once it passed
        print(bundled, file=sys.stderr if args.json else sys.stdout)
    if not targets_ok:
        print(f"{PROG}: a target check failed (details in {exporter.out_dir / 'manifest.json'}, \"targets\")",
              file=sys.stderr)
        return 1
    return 0


def entry() -> None:
    sys.exit(run_cli(PROG, main))


if __name__ == "__main__":
    entry()
