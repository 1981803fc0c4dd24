"""INT8 export: full integer, I/O as asked, quality within a bound that broken calibration fails."""
from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
import pytest

from srdeploy.benchmark.evaluate import make_predictor
from srdeploy.errors import SrDeployError
from srdeploy.export import ExportConfig, Exporter
from srdeploy.export.formats import convert_onnx2tf, export_onnx
from srdeploy.imaging import psnr_y, read_rgb, to_uint8
from srdeploy.models import create_model
from srdeploy.quantize.calibration import calibration_frames
from srdeploy.quantize.int8 import convert_int8
from srdeploy.quantize.ranges import (activation_samples, calibrate, parse_ranges, quantize_calibrated,
                                      select_ranges, with_ranges)
from srdeploy.runtime import TFLiteRunner

from .conftest import run_cli

# PTQ of IMDN_RTC costs ~3 dB on Set5 (MEASUREMENTS.md: 34.04 vs 37.31); calibrating on black
# frames or ImageNet-normalised frames costs far more. The bound sits between the two.
MAX_DROP_DB = 6.0
SIZE = (64, 64)


def _butterfly_psnr(data_root, artifact=None) -> float:
    predict, _ = make_predictor("imdn_rtc", 2, str(artifact) if artifact else None)
    lr = read_rgb(data_root / "Set5" / "LR_bicubic" / "X2" / "butterflyx2.bmp")
    hr = read_rgb(data_root / "Set5" / "HR" / "butterfly.bmp")
    return psnr_y(to_uint8(predict(lr)), hr, 2)


def _tensor_types(path) -> tuple[Counter, set]:
    r = TFLiteRunner(path)
    details = r.interpreter.get_tensor_details()
    ops = Counter(d["op_name"] for d in r.interpreter._get_ops_details())
    return ops, {np.dtype(d["dtype"]).name for d in details}


@pytest.fixture(scope="module")
def int8_exports(tmp_path_factory, weights_root, data_root):
    out = {}
    for io in ("float32", "uint8", "int8"):
        d = tmp_path_factory.mktemp(f"int8_{io}")
        # float32 I/O: post-training ranges + 20 QAT steps; the others: the shipped INT8 parameters (default)
        qat = 20 if io == "float32" else 0
        Exporter(ExportConfig(model="imdn_rtc", size="64x64", int8=True, calib=str(data_root / "div2k" / "HR"),
                              calib_samples=4, io=io, out=str(d), qat_steps=qat,
                              int8_params="none" if qat else "auto"),
                 log=lambda m: None).run()
        out[io] = d
    return out


@pytest.mark.slow
@pytest.mark.parametrize("io", ["float32", "uint8", "int8"])
def test_int8_is_full_integer_with_requested_io(int8_exports, io, data_root):
    path = int8_exports[io] / "model_int8.tflite"
    runner = TFLiteRunner(path)
    assert runner.io_dtypes == (io, io)
    ops, types = _tensor_types(path)
    import json

    m = json.loads((int8_exports[io] / "manifest.json").read_text())
    done = {a["file"]: a for a in m["artifacts"]}["model_int8.tflite"]["quantization"]["graph_rewrites"]
    # 28 convs and 30 channel slices in imdn_rtc's graph; the INT8 graph's own rewrites (the shipped file's)
    # fold slices into zero-padded weights (slice_conv) or turn them into 0/1 1x1 convs (slice_select)
    assert ops["CONV_2D"] == 28 + done.get("slice_select", 0) and ops["DEPTH_TO_SPACE"] == 1
    assert ops.get("STRIDED_SLICE", 0) == 30 - done.get("slice_conv", 0) - done.get("slice_select", 0)
    # no float compute: float tensors exist only at float32 I/O, behind QUANTIZE/DEQUANTIZE
    assert "float32" not in types - ({"float32"} if io == "float32" else set())
    assert set(ops) <= {"CONV_2D", "LEAKY_RELU", "STRIDED_SLICE", "CONCATENATION", "ADD", "DEPTH_TO_SPACE",
                        "QUANTIZE", "DEQUANTIZE", "DELEGATE"}
    if io == "uint8":  # bytes are pixels: scale 1/255, zero point 0 on both ends
        assert runner.input["quantization"] == pytest.approx((1 / 255, 0))
        assert runner.output["quantization"] == pytest.approx((1 / 255, 0))
    if io == "int8":  # the image tensors on the pixel grid, as the manifest says (level q = byte q+128)
        assert runner.input["quantization"] == pytest.approx((1 / 255, -128))
        assert runner.output["quantization"] == pytest.approx((1 / 255, -128))
    quantization = {a["file"]: a for a in m["artifacts"]}["model_int8.tflite"]["quantization"]
    grid = quantization["pixel_grid"]
    assert grid["tensors"] == ["input", "output"] and grid["zero_point"] == -128
    # post-training + QAT (float32 here) equalizes c1..c4 of the five blocks by default; a parameter file
    # brings its own weights, so the others do not
    assert quantization.get("equalization", {}).get("tensors") == (20 if io == "float32" else None)
    fp32 = _butterfly_psnr(data_root)
    drop = fp32 - _butterfly_psnr(data_root, path)
    assert 0 <= drop <= MAX_DROP_DB, drop


