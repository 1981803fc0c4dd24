"""The hostile-input defects (issue 19: D1-D13): each test fails on the code before the fix.

Bad input: one line on stderr, exit 2, nothing written; a hung model meets a deadline; nothing is
written outside the requested folder; a tiny file cannot drive a process into gigabytes.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from . import hostile_models as hm
from .conftest import run_cli


def one_line_exit2(proc: subprocess.CompletedProcess, prog: str, expect: str = "") -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error:"), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert expect in lines[0], lines[0]
    return lines[0]


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def export_until(out: Path, size: str, stage: str, **popen) -> subprocess.Popen:
    """A dipnet_lite export into *out* (FP16 too), started and read until its progress line for
    *stage* (e.g. "[2/": the ONNX is written into the staging folder): the process is then mid-export."""
    proc = subprocess.Popen([sys.executable, "-m", "srdeploy.export.cli", "--model", "dipnet_lite", "--size", size,
                             "--fp16", "--out", str(out)], stderr=subprocess.PIPE, text=True, **popen)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith(stage):
            return proc
    proc.wait(timeout=120)  # ended before that stage: a broken export, not the case under test
    raise AssertionError(f"the export never reached {stage!r} (exit {proc.returncode}): {''.join(seen)[-2000:]}")


def consistent_export(folder: Path) -> dict:
    """The folder's manifest describes exactly the files beside it (names and checksums)."""
    man = json.loads((folder / "manifest.json").read_text())
    for a in man["artifacts"]:
        assert sha(folder / a["file"]) == a["sha256"], a["file"]
    listed = {a["file"] for a in man["artifacts"]} | {"manifest.json"}
    assert {p.name for p in folder.iterdir()} == listed
    return man


@pytest.fixture(scope="module")
def models(tmp_path_factory, export24) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("hostile_models")
    out = {name: getattr(hm, name)(d / f"{name}.tflite")
           for name in ("endless_loop", "two_d", "one_channel_x2", "dynamic_x2", "rgb_x2")}
    # edits of a model that passes the GPU check, so only the edit can make it fail
    out["gpu_ok"] = export24 / "model_fp32.tflite"
    for how in ("negative_dim", "no_input", "input_out_of_range", "huge_input", "big_input"):
        out[how] = hm.edited(out["gpu_ok"], d / f"{how}.tflite", how)
    return out


@pytest.fixture(scope="module")
def export24(tmp_path_factory) -> Path:
    """A real 24x24 export of the embedded dipnet_lite (no external files needed; 24 > 2 x the
    bundle's default overlap of 8)."""
    out = tmp_path_factory.mktemp("export24") / "lite"
    proc = run_cli("srdeploy.export.cli", "--model", "dipnet_lite", "--size", "24x24", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def fake_app(root: Path) -> Path:
    (root / "app").mkdir(parents=True)
    (root / "app" / "build.gradle.kts").write_text("// stand-in\n")
    return root


def png(path: Path, h: int = 16, w: int = 16, seed: int = 0) -> Path:
    import cv2

    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))
    return path


# ---------------------------------------------------------------- D10 path traversal in sr-bundle
def _hostile_export(export24: Path, tmp_path: Path, edit) -> Path:
    d = tmp_path / "export"
    shutil.copytree(export24, d)
    man = json.loads((d / "manifest.json").read_text())
    edit(man)
    (d / "manifest.json").write_text(json.dumps(man) if not isinstance(man, str) else man)
    return d


def test_bundle_refuses_an_artifact_name_that_escapes(export24, tmp_path):
    escape = "../../../../../../../../../" + str(tmp_path / "escaped.tflite").lstrip("/")
    shutil.copy(export24 / "model_fp32.tflite", tmp_path / "escaped.tflite")
    digest = sha(tmp_path / "escaped.tflite")

    def edit(man):
        man["artifacts"].append({"file": escape, "format": "tflite", "precision": "fp32", "sha256": digest})

    d = _hostile_export(export24, tmp_path, edit)
    app = fake_app(tmp_path / "app")
    good = run_cli("srdeploy.export.bundle", str(export24), "--app", str(app))
    assert good.returncode == 0, good.stderr
    before = (app / "app/src/main/assets/srdeploy/manifest.json").read_text()
    for extra in (["--artifact", escape], []):
        proc = run_cli("srdeploy.export.bundle", str(d), "--app", str(app), *extra)
        line = one_line_exit2(proc, "sr-bundle")
        assert "../" not in line  # the hostile name is not echoed
    assert (app / "app/src/main/assets/srdeploy/manifest.json").read_text() == before  # good bundle kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app", "escaped.tflite", "export"]


