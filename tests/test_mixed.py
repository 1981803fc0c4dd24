"""Mixed precision for NPU targets (``--act mixed``): int16 on the costliest activation tensors, int8
elsewhere, chosen on calibration crops; built with ai-edge-quantizer from srdeploy's own ranges."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from srdeploy.errors import SrDeployError
from srdeploy.export import ExportConfig, Exporter
from srdeploy.export.formats import convert_onnx2tf, export_onnx
from srdeploy.models import create_model
from srdeploy.quantize.calibration import calibration_frames
from srdeploy.quantize.mixed import sensitivity, to_mixed
from srdeploy.quantize.ranges import calibrate, quantize_calibrated
from srdeploy.runtime import TFLiteRunner

from .conftest import need_target


@pytest.fixture(scope="module")
def ptq(tmp_path_factory, weights_root, data_root):
    """imdn_rtc x2 at 64x64: its calibrated float graph (min/max of 4 DIV2K crops) and the LR images."""
    d = tmp_path_factory.mktemp("mixed")
    export_onnx(create_model("imdn_rtc"), d / "model.onnx", (64, 64))
    convert_onnx2tf(d / "model.onnx", d / "tf")
    cal = calibration_frames(data_root / "div2k" / "HR", 2, (64, 64), 4)
    held = calibration_frames(data_root / "div2k" / "HR", 2, (64, 64), 6, seed=9).frames
    return calibrate(d / "tf" / "saved_model", cal.frames), cal.images, held


def _fidelity(blob: bytes, reference: bytes, frames: np.ndarray) -> float:
    a, b = TFLiteRunner(model_content=blob), TFLiteRunner(model_content=reference)
    mse = np.mean([np.mean((a(f[None]) - b(f[None])) ** 2) for f in frames])
    return float(10 * np.log10(1 / mse))


def _activation_types(blob: bytes) -> dict[str, str]:
    r = TFLiteRunner(model_content=blob)
    return {d["name"]: np.dtype(d["dtype"]).name for d in r.interpreter.get_tensor_details()}


@pytest.mark.slow
def test_widening_the_costliest_tensors_moves_int8_toward_float(ptq):
    calibrated, images, held = ptq
    scored = sensitivity(calibrated, images, crops=4)
    (blank, base), ranked = scored[0], scored[1:]
    assert blank == "" and len(ranked) > 20 and [db for _, db in ranked] == sorted((db for _, db in ranked), reverse=True)
    assert ranked[0][1] > base  # releasing the costliest tensor helps in the simulation
    # only tensors to_mixed can make int16 are ranked: never a LeakyReLU's output (ai-edge-quantizer keeps the op
    # in float, so "int16" there would be a name in the report and float32 in the file) nor the graph input
    names = [n for n, _ in ranked]
    assert not any(n.endswith("LeakyRelu") for n in names)
    every = _activation_types(to_mixed(calibrated, names))
    assert [n for n in names if every.get(n) != "int16"] == []  # each ranked tensor can really be widened
    wide = [n for n, _ in ranked[:8]]
    plain, mixed = to_mixed(calibrated, []), to_mixed(calibrated, wide)
    # with no tensor widened, ai-edge-quantizer's int8 model of srdeploy's ranges is as close to float as the
    # converter's (not identical: it gives a concat's inputs their own scales)
    converter_int8 = quantize_calibrated(calibrated, "float32")
    assert abs(_fidelity(plain, calibrated, held) - _fidelity(converter_int8, calibrated, held)) < 1.0
    types = _activation_types(mixed)
    assert all(types[n] == "int16" for n in wide)
    assert sum(t == "int16" for t in types.values()) < len(ranked) / 2  # the rest stays int8
    assert "int16" not in _activation_types(plain).values()
    assert TFLiteRunner(model_content=mixed).io_dtypes == ("float32", "float32")
    # on crops the ranking never saw, the widened model is closer to float than all-int8
    assert _fidelity(mixed, calibrated, held) > _fidelity(plain, calibrated, held) + 0.3


def test_missing_quantizer_is_one_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ai_edge_quantizer", None)
    with pytest.raises(SrDeployError, match=re.escape("pip install 'srdeploy[npu]'")):
        to_mixed(b"", [])


@pytest.fixture(scope="module")
def mixed_export(tmp_path_factory, weights_root, data_root):
    d = tmp_path_factory.mktemp("mixed_export") / "e"
    Exporter(ExportConfig(model="imdn_rtc", size="64x64", int8=True, calib=str(data_root / "div2k" / "HR"),
                          calib_samples=4, act="mixed", int16_tensors=6, out=str(d)), log=lambda m: None).run()
    return d


@pytest.mark.slow
def test_mixed_export_uses_the_shipped_ranges_and_says_what_it_widened(mixed_export):
    m = json.loads((mixed_export / "manifest.json").read_text())
    art = {a["file"]: a for a in m["artifacts"]}["model_int8.tflite"]
    q = art["quantization"]
    assert art["parity"]["status"] == "passed" and q["activations"] == "mixed"
    assert q["int8_params_choice"].startswith("shipped imdn_rtc_x2_int8.npz")
    mx = q["mixed"]
    assert len(mx["int16_tensors"]) == mx["int16_requested"] == 6 and mx["activation_tensor_types"]["INT16"] >= 6
    types = _activation_types((mixed_export / "model_int8.tflite").read_bytes())
    assert all(types[n] == "int16" for n in mx["int16_tensors"])
    # the quality report measures the mixed file like any INT8 one (positive drop, within QAT's reach)
    for ds in m["quality"].values():
        assert 0 < ds["int8_tflite"]["drop_db"] < 1.0


@pytest.mark.slow
def test_mixed_export_runs_whole_on_the_npu_simulator(mixed_export, tmp_path):
    """The LeakyReLUs and the pixel shuffle stay float in the mixed file: the HTP still takes every op."""
    need_target("qualcomm:SM8650", "sr-target setup qualcomm")
    from srdeploy.targets import parse_target
    from srdeploy.targets.check import check_export

    res = check_export(mixed_export, [parse_target("qualcomm:SM8650")], ["model_int8.tflite"], log=lambda m: None)
    r = res["qualcomm:SM8650"]["model_int8.tflite"]
    assert r["ops_offloaded"] == r["ops_total"] > 10 and r["partitions"] == 1 and r["left_on_cpu"] == []
    s5 = r["simulator"]["set5"]
    assert abs(s5["psnr_y_target"] - s5["psnr_y_host"]) < 0.05, s5


@pytest.mark.slow
def test_a_users_own_onnx_model_exports_mixed(foreign_root, data_root, tmp_path):
    """No shipped ranges: post-training ranges, then the same ranking. RFDN's graph gets scalar constants
    from ai-edge-quantizer (no shape), which the GPU-compatibility check once could not read."""
    out = tmp_path / "rfdn"
    m = Exporter(ExportConfig(onnx=str(foreign_root / "rfdn_x4.onnx"), scale=4, value_range=255, size="64x64",
                              int8=True, calib=str(data_root / "div2k" / "HR"), calib_samples=4, act="mixed",
                              int16_tensors=4, out=str(out)), log=lambda msg: None).run()
    art = {a["file"]: a for a in m["artifacts"]}["model_int8.tflite"]
    assert art["parity"]["status"] == "passed" and art["gpu_check"]["ops"] > 0
    mx = art["quantization"]["mixed"]
    assert len(mx["int16_tensors"]) == 4 and art["quantization"]["int8_params_choice"].startswith("no shipped")
    types = _activation_types((out / "model_int8.tflite").read_bytes())
    assert all(types[n] == "int16" for n in mx["int16_tensors"])
