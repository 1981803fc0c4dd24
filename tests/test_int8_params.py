"""Quantization-ready INT8 parameters (srdeploy.quantize.int8_params): made once, valid at every size."""
from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import srdeploy.models
from srdeploy.errors import SrDeployError
from srdeploy.export import ExportConfig, Exporter
from srdeploy.models.registry import get_spec, list_models
from srdeploy.quantize import int8_params as ip
from srdeploy.runtime import TFLiteRunner

from .conftest import run_cli


def _export(out, data_root, size="64x64", **kw):
    cfg = ExportConfig(model="imdn_rtc", size=size, int8=True, calib=str(data_root / "div2k" / "HR"), calib_samples=4,
                       out=str(out), **kw)
    return Exporter(cfg, log=lambda m: None).run()


@pytest.fixture(scope="module")
def made(tmp_path_factory, weights_root, data_root):
    """A 64x64 export with a few QAT steps that saves its INT8 weights and ranges."""
    d = tmp_path_factory.mktemp("int8_params")
    params = d / "rtc_x2_int8.npz"
    manifest = _export(d / "made", data_root, qat_steps=10, int8_params="none", save_int8_params=str(params))
    return d, params, manifest


def _int8(manifest) -> dict:
    return next(a for a in manifest["artifacts"] if a["precision"] == "int8")


def _qparams(path) -> list:
    """(type, scales, zero points) of every tensor of an INT8 model, in order (constants' data too)."""
    r = TFLiteRunner(path)
    out = []
    for d in sorted(r.interpreter.get_tensor_details(), key=lambda d: d["index"]):
        q = d["quantization_parameters"]
        out.append((np.dtype(d["dtype"]).name, tuple(np.round(q["scales"], 12)), tuple(q["zero_points"])))
    return out


@pytest.mark.slow
def test_saved_params_record_what_made_them(made):
    _, params, manifest = made
    p = ip.load(params)
    assert p.meta["model"] == "imdn_rtc" and p.meta["scale"] == 2 and p.meta["made_at"] == "64x64"
    assert p.meta["float_weights_sha256"] == manifest["weights"]["sha256"]
    assert p.meta["made_with"]["qat"]["steps"] == 10
    assert len(p.weights) > 10 and len(p.ranges) > 10
    assert _int8(manifest)["quantization"]["int8_params_choice"] == "--int8-params none"


@pytest.mark.slow
def test_params_reproduce_the_same_int8_model(made, data_root, tmp_path):
    d, params, _ = made
    manifest = _export(tmp_path / "again", data_root, int8_params=str(params))
    q = _int8(manifest)["quantization"]
    assert q["ranges"]["method"] == "int8-params" and q["int8_params_choice"] == f"file {params}"
    assert "qat" not in q  # no QAT ran: the file's weights were used
    assert (tmp_path / "again" / "model_int8.tflite").read_bytes() == (d / "made" / "model_int8.tflite").read_bytes()


@pytest.mark.slow
def test_params_give_the_same_integer_model_at_another_size(made, data_root, tmp_path):
    """Same weights, same scales and zero points of every tensor at 48x80 as at 64x64; a plain
    post-training export at 48x80 has other activation scales (so the comparison can fail)."""
    d, params, _ = made
    _export(tmp_path / "other", data_root, size="48x80", int8_params=str(params))
    ref = _qparams(d / "made" / "model_int8.tflite")
    assert _qparams(tmp_path / "other" / "model_int8.tflite") == ref
    _export(tmp_path / "ptq", data_root, size="48x80", int8_params="none", ranges="minmax")
    assert _qparams(tmp_path / "ptq" / "model_int8.tflite") != ref
    out = TFLiteRunner(tmp_path / "other" / "model_int8.tflite")(np.full((1, 48, 80, 3), 0.5, np.float32))
    assert out.shape == (1, 96, 160, 3) and np.isfinite(out).all()