@pytest.mark.parametrize("edit,expect", [
    (lambda m: "{not json", "not readable JSON"),
    (lambda m: m.pop("scale"), "invalid manifest"),
    (lambda m: m.update(artifacts={"model_fp32.tflite": 1}), "artifacts"),
    (lambda m: m.update(scale="2"), "scale"),
])
def test_bundle_validates_the_manifest_schema(export24, tmp_path, edit, expect):
    d = tmp_path / "export"
    shutil.copytree(export24, d)
    man = json.loads((d / "manifest.json").read_text())
    res = edit(man)
    (d / "manifest.json").write_text(res if isinstance(res, str) else json.dumps(man))
    proc = run_cli("srdeploy.export.bundle", str(d), "--app", str(fake_app(tmp_path / "app")))
    one_line_exit2(proc, "sr-bundle", expect)
    assert not (tmp_path / "app/app/src/main/assets").exists()


def test_bundle_artifact_must_be_a_plain_name(export24, tmp_path):
    proc = run_cli("srdeploy.export.bundle", str(export24), "--app", str(fake_app(tmp_path / "app")),
                   "--artifact", "sub/model_fp32.tflite")
    one_line_exit2(proc, "sr-bundle", "not a path")


def test_bundled_manifest_is_typed_and_holds_no_host_path(export24, tmp_path):
    """First hour 5: no "scale": 0.0 for float I/O, no absolute path of the developer's machine."""
    app = fake_app(tmp_path / "app")
    proc = run_cli("srdeploy.export.bundle", str(export24), "--app", str(app))
    assert proc.returncode == 0, proc.stderr
    text = (app / "app/src/main/assets/srdeploy/manifest.json").read_text()
    man = json.loads(text)
    assert man["input"]["dtype"] == "float32" and "scale" not in man["input"] and "scale" not in man["output"]
    assert man["scale"] == 2
    assert str(export24.parent) not in text and os.path.expanduser("~") + "/" not in text
    assert "model_fp32.tflite" in proc.stdout


# ---------------------------------------------------------------- D2 hangs
def test_bench_times_out_a_hung_model_and_keeps_the_others(models, tmp_path):
    t0 = time.monotonic()
    proc = run_cli("srdeploy.benchmark.bench_cli", str(models["endless_loop"]), str(models["rgb_x2"]),
                   "--runs", "2", "--timeout", "5", "--json", str(tmp_path / "b.json"), timeout=120)
    assert time.monotonic() - t0 < 90
    assert proc.returncode == 1, proc.stderr
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    assert "timed out" in rows[0]["error"]
    assert rows[1]["error"] is None and rows[1]["median_ms"] is not None


