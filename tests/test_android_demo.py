"""Android demo: bundling is validated and atomic; the JVM tiler agrees with the Python tiler."""
from __future__ import annotations

import json
import os
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


def test_bundle_removes_a_killed_bundles_staging_and_refuses_a_second_writer(rtc_export, tmp_path):
    """A killed sr-bundle leaves its staging folder in the app's assets (old code: for good, beside every
    later bundle); the next sr-bundle, holding the folder's lock, removes it and leaves a sibling's
    alone. While another writer holds the lock, a bundle is refused and the installed one is kept."""
    from srdeploy.fsutil import FolderLock

    app = _app_copy(tmp_path)
    assets = (app / ASSET_SUBDIR).parent
    stale = assets / f".{ASSET_SUBDIR.name}.abcd1234.partial"
    stale.mkdir(parents=True)
    (stale / "model_int8.tflite").write_bytes(b"half a model")
    sibling = assets / f".{ASSET_SUBDIR.name}2.abcd1234.partial"
    sibling.mkdir()
    dest = bundle(rtc_export, app)
    assert sorted(p.name for p in assets.iterdir()) == [sibling.name, ASSET_SUBDIR.name]
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    with FolderLock(dest):
        with pytest.raises(SrDeployError, match="another process is writing"):
            bundle(rtc_export, app, "model_fp32.tflite")
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before


def test_bundle_cli_errors(rtc_export, tmp_path):
    from .conftest import run_cli

    app = _app_copy(tmp_path)
    for args, expect in [([str(tmp_path), "--app", str(app)], "not an sr-export folder"),
                         ([str(rtc_export), "--app", str(tmp_path)], "not the Android demo project"),
                         ([str(rtc_export), "--app", str(app), "--artifact", "model_x.tflite"], "no such TFLite")]:
        proc = run_cli("srdeploy.export.bundle", *args)
        assert proc.returncode == 2 and expect in proc.stderr, proc.stderr


def _javac(tmp_path, *files) -> Path:
    javac = shutil.which("javac")
    if not javac:
        pytest.fail("no JDK on this machine: install default-jdk-headless to run the JVM tests")
    out = tmp_path / "classes"
    subprocess.run([javac, "-d", str(out), *map(str, files)], check=True, capture_output=True, text=True)
    return out


TILING = APP / "tiling" / "src"