def _corrupt(kind: str, good, path) -> None:
    if kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "not a zip":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    elif kind == "pickled object":  # np.load(allow_pickle=False) must refuse it, never unpickle
        np.savez(path, meta=np.array([{"format": ip.FORMAT}], dtype=object))
    elif kind == "wrong format":
        np.savez(path, meta=np.frombuffer(json.dumps({"format": "x", "signature": "y"}).encode(), np.uint8),
                 ranges=np.zeros((1, 3)))
    elif kind == "min above max":
        p = ip.load(good)
        i = next(iter(p.ranges))
        p.ranges[i] = (1.0, -1.0)
        ip.save(p, path)
    elif kind == "zip member damaged":
        with zipfile.ZipFile(good) as zin, zipfile.ZipFile(path, "w") as zout:
            for item in zin.infolist():
                data = zin.read(item.filename)
                zout.writestr(item, data[:-8] if item.filename == "ranges.npy" else data)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["truncated", "not a zip", "pickled object", "wrong format", "min above max",
                                  "zip member damaged"])
def test_corrupted_params_file_is_one_line_exit_2(made, kind, tmp_path, data_root):
    _, good, _ = made
    bad = tmp_path / "bad.npz"
    _corrupt(kind, good, bad)
    out = tmp_path / "out"
    proc = run_cli("srdeploy.export.cli", "--model", "imdn_rtc", "--size", "32x32", "--int8", "--calib",
                   str(data_root / "div2k" / "HR"), "--int8-params", str(bad), "--out", str(out))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "INT8 parameter" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


@pytest.mark.slow
def test_params_of_another_graph_are_refused(made, tmp_path, data_root):
    """Made for the default rewrites; an INT8 graph with slice_conv has other operators: refused, exit 2."""
    _, params, _ = made
    proc = run_cli("srdeploy.export.cli", "--model", "imdn_rtc", "--size", "32x32", "--int8", "--calib",
                   str(data_root / "div2k" / "HR"), "--int8-rewrites", "split_mean,dcr,gelu,slice_conv",
                   "--int8-params", str(params), "--out", str(tmp_path / "out"))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and "made for another graph" in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_int8_graph_takes_the_params_files_rewrites_while_float_keeps_its_own(made, tmp_path, data_root):
    """--rewrites changes the float artifacts' graph; by default the INT8 graph is the one the parameter file
    was made on, so the file still applies (quantized from a second conversion), and the manifest says so."""
    d, params, made_manifest = made
    manifest = _export(tmp_path / "out", data_root, rewrites=("split_mean", "dcr", "gelu", "slice_conv"),
                       int8_params=str(params))
    assert manifest["graph_rewrites"].get("slice_conv", 0) > 0  # the float graph has the extra rewrite
    q = _int8(manifest)["quantization"]
    assert q["rewrites"] == list(ip.load(params).meta["rewrites"]) == ["split_mean", "dcr", "gelu"]
    assert q["ranges"]["method"] == "int8-params" and "slice_conv" not in q["graph_rewrites"]
    # the same INT8 model as the export the file was made with (same size, same graph, same parameters)
    assert (tmp_path / "out" / "model_int8.tflite").read_bytes() == (d / "made" / "model_int8.tflite").read_bytes()


@pytest.mark.slow
def test_qat_resumes_from_a_params_file(made, tmp_path, data_root):
    """--int8-params FILE --qat-steps N continues from the file's weights and ranges: judged against the file's
    own INT8 model (its fidelity is the 'before'), recorded with what it continued from, savable again."""
    _, params, made_manifest = made
    made_qat = _int8(made_manifest)["quantization"]["qat"]
    start = made_qat["fidelity_db_after"] if made_qat["kept"] else made_qat["fidelity_db_before"]
    saved = tmp_path / "resumed.npz"
    manifest = _export(tmp_path / "resumed", data_root, int8_params=str(params), qat_steps=10,
                       save_int8_params=str(saved))
    q = _int8(manifest)["quantization"]
    assert q["int8_params_choice"] == f"file {params} (QAT resumed from it for 10 steps)"
    assert q["qat"]["steps"] == 10 and q["qat"]["continued_from"]["made_with"]["qat"]["steps"] == 10
    assert q["qat"]["fidelity_db_before"] == pytest.approx(start, abs=1e-3)
    again = ip.load(saved)
    assert again.signature == ip.load(params).signature
    assert again.meta["made_with"]["qat"]["continued_from"]["made_at"] == "64x64"


