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


def _random_registry_model(name, scale, shape, seed):
    """A registry network with seeded random weights, its ONNX export, an input and the export's output on it."""
    from srdeploy.models import create_model

    torch.manual_seed(0)
    model = create_model(name, scale, pretrained=False)
    proto = _onnx(model, shape)
    x = np.random.default_rng(seed).random(shape, dtype=np.float32)
    return model, proto, x, _run(proto, x)


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


class ConcatConv(nn.Module):
    """Parts computed apart (as IMDN's slices and last conv are), concatenated, one 1x1 conv."""

    def __init__(self, sizes, cout, bias, also_read: bool = False):
        super().__init__()
        self.heads = nn.ModuleList(nn.Conv2d(3, c, 3, padding=1) for c in sizes)
        self.fuse = nn.Conv2d(sum(sizes), cout, 1, bias=bias)
        self.also_read = also_read

    def forward(self, x):
        cat = torch.cat([nn.functional.leaky_relu(h(x), 0.05) for h in self.heads], dim=1)
        y = self.fuse(cat)
        return y + cat.mean(dim=1, keepdim=True) if self.also_read else y


@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.integers(1, 6), min_size=2, max_size=5), cout=st.integers(1, 6), bias=st.booleans(),
       h=st.integers(1, 12), w=st.integers(1, 12), seed=st.integers(0, 1000))
def test_concat_conv_rewrite_is_exact_to_rounding(sizes, cout, bias, h, w, seed):
    from srdeploy.export.rewrites import concat_conv

    torch.manual_seed(seed)
    proto = _onnx(ConcatConv(sizes, cout, bias), (1, 3, h, w))
    x = np.random.default_rng(seed).normal(size=(1, 3, h, w)).astype(np.float32)
    before = _run(proto, x)
    assert concat_conv(proto) == 1
    kinds = [n.op_type for n in proto.graph.node]
    assert "Concat" not in kinds and kinds.count("Add") == len(sizes) - 1
    after = _run(proto, x)
    assert np.abs(after - before).max() <= 1e-6 * max(1.0, float(np.abs(before).max()))


def test_concat_conv_leaves_a_concat_with_another_reader_alone():
    from srdeploy.export.rewrites import concat_conv

    proto = _onnx(ConcatConv([2, 3], 4, True, also_read=True), (1, 3, 8, 8))
    assert concat_conv(proto) == 0 and [n.op_type for n in proto.graph.node].count("Concat") == 1


def test_concat_conv_on_imdn_rtc_removes_every_distillation_concat():
    from srdeploy.export.rewrites import concat_conv

    model, proto, x, before = _random_registry_model("imdn_rtc", 2, (1, 3, 20, 24), seed=1)
    n_blocks = len(model.blocks)
    assert concat_conv(proto) == n_blocks
    assert "Concat" not in [n.op_type for n in proto.graph.node]
    assert np.abs(_run(proto, x) - before).max() <= 1e-5


