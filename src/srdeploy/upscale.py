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

from .cli_util import OneLineParser, check_threads, parse_hw, run_cli
from .errors import SrDeployError
from .imaging import (DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, max_pixels, psnr_y, read_image, read_rgb,
                      set_max_pixels, to_uint8, write_image)

PROG = "sr-upscale"
#: an output may hold this many times the input pixel limit (x2 of the largest input)
OUTPUT_FACTOR = 4


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
    p.add_argument("--hr", metavar="PATH", help="HR image (one input) or folder of HR images matched by name; "
                   "it must be SCALE x the input (a larger HR is cropped to the output, as the papers' mod-crop)")
    p.add_argument("--max-pixels", type=int, metavar="N",
                   help=f"largest decoded input image in pixels (default {DEFAULT_MAX_PIXELS:,} = 4096x4096, or "
                        f"SRDEPLOY_MAX_PIXELS); outputs may hold at most {OUTPUT_FACTOR}x that")
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
    """White text on a dark box exactly as wide as the text (plus a fixed pad): a thick black outline
    drawn under the text would stick out past its last glyph and read as a doubled letter."""
    import cv2

    out = img.copy()
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.4, img.shape[1] / 600)
    thick = max(1, round(scale))
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    pad, x, y = 4, 8, 8 + th
    cv2.rectangle(out, (x - pad, y - th - pad), (min(out.shape[1] - 1, x + tw + pad), y + base + pad), (0, 0, 0), -1)
    cv2.putText(out, text, (x, y), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
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


def _destinations(files: list[Path], out: Path, single_file_out: bool, scale: int) -> list[Path]:
    """Where each input goes; refuses writing over an input or into an input folder (the next run
    would upscale the outputs again: ``a_x2_x2.png``)."""
    dests = [out if single_file_out else out / f"{f.stem}_x{scale}.png" for f in files]
    inputs = {f.resolve() for f in files}
    for d in dests:
        if d.resolve() in inputs:
            raise SrDeployError(f"{d} is one of the inputs: refusing to overwrite it (choose another -o)")
    seen: dict[Path, Path] = {}
    for f, d in zip(files, dests):
        if d.resolve() in seen:
            raise SrDeployError(f"{seen[d.resolve()]} and {f} would both be written to {d.name}: "
                                "upscale them into different folders")
        seen[d.resolve()] = f
    if not single_file_out:
        out_r = out.resolve()
        if any(f.resolve().parent == out_r for f in files):
            raise SrDeployError(f"output folder {out} holds input images: upscaling a folder into itself "
                                "would mix inputs and outputs (choose another -o)")
    return dests


def _check_out(out: Path, single_file_out: bool) -> None:
    """Before any work: the output file/folder can be written (nothing is created here)."""
    import os

    folder = out.parent if single_file_out else out
    if single_file_out and out.is_dir():
        raise SrDeployError(f"-o {out} is a folder; give a file name or a folder for several inputs")
    if folder.exists() and not folder.is_dir():
        raise SrDeployError(f"output path {folder} exists and is not a folder")
    probe = folder
    while not probe.exists():  # the nearest existing ancestor must let us create the rest
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise SrDeployError(f"output folder {folder} is not writable")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .benchmark.evaluate import make_predictor
    from .progress import bar as progress_bar
    from .resize import imresize

    set_max_pixels(args.max_pixels)
    check_threads(args.threads)
    tile = parse_hw(args.tile, "--tile")
    files = _collect(args.inputs)
    out = Path(args.out)
    single_file_out = len(files) == 1 and out.suffix.lower() in IMAGE_SUFFIXES
    _check_out(out, single_file_out)
    scale = args.scale
    if args.model and scale is None:
        from .models import get_spec

        scale = get_spec(args.model).scales[0]
    if args.artifact and scale is None:
        from .runtime import open_artifact

        r = open_artifact(args.artifact, args.threads)
        n, h, w, c = r.input_shape
        scale = r(np.zeros((1, h, w, 3), np.float32)).shape[1] // h
    dests = _destinations(files, out, single_file_out, scale)
    predict, desc = make_predictor(args.model, scale, args.artifact, args.weights, tile, args.overlap,
                                   args.threads, auto_tile=True)
    (out.parent if single_file_out else out).mkdir(parents=True, exist_ok=True)
    if len(files) > 1:
        print(f"{desc}: {len(files)} images -> {out}", file=sys.stderr)
    failures = compare_problems = 0
    out_limit = OUTPUT_FACTOR * max_pixels()
    for src, dest in zip(files, progress_bar(dests, desc="upscale", unit="img", enabled=len(files) > 1)):
        try:
            rgb, alpha, gray = read_image(src)
            if rgb.shape[0] * rgb.shape[1] * scale * scale > out_limit:
                raise SrDeployError(f"x{scale} output would be {rgb.shape[1] * scale}x{rgb.shape[0] * scale}, above "
                                    f"the output limit of {out_limit / 1e6:.1f} MP (--max-pixels raises it)")
            sr = to_uint8(predict(rgb))
            a_up = imresize(alpha, size=sr.shape[:2]) if alpha is not None else None
            write_image(dest, sr, a_up, gray)
            if args.compare:
                compare_problems += _write_compare(args, src, dest, rgb, sr, scale, desc, len(files) == 1)
        except SrDeployError as exc:
            if len(files) == 1:  # the only input: its problem is the command's one-line error
                raise
            failures += 1
            print(f"{PROG}: warning: {src.name}: {exc}", file=sys.stderr)
        except (MemoryError, ValueError, OSError, RuntimeError) as exc:  # one bad image never ends the batch
            failures += 1
            msg = " ".join(str(exc).split())[:200] or type(exc).__name__
            print(f"{PROG}: warning: {src.name}: {type(exc).__name__}: {msg}", file=sys.stderr)
    if failures == len(files):
        raise SrDeployError("no image could be upscaled")
    done = len(files) - failures
    print(f"{desc}: {done} image{'s' if done != 1 else ''} -> {out}")
    return 1 if failures or compare_problems else 0


def _write_compare(args, src: Path, dest: Path, rgb, sr, scale: int, desc: str, single: bool) -> int:
    """Write NAME_compare.png; returns 1 (a failure to report) when a given HR cannot be used."""
    from .resize import imresize

    bic = imresize(rgb, size=sr.shape[:2])
    name = desc.split(" (")[0]
    panels = [_label(bic, "bicubic"), _label(sr, name)]
    problem = 0
    hr_path = _hr_for(args.hr, src, single)
    if args.hr and hr_path is None:
        print(f"{PROG}: warning: {src.name}: no HR image for it in {args.hr}; compare panel without HR",
              file=sys.stderr)
        problem = 1
    elif hr_path is not None:
        hr_full = read_rgb(hr_path)
        if hr_full.shape[0] < sr.shape[0] or hr_full.shape[1] < sr.shape[1] or \
                hr_full.shape[0] >= sr.shape[0] + scale or hr_full.shape[1] >= sr.shape[1] + scale:
            print(f"{PROG}: warning: {src.name}: HR {hr_path.name} is {hr_full.shape[1]}x{hr_full.shape[0]}, "
                  f"expected x{scale} of the input ({sr.shape[1]}x{sr.shape[0]}, or up to {scale - 1} more "
                  "pixels, cropped); compare panel written without HR", file=sys.stderr)
            problem = 1
        else:
            hr = hr_full[: sr.shape[0], : sr.shape[1]]
            panels = [_label(bic, f"bicubic {psnr_y(bic, hr, scale):.2f} dB"),
                      _label(sr, f"{name} {psnr_y(sr, hr, scale):.2f} dB"), _label(hr, "HR")]
    write_image(dest.with_name(f"{src.stem}_compare.png"), np.concatenate(panels, axis=1))
    return problem


def entry() -> None:
    sys.exit(run_cli(PROG, main))


if __name__ == "__main__":
    entry()
