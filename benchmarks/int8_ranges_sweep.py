"""Set5/Set14 PSNR-Y of INT8 models quantized with each activation-range method, one by one.

A diagnostic for docs/RESULTS.md (the product's ``--ranges auto`` never looks at Set5/Set14: it
chooses on held-out DIV2K crops). Same functions as ``sr-export --int8``: calibrate-only, rewrite
the min/max, mlir_quantize.

    python benchmarks/int8_ranges_sweep.py imdn_rtc 2 480 720 minmax p99.999 p99.99 p99.9
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from srdeploy.benchmark.evaluate import evaluate_dataset, find_dataset, make_predictor
from srdeploy.export.formats import convert_onnx2tf, export_onnx
from srdeploy.models import create_model
from srdeploy.paths import data_dir
from srdeploy.quantize.calibration import calibration_frames
from srdeploy.quantize.ranges import activation_samples, calibrate, parse_ranges, quantize_calibrated, with_ranges


def main(argv: list[str]) -> dict:
    name, scale, h, w, *methods = argv
    scale, h, w = int(scale), int(h), int(w)
    root = data_dir()
    results: dict = {"model": name, "scale": scale, "size": [h, w], "calibration_crops": 16, "methods": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        export_onnx(create_model(name, scale).eval(), work / "model.onnx", (h, w))
        convert_onnx2tf(work / "model.onnx", work / "tf")
        frames = calibration_frames(root / "div2k" / "HR", scale, (h, w), n=16, seed=0).frames
        calibrated = calibrate(work / "tf" / "saved_model", frames)
        samples = activation_samples(calibrated, frames)
        for method in map(parse_ranges, methods):
            path = work / f"int8_{method}.tflite"
            path.write_bytes(quantize_calibrated(with_ranges(calibrated, method, samples), "float32"))
            predict, _ = make_predictor(name, scale, str(path))
            results["methods"][method] = {
                d: round(evaluate_dataset(predict, find_dataset(root / d, scale), scale).psnr_y, 3)
                for d in ("Set5", "Set14")}
            print(method, results["methods"][method], flush=True)
    return results


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=1))
