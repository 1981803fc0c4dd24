"""Android demo: bundling is validated and atomic; the JVM tiler agrees with the Python tiler."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from srdeploy.errors import SrDeployError
from srdeploy.export import ExportConfig, Exporter
from srdeploy.export.bundle import ASSET_SUBDIR, bundle
from srdeploy.tiling import golden_text

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "android_demo"
GOLDEN = APP / "tiling" / "src" / "test" / "resources" / "golden" / "tiles.txt"


def test_golden_file_is_current():
    assert GOLDEN.read_text() == golden_text(), "regenerate with srdeploy.tiling.golden_text()"


def test_jvm_tiler_matches_python_golden(tmp_path):
    javac, java = shutil.which("javac"), shutil.which("java")
    if not javac or not java:
        pytest.fail("no JDK on this machine: install default-jdk-headless to run the JVM tiler test")
    src = APP / "tiling" / "src"
    files = [src / "main/java/dev/srdeploy/tiling/Tiler.java", src / "test/java/dev/srdeploy/tiling/GoldenCheck.java"]
    subprocess.run([javac, "-d", str(tmp_path), *map(str, files)], check=True, capture_output=True, text=True)
    ok = subprocess.run([java, "-cp", str(tmp_path), "dev.srdeploy.tiling.GoldenCheck", str(GOLDEN)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    # the JVM check can fail: a golden file with one weight changed is caught
    bad = tmp_path / "bad.txt"
    text = GOLDEN.read_text().replace("rows 0.0", "rows 0.001", 1)
    assert text != GOLDEN.read_text()
    bad.write_text(text)
    fail = subprocess.run([java, "-cp", str(tmp_path), "dev.srdeploy.tiling.GoldenCheck", str(bad)],
                          capture_output=True, text=True)
    assert fail.returncode == 1 and "golden" in fail.stderr


@pytest.fixture(scope="module")
def rtc_export(tmp_path_factory, weights_root, data_root):
    """imdn_rtc at 64x64: FP32, FP16 and INT8 with uint8 I/O (what the app feeds from a bitmap)."""
    out = tmp_path_factory.mktemp("rtc") / "export"
    Exporter(ExportConfig(model="imdn_rtc", size="64x64", fp16=True, int8=True, io="uint8", calib_samples=4,
                          calib=str(data_root / "div2k" / "HR"), out=str(out)), log=lambda m: None).run()
    return out


def _app_copy(tmp_path) -> Path:
    app = tmp_path / "android_demo"
    (app / "app").mkdir(parents=True)
    shutil.copy(APP / "app" / "build.gradle.kts", app / "app" / "build.gradle.kts")
    return app


def test_bundle_writes_int8_uint8_model_and_reduced_manifest(rtc_export, tmp_path):
    app = _app_copy(tmp_path)
    dest = bundle(rtc_export, app)  # default choice: the INT8 model
    assert dest == app / ASSET_SUBDIR
    assert sorted(p.name for p in dest.iterdir()) == ["manifest.json", "model_int8.tflite"]
    man = json.loads((dest / "manifest.json").read_text())
    assert man["model"] == "imdn_rtc" and man["scale"] == 2 and man["file"] == "model_int8.tflite"
    assert man["precision"] == "int8" and man["overlap"] == 8
    assert man["input"]["shape"] == [1, 64, 64, 3] and man["output"]["shape"] == [1, 128, 128, 3]
    assert man["input"]["dtype"] == man["output"]["dtype"] == "uint8"
    assert man["input"]["scale"] == pytest.approx(1 / 255) and man["input"]["zero_point"] == 0
    assert (dest / "model_int8.tflite").read_bytes() == (rtc_export / "model_int8.tflite").read_bytes()
    bundle(rtc_export, app, "model_fp16.tflite")
    man = json.loads((dest / "manifest.json").read_text())
    # --io uint8 reaches the float artifacts too: plain uint8 bytes, described as scale 1/255 for the app
    assert man["input"]["dtype"] == man["output"]["dtype"] == "uint8" and man["file"] == "model_fp16.tflite"
    assert man["input"]["scale"] == pytest.approx(1 / 255) and man["output"]["zero_point"] == 0
    # re-bundling another artifact replaces the bundle whole, leaving no temporary folders
    bundle(rtc_export, app, "model_fp32.tflite")
    assert sorted(p.name for p in dest.iterdir()) == ["manifest.json", "model_fp32.tflite"]
    assert [p.name for p in dest.parent.iterdir()] == ["srdeploy"]


def test_bundle_refuses_unsupported_io_and_keeps_previous(rtc_export, tmp_path):
    """A model whose I/O the app cannot feed (float16 tensors at the boundary) is refused."""
    import numpy as np
    import tensorflow as tf

    app = _app_copy(tmp_path)
    bundle(rtc_export, app, "model_fp32.tflite")
    before = {p.name: p.read_bytes() for p in (app / ASSET_SUBDIR).iterdir()}

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.int16)])
    def up(x):
        return tf.image.resize(tf.cast(x, tf.float32), (16, 16), method="nearest")

    bad_export = tmp_path / "bad_export"
    bad_export.mkdir()
    blob = tf.lite.TFLiteConverter.from_concrete_functions([up.get_concrete_function()], up).convert()
    (bad_export / "model_fp32.tflite").write_bytes(blob)
    from srdeploy.models.weights import sha256_file

    (bad_export / "manifest.json").write_text(json.dumps({
        "model": "toy", "scale": 2, "status": "passed",
        "artifacts": [{"file": "model_fp32.tflite", "precision": "fp32",
                       "sha256": sha256_file(bad_export / "model_fp32.tflite")}]}))
    with pytest.raises(SrDeployError, match="input dtype int16 is not supported by the app"):
        bundle(bad_export, app)
    after = {p.name: p.read_bytes() for p in (app / ASSET_SUBDIR).iterdir()}
    assert after == before
    assert np.array_equal(np.frombuffer(after["model_fp32.tflite"], np.uint8),
                          np.frombuffer((rtc_export / "model_fp32.tflite").read_bytes(), np.uint8))


def test_bundle_cli_errors(rtc_export, tmp_path):
    from .conftest import run_cli

    app = _app_copy(tmp_path)
    for args, expect in [([str(tmp_path), "--app", str(app)], "not an sr-export folder"),
                         ([str(rtc_export), "--app", str(tmp_path)], "not the Android demo project"),
                         ([str(rtc_export), "--app", str(app), "--artifact", "model_x.tflite"], "no such TFLite")]:
        proc = run_cli("srdeploy.export.bundle", *args)
        assert proc.returncode == 2 and expect in proc.stderr, proc.stderr
