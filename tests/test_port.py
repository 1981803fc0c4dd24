"""An INT8 parameter file carried across an exact rewrite (srdeploy.quantize.port): no QAT, the same INT8 model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import srdeploy.models
from srdeploy.errors import SrDeployError
from srdeploy.export import ExportConfig, Exporter
from srdeploy.quantize import int8_params as ip
from srdeploy.quantize import qat_job
from srdeploy.quantize.port import main as port_main
from srdeploy.quantize.port import port
from srdeploy.quantize.ranges import quantize_calibrated
from srdeploy.runtime import TFLiteRunner

BASE = ("split_mean", "dcr", "gelu")


@pytest.fixture(scope="module")
def jobs(tmp_path_factory, weights_root, data_root):
    """QAT job files of one 64x64 imdn x2 export: the default INT8 graph and the conv_split one."""
    d = tmp_path_factory.mktemp("port")
    out = {}
    for name, rewrites, params in (("plain", None, "auto"), ("split", (*BASE, "conv_split"), "none")):
        cfg = ExportConfig(model="imdn", scale=2, size="64x64", int8=True, calib=str(data_root / "div2k" / "HR"),
                           calib_samples=4, out=str(d / name), qat_steps=3, int8_params=params,
                           int8_rewrites=rewrites, qat_job=str(d / f"{name}.qatjob.npz"),
                           equalize="off",  # (channel equalization would rescale the weights the port matches)
                           parity=False)  # (split: post-training INT8 of imdn x2 misses the gate; only its graph matters)
        Exporter(cfg, log=lambda m: None).run()
        out[name] = d / f"{name}.qatjob.npz"
    return d, out


def _tuned(paths) -> ip.Int8Params:
    """imdn x2's shipped file (made by QAT on the default graph: every tensor of a scale-sharing group records
    that group's scale) with every weight moved a little more: a port that took the official weights instead of
    the file's would be caught."""
    params = ip.load(Path(srdeploy.models.__file__).parent / "zoo" / "imdn_x2_int8.npz")
    rng = np.random.default_rng(0)
    params.weights = {i: (w * (1 + 0.02 * rng.standard_normal(w.shape))).astype(np.float32)
                      for i, w in params.weights.items()}
    return params


@pytest.mark.slow
def test_a_ported_file_gives_the_rewritten_graph_the_same_int8_model(jobs, tmp_path):
    d, paths = jobs
    plain, split = qat_job.load(paths["plain"]), qat_job.load(paths["split"])
    assert ip.graph_signature(ip._parse(plain.calibrated)) != ip.graph_signature(ip._parse(split.calibrated))
    params = _tuned(paths)
    ported = port(plain.calibrated, params, split.calibrated)
    assert ported.signature == ip.graph_signature(ip._parse(split.calibrated))
    # every weight of the rewritten graph is a run of output channels of the file's (tuned) weights
    pool = [w.reshape(w.shape[0], -1) for w in params.weights.values() if w.ndim == 4]
    for w in (w for w in ported.weights.values() if w.ndim == 4):
        flat = w.reshape(w.shape[0], -1)
        assert any(p.shape[1] == flat.shape[1] and any(np.array_equal(p[k:k + len(flat)], flat)
                   for k in range(len(p) - len(flat) + 1)) for p in pool)
    x = np.random.default_rng(1).random((1, 64, 64, 3), dtype=np.float32)
    outs = []
    for graph, p in ((plain.calibrated, params), (split.calibrated, ported)):
        model = tmp_path / f"{len(outs)}.tflite"
        model.write_bytes(quantize_calibrated(ip.apply(graph, p), "float32"))
        outs.append(TFLiteRunner(str(model))(x))
    # the same integer arithmetic on the same scales: at most one output step (1/255) apart anywhere
    assert np.abs(outs[0] - outs[1]).max() <= 1.01 / 255
    assert np.mean(outs[0] == outs[1]) > 0.99


@pytest.mark.slow
def test_port_refuses_what_is_not_an_exact_rewrite(jobs, tmp_path):
    _, paths = jobs
    plain, split = qat_job.load(paths["plain"]), qat_job.load(paths["split"])
    params = _tuned(paths)
    with pytest.raises(SrDeployError, match="not made for the old graph"):
        port(split.calibrated, params, plain.calibrated)
    split_params = ip.extract(split.calibrated, {"model": "imdn", "scale": 2})
    with pytest.raises(SrDeployError, match="matches 0 old convs"):  # a whole conv is no run of any piece
        port(split.calibrated, split_params, plain.calibrated)
    # the command line: one line, exit 2, nothing written
    out = tmp_path / "ported.npz"
    bad = tmp_path / "params.npz"
    ip.save(split_params, bad)
    assert port_main([str(paths["split"]), str(paths["plain"]), str(bad), "--out", str(out)]) == 2
    assert port_main([str(paths["plain"]), str(tmp_path / "missing.npz"), str(bad), "--out", str(out)]) == 2
    assert not out.exists()
    good = tmp_path / "plain_params.npz"
    ip.save(params, good)
    assert port_main([str(paths["plain"]), str(paths["split"]), str(good), "--out", str(out)]) == 0
    assert ip.load(out).meta["rewrites"] == [*BASE, "conv_split"]
