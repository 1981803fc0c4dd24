"""sr-bench: numbers exist, errors are isolated per model, JSON has the documented shape, GPU check."""
from __future__ import annotations

import json
import os

import jsonschema
import pytest

from srdeploy.benchmark.gpu_check import gpu_check
from srdeploy.benchmark.roofline import count_macs_tflite, count_macs_torch
from srdeploy.export import ExportConfig, Exporter
from srdeploy.models import create_model

from .conftest import run_cli

NUM = {"type": "number"}
NUM_OR_NULL = {"type": ["number", "null"]}
SCHEMA = {
    "type": "object",
    "required": ["machine", "results"],
    "properties": {
        "machine": {"type": "object", "required": ["cpu", "cores", "libraries"]},
        "results": {"type": "array", "items": {
            "type": "object",
            "required": ["model", "size", "threads", "delegate", "init_ms", "first_ms", "min_ms", "median_ms",
                         "mean_ms", "p90_ms", "std_ms", "peak_rss_mb", "error"],
            "properties": {
                "model": {"type": "string"}, "size": {"type": ["array", "null"], "items": {"type": "integer"}},
                "threads": {"type": "integer"}, "delegate": {"type": "string"},
                **{k: NUM_OR_NULL for k in ("init_ms", "first_ms", "min_ms", "median_ms", "mean_ms", "p90_ms",
                                            "std_ms", "peak_rss_mb")},
                "error": {"type": ["string", "null"]},
            }}},
    },
}


@pytest.fixture(scope="module")
def exports(tmp_path_factory, weights_root):
    root = tmp_path_factory.mktemp("bench")
    dcr = root / "dcr"
    plain = root / "plain"
    Exporter(ExportConfig(model="imdn_rtc", size="32x32", fp16=True, out=str(dcr)), log=lambda m: None).run()
    Exporter(ExportConfig(model="imdn_rtc", size="32x32", out=str(plain), rewrites=()), log=lambda m: None).run()
    return dcr, plain


@pytest.mark.slow
def test_bench_reports_and_isolates_a_garbage_model(exports, tmp_path):
    dcr, _ = exports
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes((dcr / "model_fp32.tflite").read_bytes()[:3000])
    out = tmp_path / "b.json"
    proc = run_cli("srdeploy.benchmark.bench_cli", str(dcr / "model_fp32.tflite"), str(garbage),
                   str(dcr / "model.onnx"), "imdn_rtc", "--size", "32x32", "--runs", "3", "--threads", "1",
                   "--json", str(out))
    assert proc.returncode == 1, proc.stderr  # one model failed ...
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, SCHEMA)
    res = doc["results"]
    assert [r["model"] for r in res] == [str(dcr / "model_fp32.tflite"), str(garbage), str(dcr / "model.onnx"),
                                         "imdn_rtc"]
    assert res[1]["error"] and res[1]["median_ms"] is None
    for r in (res[0], res[2], res[3]):  # ... and the others still report
        assert r["error"] is None and r["size"] == [32, 32] and r["threads"] == 1
        for k in ("init_ms", "first_ms", "min_ms", "median_ms", "mean_ms", "p90_ms", "peak_rss_mb"):
            assert r[k] > 0, (r["model"], k)
        assert r["min_ms"] <= r["median_ms"] <= r["p90_ms"] and r["std_ms"] >= 0
    # the comparison table: one row per model, ratios against the first
    table = proc.stdout[proc.stdout.index("median ms"):].splitlines()[1:]
    assert len([ln for ln in table if ln.strip()]) == 4
    assert "1.000" in table[0] and "ERROR" in table[1]


