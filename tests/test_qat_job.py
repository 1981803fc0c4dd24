"""QAT as a job file (srdeploy.quantize.qat_job): written by an export, run without TensorFlow, applied back."""
from __future__ import annotations

import copy
import io
import json
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from srdeploy.errors import SrDeployError
from srdeploy.export import ExportConfig, Exporter
from srdeploy.quantize import int8_params as ip
from srdeploy.quantize import qat_job
from srdeploy.quantize.ranges import quantize_calibrated, worst_crop_psnr
from srdeploy.runtime import TFLiteRunner

from .conftest import run_cli

STEPS = 40

#: what a GPU machine lacks: the converter's side of the pipeline. A None in sys.modules is what Python
#: does for a module that is not installed (import raises ModuleNotFoundError, find_spec says None)
_BLOCKER = textwrap.dedent("""
    import sys
    for name in ("tensorflow", "tf_keras", "keras", "onnx2tf", "onnxruntime", "onnx"):
        sys.modules[name] = None
""")


def _export(out, data_root, **kw):
    cfg = ExportConfig(model="imdn_rtc", size="64x64", int8=True, calib=str(data_root / "div2k" / "HR"),
                       calib_samples=4, out=str(out), **kw)
    return Exporter(cfg, log=lambda m: None).run()


def _int8(manifest) -> dict:
    return next(a for a in manifest["artifacts"] if a["precision"] == "int8")


@pytest.fixture(scope="module")
def job(tmp_path_factory, weights_root, data_root):
    """A 64x64 imdn_rtc export that writes a QAT job instead of running QAT."""
    d = tmp_path_factory.mktemp("qat_job")
    path = d / "rtc.qatjob.npz"
    manifest = _export(d / "export", data_root, qat_steps=STEPS, int8_params="none", qat_job=str(path))
    return d, path, manifest


def _run_job(job_path, out, tmp_path, *args):
    """The job's command in a child process that cannot import TensorFlow, onnx2tf or onnxruntime."""
    import os
    import subprocess

    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "srdeploy.quantize.qat_job", str(job_path), "--out", str(out),
                           *args], env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_the_export_writes_the_job_and_defers_qat(job):
    _, path, manifest = job
    q = _int8(manifest)["quantization"]
    assert q["qat"]["deferred_to_job"] is True and q["qat"]["steps"] == STEPS and "fidelity_db_after" not in q["qat"]
    j = qat_job.load(path)
    assert j.steps == STEPS and not j.resumed and j.batch == 8 and j.patch == 64
    assert j.held_out.shape == (4, 64, 64, 3) and len(j.images) == 8 and all(im.dtype == np.uint8 for im in j.images)
    assert j.params_meta["model"] == "imdn_rtc" and j.params_meta["made_at"] == "64x64"
    # the job starts from the graph this export quantized: its INT8 model is the artifact's
    assert ip.graph_signature(ip._parse(j.chosen)) == ip.graph_signature(ip._parse(j.calibrated))


@pytest.mark.slow
def test_a_job_runs_without_tensorflow_and_its_result_brings_int8_closer_to_float(job, tmp_path, data_root):
    d, path, _ = job
    out = tmp_path / "rtc_int8.npz"
    proc = _run_job(path, out, tmp_path, "--device", "cpu", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)["qat"]
    assert report["steps"] == STEPS and report["device"] == "cpu"
    assert report["simulated_fidelity_db_after"] > report["simulated_fidelity_db_before"]
    # measured here, with the converter's own INT8 models: the job's result against the model it started from
    j, params = qat_job.load(path), ip.load(out)
    assert params.meta["made_with"]["qat"]["steps"] == STEPS and params.meta["model"] == "imdn_rtc"
    held = j.held_out.astype(np.float32) / 255.0
    runner = TFLiteRunner(model_content=j.calibrated)
    reference = [runner(f[None])[0] for f in held]
    before = worst_crop_psnr(j.quantized, reference, held)
    after = worst_crop_psnr(quantize_calibrated(ip.apply(j.calibrated, params), "float32"), reference, held)
    assert after > before + 0.2, (before, after)
    # and the export applies it like any INT8 parameter file, QAT's record included
    manifest = _export(tmp_path / "applied", data_root, int8_params=str(out))
    q = _int8(manifest)["quantization"]
    assert q["int8_params_choice"] == f"file {out}" and q["int8_params"]["signature"] == params.signature
    # the same steps as the export's own --qat-steps: same graph, crops, seed and recipe, so the same weights
    here = tmp_path / "here.npz"
    manifest = _export(tmp_path / "here", data_root, qat_steps=STEPS, int8_params="none", save_int8_params=str(here))
    assert _int8(manifest)["quantization"]["qat"]["kept"]
    local = ip.load(here)
    assert local.signature == params.signature and local.weights.keys() == params.weights.keys()
    assert max(float(np.max(np.abs(local.weights[i] - params.weights[i]))) for i in local.weights) < 1e-5
    assert max(abs(a - b) for i in local.ranges for a, b in zip(local.ranges[i], params.ranges[i])) < 1e-5


