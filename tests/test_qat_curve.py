"""benchmarks/qat_curve.py: the curve's points come from the manifests' own records (QAT chains summed, series
split by what changes the result, duplicates drawn once) and bad input gets one line and exit 2."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "qat_curve.py"
_spec = importlib.util.spec_from_file_location("qat_curve", _PATH)
qat_curve = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(qat_curve)


def _manifest(drops, qat=None, params_qat=None, rewrites=None, grid=False, size=(64, 64), images=("0004.png",)):
    q = {"activations": "int8", "calibration": {"images": list(images)}, "graph_rewrites": rewrites or {}}
    if qat:
        q["qat"] = qat
    if params_qat:
        q["int8_params"] = {"made_with": {"qat": params_qat}}
    if grid:
        q["pixel_grid"] = {"tensors": ["input", "output"]}
    return {"model": "imdn_rtc", "scale": 2, "created": "2026-12-06T00:00:00+00:00",
            "io": {"tflite": {"input_shape": [1, *size, 3]}},
            "artifacts": [{"precision": "fp32"}, {"precision": "int8", "quantization": q}],
            "quality": {s: {"int8_tflite": {"drop_db": d}} for s, d in zip(("Set5", "Set14"), drops)}}


def test_points_sum_resumed_chains_split_series_and_drop_duplicates(tmp_path):
    first = {"steps": 5000}
    resumed = {"steps": 2000, "continued_from": {"made_with": {"qat": first}}}
    files = {
        "ptq.json": _manifest((1.3, 0.9)),
        "qat.json": _manifest((0.3, 0.25), qat=first),
        "default_cmd.json": _manifest((0.3, 0.25), params_qat=first),  # the same point re-applied: drawn once
        "resumed.json": _manifest((0.28, 0.23), qat=resumed, rewrites={"dcr": 1, "slice_conv": 15, "slice_select": 15}),
        "grid.json": _manifest((0.27, 0.22), params_qat=resumed, grid=True, size=(720, 480)),
        "other_crops.json": _manifest((0.33, 0.2), qat=resumed, images=("t91/tt1.png",)),
        # QAT resumed on larger crops (a job's --patch / --batch): its own series
        "big_crops.json": _manifest((0.26, 0.21), params_qat={"steps": 3000, "patch": 128, "batch": 2,
                                                              "continued_from": {"made_with": {"qat": first}}}),
        # two runs on 128x128 crops in a row, then 64x64 again: consecutive runs on the same crops said once
        "long_chain.json": _manifest((0.2, 0.19), params_qat={"steps": 1600, "continued_from": {"made_with": {"qat": {
            "steps": 3000, "patch": 128, "batch": 2, "continued_from": {"made_with": {"qat": {
                "steps": 2000, "patch": 128, "batch": 2, "continued_from": {"made_with": {"qat": first}}}}}}}}}),
        # the export that wrote a QAT job: its INT8 model is QAT's start, not a point at 5000 + 1000 steps
        "job.json": _manifest((0.3, 0.25), qat={"steps": 1000, "deferred_to_job": True,
                                                "continued_from": {"made_with": {"qat": first}}}),
        "latency.json": {"rows": []},  # not a manifest: skipped
        "odd.json": {"artifacts": [{"precision": "int8", "quantization": {}}],  # no io, no Set14: skipped
                     "quality": {"Set5": {"int8_tflite": {"drop_db": 0.1}}}},
        "odd2.json": dict(_manifest((0.1, 0.1)), io={}),  # malformed io: skipped, not a traceback
    }
    for name, m in files.items():
        (tmp_path / name).write_text(json.dumps(m))
    pts = qat_curve.collect([tmp_path])
    got = {(p["series"], p["steps"], p["set5_drop_db"]) for p in pts}
    assert got == {("64x64", 0, 1.3), ("64x64", 5000, 0.3), ("64x64, no slices", 7000, 0.28),
                   ("720x480, pixel grid", 7000, 0.27), ("64x64, non-DIV2K crops", 7000, 0.33),
                   ("64x64, crops 8x64px then 2x128px", 8000, 0.26),
                   ("64x64, crops 8x64px then 2x128px x2 then 8x64px", 11600, 0.2)}
    assert [p["chain"] for p in pts if p["steps"] == 7000 and "grid" in p["series"]] == [[5000, 2000]]
    out = tmp_path / "curve.png"
    assert qat_curve.main([str(tmp_path), "--plot", str(out), "--json", str(tmp_path / "p.json")]) == 0
    assert out.stat().st_size > 10_000 and len(json.loads((tmp_path / "p.json").read_text())) == 7
    for only, n in (("imdn_rtc:2", 7), ("imdn_rtc", 7), ("imdn_rtc:4", 0), ("dipnet", 0)):
        code = qat_curve.main([str(tmp_path), "--model", only, "--json", str(tmp_path / "p.json")])
        assert code == (0 if n else 2) and (not n or len(json.loads((tmp_path / "p.json").read_text())) == n)


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, make):
    arg = tmp_path / "nope" if make == "missing" else tmp_path
    assert qat_curve.main([str(arg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("qat_curve:") and "\n" not in err