def test_jvm_blender_streams_rows_within_the_12mp_budget(tmp_path):
    """The app's blender holds one band of tile rows, streams finished rows, agrees with a full
    weighted average, and a 12 MP x2 photo fits its stated budget; a planted blending bug fails."""
    check = TILING / "test/java/dev/srdeploy/tiling/BlendCheck.java"
    cls = _javac(tmp_path, TILING / "main/java/dev/srdeploy/tiling/Tiler.java", check)
    ok = subprocess.run(["java", "-cp", str(cls), "dev.srdeploy.tiling.BlendCheck"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    mb = float(ok.stdout.split("blend buffer ")[1].split(" MB")[0])
    assert 0 < mb <= 100, ok.stdout
    bad_src = tmp_path / "bad" / "Tiler.java"
    bad_src.parent.mkdir()
    text = (TILING / "main/java/dev/srdeploy/tiling/Tiler.java").read_text()
    bad_src.write_text(text.replace("band[o] += wt * out[i];", "band[o] = wt * out[i];"))
    assert bad_src.read_text() != text
    cls = _javac(tmp_path / "b", bad_src, check)
    bad = subprocess.run(["java", "-cp", str(cls), "dev.srdeploy.tiling.BlendCheck"], capture_output=True, text=True)
    assert bad.returncode == 1 and "full blend" in bad.stderr


def test_app_bench_json_is_sr_bench_shaped(tmp_path):
    """The app's benchmark writer (plain Java, run here on the JVM) produces what sr-bench --json
    produces, and sr-bench --compare puts it in one table with host rows."""
    import jsonschema

    from .conftest import run_cli
    from .test_bench import SCHEMA

    cls = _javac(tmp_path, TILING / "main/java/dev/srdeploy/tiling/BenchReport.java")
    out = subprocess.run(["java", "-cp", str(cls), "dev.srdeploy.tiling.BenchReport"], capture_output=True, text=True,
                         check=True).stdout
    phone = json.loads(out)
    schema = {**SCHEMA, "properties": {**SCHEMA["properties"],
                                       "machine": {"type": "object", "required": ["cpu", "cores", "platform"]}}}
    jsonschema.validate(phone, schema)
    ok, failed = phone["results"]
    assert ok["median_ms"] == 2.5 and ok["p90_ms"] == 4.0 and ok["min_ms"] == 1.0 and ok["runs"] == 4
    assert failed["error"] and failed["median_ms"] is None
    (tmp_path / "phone.json").write_text(out)
    proc = run_cli("srdeploy.benchmark.bench_cli", "--compare", str(tmp_path / "phone.json"))
    assert proc.returncode == 0, proc.stderr
    assert "xnnpack" in proc.stdout and "npu" in proc.stdout and "ERROR" in proc.stdout and "1.000" in proc.stdout
    (tmp_path / "bad.json").write_text(json.dumps({"machine": {}, "results": [{"model": 3}]}))
    proc = run_cli("srdeploy.benchmark.bench_cli", "--compare", str(tmp_path / "bad.json"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "results[0]" in proc.stderr


def test_bundle_carries_the_npu_model_and_no_host_path(rtc_export, tmp_path):
    """An export with a model compiled for SM8650 (fully offloaded) bundles it with its SoC and the
    accelerator order NPU -> GPU -> CPU; nothing bundled holds a path of this machine; a compiled file
    that does not match its recorded checksum is refused."""
    from .conftest import need_target

    need_target("qualcomm:SM8650", "sr-target setup qualcomm")
    from srdeploy.targets.check import record_in_manifest
    from srdeploy.targets.qualcomm import compile_artifact

    export = tmp_path / "export"
    shutil.copytree(rtc_export, export)
    res = compile_artifact(export / "model_int8.tflite", "SM8650", export / "model_int8.SM8650.tflite")
    assert res["status"] == "compiled", res
    record_in_manifest(export, {"qualcomm:SM8650": {"model_int8.tflite": res}})
    app = _app_copy(tmp_path)
    dest = bundle(export, app)
    assert sorted(p.name for p in dest.iterdir()) == ["manifest.json", "model_int8.SM8650.tflite", "model_int8.tflite"]
    man = json.loads((dest / "manifest.json").read_text())
    assert man["compiled"] == {"SM8650": "model_int8.SM8650.tflite"} and man["accelerators"] == ["npu", "gpu", "cpu"]
    host_strings = [str(tmp_path), str(Path.home()), str(ROOT)]
    for f in dest.iterdir():
        blob = f.read_bytes()
        assert not any(h.encode() in blob for h in host_strings), f.name

    def strings(v):
        if isinstance(v, dict):
            return [s for x in v.values() for s in strings(x)]
        return [s for x in v for s in strings(x)] if isinstance(v, list) else [v] if isinstance(v, str) else []
    assert not [s for s in strings(man) if s.startswith("/") or "\\" in s]
    # an export without NPU models: GPU then CPU
    plain = bundle(rtc_export, _app_copy(tmp_path / "p"))
    assert json.loads((plain / "manifest.json").read_text())["accelerators"] == ["gpu", "cpu"]
    # a compiled file changed after its check is refused, and the previous bundle stays
    before = (dest / "model_int8.SM8650.tflite").read_bytes()
    (export / "model_int8.SM8650.tflite").write_bytes(before[:-1] + bytes([before[-1] ^ 1]))
    with pytest.raises(SrDeployError, match="does not match the checksum"):
        bundle(export, app)
    assert (dest / "model_int8.SM8650.tflite").read_bytes() == before


# --- the compile check (android_demo/compile_check.sh): aapt2, javac, kotlinc 1.9.24 + stand-ins ---

CHECK = APP / "compile_check.sh"


@pytest.fixture(scope="session")
def compile_tools():
    """The check's tools, installed on first use (~30 s) or found in the cache; not installable
    (offline, no apt-get) is a skip here and a failure under CI=true."""
    from .conftest import IN_CI

    r = subprocess.run(["bash", str(CHECK), "--setup"], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        msg = f"the compile check's tools could not be set up: {(r.stderr.strip().splitlines() or ['?'])[-1]}"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)


def _compile_check(app: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CHECK), *([str(app)] if app else [])], capture_output=True, text=True,
                          timeout=900)


def test_compile_check_passes_on_the_app(compile_tools):
    r = _compile_check()
    assert r.returncode == 0, r.stderr[-3000:]
    assert "compile check passed" in r.stdout
    assert "0 Kotlin warnings" in r.stdout, r.stderr[-3000:]


#: one mistake per compiler step, each as a user would make it: (file, text, replacement, the step
#: that must fail, what its first error must name)
PLANTED = {
    "kotlin-type-error": ("app/src/main/java/dev/srdeploy/demo/ModelManifest.kt", None,
                          "\nprivate val planted: Int = \"not an int\"\n", "kotlinc (app)", "ModelManifest.kt"),
    "litert-signature": ("app/src/main/java/dev/srdeploy/demo/SuperResolver.kt",
                         "inputs[0].writeFloat(floatIn)", "inputs[0].writeFloat(byteIn!!)", "kotlinc (app)",
                         "SuperResolver.kt"),
    "missing-view-id": ("app/src/main/java/dev/srdeploy/demo/MainActivity.kt",
                        "R.id.timings)", "R.id.timingz)", "kotlinc (app)", "MainActivity.kt"),
    "layout-attribute": ("app/src/main/res/layout/activity_main.xml",
                         "android:layout_width=", "android:layout_widht=", "aapt2 link", "activity_main.xml"),
    "tiler-java": ("tiling/src/main/java/dev/srdeploy/tiling/Tiler.java",
                   "public final class Tiler {", "public final class Tiler { int planted = \"x\";", "javac (tiling)",
                   "Tiler.java"),
}


@pytest.mark.parametrize("plant", sorted(PLANTED))
def test_compile_check_fails_on_a_planted_error(compile_tools, tmp_path, plant):
    rel, old, new, step, where = PLANTED[plant]
    app = tmp_path / "android_demo"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("build", ".gradle", "assets", "compile_check*"))
    target = app / rel
    text = target.read_text()
    if old is None:
        planted = text + new
    else:
        assert text.count(old) >= 1, f"{rel} no longer holds {old!r}: update the plant"
        planted = text.replace(old, new, 1)
    target.write_text(planted)
    r = _compile_check(app)
    assert r.returncode == 1, (r.returncode, r.stdout[-1500:], r.stderr[-1500:])
    first = next(line for line in r.stderr.splitlines() if line.startswith("compile check FAILED"))
    assert f"FAILED at {step}:" in first and where in first, first


def test_compile_check_offline_setup_is_one_line_and_leaves_nothing(tmp_path):
    env = {**os.environ, "SRDEPLOY_ANDROID_TOOLS": str(tmp_path / "tools"),
           "SRDEPLOY_DEBIAN_MIRROR": "http://127.0.0.1:9/debian"}  # nothing listens on port 9
    r = subprocess.run(["bash", str(CHECK), "--setup"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("compile check: apt-get update failed (offline?")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tools.lock"]  # no tools, no half-made staging folder
    r = subprocess.run(["bash", str(CHECK), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "is not the demo app's folder" in r.stderr.strip().splitlines()[-1]