@pytest.mark.slow
def test_lr_sets_the_rate_of_the_schedule_and_the_ranges_keep_their_ratio(job, tmp_path, monkeypatch):
    _, path, _ = job
    out = tmp_path / "lr.npz"
    proc = _run_job(path, out, tmp_path, "--device", "cpu", "--steps", "2", "--lr", "1e-4", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)["qat"]
    assert report["steps"] == 2 and report["lr"] == pytest.approx(1e-4)
    assert ip.load(out).meta["made_with"]["qat"]["lr"] == pytest.approx(1e-4)
    # the learned ranges' rate: what run() hands the fine-tuning, caught before it runs
    from srdeploy.quantize import qat as qat_mod

    seen = {}

    def spy(graph, images, steps, **kw):
        seen.update(kw)
        raise SrDeployError("stopped by the test")

    monkeypatch.setattr(qat_mod, "finetune", spy)
    j = qat_job.load(path)
    j.range_lr = 2 * j.lr  # a job whose ranges learn at twice the weights' rate keeps that ratio
    with pytest.raises(SrDeployError, match="stopped by the test"):
        qat_job.run(j, tmp_path / "never.npz", "cpu", steps=1, lr=1e-4, log=lambda m: None)
    assert seen["lr"] == pytest.approx(1e-4) and seen["range_lr"] == pytest.approx(2e-4)
    assert not (tmp_path / "never.npz").exists()


def test_graph_constants_move_with_the_module(weights_root):
    """``.to(device)`` moves the constant operands too (plain dicts nn.Module does not see), so a graph on a
    GPU computes with constants on the GPU; the host copies of shape-like operands stay."""
    import torch

    from srdeploy.quantize.qat import TFLiteGraph

    blob = _small_calibrated()
    g = TFLiteGraph(blob, quantize_calibrated(blob, "float32"))
    assert g.const and g.const_np
    x = torch.rand(1, 3, 16, 16)
    before = g(x, quant=True)
    m = copy.deepcopy(g).to("meta")  # (a device with no data: where each tensor went is all it shows)
    assert all(t.device.type == "meta" for t in m.const.values())
    assert all(p.device.type == "meta" for p in m.parameters())
    assert all(isinstance(a, np.ndarray) for a in m.const_np.values())
    assert all(t.device.type == "cpu" for t in g.const.values())
    g.to(torch.float64)  # a dtype conversion reaches the float constants and leaves the integer ones
    assert {t.dtype for t in g.const.values() if t.is_floating_point()} == {torch.float64}
    assert any(not t.is_floating_point() for t in g.const.values())
    g.to(torch.float32)
    assert torch.equal(g(x, quant=True), before)


def _small_calibrated() -> bytes:
    """A calibrated float TFLite graph of a tiny network with constant operands (a channel bias added, a mean)."""
    import tempfile

    import tensorflow as tf

    from srdeploy.quantize.ranges import calibrate

    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (3, 3, 3, 4)).astype(np.float32)
    bias = rng.normal(0, 0.1, (1, 1, 1, 4)).astype(np.float32)

    class Tiny(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32)])
        def __call__(self, x):
            y = tf.nn.leaky_relu(tf.nn.conv2d(x, w, 1, "SAME"), 0.05) * bias
            return tf.reduce_mean(y, axis=3, keepdims=True) + x

    with tempfile.TemporaryDirectory() as d:
        m = Tiny()
        tf.saved_model.save(m, d, signatures=m.__call__)
        return calibrate(d, rng.random((4, 16, 16, 3), dtype=np.float32))