@pytest.mark.parametrize("args, message", [
    (["--int8-params", "none"], "apply to --int8 exports"),
    (["--save-int8-params", "x.npz"], "apply to --int8 exports"),
    (["--int8-rewrites", "slice_conv"], "apply to --int8 exports"),
    (["--qat-job", "x.npz"], "apply to --int8 exports"),
    (["--int8", "--calib", "CAL", "--qat-job", "x.npz"], "give --qat-steps"),
    (["--int8", "--calib", "CAL", "--int8-rewrites", "fold-everything"], "unknown rewrite"),
    (["--int8", "--calib", "CAL", "--int8-params", "FILE", "--ranges", "minmax"], "replaces --ranges and --act"),
    (["--int8", "--calib", "CAL", "--int8-params", "/nonexistent/p.npz"], "INT8 parameter file not found"),
    (["--int8", "--calib", "CAL", "--act", "int16", "--save-int8-params", "x.npz"], "does not apply to --act int16"),
])
def test_bad_int8_params_options(args, message, tmp_path, weights_root, data_root):
    (tmp_path / "p.npz").write_bytes(b"")
    args = [str(data_root / "div2k" / "HR") if a == "CAL" else str(tmp_path / "p.npz") if a == "FILE" else a
            for a in args]
    out = tmp_path / "out"
    proc = run_cli("srdeploy.export.cli", "--model", "imdn_rtc", "--size", "32x32", *args, "--out", str(out))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    assert not out.exists()


def test_load_refuses_a_sha256_mismatch(tmp_path):
    f = tmp_path / "p.npz"
    ip.save(ip.Int8Params("sig", {3: np.ones((2, 1, 1, 2), np.float32)}, {5: (-1.0, 1.0)}, {}), f)
    assert ip.load(f).weights[3].shape == (2, 1, 1, 2) and ip.load(f).ranges == {5: (-1.0, 1.0)}
    with pytest.raises(SrDeployError, match="damaged or not the shipped one"):
        ip.load(f, sha256="0" * 64)


# -- the files shipped in the registry --------------------------------------------------------------

SHIPPED = [(name, s) for name in list_models() for s in get_spec(name).int8_params]


def test_some_registry_model_ships_int8_params():
    assert SHIPPED, "no registry model ships quantization-ready INT8 parameters"


@pytest.mark.parametrize("name, scale", SHIPPED)
def test_shipped_params_load_and_match_their_weights(name, scale):
    from srdeploy.models.weights import resolve_weights

    spec = get_spec(name)
    ws = spec.int8_params[scale]
    p = ip.load(resolve_weights(ws), ws.sha256)
    assert p.meta["model"] == name and p.meta["scale"] == scale
    assert p.meta["float_weights_sha256"] == spec.weights[scale].sha256 == ws.metrics["float_weights_sha256"]
    assert tuple(p.meta["rewrites"]) == tuple(ws.metrics["rewrites"])


