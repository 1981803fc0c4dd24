"""sr-export: every model → ONNX + TFLite FP32/FP16 behind the parity gate, offline."""
from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest

from srdeploy.export import ExportConfig, Exporter
from srdeploy.imaging import psnr_y, read_rgb, to_uint8
from srdeploy.models import create_model, get_spec, list_models
from srdeploy.models.weights import sha256_file
from srdeploy.runtime import TFLiteRunner, TorchRunner

from srdeploy.benchmark.gpu_check import gpu_check

from .conftest import NetworkBlocked

ALL = [(n, s) for n in list_models() for s in get_spec(n).scales]


@pytest.mark.slow
@pytest.mark.parametrize("name,scale", ALL)
def test_every_model_exports_with_parity_offline(name, scale, tmp_path, weights_root, data_root, no_network):
    """Runs with every socket blocked: the export must not touch the network (onnx2tf's sample images)."""
    out = tmp_path / "out"
    cfg = ExportConfig(model=name, scale=scale, size="64x64", fp16=True, out=str(out),
                       random_weights=not get_spec(name).weights)
    manifest = Exporter(cfg, log=lambda m: None).run()
    assert manifest["status"] == "passed"
    files = {a["file"]: a for a in manifest["artifacts"]}
    assert set(files) == {"model.onnx", "model_fp32.tflite", "model_fp16.tflite"}
    for fname, art in files.items():
        path = out / fname
        assert art["bytes"] == path.stat().st_size and art["sha256"] == sha256_file(path)
        assert art["parity"]["status"] == "passed" and len(art["parity"]["checks"]) == 2
        if fname.endswith(".tflite"):  # GPU-delegate readiness is recorded per artifact
            assert art["gpu_check"]["passed"] and art["gpu_check"]["issues"] == []
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert sorted(p.name for p in out.iterdir()) == sorted([*files, "manifest.json"])  # nothing else left
    assert manifest["io"]["tflite"]["input_shape"] == [1, 64, 64, 3]
    assert manifest["io"]["tflite"]["output_shape"] == [1, 64 * scale, 64 * scale, 3]
    assert manifest["tools"]["onnx2tf"] != "not installed"
    runner = TFLiteRunner(out / "model_fp32.tflite")
    assert runner.input_shape == [1, 64, 64, 3] and runner.io_dtypes == ("float32", "float32")
    # phone-shaped graph: one DEPTH_TO_SPACE per pixel shuffle, no RESHAPE/TRANSPOSE, GPU-delegate clean
    assert manifest["graph_rewrites"]["dcr"] == 1
    for fname in ("model_fp32.tflite", "model_fp16.tflite"):
        census = _op_census(out / fname)
        assert census["DEPTH_TO_SPACE"] == 1 and census["RESHAPE"] == 0 and census["TRANSPOSE"] == 0, census
        report = gpu_check(out / fname)
        assert report.passed, report.issues


def test_onnx2tf_would_download_without_local_data(tmp_path, no_network):
    """Negative control: the network block is real, and bare onnx2tf does try to download."""
    import onnx2tf

    from srdeploy.export.formats import export_onnx

    export_onnx(create_model("imdn_rtc", pretrained=False), tmp_path / "m.onnx", (16, 16))
    with contextlib.chdir(tmp_path), pytest.raises((NetworkBlocked, SystemExit, Exception)) as exc:
        onnx2tf.convert(input_onnx_file_path=str(tmp_path / "m.onnx"), output_folder_path=str(tmp_path / "tf"),
                        non_verbose=True)
    chain, e = [], exc.value
    while e is not None:
        chain.append(e)
        e = e.__cause__ or e.__context__
    assert any(isinstance(c, NetworkBlocked) for c in chain), chain


@pytest.mark.slow
def test_imdn_rtc_fp32_tflite_butterfly_psnr(tmp_path, weights_root, data_root):
    """Whole Set5 butterfly LR (NHWC 1x128x128x3) through the FP32 TFLite: 33.94 dB like PyTorch."""
    Exporter(ExportConfig(model="imdn_rtc", size="128x128", out=str(tmp_path)), log=lambda m: None).run()
    lr = read_rgb(data_root / "Set5" / "LR_bicubic" / "X2" / "butterflyx2.bmp")
    hr = read_rgb(data_root / "Set5" / "HR" / "butterfly.bmp")
    x = (lr.astype(np.float32) / 255.0)[None]
    assert x.shape == (1, 128, 128, 3)
    tfl = psnr_y(to_uint8(TFLiteRunner(tmp_path / "model_fp32.tflite")(x)[0]), hr, 2)
    ref = psnr_y(to_uint8(TorchRunner(create_model("imdn_rtc"))(x)[0]), hr, 2)
    assert tfl == pytest.approx(33.94, abs=0.02)
    assert tfl == pytest.approx(ref, abs=0.005)


def _op_census(path) -> dict:
    from collections import Counter

    return Counter(d["op_name"] for d in TFLiteRunner(path).interpreter._get_ops_details())


@pytest.mark.slow
def test_fp16_rewrite_stores_weights_as_float16(tmp_path, weights_root):
    from srdeploy.export.fp16 import make_fp16

    Exporter(ExportConfig(model="imdn_rtc", size="32x32", out=str(tmp_path)), log=lambda m: None).run()
    fp32 = tmp_path / "model_fp32.tflite"
    report = make_fp16(fp32, tmp_path / "half.tflite")
    assert report.kept_fp32 == [] and report.weights_fp16 == report.weights_total == 19_899  # conv filters (params minus biases)
    census = _op_census(tmp_path / "half.tflite")
    assert census["DEQUANTIZE"] == 28 and census["CONV_2D"] == 28  # one per conv filter
    assert (tmp_path / "half.tflite").stat().st_size < 0.7 * fp32.stat().st_size
    # an unreachable target keeps everything in FP32: the selection really measures
    strict = make_fp16(fp32, tmp_path / "strict.tflite", target_db=200.0)
    assert strict.weights_fp16 == 0 and len(strict.kept_fp32) == 28
    x = np.random.default_rng(5).random((1, 32, 32, 3), dtype=np.float32)
    assert np.array_equal(TFLiteRunner(tmp_path / "strict.tflite")(x), TFLiteRunner(fp32)(x))
