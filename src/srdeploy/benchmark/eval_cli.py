"""``sr-eval``: PSNR-Y / SSIM-Y of a model or an exported artifact on SR test sets, paper-style."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from ..cli_util import OneLineParser, check_output_file, parse_hw, run_cli
from ..errors import SrDeployError

PROG = "sr-eval"


def build_parser() -> OneLineParser:
    p = OneLineParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Evaluate super-resolution quality the way the papers do: PSNR and SSIM on the Y channel "
            "(BT.601), `scale` pixels cropped at each border, outputs rounded to uint8, SSIM with an "
            "11x11 Gaussian window (sigma 1.5). Each DIR holds HR images (LR made with MATLAB-compatible "
            "bicubic) or HR/ plus LR_bicubic/X{S}/ (official LR used as is)."),
        epilog=("examples:\n  sr-eval --model imdn --scale 4 --data ../shared/data/Set5 ../shared/data/Set14\n"
                "  sr-eval --model imdn_rtc --scale 2 --artifact exports/imdn_rtc_x2_720x480/model_fp32.tflite "
                "--data Set5\n\nexit codes: 0 ok, 1 some images failed, 2 nothing could be evaluated / bad input."))
    p.add_argument("--model", help="registered model name (PyTorch); with --artifact, only for the report")
    p.add_argument("--scale", type=int, required=True, help="upscaling factor")
    p.add_argument("--artifact", metavar="FILE", help="exported .tflite/.onnx to evaluate instead of PyTorch "
                   "(run tile by tile at its fixed input size)")
    p.add_argument("--weights", metavar="PATH", help="checkpoint for --model instead of the official weights")
    p.add_argument("--data", nargs="+", required=True, metavar="DIR", help="dataset folders")
    p.add_argument("--tile", metavar="HxW", help="tile PyTorch inference too (default: whole image)")
    p.add_argument("--overlap", type=int, default=8, help="tile context margin in LR pixels (default 8)")
    p.add_argument("--threads", type=int, help="runtime threads for artifacts")
    p.add_argument("--json", metavar="FILE", help="write results as JSON")
    p.add_argument("--per-image", action="store_true", help="print one row per image")
    p.add_argument("--max-pixels", type=int, metavar="N",
                   help="largest decoded image in pixels (default 16,777,216 = 4096x4096, or SRDEPLOY_MAX_PIXELS)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..progress import bar as progress_bar
    from ..fsutil import atomic_write_json
    from .evaluate import evaluate_dataset, find_dataset, make_predictor

    from ..imaging import set_max_pixels

    if not args.model and not args.artifact:
        raise SrDeployError("give --model NAME or --artifact FILE")
    check_output_file(args.json, "--json")
    from ..cli_util import check_threads

    check_threads(args.threads)
    set_max_pixels(args.max_pixels)
    datasets = [find_dataset(d, args.scale) for d in args.data]  # validate every folder before work
    predict, desc = make_predictor(args.model, args.scale, args.artifact, args.weights,
                                   parse_hw(args.tile, "--tile"), args.overlap, args.threads)
    print(f"{desc} on {', '.join(d.name for d in datasets)}", file=sys.stderr)
    results = []
    for ds in datasets:
        with progress_bar(total=len(ds.hr_files), desc=ds.name, unit="img", leave=False) as bar:
            results.append(evaluate_dataset(predict, ds, args.scale, progress=bar.update))
    failed = [(r.dataset, im) for r in results for im in r.per_image if im.error]
    for dataset, im in failed:
        print(f"{PROG}: warning: {dataset}/{im.name}: {im.error}", file=sys.stderr)
    rows = [("dataset", "images", "PSNR-Y (dB)", "SSIM-Y", "seconds")]
    for r in results:
        rows.append((r.dataset, str(r.images), "-" if r.psnr_y is None else f"{r.psnr_y:.3f}",
                     "-" if r.ssim_y is None else f"{r.ssim_y:.4f}", f"{r.seconds:.1f}"))
        if args.per_image:
            rows += [(f"  {im.name}", "", "-" if im.psnr_y is None else f"{im.psnr_y:.3f}",
                      "-" if im.ssim_y is None else f"{im.ssim_y:.4f}", "") for im in r.per_image]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for i, row in enumerate(rows):
        print("  ".join(v.ljust(widths[j]) for j, v in enumerate(row)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    if args.json:
        atomic_write_json(Path(args.json), {"model": args.model, "artifact": args.artifact, "scale": args.scale,
                                             "evaluated": desc, "results": [r.to_json() for r in results]})
    if all(r.images == 0 for r in results):
        raise SrDeployError("no image could be evaluated")
    return 1 if failed else 0


def entry() -> None:
    sys.exit(run_cli(PROG, main))


if __name__ == "__main__":
    entry()