@pytest.mark.slow
def test_quality_report_in_manifest(int8_exports):
    import json

    m = json.loads((int8_exports["float32"] / "manifest.json").read_text())
    q = m["quality"]
    assert set(q) == {"Set5", "Set14"}
    for ds in q.values():
        assert set(ds) == {"pytorch_fp32", "fp32_tflite", "int8_tflite"}
        assert abs(ds["fp32_tflite"]["drop_db"]) < 0.01 and ds["int8_tflite"]["drop_db"] > 0
    art = {a["file"]: a for a in m["artifacts"]}["model_int8.tflite"]
    assert art["quantization"]["calibration"]["frames"] == 4 and art["parity"]["status"] == "passed"
    qat = art["quantization"]["qat"]  # this export asked for 20 QAT steps: how they went is recorded
    assert qat["steps"] == 20 and qat["kept"] == (qat["fidelity_db_after"] > qat["fidelity_db_before"])


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, weights_root):
    d = tmp_path_factory.mktemp("sm")
    export_onnx(create_model("imdn_rtc"), d / "model.onnx", SIZE)
    convert_onnx2tf(d / "model.onnx", d / "tf")
    return d / "tf" / "saved_model"


@pytest.mark.slow
@pytest.mark.parametrize("broken", ["black", "imagenet_normalised"])
def test_broken_calibration_fails_the_bound(saved_model, broken, data_root, tmp_path):
    frames = calibration_frames(data_root / "div2k" / "HR", 2, SIZE, 4).frames
    if broken == "black":
        frames = np.zeros_like(frames)
    else:  # onnx2tf's default: (x - ImageNet mean) / ImageNet std
        frames = (frames - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    path = tmp_path / "bad.tflite"
    path.write_bytes(convert_int8(saved_model, frames)[0])
    drop = _butterfly_psnr(data_root) - _butterfly_psnr(data_root, path)
    assert drop > MAX_DROP_DB, drop


@pytest.fixture(scope="module")
def calibrated(saved_model, data_root):
    frames = calibration_frames(data_root / "div2k" / "HR", 2, SIZE, 8).frames
    return calibrate(saved_model, frames), frames


def _act_ranges(blob) -> dict[int, tuple[float, float]]:
    from ai_edge_litert.tools import flatbuffer_utils as fu

    tensors = fu.convert_bytearray_to_object(bytearray(blob)).subgraphs[0].tensors
    return {i: (t.quantization.min[0], t.quantization.max[0]) for i, t in enumerate(tensors)
            if t.quantization is not None and t.quantization.min is not None and len(t.quantization.min) == 1}


@pytest.mark.slow
def test_two_step_minmax_is_the_converters_quantization(saved_model, calibrated):
    """calibrate-only + mlir_quantize computes exactly what converter.convert() computes."""
    import tensorflow as tf

    blob, frames = calibrated
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([f[None]] for f in frames)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    one_step, two_step = TFLiteRunner(model_content=conv.convert()), TFLiteRunner(
        model_content=quantize_calibrated(with_ranges(blob, "minmax", None), "float32", pixel_grid=False))
    x = np.random.default_rng(1).random((1, *SIZE, 3), dtype=np.float32)
    assert np.array_equal(one_step(x), two_step(x))


def _scales(blob) -> dict[int, tuple[float, int]]:
    from ai_edge_litert.tools import flatbuffer_utils as fu

    tensors = fu.convert_bytearray_to_object(bytearray(blob)).subgraphs[0].tensors
    return {i: (float(t.quantization.scale[0]), int(t.quantization.zeroPoint[0])) for i, t in enumerate(tensors)
            if t.quantization is not None and t.quantization.scale is not None and len(t.quantization.scale) == 1}


@pytest.mark.slow
def test_int8_output_is_on_the_pixel_grid(calibrated):
    """The output side gets scale 1/255, zero point -128 (level q = byte q+128); nothing else moves."""
    blob, frames = calibrated
    on, off = (quantize_calibrated(blob, "float32", pixel_grid=g) for g in (True, False))
    x = frames[:2]
    y_on = np.concatenate([TFLiteRunner(model_content=on)(f[None]) for f in x]).astype(np.float64) * 255.0
    y_off = np.concatenate([TFLiteRunner(model_content=off)(f[None]) for f in x]).astype(np.float64) * 255.0
    assert np.abs(y_on - np.round(y_on)).max() < 1e-3 and y_on.min() >= 0.0 and y_on.max() <= 255.0
    assert np.abs(y_off - np.round(y_off)).max() > 0.1  # the converter's own range: not the pixel grid
    assert np.mean(np.abs(np.clip(y_off, 0, 255) - y_on)) < 1.0  # the same model, another output grid
    s_on, s_off = _scales(on), _scales(off)
    moved = {i for i in s_on if s_on[i] != s_off[i]}
    assert moved and all(s_on[i] == (float(np.float32(1 / 255)), -128) for i in moved)
    assert TFLiteRunner(model_content=on).output["index"] not in moved  # float I/O: DEQUANTIZE'd output
    assert len(moved) <= 3  # the output-side int8 tensors (conv -> DEPTH_TO_SPACE -> DEQUANTIZE's input)


@pytest.mark.slow
def test_int8_input_takes_every_byte_whatever_the_calibration_crops(saved_model, calibrated):
    """Calibrated on dark crops (≤ 0.5), the int8 input still holds every byte exactly (scale 1/255)."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils as fu

    blob, frames = calibrated
    dark = calibrate(saved_model, frames[:4] * 0.5)
    x = np.round(frames[4:5] * 255.0) / 255.0  # a byte image with bright pixels
    assert x.max() > 0.9

    def seen_by_the_graph(q: bytes) -> np.ndarray:
        """The int8 input tensor (the float input QUANTIZE'd), dequantized."""
        sg = fu.convert_bytearray_to_object(bytearray(q)).subgraphs[0]
        op = next(o for o in sg.operators if int(sg.inputs[0]) in [int(i) for i in o.inputs])
        idx = int(op.outputs[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            it = Interpreter(model_content=q, experimental_preserve_all_tensors=True)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x.astype(np.float32))
        it.invoke()
        qp = sg.tensors[idx].quantization
        return (it.get_tensor(idx).astype(np.float64) - float(qp.zeroPoint[0])) * float(qp.scale[0])

    on, off = (quantize_calibrated(dark, "float32", pixel_grid=g) for g in (True, False))
    assert np.abs(seen_by_the_graph(on) - x).max() < 1e-6
    assert np.abs(seen_by_the_graph(off) - x).max() > 0.3  # the calibrated [0, 0.5] cuts the bright pixels


@pytest.mark.slow
def test_percentile_ranges_narrow_inner_tensors_only(calibrated):
    blob, frames = calibrated
    before = _act_ranges(blob)
    after = _act_ranges(with_ranges(blob, "p99.9", activation_samples(blob, frames)))
    narrowed = [i for i in before if after[i] != before[i]]
    for i in before:
        lo, hi = after[i]
        assert before[i][0] <= lo <= 0.0 <= hi <= before[i][1]
    assert len(narrowed) > len(before) // 2
    # the graph input and the image-side tensors before the output keep their min/max
    runner = TFLiteRunner(model_content=blob)
    assert runner.input["index"] not in narrowed and runner.output["index"] not in narrowed
    q = TFLiteRunner(model_content=quantize_calibrated(with_ranges(blob, "p99.9", activation_samples(blob, frames)),
                                                       "float32"))
    assert q(frames[:1]).shape == (1, 128, 128, 3)


@pytest.mark.slow
def test_auto_ranges_keep_the_candidate_closest_to_float(calibrated, data_root):
    blob, frames = calibrated
    held_out = calibration_frames(data_root / "div2k" / "HR", 2, SIZE, 2, seed=1).frames
    _, choice = select_ranges(blob, frames, held_out, "auto", min_pixels=0, log=lambda m: None)
    assert set(choice.fidelity_db) == {"minmax", "p99.999", "p99.99"}
    assert choice.method == max(choice.fidelity_db, key=choice.fidelity_db.get)
    # too few calibration pixels: percentiles are not tried
    _, few = select_ranges(blob, frames, held_out, "auto", log=lambda m: None)
    assert few.method == "minmax" and not few.fidelity_db and "min/max kept" in few.note


@pytest.mark.parametrize("text", ["p100", "p50", "pX", "percentile", ""])
def test_bad_ranges_rejected(text):
    from srdeploy.errors import SrDeployError

    with pytest.raises(SrDeployError, match="--ranges"):
        parse_ranges(text)


def test_calibration_frames_are_plain_rgb(data_root):
    cal = calibration_frames(data_root / "div2k" / "HR", 2, SIZE, 6, seed=3)
    assert cal.frames.shape == (6, 64, 64, 3) and cal.frames.dtype == np.float32
    assert 0.0 <= cal.frames.min() and cal.frames.max() <= 1.0 and 0.15 < cal.frames.mean() < 0.85
    again = calibration_frames(data_root / "div2k" / "HR", 2, SIZE, 6, seed=3)
    assert np.array_equal(cal.frames, again.frames)  # deterministic with --seed
    # held-out crops come from the same read of the folder, drawn as a separate call with seed + 1 would
    with_held_out = calibration_frames(data_root / "div2k" / "HR", 2, SIZE, 6, seed=3, held_out=2)
    assert np.array_equal(with_held_out.frames, cal.frames) and cal.held_out is None
    seed4 = calibration_frames(data_root / "div2k" / "HR", 2, SIZE, 2, seed=4).frames
    assert np.array_equal(with_held_out.held_out, seed4) and not np.array_equal(seed4, cal.frames[:2])


@pytest.mark.slow
def test_a_conv_xnnpack_would_refuse_gets_a_wider_range(tmp_path, weights_root, data_root, monkeypatch, calibrated):
    """imdn x2: a ReLU after one block's channel-attention reduction is off on every calibration crop; its
    range (~0..2e-6) gave a requantization ratio of ~27 000, XNNPACK refused the whole INT8 model and no
    imdn x2 INT8 export loaded. The floor widens that one range; graphs XNNPACK takes are left byte for byte."""
    from srdeploy.errors import SrDeployError as Err
    from srdeploy.quantize import ranges

    export_onnx(create_model("imdn", 2), tmp_path / "m.onnx", SIZE)
    convert_onnx2tf(tmp_path / "m.onnx", tmp_path / "tf")
    frames = calibration_frames(data_root / "div2k" / "HR", 2, SIZE, 4).frames
    cal = calibrate(tmp_path / "tf" / "saved_model", frames)
    safe, widened = ranges.xnnpack_safe_ranges(cal)
    assert widened and safe != cal
    runner = TFLiteRunner(model_content=quantize_calibrated(cal, "float32"))  # loads with XNNPACK
    assert np.isfinite(runner(frames[:1])).all()
    with monkeypatch.context() as m:  # the same graph without the floor: refused
        m.setattr(ranges, "xnnpack_safe_ranges", lambda c: (c, []))
        with pytest.raises(Err, match="XNNPACK"):
            TFLiteRunner(model_content=quantize_calibrated(cal, "float32"))
    rtc_cal, _ = calibrated  # imdn_rtc: nothing to widen, the very same bytes
    assert ranges.xnnpack_safe_ranges(rtc_cal) == (rtc_cal, [])


@pytest.mark.slow
def test_int16_activations_keep_float_io(saved_model, data_root, tmp_path):
    frames = calibration_frames(data_root / "div2k" / "HR", 2, SIZE, 2).frames
    path = tmp_path / "a16.tflite"
    path.write_bytes(convert_int8(saved_model, frames, act="int16")[0])
    ops, types = _tensor_types(path)
    assert "int16" in types and TFLiteRunner(path).io_dtypes == ("float32", "float32")
    assert _butterfly_psnr(data_root) - _butterfly_psnr(data_root, path) < 1.0


@pytest.mark.parametrize("case", ["missing", "empty", "no_images", "too_small", "no_calib"])
def test_bad_calibration_input(case, tmp_path, weights_root):
    cal = tmp_path / "cal"
    args = ["--model", "imdn_rtc", "--size", "32x32", "--int8"]
    if case != "missing":
        cal.mkdir()
    if case == "no_images":
        (cal / "readme.txt").write_text("x")
        (cal / "broken.png").write_bytes(b"not a png")
    if case == "too_small":
        cv2.imwrite(str(cal / "tiny.png"), np.zeros((1, 1, 3), np.uint8))
    if case != "no_calib":
        args += ["--calib", str(cal)]
    out = tmp_path / "out"
    proc = run_cli("srdeploy.export.cli", *args, "--out", str(out))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    expect = {"missing": "calibration folder not found", "empty": "is empty",
              "no_images": "no readable images", "too_small": "no readable images", "no_calib": "needs --calib"}
    assert expect[case] in lines[0]
    if case == "no_images":
        assert "1 non-image files skipped, 1 unreadable" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--int8", "--calib", "CAL", "--ranges", "p200"], "--ranges must be"),
    (["--ranges", "minmax"], "apply to --int8 exports"),
    (["--int8", "--calib", "CAL", "--act", "int16", "--ranges", "p99.99"], "--act int16 uses min/max"),
    (["--qat-steps", "10"], "apply to --int8 exports"),
    (["--equalize", "on"], "apply to --int8 exports"),
    (["--int8", "--calib", "CAL", "--qat-steps", "-1"], "--qat-steps must be >= 0"),
    (["--int8", "--calib", "CAL", "--act", "int16", "--qat-steps", "10"], "does not apply to --act int16"),
    # --act mixed (tests/test_mixed.py)
    (["--int8", "--calib", "CAL", "--int16-tensors", "4"], "--int16-tensors applies to --act mixed"),
    (["--int16-tensors", "4"], "apply to --int8 exports"),
    (["--int8", "--calib", "CAL", "--act", "mixed", "--int16-tensors", "0"], "--int16-tensors must be 1..10000"),
    (["--int8", "--calib", "CAL", "--act", "mixed", "--io", "uint8"], "--act mixed keeps float32 I/O"),
    (["--int8", "--calib", "CAL", "--act", "mixed", "--qat-steps", "5"], "does not apply to --act mixed"),
    (["--int8", "--calib", "CAL", "--act", "mixed", "--save-int8-params", "X.npz"], "does not apply to --act mixed"),
])
def test_bad_int8_options_cli(args, message, tmp_path, weights_root, data_root):
    out = tmp_path / "out"
    args = [str(data_root / "div2k" / "HR") if a == "CAL" else a for a in args]
    proc = run_cli("srdeploy.export.cli", "--model", "imdn_rtc", "--size", "32x32", *args, "--out", str(out))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    assert not out.exists()


# -- quantization-aware fine-tuning (srdeploy.quantize.qat) -------------------------------------------

def _psnr(a, b) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


@pytest.fixture(scope="module")
def qat_graph(calibrated):
    from srdeploy.quantize.qat import TFLiteGraph

    blob, frames = calibrated
    q = quantize_calibrated(blob, "float32")
    return TFLiteGraph(blob, q), blob, q, frames


def _sim(graph, frames, quant):
    import torch

    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
        return graph(x, quant=quant).permute(0, 2, 3, 1).numpy()


def _lsq_reference(x, dy, scale, zero):
    """LSQ+ by hand in float64 numpy: the fake-quantized values and d/dx, d/dscale, d/dzero."""
    z = float(np.clip(np.round(zero), -128, 127))
    a = x.astype(np.float64) / scale
    v = np.round(a) + z
    inside = (v >= -128) & (v <= 127)
    q = np.clip(v, -128, 127)
    return ((q - z) * scale, dy * inside, float(np.sum(dy * np.where(inside, np.round(a) - a, q - z))),
            float(np.sum(dy * np.where(inside, 0.0, -scale))))


@pytest.mark.parametrize("compiled", [True, False])
def test_learnable_fake_quantizer_is_torchs_forward_with_lsq_gradients(compiled, monkeypatch):
    """The fused learnable fake quantizer QAT uses (qat.fake_quant_learnable): its values are those of
    torch's own op, bit for bit, compiled or eager; its gradients are LSQ+'s, checked against a float64
    computation by hand -- with values clipped at both ends of the range and a negative zero point."""
    import torch

    from srdeploy.quantize import qat

    monkeypatch.setattr(qat, "_fused_lsq", None)
    monkeypatch.setenv("SRDEPLOY_QAT_COMPILE", "1" if compiled else "0")
    rng = np.random.default_rng(3)
    cases = (((2, 12, 16, 16), 0.01, -3.4), ((1, 3, 9, 7), 0.004, 40.2), ((3, 5, 8, 8), 0.02, -104.6))
    for shape, scale, zero in cases:
        x = torch.from_numpy(rng.normal(0, 1.0, shape).astype(np.float32)).requires_grad_()
        s = torch.tensor([scale], dtype=torch.float32, requires_grad=True)
        z = torch.tensor([zero], dtype=torch.float32, requires_grad=True)
        dy = torch.from_numpy(rng.normal(0, 1, shape).astype(np.float32))
        y = qat.fake_quant_learnable(x, s, z, log=lambda m: None)
        y.backward(dy)
        with torch.no_grad():
            ref = torch._fake_quantize_learnable_per_tensor_affine(x, s, z, -128, 127, 1.0)
        assert torch.equal(y.detach(), ref)  # torch's forward, bit for bit
        fq, dx, ds, dz = _lsq_reference(x.detach().numpy(), dy.numpy(), scale, zero)
        np.testing.assert_allclose(y.detach().numpy(), fq, rtol=0, atol=1e-6 * scale * 128)
        clipped = dx == 0
        assert 0 < int(clipped.sum()) < x.numel()  # both sides of the range are exercised
        # d/dx: 0 where clipped, dy inside (to float rounding: it is dy * scale * (1 / scale))
        assert np.all(x.grad.numpy()[clipped] == 0)
        np.testing.assert_allclose(x.grad.numpy(), dx, rtol=1e-6, atol=0)
        assert float(s.grad) == pytest.approx(ds, rel=1e-4, abs=1e-3)
        assert float(z.grad) == pytest.approx(dz, rel=1e-4, abs=1e-6)
    assert (qat._fused_lsq is not False) == compiled  # the path the test meant to take


@pytest.mark.slow
def test_qat_simulation_is_the_converters_int8_model(qat_graph):
    graph, blob, q, frames = qat_graph
    x = frames[:2]
    float_tfl = np.concatenate([TFLiteRunner(model_content=blob)(f[None]) for f in x])
    int8_tfl = np.concatenate([TFLiteRunner(model_content=q)(f[None]) for f in x])
    # without fake quantization the simulation is the float TFLite graph
    assert np.abs(_sim(graph, x, False) - float_tfl).max() < 1e-5
    # with it, it is as far from float as TFLite's integer model (rounding ties differ, the scheme does not)
    sim_q = _sim(graph, x, True)
    assert _psnr(sim_q, float_tfl) < 55  # quantization really is simulated
    assert abs(_psnr(sim_q, float_tfl) - _psnr(int8_tfl, float_tfl)) < 0.5
    assert _psnr(sim_q, int8_tfl) > _psnr(int8_tfl, float_tfl) - 3


@pytest.mark.slow
def test_qat_write_back_gives_the_converter_the_learned_scales(qat_graph):
    import copy

    import torch

    from srdeploy.quantize.qat import TFLiteGraph

    graph, blob, q, frames = qat_graph
    # untouched weights: the written-back graph quantizes to exactly the same model
    same = quantize_calibrated(graph.calibrated_with_weights(), "float32")
    assert np.array_equal(TFLiteRunner(model_content=same)(frames[:1]), TFLiteRunner(model_content=q)(frames[:1]))
    # moved ranges: the converter derives exactly the learned (scale, zero point) of every tensor
    g = copy.deepcopy(graph)
    g.learn_ranges = True
    with torch.no_grad():
        for k, p in g.range_scale.items():
            p.mul_(0.8 + 0.4 * (hash(k) % 7) / 7)
        for p in g.range_zero.values():
            p.add_(3.3)
    assert g.group_of  # there are learnable groups
    cal2 = g.calibrated_with_weights()
    g2 = TFLiteGraph(cal2, quantize_calibrated(cal2, "float32"))
    learned = g.learned_qparams()
    assert learned != graph.qparams
    for i, (s, z) in learned.items():
        assert g2.qparams[i][1] == z and g2.qparams[i][0] == pytest.approx(s, rel=1e-5)


@pytest.mark.slow
def test_qat_brings_int8_closer_to_float_on_held_out_crops(qat_graph, data_root):
    import copy

    from srdeploy.quantize.qat import finetune
    from srdeploy.quantize.ranges import worst_crop_psnr

    graph, blob, q, frames = qat_graph
    cal = calibration_frames(data_root / "div2k" / "HR", 2, SIZE, 1, seed=7, held_out=3)
    g = copy.deepcopy(graph)
    res = finetune(g, cal.images, 40, lr=3e-4, range_lr=3e-4, patch=48, batch=4, seed=0, log=lambda m: None)
    assert res.loss_last < res.loss_first
    runner = TFLiteRunner(model_content=blob)
    reference = [runner(f[None])[0] for f in cal.held_out]
    before = worst_crop_psnr(q, reference, cal.held_out)
    after = worst_crop_psnr(quantize_calibrated(g.calibrated_with_weights(), "float32"), reference, cal.held_out)
    assert after > before + 0.2, (before, after)


@pytest.mark.slow
def test_resumed_qat_matches_the_teacher_not_its_own_starting_weights(qat_graph, data_root):
    """QAT resumed from weights that were already moved (an INT8 parameter file) must still aim at the
    source's float model: with ``teacher`` the student's float output moves toward it; without, the student
    only matches its own (moved) float weights and stays as far from the source."""
    import copy

    import torch

    from srdeploy.quantize.qat import finetune

    graph, blob, q, frames = qat_graph
    cal = calibration_frames(data_root / "div2k" / "HR", 2, SIZE, 1, seed=7, held_out=0)
    source = _sim(graph, frames[:2], False)

    def moved():
        g = copy.deepcopy(graph)
        with torch.no_grad():
            for p in g.weight_parameters():
                p.mul_(0.9)
        return g

    def distance(g):
        return float(np.mean((_sim(g, frames[:2], False) - source) ** 2))

    start = moved()
    d0 = distance(start)
    with_teacher, alone = moved(), moved()
    kw = dict(lr=3e-4, range_lr=3e-4, patch=48, batch=4, seed=0, log=lambda m: None)
    finetune(with_teacher, cal.images, 40, teacher=graph, **kw)
    finetune(alone, cal.images, 40, **kw)
    assert distance(with_teacher) < 0.5 * d0, (distance(with_teacher), d0)
    assert distance(with_teacher) < 0.5 * distance(alone), (distance(with_teacher), distance(alone))


@pytest.mark.slow
def test_learned_rounding_rounds_each_weight_up_or_down_on_the_converters_grid(qat_graph, data_root):
    """Learned rounding (finetune(rounding="learned")): every conv weight ends on TFLite's per-channel grid (the converter then
    quantizes it to exactly that integer), one step from where it started at most, each channel's
    largest weight (which sets the scale) untouched; the rounding was really learned (not all nearest,
    none left undecided) and the simulation of the result is the converter's INT8 model."""
    import copy

    import torch

    from srdeploy.quantize.qat import TFLiteGraph, finetune

    graph, blob, q, frames = qat_graph
    cal = calibration_frames(data_root / "div2k" / "HR", 2, SIZE, 1, seed=7, held_out=0)
    g = copy.deepcopy(graph)
    start = {k: p.detach().clone() for k, p in g.weights.items()}
    # a fast rate and a strong regularizer so 40 steps decide (nearly) every weight; at the start all are undecided
    res = finetune(g, cal.images, 40, patch=48, batch=4, seed=0, rounding="learned", round_lr=0.5, round_weight=0.1,
                   log=lambda m: None)
    assert res.rounding == "learned" and res.rounding_undecided < 0.15, res
    assert not g.rounding and not g.round_v  # back to a plain graph
    differs_from_nearest = 0
    for k, w0 in start.items():
        if not k.startswith("w"):
            continue
        scale = w0.abs().amax(dim=(1, 2, 3), keepdim=True) / 127
        grid = g.weights[k].detach() / scale
        assert torch.allclose(grid, torch.round(grid), atol=1e-3), k
        assert bool(((grid - w0 / scale).abs() < 1 + 1e-3).all()), k
        assert torch.allclose(g.weights[k].detach().abs().amax(dim=(1, 2, 3)), w0.abs().amax(dim=(1, 2, 3))), k
        differs_from_nearest += int((torch.round(grid) != torch.round(w0 / scale)).sum())
    assert differs_from_nearest > 0
    cal2 = g.calibrated_with_weights()
    q2 = quantize_calibrated(cal2, "float32")
    # the converter's integer weights are the learned ones: dequantized, they are the written floats
    from ai_edge_litert.tools import flatbuffer_utils as fu

    qm = fu.convert_bytearray_to_object(bytearray(q2))
    qsg = qm.subgraphs[0]
    by_name = {t.name: t for t in qsg.tensors}
    g2 = TFLiteGraph(cal2, q2)
    checked = 0
    for op in g2.ops:
        if op.kind != "CONV_2D":
            continue
        name, index = op.params["w"]
        t = by_name[g2._model.subgraphs[0].tensors[index].name]
        ints = np.frombuffer(bytes(bytearray(qm.buffers[t.buffer].data)), np.int8).reshape([int(d) for d in t.shape])
        deq = ints.astype(np.float32) * np.asarray(t.quantization.scale, np.float32).reshape(-1, 1, 1, 1)
        ours = g2.weights[name].detach().permute(0, 2, 3, 1).numpy()
        assert np.allclose(deq, ours, rtol=1e-5, atol=1e-7), name
        checked += 1
    assert checked > 10
    sim = _sim(g2, frames[:2], True)
    int8_tfl = np.concatenate([TFLiteRunner(model_content=q2)(f[None]) for f in frames[:2]])
    float_tfl = np.concatenate([TFLiteRunner(model_content=cal2)(f[None]) for f in frames[:2]])
    assert abs(_psnr(sim, float_tfl) - _psnr(int8_tfl, float_tfl)) < 0.5
    with pytest.raises(SrDeployError, match="nearest or learned"):
        finetune(copy.deepcopy(graph), cal.images, 1, rounding="stochastic", log=lambda m: None)


@pytest.mark.slow
def test_qat_intermediate_distillation_matches_block_outputs(qat_graph, data_root):
    """With feature_weight > 0 the loss also sees the residual ADDs' outputs: the kept tensors are
    exactly those, the run brings INT8 closer on held-out crops, and its output-loss record differs
    from an output-only run of the same seed (so the term is really in the gradient)."""
    import copy

    from srdeploy.quantize.qat import finetune
    from srdeploy.quantize.ranges import worst_crop_psnr

    graph, blob, q, frames = qat_graph
    adds = graph.outputs_of(("ADD",))
    assert adds and all(op.kind == "ADD" for op in graph.ops if op.outputs[0] in adds)
    cal = calibration_frames(data_root / "div2k" / "HR", 2, SIZE, 1, seed=7, held_out=3)
    runs, seen = {}, []
    for w in (0.0, 1.0):
        g = copy.deepcopy(graph)
        runs[w] = (g, finetune(g, cal.images, 20, patch=48, batch=4, seed=0, feature_weight=w, log=lambda m: None,
                               callback=lambda step, gr, w=w: seen.append((w, set(gr.kept)))))
    g, res = runs[1.0]
    assert {frozenset(k) for w, k in seen if w == 1.0} == {frozenset(set(adds) - {g.output_index})}
    assert all(not k for w, k in seen if w == 0.0) and not g.kept  # nothing held after the run
    assert res.loss_last != runs[0.0][1].loss_last
    runner = TFLiteRunner(model_content=blob)
    reference = [runner(f[None])[0] for f in cal.held_out]
    after = worst_crop_psnr(quantize_calibrated(g.calibrated_with_weights(), "float32"), reference, cal.held_out)
    assert after > worst_crop_psnr(q, reference, cal.held_out) + 0.1
    with pytest.raises(SrDeployError, match=">= 0"):
        finetune(copy.deepcopy(graph), cal.images, 1, feature_weight=-1.0, log=lambda m: None)
    with pytest.raises(SrDeployError, match="no GELU outputs"):
        finetune(copy.deepcopy(graph), cal.images, 1, feature_weight=1.0, feature_kinds=("GELU",), log=lambda m: None)


def test_error_by_group_switches_quantization_per_group(qat_graph):
    import torch

    from srdeploy.quantize.qat import error_by_group

    graph, _, _, frames = qat_graph
    x = torch.from_numpy(np.ascontiguousarray(frames[:2])).permute(0, 3, 1, 2).float()
    res = error_by_group(graph, x)
    assert {"all", "weights only", "activations only", "image input/output only"} <= set(res)
    assert any(k.startswith("CONV_2D outputs only") for k in res)
    # "all" is what the full simulation gives; each single group alone is closer to float
    assert abs(res["all"] - _psnr(_sim(graph, frames[:2], True), _sim(graph, frames[:2], False))) < 1e-3
    assert all(v > res["all"] for k, v in res.items() if k != "all")
    # and the graph is left quantizing everything afterwards
    assert graph.quant_only is None and graph.quant_weights


def test_learned_scales_stay_in_a_window_and_pooled_tensors_keep_theirs(qat_graph):
    import copy

    import torch

    graph, _, _, _ = qat_graph
    g = copy.deepcopy(graph)
    g.learn_ranges = True
    key = next(iter(g.range_scale))
    members = [i for i, k in g.group_of.items() if k == key]
    s0 = g.qparams[members[0]][0]
    with torch.no_grad():
        g.range_scale[key].fill_(1e-9)  # what Adam's absolute steps did to pooled IMDN x4 tensors
    assert g.learned_qparams()[members[0]][0] == pytest.approx(s0 / g.SCALE_WINDOW, rel=1e-5)
    with torch.no_grad():
        g.range_scale[key].fill_(1e3)
    assert g.learned_qparams()[members[0]][0] == pytest.approx(s0 * g.SCALE_WINDOW, rel=1e-5)
    # every learnable group is a feature map: none of its tensors is a 1x1 pooled statistic
    for i in g.group_of:
        shape = g.static_shape[i]
        assert not (len(shape) == 4 and shape[1] * shape[2] == 1)


def test_qat_model_that_does_not_run_falls_back_to_ptq(qat_graph, data_root, monkeypatch):
    from srdeploy.quantize import int8, ranges

    _, blob, q, _ = qat_graph
    cal = calibration_frames(data_root / "div2k" / "HR", 2, SIZE, 1, seed=7, held_out=2)
    real, calls = ranges.worst_crop_psnr, []

    def flaky(model, reference, frames):  # the PTQ baseline runs, the fine-tuned model does not
        calls.append(1)
        if len(calls) > 1:
            raise SrDeployError("cannot load TFLite model (in memory): failed to prepare")
        return real(model, reference, frames)

    monkeypatch.setattr(ranges, "worst_crop_psnr", flaky)
    out, report, _ = int8._quantization_aware(blob, blob, q, "float32", 2, cal.images, cal.held_out, 0, False,
                                           lambda m: None)
    assert out == q and report["kept"] is False and "failed to prepare" in report["error"]


def test_percentile_samples_of_a_fixed_shape_graph_run_on_whole_frames(tmp_path, monkeypatch):
    """A graph with a resize to a constant size cannot run on a crop (BSRN's ESA attention, issue 18:
    XNNPACK 'failed to reshape runtime'); over the memory budget its activations are then
    sampled on whole frames, a budget's worth of tensors at a time — the same statistics as the
    all-tensors pass, not an error."""
    from srdeploy.runtime import quiet_tensorflow

    quiet_tensorflow()
    import ai_edge_litert.interpreter as litert
    import tensorflow as tf

    import srdeploy.quantize.ranges as ranges

    class M(tf.Module):
        def __init__(self):
            self.w1 = tf.Variable(tf.random.stateless_normal([3, 3, 3, 8], seed=[1, 2]) * 0.3)
            self.w2 = tf.Variable(tf.random.stateless_normal([3, 3, 8, 8], seed=[3, 4]) * 0.3)
            self.w3 = tf.Variable(tf.random.stateless_normal([3, 3, 8, 3], seed=[5, 6]) * 0.3)

        @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.float32)])
        def __call__(self, x):
            y = tf.nn.relu(tf.nn.conv2d(x, self.w1, 1, "SAME"))
            small = tf.nn.avg_pool2d(y, 2, 2, "VALID")
            y = y + tf.image.resize(small, [32, 32])  # a resize to a constant size (ESA's): no crop can run
            y = tf.nn.relu(tf.nn.conv2d(y, self.w2, 1, "SAME")) + 0.5
            return tf.nn.conv2d(y, self.w3, 1, "SAME")

    sm = tmp_path / "sm"
    tf.saved_model.save(M(), str(sm))
    frames = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    blob = calibrate(sm, frames)
    whole = activation_samples(blob, frames)  # within the budget: every tensor kept, whole frames
    made = []

    class Counting(litert.Interpreter):
        def __init__(self, *a, **k):
            made.append(1)
            super().__init__(*a, **k)

    monkeypatch.setattr(litert, "Interpreter", Counting)
    monkeypatch.setattr(ranges, "STATS_BUDGET_BYTES", 40_000)  # one 32 KB tensor per group; a crop would be 16x16
    grouped = activation_samples(blob, frames)
    assert set(grouped) == set(whole) and len(whole) >= 3
    assert len(made) == 1 + len(whole)  # the refused crop, then one whole-frame pass per group
    for i, v in whole.items():
        span = float(v.max() - v.min()) or 1.0
        for q in (1, 50, 99):
            assert abs(np.percentile(grouped[i], q) - np.percentile(v, q)) < 0.05 * span, (i, q)
