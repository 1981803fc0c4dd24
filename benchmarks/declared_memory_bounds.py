"""Could sr-export refuse an export that its model-memory limit will refuse, before the minutes of ONNX
reference and onnx2tf conversion? Only if something known before conversion bounds the sum of run-time
tensors the FP32 TFLite declares (the quantity `runtime.check_model_memory` limits) from below.
For export folders (model.onnx + model_fp32.tflite), this compares that TFLite sum with two ONNX-side
figures from ONNX shape inference: the sum of every non-constant tensor, and the sum of the Conv outputs
plus the graph's input and output (each conv stays one CONV_2D whose output, or its fused activation's,
is a run-time tensor).

usage: python benchmarks/declared_memory_bounds.py OUT.json EXPORT_DIR...
(seconds; make the folders with e.g. `sr-export --model M --size 32x32 --no-parity --out DIR`)"""
import json
import sys
from pathlib import Path

import onnx

from srdeploy.runtime import onnx_tensor_sizes, tflite_tensor_bytes


def onnx_sums(path: Path) -> tuple[int, int]:
    model = onnx.load(str(path))
    sizes = onnx_tensor_sizes(model)  # what sr-export's check before conversion counts
    conv = {n.output[0] for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")}
    io = {vi.name for vi in list(model.graph.input) + list(model.graph.output)}
    return sum(sizes.values()), sum(sizes[x] for x in conv | io if x in sizes)


if len(sys.argv) < 3:
    sys.exit(__doc__.split("usage: ")[1].splitlines()[0])
rows = {}
for d in map(Path, sys.argv[2:]):
    every, conv_io = onnx_sums(d / "model.onnx")
    tfl, _ = tflite_tensor_bytes((d / "model_fp32.tflite").read_bytes())
    model = json.loads((d / "manifest.json").read_text()).get("model")
    rows[str(d)] = {"model": model, "tflite_mb": round(tfl / 2**20, 3), "onnx_all_mb": round(every / 2**20, 3),
                    "onnx_conv_io_mb": round(conv_io / 2**20, 3), "all_over_tflite": round(every / tfl, 3),
                    "conv_io_over_tflite": round(conv_io / tfl, 3)}
    r = rows[str(d)]
    print(f"{str(model):>14}  TFLite {r['tflite_mb']:9.2f} MB  ONNX all {r['all_over_tflite']:.3f}x  "
          f"ONNX conv+io {r['conv_io_over_tflite']:.3f}x", flush=True)
Path(sys.argv[1]).write_text(json.dumps(rows, indent=1) + "\n")
