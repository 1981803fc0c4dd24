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


# --- sr-export --memory-budget (issue 20, item 3): the CPU setting an app loads the model with ---

def test_choose_the_fastest_setting_that_fits():
    from srdeploy.benchmark.budget import choose

    rows = [{"setting": "default", "model_memory_mb": 600.0, "median_ms": 200.0},
            {"setting": "transient-indirection", "model_memory_mb": 150.0, "median_ms": 290.0},
            {"setting": "broken", "model_memory_mb": 10.0, "median_ms": 1.0, "error": "did not load"}]
    assert choose(rows, 1000)["setting"] == "default"          # both fit: the faster
    assert choose(rows, 600)["setting"] == "default"           # the bound is inclusive
    assert choose(rows, 599.9)["setting"] == "transient-indirection"
    assert choose(rows, 100) is None                           # an errored row never counts


def _app(tmp_path):
    app = tmp_path / "app_dir"
    (app / "app").mkdir(parents=True)
    (app / "app" / "build.gradle.kts").write_text("// stand-in\n")
    return app


def test_memory_budget_is_measured_recorded_and_bundled(tmp_path):
    from srdeploy.benchmark.budget import fit_budget
    from srdeploy.errors import SrDeployError
    from srdeploy.export.bundle import bundle

    out = tmp_path / "e"
    proc = run_cli("srdeploy.export.cli", "--model", "dipnet_lite", "--size", "32x32", "--out", str(out),
                   "--memory-budget", "100000", "--memory-runs", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    man = json.loads((out / "manifest.json").read_text())
    entry = man["runtime"]["artifacts"]["model_fp32.tflite"]
    assert [c["setting"] for c in entry["candidates"]] == ["default", "transient-indirection"]
    for c in entry["candidates"]:
        assert c["error"] is None and c["model_memory_mb"] > 0 and c["median_ms"] > 0 and c["runs"] == 2
    assert entry["choice"] == min(entry["candidates"], key=lambda c: c["median_ms"])["setting"]
    assert entry["io_floor_mb"] == pytest.approx((32 * 32 + 64 * 64) * 3 * 4 / 2**20, rel=1e-3)
    assert "memory budget 100000 MB" in proc.stderr and "<- chosen" in proc.stderr
    # the bundle carries the chosen flags to the app (none for LiteRT's defaults)
    entry["choice"] = "transient-indirection"
    (out / "manifest.json").write_text(json.dumps(man))
    app = _app(tmp_path)
    assert json.loads((bundle(out, app) / "manifest.json").read_text())["xnnpack_flags"] == 0x23
    entry["choice"] = "default"
    (out / "manifest.json").write_text(json.dumps(man))
    assert "xnnpack_flags" not in json.loads((bundle(out, app) / "manifest.json").read_text())
    entry["candidates"][0]["xnnpack_flags"] = -1            # tampered: refused, one line
    (out / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(SrDeployError, match="xnnpack_flags is not a non-negative 31-bit integer"):
        bundle(out, app)
    # below the frame's own input and output tensors: refused before anything is measured
    with pytest.raises(SrDeployError, match="below what any runtime must hold"):
        fit_budget(out, man, 0.01)


def test_memory_budget_that_nothing_fits_is_one_line_and_exit_2(tmp_path):
    out = tmp_path / "e"
    proc = run_cli("srdeploy.export.cli", "--model", "dipnet_lite", "--size", "32x32", "--out", str(out),
                   "--memory-budget", "0.5", "--memory-runs", "1")
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "--memory-budget 0.5 MB: model_fp32.tflite fits in no CPU setting" in last, proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr
    man = json.loads((out / "manifest.json").read_text())   # the export itself is complete, and says so
    assert man["runtime"]["artifacts"]["model_fp32.tflite"]["choice"] is None
    proc = run_cli("srdeploy.export.bundle", str(out), "--app", str(_app(tmp_path)))
    assert proc.returncode == 2 and "fits in no CPU setting" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("srdeploy.export.cli", "--model", "dipnet_lite", "--size", "32x32", "--memory-budget", "-3",
                   "--out", str(tmp_path / "never"))
    assert proc.returncode == 2 and "positive number of MB" in proc.stderr and not (tmp_path / "never").exists()
