"""The parity gate's decision rule."""
from __future__ import annotations

import numpy as np
import pytest

from srdeploy.export.parity import ParityInput, check_parity, format_table


def _input(ref, exact=None):
    x = np.zeros((1, 4, 4, 3), np.float32)
    return ParityInput("t", x, ref, exact)


def test_fp32_bound_and_float64_escalation():
    ref32 = np.full((1, 8, 8, 3), 0.5)
    calls = []

    def exact_close(x):
        calls.append(1)
        return ref32 + 1.5e-4  # the exact result is where the artifact is

    art = lambda x: ref32 + 1.5e-4  # noqa: E731 - 1.5e-4 off float32 PyTorch
    r = check_parity("a", "fp32", art, [_input(ref32, exact_close)])
    assert r.passed and r.checks[0]["reference"] == "pytorch-float64" and calls == [1]
    r = check_parity("a", "fp32", art, [_input(ref32, lambda x: ref32)])  # exact agrees with float32: fail
    assert not r.passed
    r = check_parity("a", "fp32", lambda x: ref32 + 5e-5, [_input(ref32, exact_close)])
    assert r.passed and r.checks[0]["reference"] == "pytorch-float32"
    assert "FAIL" not in format_table([r])


def test_fp16_psnr_bound_and_shape_mismatch():
    rng = np.random.default_rng(0)
    ref = rng.random((1, 8, 8, 3))
    noisy = lambda x: ref + rng.normal(0, 10 ** (-45 / 20), ref.shape)  # noqa: E731 - ~45 dB
    assert not check_parity("h", "fp16", noisy, [_input(ref)]).passed
    assert check_parity("h", "fp16", lambda x: ref + 1e-4, [_input(ref)]).passed  # 80 dB
    r = check_parity("h", "fp16", lambda x: ref[:, :4], [_input(ref)])
    assert not r.passed and "output shape" in r.checks[0]["error"]


def test_within_twice_pytorch_float32_error_rule():
    exact = np.full((1, 8, 8, 3), 0.5)
    ref32 = exact + 2e-4  # PyTorch float32 itself is 2e-4 off the exact result
    ok = check_parity("a", "fp32", lambda x: exact - 3e-4, [_input(ref32, lambda x: exact)])
    assert ok.passed and ok.checks[0]["reference"] == "within-2x-pytorch-float32-error"
    assert ok.checks[0]["torch_float32_error"] == pytest.approx(2e-4)
    bad = check_parity("a", "fp32", lambda x: exact - 5e-4, [_input(ref32, lambda x: exact)])
    assert not bad.passed  # 5e-4 > 2 x 2e-4
