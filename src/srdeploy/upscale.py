"""``sr-upscale``: images of any size through a model or an exported (fixed-shape) artifact.

Colour handling: RGB goes through the model. A grayscale image is fed as three equal
channels and written back as one channel (the mean of the model's three outputs). An alpha
channel is not seen by the model: it is upscaled separately with MATLAB-compatible bicubic
and re-attached.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from .cli_util import OneLineParser, parse_hw, run_cli
from .errors import SrDeployError
from .imaging import IMAGE_SUFFIXES, psnr_y, read_image, read_rgb, to_uint8, write_image

PROG = "sr-upscale"


def build_parser() -> OneLineParser:
    p = OneLineParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=("Upscale images of any size. A fixed-shape artifact (or --tile) runs tile by tile: "
                     "tiles carry --overlap LR pixels of context on each inner side and are cross-faded "
                     "in the middle of the shared band, so there are no seams. Grayscale stays grayscale; "
                     "alpha is upscaled separately (bicubic) and kept."),
        epilog=("examples:\n  sr-upscale photo.jpg -o photo_x2.png --model imdn_rtc\n"
                "  sr-upscale photos/ -o out/ --artifact exports/imdn_rtc_x2_720x480/model_fp32.tflite\n"
                "  sr-upscale lr.png -o out/ --model imdn --scale 4 --compare --hr hr.png\n\n"
                "exit codes: 0 ok, 1 some inputs failed, 2 nothing processed / bad input."))
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    p.add_argument("-o", "--out", required=True, help="output file (one input) or folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="registered model name (PyTorch, official weights)")
    src.add_argument("--artifact", metavar="FILE", help="exported .tflite/.onnx")
    p.add_argument("--scale", type=int, help="upscaling factor (default: the model's / artifact's)")
    p.add_argument("--weights", metavar="PATH", help="checkpoint for --model")
    p.add_argument("--tile", metavar="HxW", help="tile size for --model (artifacts use their input size)")
    p.add_argument("--overlap", type=int, default=8, help="tile context margin in LR pixels (default 8)")
    p.add_argument("--threads", type=int, help="runtime threads for artifacts")
    p.add_argument("--compare", action="store_true",
                   help="also write NAME_compare.png: bicubic | model | HR (when --hr) with PSNR-Y labels")
    p.add_argument("--hr", metavar="PATH", help="HR image (one input) or folder of HR images matched by name")
    return p


def _collect(inputs: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise SrDeployError(f"no images in {p}")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise SrDeployError(f"input not found: {p}")
    return files


def _label(img: np.ndarray, text: str) -> np.ndarray:
    import cv2

    out = img.copy()
    scale = max(0.4, img.shape[1] / 600)
    cv2.putText(out, text, (8, int(24 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(out, text, (8, int(24 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                cv2.LINE_AA)
    return out


def _hr_for(hr_arg: str | None, src: Path, single: bool) -> Path | None:
    if not hr_arg:
        return None
    p = Path(hr_arg)
    if p.is_file() and single:
        return p
    if p.is_dir():
        for cand in sorted(p.glob(src.stem.split("x")[0] + ".*")) + sorted(p.glob(src.stem + ".*")):
            return cand
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tqdm import tqdm

    from .benchmark.evaluate import make_predictor
    from .resize import imresize

    files = _collect(args.inputs)
    scale = args.scale
    if args.model and scale is None:
        from .models import get_spec

        scale = get_spec(args.model).scales[0]
    if args.artifact and scale is None:
        from .runtime import open_artifact

        r = open_artifact(args.artifact, args.threads)
        n, h, w, c = r.input_shape
        scale = r(np.zeros((1, h, w, 3), np.float32)).shape[1] // h
    predict, desc = make_predictor(args.model, scale, args.artifact, args.weights, parse_hw(args.tile, "--tile"),
                                   args.overlap, args.threads)
    out = Path(args.out)
    single_file_out = len(files) == 1 and out.suffix.lower() in IMAGE_SUFFIXES
    (out.parent if single_file_out else out).mkdir(parents=True, exist_ok=True)
    print(f"{desc}: {len(files)} image(s) -> {out}", file=sys.stderr)
    failures = 0
    for src in tqdm(files, desc="upscale", unit="img", file=sys.stderr, disable=len(files) < 2):
        try:
            rgb, alpha, gray = read_image(src)
            sr = to_uint8(predict(rgb))
            a_up = imresize(alpha, size=sr.shape[:2]) if alpha is not None else None
            dest = out if single_file_out else out / f"{src.stem}_x{scale}.png"
            write_image(dest, sr, a_up, gray)
            if args.compare:
                panels = [_label(imresize(rgb, size=sr.shape[:2]), "bicubic"), _label(sr, desc.split(" (")[0])]
                hr_path = _hr_for(args.hr, src, len(files) == 1)
                if hr_path is not None:
                    hr = read_rgb(hr_path)[: sr.shape[0], : sr.shape[1]]
                    if hr.shape == sr.shape:
                        bic = imresize(rgb, size=sr.shape[:2])
                        panels = [_label(bic, f"bicubic {psnr_y(bic, hr, scale):.2f} dB"),
                                  _label(sr, f"{desc.split(' (')[0]} {psnr_y(sr, hr, scale):.2f} dB"),
                                  _label(hr, "HR")]
                write_image(dest.with_name(f"{src.stem}_compare.png"), np.concatenate(panels, axis=1))
        except SrDeployError as exc:
            failures += 1
            print(f"{PROG}: warning: {src.name}: {exc}", file=sys.stderr)
    if failures == len(files):
        raise SrDeployError("no image could be upscaled")
    return 1 if failures else 0


def entry() -> None:
    sys.exit(run_cli(PROG, main))


if __name__ == "__main__":
    entry()
