"""Issue 18: a user's own model (ONNX file or nn.Module, any I/O convention) through the pipeline."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import srdeploy
from srdeploy.errors import SrDeployError
from srdeploy.export.cli import main as export_main
from srdeploy.sources.convention import IOConvention, from_source_np, to_source_np
from srdeploy.sources.onnx_file import OnnxSource


# ----------------------------------------------------------------------------- small models
class TinySR(nn.Module):
    """conv → LeakyReLU → conv → pixel shuffle, plus a bilinear skip: c channels in and out."""

    def __init__(self, c: int = 3, scale: int = 2, feat: int = 8, gain: float = 1.0) -> None:
        super().__init__()
        self.scale, self.gain = scale, gain
        self.a = nn.Conv2d(c, feat, 3, padding=1)
        self.b = nn.Conv2d(feat, c * scale * scale, 3, padding=1)
        self.ps = nn.PixelShuffle(scale)

    def forward(self, x):
        skip = F.interpolate(x, scale_factor=float(self.scale), mode="nearest")
        return skip + self.gain * self.ps(self.b(F.leaky_relu(self.a(x), 0.1)))


def save_onnx(module: nn.Module, path: Path, c: int = 3, dynamic: bool = True, size=(16, 16), **kw) -> Path:
    torch.onnx.export(module.eval(), (torch.rand(1, c, *size),), str(path), input_names=["x"], output_names=["y"],
                      opset_version=17, dynamo=False,
                      dynamic_axes={"x": {2: "h", 3: "w"}, "y": {2: "H", 3: "W"}} if dynamic else None, **kw)
    return path


def run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


# ----------------------------------------------------------------------------- the I/O conversion
CONVENTIONS = list(itertools.product((1, 255), ("rgb", "bgr", "y")))


@pytest.mark.parametrize("value_range,channels", CONVENTIONS)
@pytest.mark.parametrize("seed", [0, 1])
def test_in_graph_conversion_is_exact_for_random_conventions(tmp_path, value_range, channels, seed):
    """Property: for every convention, the written graph (conversion + source) equals the numpy
    reference (conversion written independently + onnxruntime on the untouched source), on random
    input, random weights and a random size."""
    rng = np.random.default_rng(seed)
    conv = IOConvention(value_range, channels)
    torch.manual_seed(seed)
    scale = int(rng.integers(2, 5))
    # a model "trained" in its convention: outputs of the range it expects
    src = save_onnx(TinySR(conv.n_channels, scale, gain=0.05 * value_range), tmp_path / "src.onnx", conv.n_channels)
    h, w = (int(v) for v in rng.integers(8, 24, 2))
    source = OnnxSource(src, scale, conv)
    assert source.check_size(f"{h}x{w}") == (h, w)
    out = tmp_path / "model.onnx"
    source.write_onnx(out, (h, w), ("dcr",))
    x = rng.random((1, h, w, 3), dtype=np.float32)
    graph = run_onnx(out, np.ascontiguousarray(x.transpose(0, 3, 1, 2))).transpose(0, 2, 3, 1)
    ref, _ = source.reference()
    expected = ref(x)
    assert graph.shape == expected.shape == (1, h * scale, w * scale, 3)
    assert np.abs(graph - expected).max() <= 2e-6 * max(1, np.abs(expected).max())
    # and the reference itself is the convention's definition: identity source → identity on the image's own terms
    rgb = x.transpose(0, 3, 1, 2).astype(np.float64)
    back = from_source_np(to_source_np(rgb, conv), rgb, conv, 1)
    if channels != "y":
        assert np.abs(back - rgb).max() < 1e-12
    else:  # Y only: luma kept, chroma from the input → the round trip is the identity too
        assert np.abs(back - rgb).max() < 1e-9


def test_module_source_and_onnx_source_agree(tmp_path):
    """The torch adapters (nn.Module path) and the ONNX merge (file path) are the same conversion."""
    torch.manual_seed(3)
    net = TinySR(1, 2, gain=0.05)
    src = save_onnx(net, tmp_path / "y.onnx", 1)
    a = tmp_path / "a"
    b = tmp_path / "b"
    ma = srdeploy.export(net, scale=2, size=(24, 20), channels="y", out=str(a), log=lambda m: None)
    mb = srdeploy.export(src, scale=2, size="24x20", channels="y", out=str(b), log=lambda m: None)
    assert ma["status"] == mb["status"] == "passed"
    x = np.random.default_rng(0).random((1, 3, 24, 20), dtype=np.float32)
    ya, yb = run_onnx(a / "model.onnx", x), run_onnx(b / "model.onnx", x)
    assert np.abs(ya - yb).max() < 1e-5
    assert ma["source"]["kind"] == "module" and mb["source"]["kind"] == "onnx"
    assert mb["source"]["added_to_graph"] and mb["source"]["convention"]["channels"] == "y"
    assert mb["io"]["tflite"]["input_shape"] == [1, 24, 20, 3]  # the artifact speaks RGB


# ----------------------------------------------------------------------------- fusion
class TrainingForm(nn.Module):
    """RepVGG/ECB-style training form: parallel 3×3 + 1×1 + identity branches, each with a BatchNorm."""

    def __init__(self, c: int = 8, scale: int = 2, blocks: int = 2) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.b3 = nn.ModuleList(nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
                                for _ in range(blocks))
        self.b1 = nn.ModuleList(nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c)) for _ in range(blocks))
        self.bid = nn.ModuleList(nn.BatchNorm2d(c) for _ in range(blocks))
        self.plain3 = nn.Conv2d(c, c, 3, padding=1)
        self.plain1 = nn.Conv2d(c, c, 1)
        self.tail = nn.Conv2d(c, 3 * scale * scale, 3, padding=1)
        self.ps = nn.PixelShuffle(scale)

    def forward(self, x):
        f = self.head(x)
        for b3, b1, bid in zip(self.b3, self.b1, self.bid):
            f = F.relu(b3(f) + b1(f) + bid(f))
        f = self.plain3(f) + self.plain1(f) + f  # without BatchNorm
        return self.ps(self.tail(f))


def _randomize_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)


def test_training_form_exports_fused_and_exact(tmp_path):
    torch.manual_seed(0)
    net = TrainingForm()
    _randomize_bn(net)
    net.eval()
    m = srdeploy.export(net, scale=2, size=(64, 64), fuse=True, out=str(tmp_path / "e"), log=lambda m: None)
    assert m["status"] == "passed"
    assert m["source"]["fused_branches"] > 0
    graph = onnx.load(str(tmp_path / "e" / "model.onnx")).graph
    ops = [n.op_type for n in graph.node]
    assert "BatchNormalization" not in ops
    assert ops.count("Conv") == 2 + 2 + 1  # head, two fused blocks, the fused plain sum, tail
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        want = net(x).numpy()
    got = run_onnx(tmp_path / "e" / "model.onnx", x.numpy())
    assert np.abs(got - want).max() <= 1e-5
    from srdeploy.runtime import TFLiteRunner

    tfl = TFLiteRunner(tmp_path / "e" / "model_fp32.tflite")(x.numpy().transpose(0, 2, 3, 1))
    assert np.abs(tfl.transpose(0, 3, 1, 2) - want).max() <= 1e-5


def test_fusion_leaves_what_it_cannot_fuse():
    """A dilated 3×3 beside a 1×1, a reflect-padded conv, a BatchNorm in training mode: left as they are."""
    from srdeploy.models.fuse import fuse_branches

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(4, 4, 3, padding=2, dilation=2)
            self.b = nn.Conv2d(4, 4, 1)
            self.c = nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")
            self.d = nn.Conv2d(4, 4, 1)

        def forward(self, x):
            return self.a(x) + self.b(x), self.c(x) + self.d(x)

    net = Odd().eval()
    fused, n = fuse_branches(net)
    assert n == 0
    x = torch.rand(1, 4, 9, 9)
    for u, v in zip(net(x), fused(x)):
        assert torch.equal(u, v)


def test_strided_branches_fuse_exactly():
    """3×3 stride 2 (pad 1) + 1×1 stride 2 share their centre taps: one conv, exact."""
    from srdeploy.models.fuse import fuse_branches

    class Down(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(4, 6, 3, 2, 1), nn.Conv2d(4, 6, 1, 2)

        def forward(self, x):
            return self.a(x) + self.b(x)

    net = Down().eval()
    fused, n = fuse_branches(net)
    assert n == 1
    x = torch.rand(1, 4, 11, 10)
    assert torch.allclose(net(x), fused(x), atol=1e-6)


# ----------------------------------------------------------------------------- refusals
def _refused(capsys, argv: list[str], out: Path, needle: str) -> None:
    from srdeploy.cli_util import run_cli

    rc = run_cli("sr-export", export_main, argv + ["--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if not ln.startswith("[")]  # (progress lines: "[1/2] ONNX ...")
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("sr-export: error:"), err
    assert "Traceback" not in err and "\x1b[" not in err
    assert not out.exists()


class TwoInputs(nn.Module):
    def forward(self, x, y):
        return F.interpolate(x + y, scale_factor=2.0)


def test_refuses_more_than_one_input(tmp_path, capsys):
    p = tmp_path / "two.onnx"
    torch.onnx.export(TwoInputs(), (torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)), str(p), opset_version=17,
                      dynamo=False, input_names=["a", "b"])
    _refused(capsys, ["--onnx", str(p), "--scale", "2", "--size", "8x8"], tmp_path / "o", "has 2 inputs")


def test_refuses_non_4d_input(tmp_path, capsys):
    class Flat(nn.Module):
        def forward(self, x):
            return x.repeat(1, 4)

    p = tmp_path / "flat.onnx"
    torch.onnx.export(Flat(), (torch.rand(1, 48),), str(p), opset_version=17, dynamo=False)
    _refused(capsys, ["--onnx", str(p), "--scale", "2", "--size", "8x8"], tmp_path / "o", "expected a 4-D NCHW")


def test_refuses_channels_that_do_not_match(tmp_path, capsys):
    p = save_onnx(TinySR(1, 2), tmp_path / "y.onnx", 1)
    _refused(capsys, ["--onnx", str(p), "--scale", "2", "--size", "16x16"], tmp_path / "o",
             "has 1 channels, but --channels rgb means 3")
    p3 = save_onnx(TinySR(3, 2), tmp_path / "rgb.onnx", 3)
    _refused(capsys, ["--onnx", str(p3), "--scale", "2", "--size", "16x16", "--channels", "y"], tmp_path / "o",
             "has 3 channels, but --channels y means 1")


def test_refuses_a_scale_the_output_contradicts(tmp_path, capsys):
    p = save_onnx(TinySR(3, 3), tmp_path / "x3.onnx")
    _refused(capsys, ["--onnx", str(p), "--scale", "2", "--size", "16x16"], tmp_path / "o",
             "gives a 48x48 output (x3), which contradicts --scale 2")


def test_refuses_a_file_that_is_not_onnx(tmp_path, capsys):
    p = tmp_path / "model.onnx"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    _refused(capsys, ["--onnx", str(p), "--scale", "2", "--size", "16x16"], tmp_path / "o", "is not an ONNX model")
    p.write_text("just some text\n")
    _refused(capsys, ["--onnx", str(p), "--scale", "2", "--size", "16x16"], tmp_path / "o", "is not an ONNX model")


def test_refuses_dynamic_size_without_size_and_a_contradicting_size(tmp_path, capsys):
    dyn = save_onnx(TinySR(), tmp_path / "dyn.onnx")
    _refused(capsys, ["--onnx", str(dyn), "--scale", "2"], tmp_path / "o", "dynamic input size: pass --size")
    fixed = save_onnx(TinySR(), tmp_path / "fixed.onnx", dynamic=False, size=(16, 24))
    _refused(capsys, ["--onnx", str(fixed), "--scale", "2", "--size", "32x32"], tmp_path / "o",
             "fixed 16x24 input; --size 32x32 contradicts it")
    _refused(capsys, ["--onnx", str(fixed)], tmp_path / "o", "--onnx needs --scale")


def test_refuses_an_op_the_converter_cannot_convert(tmp_path, capsys):
    """com.microsoft QuickGelu runs in onnxruntime (the reference) but onnx2tf has no conversion."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((12, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("QuickGelu", ["c"], ["g"], domain="com.microsoft", alpha=1.702),
             helper.make_node("DepthToSpace", ["g"], ["y"], blocksize=2, mode="CRD")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 32, 32])], [w])
    model = helper.make_model(graph, ir_version=8,
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    p = tmp_path / "qg.onnx"
    onnx.save(model, str(p))
    _refused(capsys, ["--onnx", str(p), "--scale", "2"], tmp_path / "o",
             "onnx2tf has no conversion for the ONNX op QuickGelu")


def test_refuses_registry_flags_mixed_with_onnx(tmp_path, capsys):
    p = save_onnx(TinySR(), tmp_path / "m.onnx")
    _refused(capsys, ["--onnx", str(p), "--model", "imdn_rtc", "--scale", "2", "--size", "16x16"], tmp_path / "o",
             "--onnx and --model exclude each other")
    _refused(capsys, ["--model", "imdn_rtc", "--channels", "y"], tmp_path / "o", "describe an --onnx model")
    _refused(capsys, ["--onnx", str(p), "--scale", "2", "--size", "16x16", "--name", "../up"], tmp_path / "o",
             "--name must be")


def test_external_data_is_refused(tmp_path):
    p = tmp_path / "ext.onnx"
    m = onnx.load(str(save_onnx(TinySR(), tmp_path / "m.onnx")))
    onnx.save(m, str(p), save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
              size_threshold=0)
    with pytest.raises(SrDeployError, match="external data"):
        OnnxSource(p, 2)


# ----------------------------------------------------------------------------- the foreign models
FOREIGN = {"rfdn_x4": (4, 255, "rgb"), "fsrcnn_y_x2": (2, 1, "y"), "bsrn_x4": (4, 1, "rgb")}


@pytest.mark.parametrize("name", ["rfdn_x4", "fsrcnn_y_x2",
                                  pytest.param("bsrn_x4", marks=pytest.mark.slow)])  # bsrn: 652 ops, ~2 min
def test_foreign_models_export_and_pass_parity(foreign_root, tmp_path, name, no_network):
    scale, vr, ch = FOREIGN[name]
    out = tmp_path / name
    argv = ["--onnx", str(foreign_root / f"{name}.onnx"), "--scale", str(scale), "--value-range", str(vr),
            "--channels", ch, "--size", "64x64", "--fp16", "--out", str(out), "--json"]
    assert export_main(argv) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "passed" and m["model"] == name
    assert {a["file"] for a in m["artifacts"]} == {"model.onnx", "model_fp32.tflite", "model_fp16.tflite"}
    assert all(a["parity"]["status"] == "passed" for a in m["artifacts"])
    assert m["source"]["convention"] == {"value_range": vr, "channels": ch, "layout": "NCHW", "dtype": "float32"}
    assert m["source"]["sha256"] == json.loads((foreign_root / f"{name}.json").read_text())["onnx"]["sha256"]


def test_upscale_artifact_of_rfdn_matches_the_source_onnx_in_its_own_convention(foreign_root, tmp_path):
    """sr-upscale --artifact on the exported RFDN = the source ONNX run as its authors run it (0..255)."""
    from srdeploy.imaging import read_rgb, write_image
    from srdeploy.upscale import main as upscale_main

    out = tmp_path / "rfdn"
    src = foreign_root / "rfdn_x4.onnx"
    assert export_main(["--onnx", str(src), "--scale", "4", "--value-range", "255", "--size", "48x40",
                        "--out", str(out)]) == 0
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(128, 40, (48, 40, 3)), 0, 255).astype(np.uint8)  # one tile: no seams to compare
    write_image(tmp_path / "lr.png", img)
    assert upscale_main([str(tmp_path / "lr.png"), "--artifact", str(out / "model_fp32.tflite"),
                         "--out", str(tmp_path / "sr.png")]) == 0
    ours = read_rgb(tmp_path / "sr.png").astype(np.int32)
    theirs = run_onnx(src, img.astype(np.float32).transpose(2, 0, 1)[None].copy())[0]  # "x = rgb_uint8 (NO /255)"
    theirs = np.round(np.clip(theirs, 0, 255)).astype(np.int32).transpose(1, 2, 0)
    assert ours.shape == theirs.shape == (192, 160, 3)
    assert np.abs(ours - theirs).max() <= 1


