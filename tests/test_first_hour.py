"""What a new user meets in the first hour (issue 19): quiet logs, progress that reads well in a
log file, README and --help that agree, the compare panel, and --bundle's report."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import run_cli
from .test_hostile import fake_app, png

README = Path(__file__).resolve().parents[1] / "README.md"

#: what third-party libraries print that no user can act on (seen before the fix)
NOISE = re.compile(r"absl::InitializeLog|Could not find cuda drivers|oneDNN custom operations|"
                   r"INFO: Created TensorFlow Lite XNNPACK delegate|fully_quantize: \d|^[IWEF]\d{4} \d\d:")


def _env(**kw) -> dict:
    env = dict(os.environ, **kw)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the product must quiet TensorFlow itself
    return env


@pytest.mark.slow
def test_an_export_prints_only_srdeploy_lines(tmp_path, data_root):
    proc = subprocess.run([sys.executable, "-m", "srdeploy.export.cli", "--model", "dipnet_lite", "--size", "64x64",
                           "--fp16", "--int8", "--calib", str(data_root / "div2k" / "HR"), "--calib-samples", "2",
                           "--out", str(tmp_path / "o")], env=_env(SRDEPLOY_PROGRESS_INTERVAL="0.2"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    noisy = [ln for ln in proc.stderr.splitlines() if NOISE.search(ln)]
    assert not noisy, noisy
    assert "\r" not in proc.stderr  # no progress-bar redraws in a log file
    assert re.search(r"onnx2tf: converting \d+ ONNX ops to TFLite \(\d+ s\)", proc.stderr), proc.stderr


def test_progress_is_plain_lines_when_not_a_terminal(tmp_path):
    hr = tmp_path / "set"
    hr.mkdir()
    for i in range(3):
        png(hr / f"{i}.png", 32, 32, seed=i)
    proc = subprocess.run([sys.executable, "-m", "srdeploy.benchmark.eval_cli", "--model", "dipnet_lite", "--scale",
                           "2", "--data", str(hr)], env=_env(SRDEPLOY_PROGRESS_INTERVAL="0"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "it/s" not in proc.stderr
    assert re.search(r"^set: 3/3 img \(\d+ s\)$", proc.stderr, re.M), proc.stderr


def test_line_progress_reports_periodically_and_at_the_end(capsys):
    from srdeploy.progress import LineProgress

    with LineProgress(total=4, desc="work", unit="step", interval=0) as bar:
        for _ in range(4):
            bar.update(1)
    with LineProgress(total=4, desc="quiet", unit="step", interval=3600) as bar:
        bar.update(4)
    err = capsys.readouterr().err.splitlines()
    assert [ln.split(" (")[0] for ln in err] == ["work: 1/4 step", "work: 2/4 step", "work: 3/4 step",
                                                 "work: 4/4 step", "work: 4/4 step", "quiet: 4/4 step"]


# ---------------------------------------------------------------- README and --help agree
def test_readme_states_the_real_rewrites_default():
    from srdeploy.export.cli import build_parser

    default = build_parser().get_default("rewrites")
    m = re.search(r"\(`--rewrites`, default\s+`([^`]+)`", README.read_text())
    assert m and m.group(1) == default, (m and m.group(1), default)


def test_readme_model_table_scales_match_the_registry():
    from srdeploy.models import MODELS

    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", README.read_text(), re.M)
    table = {name: cell.strip() for name, cell in rows if name in MODELS}
    assert set(table) == set(MODELS)
    for name, spec in MODELS.items():
        assert table[name] == " ".join(f"x{s}" for s in spec.scales), (name, table[name])


def test_readme_and_help_say_what_parity_runs_on_without_data():
    assert "synthetic" in README.read_text().split("## `sr-eval`")[0]
    assert "synthetic" in run_cli("srdeploy.export.cli", "--help").stdout


def test_help_model_list_says_each_thing_once():
    out = run_cli("srdeploy.export.cli", "--help").stdout
    for line in out.split("models:")[1].splitlines():
        assert line.count("trained by srdeploy") <= 1 and line.count("embedded") <= 1, line


# ---------------------------------------------------------------- sr-upscale --compare
def test_compare_label_is_an_opaque_box_no_wider_than_its_text():
    import cv2

    from srdeploy.upscale import _label

    grey = np.zeros((120, 600, 3), np.uint8)
    grey[:] = (30, 200, 90)  # a colour no grey anti-aliased glyph pixel can have
    for text in ("model_fp16.tflite", "33.93 dB"):
        out = _label(grey, text)
        changed = np.argwhere((out != grey).any(axis=2))
        (y0, x0), (y1, x1) = changed.min(0), changed.max(0)
        box = out[y0:y1 + 1, x0:x1 + 1]
        assert not (box == (30, 200, 90)).all(axis=2).any(), "image shows through the label's box"  # opaque
        scale = max(0.4, grey.shape[1] / 600)
        tw = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, round(scale)))[0][0]
        assert x1 - x0 + 1 <= tw + 2 * 4 + 1, (x1 - x0 + 1, tw)


def test_compare_with_an_hr_of_the_wrong_size_says_why(tmp_path):
    lr = png(tmp_path / "lr.png", 16, 16)
    hr = png(tmp_path / "hr.png", 20, 20)
    proc = run_cli("srdeploy.upscale", str(lr), "-o", str(tmp_path / "out" / "sr.png"), "--model", "dipnet_lite",
                   "--compare", "--hr", str(hr))
    assert proc.returncode == 1, proc.stderr
    assert "HR hr.png is 20x20, expected x2 of the input (32x32" in proc.stderr
    assert (tmp_path / "out" / "lr_compare.png").is_file()


def test_compare_with_a_matching_hr_has_three_panels(tmp_path):
    import cv2

    lr = png(tmp_path / "lr.png", 16, 16)
    hr = png(tmp_path / "hr.png", 33, 33)  # one pixel more than x2: cropped, as the papers' mod-crop
    proc = run_cli("srdeploy.upscale", str(lr), "-o", str(tmp_path / "out" / "sr.png"), "--model", "dipnet_lite",
                   "--compare", "--hr", str(hr))
    assert proc.returncode == 0, proc.stderr
    assert cv2.imread(str(tmp_path / "out" / "lr_compare.png")).shape[:2] == (32, 96)


# ---------------------------------------------------------------- sr-export --bundle
def test_export_bundle_reports_after_the_table_what_it_bundled(tmp_path):
    app = fake_app(tmp_path / "app")
    proc = run_cli("srdeploy.export.cli", "--model", "dipnet_lite", "--size", "24x24", "--out", str(tmp_path / "o"),
                   "--bundle", str(app))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "bundled into" not in proc.stderr
    assert out.index("PASS") < out.index("wrote") < out.index("bundled into")
    assert re.search(r"bundled into .*: model_fp32\.tflite \(fp32, x2, 1x24x24x3 float32 -> 1x48x48x3 float32\)", out)
    man = json.loads((app / "app/src/main/assets/srdeploy/manifest.json").read_text())
    assert "scale" not in man["input"] and str(tmp_path) not in json.dumps(man)


def test_a_calibration_folder_of_linked_folders_is_read_through_them(tmp_path):
    """A folder of links to dataset folders looked empty ("calibration folder … is empty") before: Path.rglob does
    not follow linked folders on Python < 3.13. Each real folder is read once, so a link loop ends."""
    from srdeploy.imaging import files_under
    from srdeploy.quantize.calibration import calibration_frames
    from srdeploy.train.data import PatchSampler

    sets = {}
    for name in ("setA", "setB"):
        d = tmp_path / "data" / name
        d.mkdir(parents=True)
        for i in range(2):
            png(d / f"{name}_{i}.png", 48, 40, seed=i)
        sets[name] = d
    mix = tmp_path / "mix"
    mix.mkdir()
    for name, d in sets.items():
        (mix / name).symlink_to(d, target_is_directory=True)
    (mix / "again").symlink_to(sets["setA"], target_is_directory=True)  # the same real folder twice: read once
    (sets["setB"] / "loop").symlink_to(mix, target_is_directory=True)  # a loop back to the top
    assert sorted(p.name for p in files_under(mix)) == ["setA_0.png", "setA_1.png", "setB_0.png", "setB_1.png"]
    cal = calibration_frames(mix, 2, (8, 8), n=4)
    assert sorted(cal.files) == ["setA_0.png", "setA_1.png", "setB_0.png", "setB_1.png"]
    sampler = PatchSampler.from_folders([mix], 2, 8)
    assert sorted(sampler.names) == ["setA_0.png", "setA_1.png", "setB_0.png", "setB_1.png"]