# -- a hostile job file: one line, exit 2, nothing written ------------------------------------------

def _rewrite(src, dst, change):
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    with open(dst, "wb") as f:
        np.savez(f, **arrays)


def _meta(**kw):
    def change(arrays):
        meta = json.loads(bytes(arrays["meta"]).decode())
        meta.update(kw)
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    return change


@pytest.mark.slow
@pytest.mark.parametrize("damage, message", [
    ("not_a_zip", "not a valid QAT job file"),
    ("truncated", "not a valid QAT job file"),
    ("pickled", "not a valid QAT job file"),
    ("no_graph", "it lacks ['chosen']"),
    ("wrong_format", "expected srdeploy-qat-job-v1"),
    ("steps", "steps must be a int"),
    ("garbage_graph", "graphs do not parse"),
    ("other_graph", "are different graphs"),
    ("image", "image3 is missing or not a uint8 RGB image"),
    ("extra", "unexpected arrays"),
])
def test_a_damaged_job_is_one_line_and_exit_2(damage, message, job, tmp_path):
    _, path, _ = job
    bad = tmp_path / "bad.npz"
    blob = path.read_bytes()
    if damage == "not_a_zip":
        bad.write_bytes(b"this is not a job")
    elif damage == "truncated":
        bad.write_bytes(blob[: len(blob) // 2])
    elif damage == "pickled":  # an object array: loading it would unpickle
        buf = io.BytesIO()
        with zipfile.ZipFile(path) as z, zipfile.ZipFile(buf, "w") as out:
            for name in z.namelist():
                out.writestr(name, z.read(name))
            obj = io.BytesIO()
            np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
            out.writestr("evil.npy", obj.getvalue())
        bad.write_bytes(buf.getvalue())
    elif damage == "no_graph":
        _rewrite(path, bad, lambda a: a.pop("chosen"))
    elif damage == "wrong_format":
        _rewrite(path, bad, _meta(format="srdeploy-qat-job-v0"))
    elif damage == "steps":
        _rewrite(path, bad, _meta(steps=-5))
    elif damage == "garbage_graph":
        _rewrite(path, bad, lambda a: a.update(chosen=np.random.default_rng(0).integers(0, 255, 4096, np.uint8)))
    elif damage == "other_graph":
        _rewrite(path, bad, lambda a: a.update(chosen=np.frombuffer(_small_calibrated(), np.uint8)))
    elif damage == "image":
        _rewrite(path, bad, lambda a: a.update(image3=np.zeros((4, 4), np.float32)))
    elif damage == "extra":
        _rewrite(path, bad, lambda a: a.update(extra=np.zeros(3, np.uint8)))
    out = tmp_path / "out.npz"
    proc = run_cli("srdeploy.quantize.qat_job", str(bad), "--out", str(out), "--device", "cpu", "--steps", "1")
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr[-2000:]
    assert not out.exists() and not list(tmp_path.glob(".*.partial"))


@pytest.mark.parametrize("args, message", [
    (["--device", "cuda:99"], "CUDA device"),
    (["--device", "tpu"], "must be cpu, cuda, cuda:N or auto"),
    (["--steps", "0"], "--steps must be 1.."),
    (["--seconds", "5"], "--seconds must be 60.."),
    (["--batch", "0"], "--batch must be 1..1024"),
    (["--lr", "0"], "--lr must be in (0, 0.1]"),
    (["--lr", "nan"], "--lr must be in (0, 0.1]"),
])
def test_bad_job_options_are_one_line_and_exit_2(args, message, tmp_path):
    f = tmp_path / "job.npz"
    f.write_bytes(b"")  # (the options are checked first; a device is checked before the file is read)
    proc = run_cli("srdeploy.quantize.qat_job", str(f), "--out", str(tmp_path / "o.npz"), *args)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr[-2000:]


def test_load_refuses_a_missing_file(tmp_path):
    with pytest.raises(SrDeployError, match="QAT job file not found"):
        qat_job.load(tmp_path / "none.npz")