class SliceConvs(nn.Module):
    """A tensor split along channels, each piece read by its own conv (IMDN's distillation split)."""

    def __init__(self, c, cut, k, also_read: bool = False):
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.a = nn.Conv2d(cut, 2, k, padding=k // 2)
        self.b = nn.Conv2d(c - cut, 2, k, padding=k // 2, bias=False)
        self.cut, self.also_read = cut, also_read

    def forward(self, x):
        h = nn.functional.leaky_relu(self.head(x), 0.05)
        lo, hi = torch.split(h, (self.cut, h.shape[1] - self.cut), dim=1)
        y = self.a(lo) + self.b(hi)
        return y + hi.mean(dim=1, keepdim=True) if self.also_read else y


def _simplified(model, shape):
    import onnxsim

    proto, ok = onnxsim.simplify(_onnx(model, shape))
    assert ok
    return proto


@settings(max_examples=20, deadline=None)
@given(c=st.integers(2, 8), data=st.data(), k=st.sampled_from([1, 3]), h=st.integers(1, 12), w=st.integers(1, 12),
       seed=st.integers(0, 1000), simplify=st.booleans())
def test_slice_conv_rewrite_is_exact_to_rounding(c, data, k, h, w, seed, simplify):
    from srdeploy.export.rewrites import slice_conv

    cut = data.draw(st.integers(1, c - 1))
    torch.manual_seed(seed)
    model = SliceConvs(c, cut, k)
    proto = (_simplified if simplify else _onnx)(model, (1, 3, h, w))  # bounds as initializers or Constant nodes
    x = np.random.default_rng(seed).normal(size=(1, 3, h, w)).astype(np.float32)
    before = _run(proto, x)
    assert [n.op_type for n in proto.graph.node].count("Slice") == 2  # what torch.split exports at opset 17
    assert slice_conv(proto) == 2
    assert "Slice" not in [n.op_type for n in proto.graph.node]
    after = _run(proto, x)
    assert np.abs(after - before).max() <= 1e-6 * max(1.0, float(np.abs(before).max()))


def test_slice_conv_leaves_a_slice_with_another_reader_alone():
    from srdeploy.export.rewrites import slice_conv

    proto = _onnx(SliceConvs(6, 2, 3, also_read=True), (1, 3, 8, 8))
    assert slice_conv(proto) == 1  # the low slice (read by a conv only); the high one also feeds a mean
    assert [n.op_type for n in proto.graph.node].count("Slice") == 1


class SliceToConcat(nn.Module):
    """IMDN's distilled slice: a channel piece of an activation going into a concatenation."""

    def __init__(self, c, start, stop):
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.other = nn.Conv2d(3, 2, 1)
        self.start, self.stop = start, stop

    def forward(self, x):
        h = nn.functional.leaky_relu(self.head(x), 0.05)
        return torch.cat([h[:, self.start:self.stop], self.other(x)], dim=1)


@settings(max_examples=20, deadline=None)
@given(c=st.integers(2, 8), data=st.data(), h=st.integers(1, 10), w=st.integers(1, 10), seed=st.integers(0, 1000))
def test_slice_select_is_bit_identical(c, data, h, w, seed):
    from srdeploy.export.rewrites import slice_select

    start = data.draw(st.integers(0, c - 1))
    stop = data.draw(st.integers(start + 1, c))
    torch.manual_seed(seed)
    proto = _simplified(SliceToConcat(c, start, stop), (1, 3, h, w))
    x = np.random.default_rng(seed).normal(size=(1, 3, h, w)).astype(np.float32) * 10
    before = _run(proto, x)
    n = [k.op_type for k in proto.graph.node].count("Slice")
    assert slice_select(proto) == n
    assert "Slice" not in [k.op_type for k in proto.graph.node]
    assert np.array_equal(_run(proto, x), before)  # one product by 1.0, the others by 0.0


class SplitHead(nn.Module):
    """IMDN's distillation step: a conv, its activation, and the output cut into channel pieces."""

    def __init__(self, c, cuts, act, bias, also_read=False, by_index=False):
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1, bias=bias)
        self.cuts, self.act, self.also_read, self.by_index = cuts, act, also_read, by_index

    def forward(self, x):
        h = self.head(x)
        h = {"leaky": lambda t: nn.functional.leaky_relu(t, 0.05), "relu": torch.relu, "none": lambda t: t}[self.act](h)
        if self.by_index:  # h[:, a:b] per piece: ONNX Slices (IMDN's export); torch.split: one ONNX Split
            ends = np.cumsum([0, *self.cuts])
            pieces = [h[:, int(a):int(b)] for a, b in zip(ends[:-1], ends[1:])]
        else:
            pieces = torch.split(h, self.cuts, dim=1)
        y = torch.cat([p * (k + 1) for k, p in enumerate(pieces)], dim=1)  # each piece read by an op of its own
        return y + h.mean(dim=1, keepdim=True) if self.also_read else y


@settings(max_examples=20, deadline=None)
@given(c=st.integers(2, 9), data=st.data(), act=st.sampled_from(["leaky", "relu", "none"]), bias=st.booleans(),
       h=st.integers(1, 10), w=st.integers(1, 10), seed=st.integers(0, 1000), simplify=st.booleans(),
       by_index=st.booleans())
def test_conv_split_is_exact_to_rounding(c, data, act, bias, h, w, seed, simplify, by_index):
    from srdeploy.export.rewrites import conv_split

    n = data.draw(st.integers(2, min(c, 4)))
    bounds = sorted(data.draw(st.lists(st.integers(1, c - 1), min_size=n - 1, max_size=n - 1, unique=True)))
    cuts = [b - a for a, b in zip([0, *bounds], [*bounds, c])]
    torch.manual_seed(seed)
    proto = (_simplified if simplify else _onnx)(SplitHead(c, cuts, act, bias, by_index=by_index), (1, 3, h, w))
    x = np.random.default_rng(seed).normal(size=(1, 3, h, w)).astype(np.float32) * 10
    before = _run(proto, x)
    ops = [k.op_type for k in proto.graph.node]
    assert (ops.count("Slice"), ops.count("Split")) == ((n, 0) if by_index else (0, 1))
    assert conv_split(proto) == 1
    ops = [k.op_type for k in proto.graph.node]
    assert "Slice" not in ops and "Split" not in ops and ops.count("Conv") == n
    assert ops.count({"leaky": "LeakyRelu", "relu": "Relu", "none": "Conv"}[act]) == n
    assert not ({"head.weight", "head.bias"} & {t.name for t in proto.graph.initializer})  # the old weights went
    after = _run(proto, x)  # the same products; a kernel may sum them in another order for another width
    assert np.abs(after - before).max() <= 1e-6 * max(1.0, float(np.abs(before).max()))


def test_conv_split_leaves_a_conv_with_another_reader_alone():
    from srdeploy.export.rewrites import conv_split

    for by_index in (False, True):  # the whole activation also feeds a mean: no part may go
        proto = _onnx(SplitHead(6, [2, 4], "leaky", True, also_read=True, by_index=by_index), (1, 3, 8, 8))
        before = [k.op_type for k in proto.graph.node]
        assert conv_split(proto) == 0
        assert [k.op_type for k in proto.graph.node] == before


def test_conv_split_on_imdn_removes_every_slice_and_keeps_the_macs():
    from srdeploy.export.rewrites import conv_split

    model, proto, x, before = _random_registry_model("imdn", 4, (1, 3, 12, 16), seed=2)

    def conv_weights(p):
        inits = {t.name: t for t in p.graph.initializer}
        return sum(int(np.prod(inits[n.input[1]].dims)) for n in p.graph.node if n.op_type == "Conv")

    weights = conv_weights(proto)
    assert conv_split(proto) == 3 * len(model.blocks)  # c1, c2, c3 of every block
    assert "Slice" not in [n.op_type for n in proto.graph.node]
    assert conv_weights(proto) == weights  # the same weights, cut by output channel: the same MACs
    assert np.abs(_run(proto, x) - before).max() <= 1e-6