def test_bench_worker_dies_with_its_parent(models):
    import psutil

    parent = subprocess.Popen([sys.executable, "-m", "srdeploy.benchmark.bench_cli", str(models["endless_loop"]),
                               "--timeout", "300"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, kids = time.monotonic() + 60, []
        while time.monotonic() < deadline and not kids:
            kids = psutil.Process(parent.pid).children(recursive=True)
            time.sleep(0.2)
        assert kids, "no worker process started"
        time.sleep(3)  # the worker is in the endless invoke by now
        parent.send_signal(signal.SIGTERM)
        parent.wait(timeout=30)
        gone, alive = psutil.wait_procs(kids, timeout=15)
        assert not alive, f"orphaned worker(s): {[p.pid for p in alive]}"
    finally:
        parent.kill()


def test_eval_of_a_hung_artifact_meets_its_deadline(models, tmp_path):
    hr = tmp_path / "hr"
    hr.mkdir()
    png(hr / "a.png", 16, 16)
    env = dict(os.environ, SRDEPLOY_DEADLINE_S="5")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "srdeploy.benchmark.eval_cli", "--artifact",
                           str(models["endless_loop"]), "--scale", "1", "--data", str(hr)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert time.monotonic() - t0 < 60
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("sr-eval: error: one inference of endless_loop.tflite "
                                                           "did not finish within 5 s (deadline")


# ---------------------------------------------------------------- D6 / D12 resource exhaustion
def _peak_rss_mb(cmd: list[str], env=None) -> tuple[subprocess.CompletedProcess, float]:
    """Run *cmd*, polling the resident memory of it and its children; returns (result, peak MB)."""
    import psutil

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak, p = 0.0, psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
            peak = max(peak, rss / 2**20)
        except psutil.Error:
            pass
        time.sleep(0.02)
    out, err = proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), peak


def test_a_tiny_png_of_20000x20000_is_refused_and_the_batch_goes_on(tmp_path):
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    Image.new("1", (20000, 20000)).save(src / "bomb.png")
    assert (src / "bomb.png").stat().st_size < 1 << 20
    png(src / "good.png")
    proc, peak = _peak_rss_mb([sys.executable, "-m", "srdeploy.upscale", str(src), "-o", str(tmp_path / "out"),
                               "--model", "dipnet_lite"])
    assert proc.returncode == 1, proc.stderr
    assert "bomb.png" in proc.stderr and "limit" in proc.stderr
    assert (tmp_path / "out" / "good_x2.png").is_file() and not (tmp_path / "out" / "bomb_x2.png").exists()
    assert peak < 1500, f"peak {peak:.0f} MB"


def test_max_pixels_option_is_the_documented_limit(tmp_path):
    img = png(tmp_path / "a.png", 40, 40)
    proc = run_cli("srdeploy.upscale", str(img), "-o", str(tmp_path / "o.png"), "--model", "dipnet_lite",
                   "--max-pixels", "1000")
    one_line_exit2(proc, "sr-upscale", "above the limit of 0.0 MP")
    proc = run_cli("srdeploy.upscale", str(img), "-o", str(tmp_path / "o.png"), "--model", "dipnet_lite",
                   "--max-pixels", "1600")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("mid,expect", [(20000, "accepts 1..152"), (-1, "accepts 1..152"), (True, "mid=True")])
def test_checkpoint_architecture_fields_are_bounded(tmp_path, mid, expect):
    import torch

    ck = tmp_path / "w.pth"
    torch.save({"arch": {"mid": mid}, "state_dict": {}}, ck)
    proc, peak = _peak_rss_mb([sys.executable, "-m", "srdeploy.export.cli", "--model", "dipnet", "--weights",
                               str(ck), "--size", "16x16", "--out", str(tmp_path / "o")])
    one_line_exit2(proc, "sr-export", expect)
    assert peak < 1500 and not (tmp_path / "o").exists()


def test_a_small_model_declaring_gigabytes_is_refused_before_allocation(models, tmp_path):
    assert models["huge_input"].stat().st_size < 1 << 20
    png(tmp_path / "a.png")
    proc, peak = _peak_rss_mb([sys.executable, "-m", "srdeploy.benchmark.eval_cli", "--artifact",
                               str(models["huge_input"]), "--scale", "2", "--data", str(tmp_path)])
    one_line_exit2(proc, "sr-eval", "MB of run-time tensors (largest 10,300 MB)")
    assert peak < 1500
    proc, peak = _peak_rss_mb([sys.executable, "-m", "srdeploy.benchmark.bench_cli", str(models["huge_input"]),
                               str(models["gpu_ok"]), "--runs", "1", "--json", str(tmp_path / "b.json")])
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    assert proc.returncode == 1 and "declares" in rows[0]["error"] and rows[1]["error"] is None
    assert peak < 1500


def test_an_export_size_whose_artifact_would_be_refused_stops_before_any_work(tmp_path):
    """A size whose FP32 artifact the runners would refuse is refused from a small probe of the graph, before the
    references, the ONNX export at the size and the conversion run (imdn x4 at 1080x1920: 4 min 25 s and 11.6 GB
    before this check, to the same refusal)."""
    out = tmp_path / "o"
    env = {**os.environ, "SRDEPLOY_MAX_MODEL_MEMORY_MB": "100"}
    proc, peak = _peak_rss_mb([sys.executable, "-m", "srdeploy.export.cli", "--model", "dipnet_lite", "--size",
                               "1024x1024", "--out", str(out)], env=env)
    line = one_line_exit2(proc, "sr-export", "dipnet_lite x2 at 1024x1024 would declare about")
    assert "above the limit of 100 MB" in line and "sr-upscale tiles" in line
    assert peak < 1500 and not out.exists()
    # the same size under the default limit passes the check (the export itself is not run here)
    from srdeploy.export.exporter import ExportConfig, Exporter

    ex = Exporter(ExportConfig(model="dipnet_lite", size="1024x1024", out=str(out)), log=lambda m: None)
    ex._check_memory_estimate()


def test_the_exact_check_after_the_onnx_refuses_a_small_size_too(tmp_path):
    """Below the probe's size the ONNX graph written at the export size is checked before the conversion."""
    out = tmp_path / "o"
    proc = subprocess.run([sys.executable, "-m", "srdeploy.export.cli", "--model", "dipnet_lite", "--size", "24x24",
                           "--out", str(out)], capture_output=True, text=True,
                          env={**os.environ, "SRDEPLOY_MAX_MODEL_MEMORY_MB": "0.001"})
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert lines[-1].startswith("sr-export: error: dipnet_lite x2 at 24x24 declares"), lines
    assert not any("TFLite" in ln for ln in lines) and not out.exists()


def test_an_onnx_graph_declares_what_its_tflite_declares(export24):
    """The pre-conversion check counts what the FP32 .tflite made from the graph declares."""
    from srdeploy.runtime import onnx_tensor_bytes, tflite_tensor_bytes

    onnx_total, onnx_largest = onnx_tensor_bytes(export24 / "model.onnx")
    tfl_total, tfl_largest = tflite_tensor_bytes((export24 / "model_fp32.tflite").read_bytes())
    assert onnx_largest == tfl_largest and abs(onnx_total - tfl_total) <= 0.01 * tfl_total, (onnx_total, tfl_total)


def test_bench_workers_run_under_a_memory_limit(models, tmp_path):
    proc, peak = _peak_rss_mb([sys.executable, "-m", "srdeploy.benchmark.bench_cli", str(models["big_input"]),
                               str(models["gpu_ok"]), "--runs", "1", "--memory-limit", "1000",
                               "--json", str(tmp_path / "b.json")])
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    assert proc.returncode == 1 and rows[0]["error"] and rows[1]["error"] is None, rows
    assert peak < 1500


# ---------------------------------------------------------------- D3 mixed folders
def test_interrupted_export_leaves_the_earlier_export_whole(export24, tmp_path):
    out = tmp_path / "x"
    shutil.copytree(export24, out)
    before = consistent_export(out)
    # 128x128: onnx2tf takes seconds there, so the interrupt lands inside it even when this process
    # reads the child's progress late on a loaded machine (at 32x32 with a 0.5 s wait the export could
    # finish first: seen once under load). A try whose export still ends with exit 0 (it finished before
    # the signal arrived; before session 27 also an interrupt that onnx2tf swallowed, see
    # test_a_ctrl_c_that_a_library_swallows_still_stops_the_export) is not an interrupted export -- its
    # folder must then be the new export, whole -- and the test tries again, up to three times, and
    # fails unless one try was really interrupted
    for _ in range(3):
        # interrupt once the new ONNX has been written (the old code put it in out/)
        proc = export_until(out, "128x128", "[2/")
        proc.send_signal(signal.SIGINT)
        proc.stderr.read()
        proc.wait(timeout=120)
        assert [p.name for p in tmp_path.iterdir()] == ["x"]  # no temporary folder left beside it
        after = consistent_export(out)
        if proc.returncode != 0:
            break
        assert after["io"]["tflite"]["input_shape"] == [1, 128, 128, 3]  # not interrupted: the new one, whole
        shutil.rmtree(out)
        shutil.copytree(export24, out)
    assert proc.returncode != 0, "the interrupt never landed in three tries"
    assert after["io"] == before["io"] and after["created"] == before["created"]


def test_a_killed_exports_staging_folder_is_removed_by_the_next_export(tmp_path):
    """SIGKILL gives no chance to clean up: the staging folder stays beside the output (old code:
    for good -- hundreds of MB at 1080x1920). The next export into that folder, holding its lock,
    removes it; a sibling folder's staging names are left alone."""
    out = tmp_path / "x"
    proc = export_until(out, "128x128", "[2/")  # killed once the ONNX is written into the staging folder
    proc.kill()
    proc.wait(timeout=120)
    left = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert len(left) == 1 and left[0].startswith(".x.") and left[0].endswith(".partial"), left
    sibling = tmp_path / ".x.v2.abcd1234.partial"  # the staging name of an export into "x.v2"
    sibling.mkdir()
    ok = run_cli("srdeploy.export.cli", "--model", "dipnet_lite", "--size", "24x24", "--out", str(out))
    assert ok.returncode == 0, ok.stderr
    assert f"removed {left[0]}" in ok.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [".x.v2.abcd1234.partial", "x"]
    assert consistent_export(out)["io"]["tflite"]["input_shape"] == [1, 24, 24, 3]


def test_a_ctrl_c_that_a_library_swallows_still_stops_the_export(tmp_path, monkeypatch, capsys):
    """onnx2tf wraps its simplifier subprocess and shape inference in bare ``except:`` clauses: a Ctrl-C
    that landed there was lost and the export ran on and exited 0 (old code; seen under load in CI).
    Here the conversion swallows one the same way; the export stops at the next stage boundary with
    exit 130, and nothing of it is left."""
    import srdeploy
    import srdeploy.export.exporter as ex
    from srdeploy.cli_util import run_cli as run_in_process
    from srdeploy.export.cli import main

    real = ex.convert_onnx2tf

    def swallowing(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1.0)  # the handler runs here, inside the try
        except:  # noqa: E722 -- what onnx2tf does
            pass
        return real(*args, **kwargs)

    monkeypatch.setattr(ex, "convert_onnx2tf", swallowing)
    out = tmp_path / "x"
    rc = run_in_process("sr-export", main, ["--model", "dipnet_lite", "--size", "24x24", "--out", str(out)])
    assert rc == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "sr-export: interrupted"
    assert list(tmp_path.iterdir()) == []
    # the interrupt was that command's: an export through the Python API in the same process afterwards
    # runs (the flag left set once stopped every later in-process export with a KeyboardInterrupt)
    monkeypatch.setattr(ex, "convert_onnx2tf", real)
    try:
        man = srdeploy.export("dipnet_lite", size="24x24", out=str(out), log=lambda m: None)
    except KeyboardInterrupt:  # (not let through: it would stop the whole test session)
        pytest.fail("an in-process export after the interrupted command was stopped by its stale interrupt")
    assert man["status"] == "passed"


def test_a_ctrl_c_between_the_renames_of_a_swap_is_held_until_both_are_done(tmp_path, monkeypatch):
    """Ctrl-C between moving the old folder aside and moving the new one in left neither under its
    name (old code: the old export hidden as .x.old-*, which the next export deletes)."""
    from srdeploy import fsutil

    final, staged = tmp_path / "x", tmp_path / ".x.abcd1234.partial"
    final.mkdir()
    (final / "old").write_text("old")
    staged.mkdir()
    (staged / "new").write_text("new")
    real, calls = os.replace, []

    def interrupted_after_first(src, dst):
        real(src, dst)
        calls.append(dst)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)

    monkeypatch.setattr(fsutil.os, "replace", interrupted_after_first)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # an xdist worker may ignore SIGINT
    try:
        with pytest.raises(KeyboardInterrupt):
            fsutil.swap_in(staged, final)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(calls) == 2  # the second rename ran before the interrupt was delivered
    assert [p.name for p in tmp_path.iterdir()] == ["x"] and (final / "new").read_text() == "new"


