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


def test_dipnet_lite_without_weights_says_so(tmp_path):
    _bad(["--model", "dipnet_lite"], tmp_path / "o", "no public weights")


def test_unwritable_output_directory(tmp_path, weights_root):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _bad(["--model", "imdn_rtc", "--size", "16x16"], blocker / "sub", "not writable")


def test_bad_flag_is_one_line(tmp_path):
    _bad(["--model", "imdn_rtc", "--scale", "two"], tmp_path / "o", "invalid int value")


def test_help_explains_models_and_exit_codes():
    proc = run_cli("srdeploy.export.cli", "--help")
    assert proc.returncode == 0
    for word in ("imdn_rtc", "dipnet_lite", "parity", "exit codes", "--fp16", "no public weights"):
        assert word in proc.stdout