def test_models_that_do_not_fit_in_memory_together_are_timed_in_groups(exports, monkeypatch):
    """Each loaded worker holds its model's memory; when the machine has no room for another, the loaded
    ones are timed and closed before the next loads (the suite's ten 1080x1920 workers once needed ~28 GB
    on a 24 GB machine). Low memory is simulated through /proc/meminfo's reading."""
    from srdeploy.benchmark import bench

    dcr, plain = exports
    models = [str(dcr / "model_fp32.tflite"), str(plain / "model_fp32.tflite"), str(dcr / "model_fp16.tflite")]
    settings = [bench.BenchSetting(m, (32, 32), 1, "xnnpack") for m in models]
    live: list[int] = []
    real_load = bench._load

    def load(s, res, *a):  # count the workers alive while the next one is considered
        w = real_load(s, res, *a)
        live.append(w.proc.pid)
        return w

    monkeypatch.setattr(bench, "_load", load)
    # a 10 GB machine with 1 GB available before any worker and 0.4 GB once one is alive: the 5 % reserve
    # (0.5 GB) alone is more than that, so no second worker fits beside the first
    monkeypatch.setattr(bench, "_meminfo_mb", lambda: (10_000.0, 1_000.0 - 600.0 * sum(
        1 for pid in live if os.path.exists(f"/proc/{pid}"))))
    res = bench.run_benchmarks(settings, warmup=0, runs=2)
    assert [r.interleave_group for r in res] == [1, 2, 3]  # each alone: no room for a second beside it
    assert all(r.error is None and len(r.times_ms) == 2 and r.model_memory_mb for r in res)
    # with room for all, one interleaved group (the field stays empty)
    live.clear()
    monkeypatch.setattr(bench, "_meminfo_mb", lambda: (10_000.0, 9_000.0))
    res = bench.run_benchmarks(settings, warmup=0, runs=2)
    assert [r.interleave_group for r in res] == [None, None, None] and all(len(r.times_ms) == 2 for r in res)
    assert bench._room_for_another(3_900.0) is True  # 9 GB free > 1.5 x 3.9 GB + 0.5 GB
    monkeypatch.setattr(bench, "_meminfo_mb", lambda: (24_000.0, 5_000.0))
    assert bench._room_for_another(3_900.0) is False  # the suite's case: 5 GB free < 5.85 + 1.2 GB


def test_fixed_shape_model_at_another_size_is_an_error_row(exports, tmp_path):
    dcr, _ = exports
    proc = run_cli("srdeploy.benchmark.bench_cli", str(dcr / "model_fp32.tflite"), "--size", "48x48", "--runs", "1")
    assert proc.returncode == 1
    assert "fixed input shape 32x32: cannot run at 48x48" in proc.stdout


def test_profile_lists_op_types(exports):
    dcr, _ = exports
    proc = run_cli("srdeploy.benchmark.bench_cli", str(dcr / "model_fp16.tflite"), "--profile", "--runs", "2")
    assert proc.returncode == 0, proc.stderr
    assert "Per op type" in proc.stdout
    for op in ("CONV_2D", "STRIDED_SLICE", "DEPTH_TO_SPACE", "DEQUANTIZE"):
        assert op in proc.stdout
    assert "CONV_2D by shape" in proc.stdout
    # the per-shape conv times account for every CONV_2D, once
    from srdeploy.benchmark.profile import profile_tflite

    prof = profile_tflite(dcr / "model_fp32.tflite", runs=1)
    n_conv = next(o for o in prof["ops"] if o["op"] == "CONV_2D")
    assert sum(c["count"] for c in prof["convs"]) == n_conv["count"] > 1
    assert abs(sum(c["ms"] for c in prof["convs"]) - n_conv["ms"]) < 1e-6


def test_gpu_check_passes_phone_graph_and_fails_6d_and_topk(exports, tmp_path):
    dcr, plain = exports
    assert gpu_check(dcr / "model_fp32.tflite").passed and gpu_check(dcr / "model_fp16.tflite").passed
    bad = gpu_check(plain / "model_fp32.tflite")
    assert not bad.passed and any("6-D" in i.reason for i in bad.issues)
    proc = run_cli("srdeploy.benchmark.bench_cli", str(plain / "model_fp32.tflite"), "--gpu-check")
    assert proc.returncode == 1 and "6-D tensor" in proc.stdout
    # an op the delegate does not have at all
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 16], tf.float32)])
    def topk(x):
        return tf.math.top_k(x, 4).values

    path = tmp_path / "topk.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([topk.get_concrete_function()], topk).convert())
    rep = gpu_check(path)
    assert not rep.passed and any(i.op == "TOPK_V2" for i in rep.issues)


def test_macs_agree_between_graph_and_pytorch(exports):
    dcr, _ = exports
    assert count_macs_tflite(dcr / "model_fp32.tflite") == count_macs_torch(create_model("imdn_rtc"), (32, 32))


def test_bad_bench_input_exits_2(tmp_path):
    for args, expect in [(["nope.tflite"], "model file not found"), (["edsr"], "unknown model"),
                         (["imdn_rtc", "--size", "0x4"], "--size must be HxW"), (["imdn_rtc:x3"], "scale must be")]:
        proc = run_cli("srdeploy.benchmark.bench_cli", *args)
        assert proc.returncode == 2 and expect in proc.stderr, (args, proc.stderr)