@pytest.mark.slow
def test_registry_int8_export_uses_the_shipped_params_by_default(tmp_path, weights_root, data_root, monkeypatch):
    spec = get_spec("imdn_rtc")
    ws = spec.int8_params[2]
    manifest = _export(tmp_path / "default", data_root)
    q = _int8(manifest)["quantization"]
    assert q["int8_params_choice"] == f"shipped {ws.file}" and q["ranges"]["method"] == "int8-params"
    assert q["int8_params"]["signature"] == ip.load(
        __import__("srdeploy.models.weights", fromlist=["x"]).resolve_weights(ws)).signature
    # opting out gives the post-training model
    manifest = _export(tmp_path / "ptq", data_root, int8_params="none")
    assert _int8(manifest)["quantization"]["ranges"]["method"] != "int8-params"
    # a shipped file whose sha256 does not match is refused before anything is written
    monkeypatch.setitem(spec.int8_params, 2, dataclasses.replace(ws, sha256="0" * 64))
    with pytest.raises(SrDeployError, match="imdn_rtc_x2_int8.npz are damaged: sha256"):
        _export(tmp_path / "bad", data_root)
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_a_variant_is_measured_against_its_original_and_its_relus_fuse(tmp_path, weights_root, data_root):
    """imdn_rtc_relu (issue 17, item 5): its INT8 export reports every artifact's drop against the original
    imdn_rtc's PyTorch FP32 as well as its own, and no activation is left as an op of its own."""
    from srdeploy.benchmark.evaluate import evaluate_dataset, find_dataset, make_predictor

    from .test_export import _op_census

    cfg = ExportConfig(model="imdn_rtc_relu", size="64x64", int8=True, calib=str(data_root / "div2k" / "HR"),
                       calib_samples=4, out=str(tmp_path))
    manifest = Exporter(cfg, log=lambda m: None).run()
    assert manifest["status"] == "passed" and manifest["quality_original"] == "imdn_rtc_pytorch_fp32"
    set5 = manifest["quality"]["Set5"]
    original = evaluate_dataset(make_predictor("imdn_rtc", 2)[0], find_dataset(data_root / "Set5", 2), 2).psnr_y
    assert set5["imdn_rtc_pytorch_fp32"]["psnr_y"] == pytest.approx(original, abs=1e-6)
    for ds, rows in manifest["quality"].items():
        base, orig = rows["pytorch_fp32"]["psnr_y"], rows["imdn_rtc_pytorch_fp32"]["psnr_y"]
        for label, row in rows.items():
            assert row["drop_db"] == pytest.approx(base - row["psnr_y"]), (ds, label)
            assert row["drop_vs_original_db"] == pytest.approx(orig - row["psnr_y"]), (ds, label)
    for f in ("model_fp32.tflite", "model_int8.tflite"):
        census = _op_census(tmp_path / f)
        assert census["LEAKY_RELU"] == 0 and census["RELU"] == 0 and census["CONV_2D"] >= 28, (f, census)
    # the original's graph, for contrast, keeps its 15 LeakyReLUs as ops
    Exporter(ExportConfig(model="imdn_rtc", size="64x64", out=str(tmp_path / "orig"), fp16=False),
             log=lambda m: None).run()
    assert _op_census(tmp_path / "orig" / "model_fp32.tflite")["LEAKY_RELU"] == 15


def test_a_variant_needs_its_originals_weights_only_for_the_comparison(monkeypatch, tmp_path, weights_root):
    """imdn_rtc_relu's weights are embedded: without the original's official file its export still runs, only
    the second baseline is left out."""
    from srdeploy.sources.registry import RegistrySource

    src = RegistrySource("imdn_rtc_relu")
    assert src.original((64, 64), 8)[0] == "imdn_rtc_pytorch_fp32"
    monkeypatch.setenv("SRDEPLOY_WEIGHTS", str(tmp_path / "nothing-here"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "no-cache"))
    assert src.original((64, 64), 8) is None
    assert RegistrySource("dipnet_lite").original((64, 64), 8) is None  # not a variant


@pytest.mark.slow
def test_imdn_x4_shipped_file_holds_where_the_converter_reorders_its_graph(tmp_path, weights_root, data_root):
    """imdn x4's file was made on the conv_split graph at 256x256; at 64x64 the converter stores that graph's
    independent split convs in the other order (session 31: refused by index). By canonical key it is used."""
    ws = get_spec("imdn").int8_params[4]
    assert "conv_split" in ws.metrics["rewrites"]
    cfg = ExportConfig(model="imdn", scale=4, size="64x64", int8=True, calib=str(data_root / "div2k" / "HR"),
                       calib_samples=4, out=str(tmp_path), fp16=False)
    q = _int8(Exporter(cfg, log=lambda m: None).run())["quantization"]
    assert q["int8_params_choice"] == f"shipped {ws.file}" and q["ranges"]["method"] == "int8-params", q
    assert q["graph_rewrites"]["conv_split"] > 0
    shipped = ip.load(Path(srdeploy.models.__file__).parent / "zoo" / ws.file)
    assert q["int8_params"]["signature"] == shipped.signature
