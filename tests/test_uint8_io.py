"""--io uint8: every artifact takes and returns bitmap bytes; FP32 within 1 grey level of PyTorch."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from srdeploy.benchmark.gpu_check import gpu_check
from srdeploy.export.exporter import ExportConfig, Exporter
from srdeploy.export.parity import ParityInput, check_parity
from srdeploy.runtime import OnnxRunner, TFLiteRunner


@pytest.fixture(scope="module")
def uint8_export(tmp_path_factory, weights_root):
    out = tmp_path_factory.mktemp("u8")
    manifest = Exporter(ExportConfig(model="imdn_rtc", size="64x64", fp16=True, io="uint8", out=str(out)),
                        log=lambda m: None).run()
    return out, manifest


@pytest.mark.slow
def test_every_artifact_has_uint8_io_and_passes_parity(uint8_export):
    out, manifest = uint8_export
    assert manifest["status"] == "passed" and manifest["io"]["dtype"] == "uint8"
    assert manifest["io"]["value_range"] == [0, 255]
    assert json.loads((out / "manifest.json").read_text())["io"]["dtype"] == "uint8"
    onnx = OnnxRunner(out / "model.onnx")
    assert onnx.input.type == "tensor(uint8)" and onnx.session.get_outputs()[0].type == "tensor(uint8)"
    for name in ("model_fp32.tflite", "model_fp16.tflite"):
        assert TFLiteRunner(out / name).io_dtypes == ("uint8", "uint8")
    by_file = {a["file"]: a["parity"] for a in manifest["artifacts"]}
    for name in ("model.onnx", "model_fp32.tflite"):
        assert by_file[name]["metric"] == "max_grey" and by_file[name]["bound"] == 1.0
        assert all(c["passed"] and c["max_abs"] <= 1 for c in by_file[name]["checks"])
    assert by_file["model_fp16.tflite"]["status"] == "passed"


@pytest.mark.slow
def test_uint8_graphs_stay_phone_shaped(uint8_export):
    out, _ = uint8_export
    for name in ("model_fp32.tflite", "model_fp16.tflite"):
        ops = Counter(d["op_name"] for d in TFLiteRunner(out / name).interpreter._get_ops_details())
        assert ops["DEPTH_TO_SPACE"] == 1 and ops["TRANSPOSE"] == 0 and ops["RESHAPE"] == 0
        assert ops["CAST"] == 2  # bytes in, bytes out: normalisation and rounding inside the graph
        assert gpu_check(out / name).passed


@pytest.mark.slow
def test_uint8_bytes_round_trip_a_real_image(uint8_export, data_root):
    """Feed raw bytes as an Android app would; compare with PyTorch rounded to uint8."""
    import torch

    from srdeploy.imaging import read_rgb
    from srdeploy.models import create_model

    out, _ = uint8_export
    lr = read_rgb(data_root / "Set5" / "LR_bicubic" / "X2" / "babyx2.bmp")[:64, :64][None]
    r = TFLiteRunner(out / "model_fp32.tflite")
    r.interpreter.set_tensor(r.input["index"], np.ascontiguousarray(lr))
    r.interpreter.invoke()
    got = r.interpreter.get_tensor(r.output["index"])
    with torch.no_grad():
        ref = create_model("imdn_rtc")(torch.from_numpy(lr).permute(0, 3, 1, 2).float() / 255)
    ref = np.clip(np.round(ref.permute(0, 2, 3, 1).numpy() * 255), 0, 255)
    assert got.dtype == np.uint8 and np.abs(got.astype(int) - ref).max() <= 1


def test_grey_level_gate_can_fail():
    x = np.zeros((1, 4, 4, 3), np.float32)
    ref = np.full((1, 8, 8, 3), 0.5, np.float32)
    item = ParityInput("flat", x, ref)
    ok = check_parity("m", "fp32_uint8", lambda _: np.round(ref * 255 + 1) / 255, [item])
    bad = check_parity("m", "fp32_uint8", lambda _: np.round(ref * 255 + 2) / 255, [item])
    assert ok.passed and not bad.passed and bad.checks[0]["max_abs"] == 2