def test_onnx_source_through_int8_qat_uint8_bench_and_bundle(data_root, tmp_path):
    """Every downstream stage on a user's ONNX (0..255, BGR): INT8 with QAT (which rebuilds the
    calibrated TFLite graph, so it applies to any source), uint8 I/O, --bench, --bundle, --quality."""
    import shutil

    torch.manual_seed(0)
    src = save_onnx(TinySR(3, 2, gain=10.0), tmp_path / "bgr255.onnx")
    app = tmp_path / "app"
    (app / "app").mkdir(parents=True)
    shutil.copy(Path(__file__).resolve().parents[1] / "android_demo" / "app" / "build.gradle.kts",
                app / "app" / "build.gradle.kts")
    out = tmp_path / "e"
    argv = ["--onnx", str(src), "--scale", "2", "--value-range", "255", "--channels", "bgr", "--size", "64x64",
            "--fp16", "--int8", "--calib", str(data_root / "div2k" / "HR"), "--calib-samples", "4",
            "--qat-steps", "3", "--io", "uint8", "--bench", "--bench-runs", "1", "--bundle", str(app),
            "--out", str(out), "--json"]
    assert export_main(argv) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "passed" and m["model"] == "bgr255"
    int8 = next(a for a in m["artifacts"] if a["precision"] == "int8")
    assert int8["quantization"]["qat"]["steps"] == 3
    assert m["io"]["dtype"] == "uint8"
    assert {r["model"] for r in m["bench"]["results"]} == {"model_fp32.tflite", "model_fp16.tflite", "model_int8.tflite"}
    assert all(r.get("median_ms") for r in m["bench"]["results"])
    q = m["quality"]["Set5"]
    assert set(q) == {"source_onnx", "fp32_tflite", "fp16_tflite", "int8_tflite"}
    assert abs(q["fp32_tflite"]["psnr_y"] - q["source_onnx"]["psnr_y"]) < 0.01
    bundled = json.loads((app / "app" / "src" / "main" / "assets" / "srdeploy" / "manifest.json").read_text())
    assert bundled["model_source"]["convention"]["channels"] == "bgr"
    assert str(tmp_path) not in json.dumps(bundled)  # no developer path in the app