def test_a_previous_export_moved_aside_by_a_killed_swap_is_restored(tmp_path):
    """A writer killed between swap_in's two renames leaves the previous folder only as .x.old-*, and no x
    (old code: the next writer deleted it -- the previous export was lost if that writer failed too).
    Now it is renamed back; with x present, an .old-* folder is only garbage and is removed."""
    from srdeploy.fsutil import recover_stale_staging

    final = tmp_path / "x"
    moved = tmp_path / ".x.old-abcd1234"
    moved.mkdir()
    (moved / "manifest.json").write_text("previous")
    staging = tmp_path / ".x.efgh5678.partial"
    staging.mkdir()
    sibling = tmp_path / ".x.v2.old-abcd1234"  # of a folder named x.v2: never touched
    sibling.mkdir()
    assert recover_stale_staging(final) == [("removed", staging.name), ("restored", moved.name)]  # by name
    assert (final / "manifest.json").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == [sibling.name, "x"]
    moved.mkdir()
    assert recover_stale_staging(final) == [("removed", moved.name)]
    assert (final / "manifest.json").read_text() == "previous" and not moved.exists()


def test_concurrent_exports_into_one_folder_never_mix(tmp_path):
    """A second export into a folder that another export is writing is refused (old code: both exit
    0 and the folder ends up a mix of the two)."""
    out = tmp_path / "x"
    cmd = [sys.executable, "-m", "srdeploy.export.cli", "--model", "dipnet_lite", "--out", str(out)]
    first = export_until(out, "96x96", "[1/", stdout=subprocess.PIPE)  # the first one is exporting now
    second = subprocess.run(cmd + ["--size", "24x24"], capture_output=True, text=True, timeout=300)
    overlapped = first.poll() is None
    first.wait(timeout=300)
    assert first.returncode == 0
    assert overlapped, "the first export ended before the second started: no overlap to test"
    one_line_exit2(second, "sr-export", "another process is writing")
    man = consistent_export(out)
    assert man["io"]["tflite"]["input_shape"] == [1, 96, 96, 3]


