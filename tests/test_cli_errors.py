"""Bad input to sr-export: one line on stderr, exit code 2, nothing left in the output folder."""
from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import run_cli


def _bad(args: list[str], out: Path, expect: str) -> None:
    proc = run_cli("srdeploy.export.cli", *args, "--out", str(out))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("sr-export: error:"), proc.stderr
    assert expect in lines[0], lines[0]
    assert not proc.stdout.strip()
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def test_unknown_model_lists_known_names(tmp_path):
    _bad(["--model", "edsr"], tmp_path / "o", "known models: dipnet, dipnet_lite, imdn, imdn_as")


def test_unsupported_scale(tmp_path):
    _bad(["--model", "imdn_rtc", "--scale", "4"], tmp_path / "o", "does not support scale 4")


def test_wrong_architecture_checkpoint(tmp_path, weights_root):
    _bad(["--model", "imdn_rtc", "--weights", str(weights_root / "dipnet_x4.pth"), "--size", "16x16"],
         tmp_path / "o", "missing keys")


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    _bad(["--model", "imdn_rtc", "--weights", str(bad)], tmp_path / "o", "cannot read checkpoint")


@pytest.mark.parametrize("size,expect", [
    ("64", "--size must be HxW"), ("0x64", "--size must be HxW"), ("-8x8", "--size must be HxW"),
    ("64xa", "--size must be HxW"),
])
def test_malformed_size(tmp_path, size, expect, weights_root):
    _bad(["--model", "imdn_rtc", f"--size={size}"], tmp_path / "o", expect)


def test_size_not_divisible_for_imdn_as(tmp_path, weights_root):
    _bad(["--model", "imdn_as", "--size", "66x64"], tmp_path / "o", "divisible by 4")


def test_bench_runs_below_one(tmp_path):
    _bad(["--model", "imdn_rtc", "--size", "16x16", "--bench", "--bench-runs", "0"], tmp_path / "o",
         "--bench-runs must be >= 1")


def test_auto_model_with_a_weights_path_says_so(tmp_path):
    ck = tmp_path / "w.pth"
    ck.write_bytes(b"x")
    _bad(["--weights", str(ck)], tmp_path / "o", "--weights needs an explicit --model")


def test_damaged_embedded_weights_are_refused(tmp_path, monkeypatch):
    import dataclasses

    from srdeploy.errors import SrDeployError
    from srdeploy.models import create_model, get_spec

    spec = get_spec("dipnet_lite")
    monkeypatch.setitem(spec.weights, 2, dataclasses.replace(spec.weights[2], sha256="0" * 64))
    with pytest.raises(SrDeployError, match="damaged"):
        create_model("dipnet_lite")


def test_unwritable_output_directory(tmp_path, weights_root):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _bad(["--model", "imdn_rtc", "--size", "16x16"], blocker / "sub", "not writable")


def test_bad_flag_is_one_line(tmp_path):
    _bad(["--model", "imdn_rtc", "--scale", "two"], tmp_path / "o", "invalid int value")


def test_help_explains_models_and_exit_codes():
    proc = run_cli("srdeploy.export.cli", "--help")
    assert proc.returncode == 0
    for word in ("imdn_rtc", "dipnet_lite", "parity", "exit codes", "--fp16", "embedded weights", "--bench"):
        assert word in proc.stdout
