"""Graph transforms are exact, and the plain graph is what the GPU delegate cannot run."""
from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from srdeploy.export.rewrites import apply_rewrites, depth_to_space_dcr


class ConvShuffle(nn.Module):
    def __init__(self, cin, cout, r, bias):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout * r * r, 3, padding=1, bias=bias)
        self.ps = nn.PixelShuffle(r)

    def forward(self, x):
        return self.ps(self.conv(x))


def _onnx(model, shape):
    buf = io.BytesIO()
    torch.onnx.export(model.eval(), (torch.rand(*shape),), buf, input_names=["x"], output_names=["y"],
                      opset_version=17, dynamo=False)
    return onnx.load_from_string(buf.getvalue())


def _run(proto, x):
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@settings(max_examples=15, deadline=None)
@given(cin=st.integers(1, 6), cout=st.integers(1, 4), r=st.integers(2, 4), bias=st.booleans(),
       h=st.integers(1, 9), w=st.integers(1, 9), seed=st.integers(0, 1000))
def test_dcr_rewrite_is_exact(cin, cout, r, bias, h, w, seed):
    torch.manual_seed(seed)
    model = ConvShuffle(cin, cout, r, bias)
    proto = _onnx(model, (1, cin, h, w))
    modes = [a.s for n in proto.graph.node if n.op_type == "DepthToSpace" for a in n.attribute if a.name == "mode"]
    assert modes == [b"CRD"]  # what PyTorch emits
    x = np.random.default_rng(seed).random((1, cin, h, w), dtype=np.float32)
    before = _run(proto, x)
    assert depth_to_space_dcr(proto) == 1
    modes = [a.s for n in proto.graph.node if n.op_type == "DepthToSpace" for a in n.attribute if a.name == "mode"]
    assert modes == [b"DCR"]
    after = _run(proto, x)
    assert np.array_equal(before, after)  # a permutation of weights: bit-identical


def test_dcr_leaves_a_shuffle_without_a_private_conv_alone():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 8, 1)

        def forward(self, x):
            y = self.conv(x)
            return nn.functional.pixel_shuffle(y, 2), y  # the conv output has a second consumer

    buf = io.BytesIO()
    torch.onnx.export(Shared().eval(), (torch.rand(1, 2, 4, 4),), buf, input_names=["x"], opset_version=17,
                      dynamo=False)
    proto = onnx.load_from_string(buf.getvalue())
    assert depth_to_space_dcr(proto) == 0


def test_unknown_rewrite_is_rejected():
    from srdeploy.errors import SrDeployError

    with pytest.raises(SrDeployError, match="available: split_mean, dcr, gelu"):
        apply_rewrites(onnx.ModelProto(), ["fuse-everything"])


class GlobalStats(nn.Module):
    def forward(self, x):
        m = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(m + (x - m).pow(2).mean(dim=(2, 3), keepdim=True))


@settings(max_examples=15, deadline=None)
@given(c=st.integers(1, 5), h=st.integers(1, 40), w=st.integers(1, 40), seed=st.integers(0, 1000))
def test_split_mean_rewrite_is_exact_to_rounding(c, h, w, seed):
    from srdeploy.export.rewrites import split_spatial_mean

    proto = _onnx(GlobalStats(), (1, c, h, w))
    x = np.random.default_rng(seed).random((1, c, h, w), dtype=np.float32) * 10
    before = _run(proto, x)
    n_before = sum(n.op_type == "ReduceMean" for n in proto.graph.node)
    assert split_spatial_mean(proto) == n_before == 2
    onnx.checker.check_model(proto)
    assert sum(n.op_type == "ReduceMean" for n in proto.graph.node) == 4
    after = _run(proto, x)
    exact = x.astype(np.float64)
    m = exact.mean(axis=(2, 3), keepdims=True)
    ref = exact / (1 + np.exp(-(m + ((exact - m) ** 2).mean(axis=(2, 3), keepdims=True)))) 
    assert np.allclose(after, before, rtol=1e-5, atol=1e-5)
    assert np.abs(after - ref).max() <= np.abs(before - ref).max() + 1e-5


class GeluNet(nn.Module):
    """GELU after a conv, once at the output (its 0.5 stays) and once before a conv (onnxsim folds it)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 3, 3, padding=1)
        self.act = nn.GELU()

    def forward(self, x):
        return self.act(self.b(self.act(self.a(x))))


def test_erf_gelu_becomes_one_node_and_stays_exact(tmp_path):
    import onnxsim

    from srdeploy.export.formats import convert_onnx2tf
    from srdeploy.export.rewrites import erf_gelu
    from srdeploy.runtime import TFLiteRunner

    torch.manual_seed(0)
    proto, _ = onnxsim.simplify(_onnx(GeluNet(), (1, 3, 16, 16)))
    assert [n.op_type for n in proto.graph.node].count("Erf") == 2
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    before = _run(proto, x)
    assert erf_gelu(proto) == 2
    ops = [n.op_type for n in proto.graph.node]
    assert "Erf" not in ops and ops.count("Exp") == 2
    onnx.checker.check_model(proto)
    assert np.abs(_run(proto, x) - before).max() < 1e-5
    path = tmp_path / "g.onnx"
    onnx.save(proto, str(path))
    tfl = convert_onnx2tf(path, tmp_path / "o")
    runner = TFLiteRunner(tfl["fp32"])
    kinds = {d["op_name"] for d in runner.interpreter._get_ops_details()}
    assert "EXP" in kinds and not any(k.startswith("Flex") for k in kinds)
    assert np.abs(runner(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2) - before).max() < 1e-5