def test_export_refuses_a_folder_of_other_files(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    proc = run_cli("srdeploy.export.cli", "--model", "dipnet_lite", "--size", "16x16", "--out", str(out))
    one_line_exit2(proc, "sr-export", "not an sr-export's (notes.txt)")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


# ---------------------------------------------------------------- D4 overwrite
def test_upscale_refuses_to_overwrite_its_input(tmp_path):
    img = png(tmp_path / "same.png")
    before = img.read_bytes()
    proc = run_cli("srdeploy.upscale", str(img), "-o", str(img), "--model", "dipnet_lite")
    one_line_exit2(proc, "sr-upscale", "is one of the inputs")
    assert img.read_bytes() == before


def test_upscale_refuses_a_folder_into_itself(tmp_path):
    png(tmp_path / "a.png")
    proc = run_cli("srdeploy.upscale", str(tmp_path), "-o", str(tmp_path), "--model", "dipnet_lite")
    one_line_exit2(proc, "sr-upscale", "into itself")
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_upscale_refuses_two_inputs_with_one_output_name(tmp_path):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        png(tmp_path / sub / "a.png")
    proc = run_cli("srdeploy.upscale", str(tmp_path / "x" / "a.png"), str(tmp_path / "y" / "a.png"), "-o",
                   str(tmp_path / "out"), "--model", "dipnet_lite")
    one_line_exit2(proc, "sr-upscale", "would both be written to a_x2.png")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- D1 / D9 sr-bench
def test_bench_of_a_2d_input_model_keeps_every_row(models, tmp_path):
    proc = run_cli("srdeploy.benchmark.bench_cli", str(models["two_d"]), str(models["rgb_x2"]), "--runs", "2",
                   "--json", str(tmp_path / "b.json"))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    assert [r["error"] for r in rows] == [None, None] and rows[0]["input"]["shape"] == [1, 8]


def test_gpu_check_of_random_bytes_is_one_line(tmp_path):
    f = tmp_path / "random.tflite"
    f.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    proc = run_cli("srdeploy.benchmark.bench_cli", str(f), "--gpu-check")
    one_line_exit2(proc, "sr-bench", "not a loadable TFLite model")


@pytest.mark.parametrize("how", ["negative_dim", "no_input", "input_out_of_range"])
def test_gpu_check_never_passes_an_unloadable_model(models, how):
    proc = run_cli("srdeploy.benchmark.bench_cli", str(models[how]), str(models["gpu_ok"]), "--gpu-check")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    bad = next(ln for ln in lines if ln.startswith(str(models[how])))
    good = next(ln for ln in lines if ln.startswith(str(models["gpu_ok"])))
    assert "FAIL" in bad and "PASS" not in bad, proc.stdout
    assert "GPU delegate: PASS" in good, proc.stdout


# ---------------------------------------------------------------- D5 / D8 / D11 / D13 up-front checks
def test_unwritable_outputs_are_refused_before_work(models, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    img = png(tmp_path / "a.png")
    one_line_exit2(run_cli("srdeploy.upscale", str(img), "-o", str(blocker / "o.png"), "--model", "dipnet_lite"),
                   "sr-upscale", "not")
    one_line_exit2(run_cli("srdeploy.benchmark.bench_cli", str(models["rgb_x2"]), "--json",
                           str(tmp_path / "missing" / "b.json")), "sr-bench", "does not exist")
    one_line_exit2(run_cli("srdeploy.benchmark.eval_cli", "--model", "dipnet_lite", "--scale", "2", "--data",
                           str(tmp_path), "--json", str(blocker / "r.json")), "sr-eval", "--json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "file"]


@pytest.mark.parametrize("name,expect", [
    ("one_channel_x2", "RGB image"), ("two_d", "not 4-D"), ("no_input", "no input"), ("dynamic_x2", "dynamic"),
])
def test_artifacts_srdeploy_cannot_tile_are_refused(models, tmp_path, name, expect):
    img = png(tmp_path / "a.png")
    for cli, extra in (("srdeploy.upscale", [str(img), "-o", str(tmp_path / "o.png")]),
                       ("srdeploy.benchmark.eval_cli", ["--scale", "2", "--data", str(tmp_path)])):
        proc = run_cli(cli, "--artifact", str(models[name]), *extra)
        one_line_exit2(proc, "sr-upscale" if cli == "srdeploy.upscale" else "sr-eval", expect)
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("args,expect", [
    (["--tile", "8x8"], "too small for --overlap 8"),
    (["--overlap", "-3"], "--overlap must be >= 0"),
    (["--tile", "16x16", "--overlap", "40"], "too small for --overlap 40"),
])
def test_tile_and_overlap_are_checked_up_front(tmp_path, args, expect):
    img = png(tmp_path / "a.png")
    proc = run_cli("srdeploy.upscale", str(img), "-o", str(tmp_path / "o.png"), "--model", "dipnet_lite", *args)
    one_line_exit2(proc, "sr-upscale", expect)
    assert not (tmp_path / "o.png").exists()


def test_overlap_too_large_for_an_artifact(export24, tmp_path):
    img = png(tmp_path / "a.png")
    proc = run_cli("srdeploy.upscale", str(img), "-o", str(tmp_path / "o.png"), "--artifact",
                   str(export24 / "model_fp32.tflite"), "--overlap", "40")
    one_line_exit2(proc, "sr-upscale", "too large")


@pytest.mark.parametrize("args,expect", [
    (["--eval-every", "0"], "--eval-every and --ckpt-every must be >= 1"),
    (["--ckpt-every", "0"], "--eval-every and --ckpt-every must be >= 1"),
    (["--device", "foo"], "--device must be cpu, cuda or cuda:N"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--w-out", "-1"], "--w-out must be a finite number"),
])
def test_train_options_are_checked_before_work(tmp_path, args, expect):
    proc = run_cli("srdeploy.train.cli", "--data", str(tmp_path), "--steps", "5", "--out", str(tmp_path / "o"),
                   *args)
    one_line_exit2(proc, "sr-train", expect)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("step,expect", [(-7, "not a count of steps"), (10**9, "beyond --steps 5"),
                                         ("3", "not a count of steps")])
def test_resume_checks_the_checkpoint_step(tmp_path, step, expect):
    import torch

    from srdeploy.train.trainer import CHECKPOINT_FORMAT

    ck = tmp_path / "last.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "config": {}, "step": step}, ck)
    proc = run_cli("srdeploy.train.cli", "--data", str(tmp_path), "--steps", "5", "--resume", str(ck),
                   "--out", str(tmp_path / "o"))
    one_line_exit2(proc, "sr-train", expect)
    assert not (tmp_path / "o").exists()


def test_bundle_artifact_the_export_will_not_make_is_refused_first(tmp_path):
    app = fake_app(tmp_path / "app")
    proc = run_cli("srdeploy.export.cli", "--model", "dipnet_lite", "--size", "16x16", "--out", str(tmp_path / "o"),
                   "--bundle", str(app), "--bundle-artifact", "model_int8.tflite")
    one_line_exit2(proc, "sr-export", "is not an artifact this export makes")
    assert not (tmp_path / "o").exists()


def test_sr_data_leaves_no_parent_folders(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not really")
    proc = run_cli("srdeploy.data_cli", "div2k", "--zip", str(bad), "--out", str(tmp_path / "a" / "b" / "c"))
    one_line_exit2(proc, "sr-data", "checksum mismatch")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip"]


@pytest.mark.parametrize("prog,args,expect", [
    ("sr-export", ["srdeploy.export.cli", "--model", "dipnet_lite", "--size", "100000x100000"], "exports are at most 4.2 MP"),
    ("sr-export", ["srdeploy.export.cli", "--model", "dipnet_lite", "--size", "64x64", "--int8", "--calib", "{tmp}",
                   "--calib-samples", "100000000"], "--calib-samples must be 1..256"),
    ("sr-export", ["srdeploy.export.cli", "--model", "dipnet_lite", "--size", "64x64", "--int8", "--calib", "{tmp}",
                   "--qat-steps", "1000000000"], "--qat-steps must be at most 1,000,000"),
    ("sr-bench", ["srdeploy.benchmark.bench_cli", "dipnet_lite", "--threads", "100000"], "--threads must be 1..256"),
    ("sr-bench", ["srdeploy.benchmark.bench_cli", "dipnet_lite", "--runs", "1000000000"], "--runs must be at most"),
    ("sr-train", ["srdeploy.train.cli", "--data", "{tmp}", "--steps", "5", "--batch", "100000000"], "LR pixels a step"),
    ("sr-upscale", ["srdeploy.upscale", "{img}", "-o", "{tmp}/o.png", "--model", "dipnet_lite", "--tile", "20000x20000"],
     "a PyTorch tile that large"),
    ("sr-upscale", ["srdeploy.upscale", "{img}", "-o", "{tmp}/o.png", "--model", "dipnet_lite", "--threads", "100000"],
     "--threads must be 1..256"),
])
def test_numbers_that_would_exhaust_the_machine_are_refused(tmp_path, prog, args, expect):
    """Old code: each tried to allocate gigabytes to terabytes and ended in an 'internal error'."""
    work = tmp_path / "w"
    work.mkdir()
    img = png(work / "a.png")
    argv = [a.replace("{tmp}", str(work)).replace("{img}", str(img)) for a in args]
    if prog in ("sr-export", "sr-train"):
        argv += ["--out", str(tmp_path / "out")]
    proc, peak = _peak_rss_mb([sys.executable, "-m", *argv])
    one_line_exit2(proc, prog, expect)
    assert peak < 1500 and not (tmp_path / "out").exists() and sorted(p.name for p in work.iterdir()) == ["a.png"]


# ---------------------------------------------------------------- D7 float and 16-bit images
def test_float_tiff_in_unit_range_is_read_by_its_range(tmp_path):
    import cv2

    f = tmp_path / "f.tiff"
    cv2.imwrite(str(f), np.full((16, 16, 3), 0.5, np.float32))
    proc = run_cli("srdeploy.upscale", str(f), "-o", str(tmp_path / "o.png"), "--model", "dipnet_lite")
    assert proc.returncode == 0, proc.stderr
    out = cv2.imread(str(tmp_path / "o.png"))
    assert abs(float(out.mean()) - 127.5) < 6, out.mean()


def test_sixteen_bit_png_is_read_by_its_range(tmp_path):
    from srdeploy.imaging import read_rgb
    import cv2

    f = tmp_path / "a.png"
    cv2.imwrite(str(f), np.full((8, 8, 3), 40000, np.uint16))
    assert int(read_rgb(f).mean()) == round(40000 / 257)


def test_float_image_outside_unit_range_is_refused(tmp_path):
    import cv2

    f = tmp_path / "f.tiff"
    cv2.imwrite(str(f), np.full((16, 16, 3), 200.0, np.float32))
    proc = run_cli("srdeploy.upscale", str(f), "-o", str(tmp_path / "o.png"), "--model", "dipnet_lite")
    one_line_exit2(proc, "sr-upscale", "outside [0, 1]")
    assert not (tmp_path / "o.png").exists()
