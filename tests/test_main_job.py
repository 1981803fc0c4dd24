"""The README's main command on a machine with no ../shared, no weights and no network."""
from __future__ import annotations

import json

import pytest


def test_auto_picks_imdn_rtc_when_official_weights_exist(weights_root):
    from srdeploy.export.cli import _auto_model

    assert _auto_model(None)[0] == "imdn_rtc"


@pytest.mark.slow
def test_main_command_runs_offline_with_embedded_model(tmp_path, monkeypatch, capsys, no_network):
    from srdeploy.export.cli import _auto_model, main

    for var in ("SRDEPLOY_WEIGHTS", "SRDEPLOY_DATA"):
        monkeypatch.setenv(var, str(tmp_path / "nothing"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert _auto_model(None)[0] == "dipnet_lite"
    out = tmp_path / "exp"
    rc = main(["--fp16", "--bench", "--bench-runs", "2", "--size", "64x64", "--out", str(out), "--json"])
    assert rc == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["model"] == "dipnet_lite" and manifest["weights"]["source"] == "embedded"
    assert manifest["status"] == "passed"
    assert {a["file"] for a in manifest["artifacts"]} == {"model.onnx", "model_fp32.tflite", "model_fp16.tflite"}
    bench = {r["model"]: r for r in manifest["bench"]["results"]}
    assert set(bench) == {"model_fp32.tflite", "model_fp16.tflite"}
    for r in bench.values():
        assert r["error"] is None and r["runs"] == 2 and r["median_ms"] > 0 and r["peak_rss_mb"] > 0
    assert json.loads((out / "manifest.json").read_text())["bench"] == manifest["bench"]
