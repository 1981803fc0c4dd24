"""sr-bench's memory figures (issue 20, item 1): the activation liveness bound and the model's own
peak memory, and their ratio."""
from __future__ import annotations

import json

import pytest

from srdeploy.benchmark.memory import liveness_bound, liveness_peak

from .conftest import run_cli


def test_liveness_of_a_hand_made_diamond():
    # t0 (input, 100) -> op0 -> t1 (10) ; t0 -> op1 -> t2 (20) ; t1, t2 -> op2 -> t3 (output, 5)
    # during op0: t0 + t1 = 110; op1: t0 + t1 (read later) + t2 = 130; op2: t1 + t2 + t3 = 35
    lv = liveness_peak([[0], [0], [1, 2]], [[1], [2], [3]], [0], [3], {0: 100, 1: 10, 2: 20, 3: 5})
    assert (lv.bytes, lv.op_index, lv.tensors) == (130, 1, 4)
    # constants (ids without a size) cost nothing; an unread output dies where it is born
    lv = liveness_peak([[0, 9], [1]], [[1, 4], [2]], [0], [2], {0: 8, 1: 8, 2: 8, 4: 1000})
    assert lv.bytes == 8 + 8 + 1000 and lv.op_index == 0


def test_liveness_bound_of_a_small_tflite_graph(tmp_path):
    from srdeploy.runtime import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    def f(x):
        a = tf.math.sqrt(x)                # 768 B
        b = tf.concat([x, a], axis=3)      # 1536 B; x and a die here
        return tf.math.exp(b)              # 1536 B
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    path = tmp_path / "m.tflite"
    path.write_bytes(conv.convert())
    # SQRT: x + a = 1536; CONCATENATION: x + a + b = 3072; EXP: b + c = 3072
    lv = liveness_bound(path)
    assert lv.bytes == 3072 and lv.op_index == 1 and lv.tensors == 4


@pytest.mark.slow
def test_model_memory_grows_with_the_frame_at_least_by_its_output(tmp_path):
    for size in ("64x64", "256x256"):
        proc = run_cli("srdeploy.export.cli", "--model", "dipnet_lite", "--size", size, "--out", str(tmp_path / size))
        assert proc.returncode == 0, proc.stderr[-1500:]
    js = tmp_path / "b.json"
    proc = run_cli("srdeploy.benchmark.bench_cli", str(tmp_path / "64x64" / "model_fp32.tflite"),
                   str(tmp_path / "256x256" / "model_fp32.tflite"), "--runs", "2", "--json", str(js))
    assert proc.returncode == 0, proc.stderr
    small, big = json.loads(js.read_text())["results"]
    for r in (small, big):
        assert r["model_memory_mb"] > 0 and r["liveness_bound_mb"] > 0
        assert r["memory_ratio"] == pytest.approx(r["model_memory_mb"] / r["liveness_bound_mb"])
    out_diff_mb = (256 * 256 - 64 * 64) * 4 * 3 * 4 / 2**20  # the x2 output tensors, float32 RGB
    assert big["model_memory_mb"] - small["model_memory_mb"] >= out_diff_mb
    assert big["liveness_bound_mb"] - small["liveness_bound_mb"] >= out_diff_mb
    assert "activation liveness bound" in proc.stdout and "Model's own memory" in proc.stdout


def test_compiled_runtime_with_xnnpack_flags_is_a_row_of_its_own(tmp_path):
    out = tmp_path / "e"
    proc = run_cli("srdeploy.export.cli", "--model", "dipnet_lite", "--size", "32x32", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-1500:]
    js = tmp_path / "b.json"
    proc = run_cli("srdeploy.benchmark.bench_cli", str(out / "model_fp32.tflite"), "--runtime", "compiled",
                   "--xnnpack-flags", "0x20", "--runs", "2", "--json", str(js))
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(js.read_text())["results"]
    assert row["runtime"] == "compiled" and row["xnnpack_flags"] == 0x20 and row["error"] is None
    assert row["model_memory_mb"] is not None and row["liveness_bound_mb"] > 0
    assert "CompiledModel CPU, xnnpack_flags 0x20" in proc.stdout


@pytest.mark.parametrize("args,expect", [
    (["--xnnpack-flags", "0x20"], "--xnnpack-flags needs --runtime compiled"),
    (["--runtime", "compiled", "--xnnpack-flags", "lots"], "must be an integer"),
    (["--runtime", "compiled", "--delegate", "none"], "runs on the CPU"),
])
def test_runtime_options_are_checked(tmp_path, args, expect):
    f = tmp_path / "m.tflite"
    f.write_bytes(b"x")
    proc = run_cli("srdeploy.benchmark.bench_cli", str(f), *args)
    assert proc.returncode == 2 and expect in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
