"""Issue 5 trial: whole-network strip tiling inside one TFLite graph.

The idea: at 720×480 every 12-channel float tensor of IMDN_RTC is 16.6 MB, so an op's input plus
output (33 MB) overflows this CPU's 32 MB L3 and every memory-bound op (slices, LeakyReLU, concat,
add) streams from DRAM. Cutting the image into N horizontal strips, each widened by a halo equal
to the network's receptive-field radius, runs the same network on strips whose tensors fit the
cache; cropping the halo off and concatenating gives exactly the whole-image result. The price is
the halo's extra computation. Writes ``<out>/strips<N>/model_fp32.tflite`` for ``sr-bench``:

    python benchmarks/strip_tiling_trial.py imdn_rtc 2 720 480 --strips 2 3 --out /tmp/tiling
    sr-bench ../shared/anchors/imdn_rtc_time.tflite <dcr export> /tmp/tiling/strips{2,3}/model_fp32.tflite \
        --threads 2 --runs 20 --json benchmarks/results/issue5_strip_tiling_trial.json

Not a product transform: it did not pay (see docs/RESULTS.md, issue 5).
"""
from __future__ import annotations

import argparse
import copy
from collections import Counter
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from srdeploy.export.formats import convert_onnx2tf, export_onnx
from srdeploy.export.rewrites import apply_rewrites
from srdeploy.models import create_model
from srdeploy.runtime import TFLiteRunner


def receptive_radius(net: nn.Module, scale: int, rows: int = 128, width: int = 48) -> int:
    """LR rows above a change that the output still sees: perturb the lower half of the input and
    find the first output row that moves."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, rows, width)
    x2 = x.clone()
    x2[:, :, rows // 2:] = torch.rand_like(x2[:, :, rows // 2:])
    with torch.no_grad():
        moved = (net(x) - net(x2)).abs().amax(dim=(0, 1, 3)) > 0
    return rows // 2 - int(moved.nonzero().min()) // scale


class StripTiled(nn.Module):
    """The network run on ``strips`` overlapping horizontal strips, halo cropped, results stacked."""

    def __init__(self, net: nn.Module, strips: int, halo: int, scale: int) -> None:
        super().__init__()
        # One copy per strip: the TorchScript exporter shares identical weights between the copies,
        # and the `dcr` rewrite leaves shared conv weights alone (see _unshare_pixel_shuffle_weights).
        self.nets = nn.ModuleList(copy.deepcopy(net) for _ in range(strips))
        self.halo, self.scale = halo, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, n = int(x.shape[2]), len(self.nets)
        edges = [round(i * h / n) for i in range(n + 1)]
        outs = []
        for net, a, b in zip(self.nets, edges[:-1], edges[1:]):
            a0, b0 = max(0, a - self.halo), min(h, b + self.halo)
            y = net(x[:, :, a0:b0])
            outs.append(y[:, :, (a - a0) * self.scale:(b - a0) * self.scale])
        return torch.cat(outs, 2)


def _unshare_pixel_shuffle_weights(onnx_path: Path) -> None:
    """Give each pixel-shuffle conv its own weight tensors, then apply the exporter's rewrites."""
    import onnx

    model = onnx.load(str(onnx_path))
    inits = {t.name: t for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    for k, node in enumerate(n for n in model.graph.node if n.op_type == "DepthToSpace"):
        conv = producers[node.input[0]]
        for j in (1, 2):
            t = onnx.TensorProto()
            t.CopyFrom(inits[conv.input[j]])
            t.name = f"{t.name}_strip{k}"
            model.graph.initializer.append(t)
            conv.input[j] = t.name
    apply_rewrites(model, ("split_mean", "dcr"))
    onnx.save(model, str(onnx_path))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("scale", type=int)
    p.add_argument("height", type=int)
    p.add_argument("width", type=int)
    p.add_argument("--strips", type=int, nargs="+", default=[2])
    p.add_argument("--out", required=True)
    a = p.parse_args()
    net = create_model(a.model, a.scale).eval()
    halo = receptive_radius(net, a.scale)
    x = torch.rand(1, 3, a.height, a.width)
    with torch.no_grad():
        ref = net(x).numpy().transpose(0, 2, 3, 1)
    report = {"model": a.model, "scale": a.scale, "size": [a.height, a.width], "halo": halo, "strips": {}}
    for n in a.strips:
        dest = Path(a.out) / f"strips{n}"
        tiled = StripTiled(net, n, halo, a.scale).eval()
        with torch.no_grad():
            torch_diff = float((tiled(x) - net(x)).abs().max())
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = Path(tmp) / "model.onnx"
            export_onnx(tiled, onnx_path, (a.height, a.width), rewrites=())
            _unshare_pixel_shuffle_weights(onnx_path)
            fp32 = convert_onnx2tf(onnx_path, Path(tmp) / "tf")["fp32"]
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(fp32, dest / "model_fp32.tflite")
        runner = TFLiteRunner(dest / "model_fp32.tflite", threads=2)
        out = runner(x.numpy().transpose(0, 2, 3, 1))
        ops = dict(Counter(d["op_name"] for d in runner.interpreter._get_ops_details()))
        rows = a.height + 2 * halo * (n - 1)
        report["strips"][n] = {"torch_max_diff_vs_whole": torch_diff,
                               "tflite_max_diff_vs_torch": float(np.abs(out - ref).max()),
                               "computed_rows_ratio": round(rows / a.height, 4), "ops": ops,
                               "path": str(dest / "model_fp32.tflite")}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
