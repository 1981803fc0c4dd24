"""Per-channel activation equalization (srdeploy.quantize.equalize): bit-identical in float, only
where every reader undoes it, and never widening a tensor's min/max range."""
from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from srdeploy.quantize.equalize import MAX_SCALE, equalize, plan, scales_for


class Distill(nn.Module):
    """An IMDN distillation block (conv → LeakyReLU → split: a distilled piece into the concat, the rest
    into the next conv; concat → 1×1 conv; residual) and a ReLU → max-pool branch, with channels of
    very unequal ranges. Outputs read by an Add (head, c4, pool_b) must not be rescaled."""

    def __init__(self, c: int, d: int, spread: torch.Tensor):
        super().__init__()
        self.d = d
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.c1 = nn.Conv2d(c, c, 3, padding=1)
        self.c2 = nn.Conv2d(c - d, c, 3, padding=1)
        self.c3 = nn.Conv2d(c - d, d, 3, padding=1, bias=False)
        self.c4 = nn.Conv2d(3 * d, c, 1)
        self.pool_a = nn.Conv2d(c, 4, 1)
        self.pool_b = nn.Conv2d(4, c, 3, padding=1)
        with torch.no_grad():  # make the channel ranges unequal, as trained SR convs' are
            self.c1.weight.mul_(spread[:c].view(-1, 1, 1, 1))
            self.c2.weight.mul_(spread[c:2 * c].view(-1, 1, 1, 1))

    def forward(self, x):
        fea = self.head(x)
        d1, r = torch.split(F.leaky_relu(self.c1(fea), 0.05), (self.d, fea.shape[1] - self.d), dim=1)
        d2, r = torch.split(F.leaky_relu(self.c2(r), 0.05), (self.d, fea.shape[1] - self.d), dim=1)
        y = self.c4(torch.cat([d1, d2, self.c3(r)], dim=1)) + fea
        return y + self.pool_b(F.max_pool2d(F.relu(self.pool_a(y)), 3, 1, 1))


def _onnx(model: nn.Module, h: int, w: int):
    import onnxsim

    buf = io.BytesIO()
    torch.onnx.export(model.eval(), (torch.rand(1, 3, h, w),), buf, input_names=["x"], output_names=["y"],
                      opset_version=17, dynamo=False)
    proto, ok = onnxsim.simplify(onnx.load_from_string(buf.getvalue()))  # what the exporter equalizes
    assert ok
    return proto


def _run(proto, x):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _conv_of(node_name: str) -> str:
    return node_name.split("/")[1]


@settings(max_examples=12, deadline=None)
@given(c=st.integers(4, 10), d=st.integers(1, 3), h=st.integers(3, 12), w=st.integers(3, 12),
       seed=st.integers(0, 1000))
def test_equalization_is_bit_identical_and_only_where_every_reader_undoes_it(c, d, h, w, seed):
    torch.manual_seed(seed)
    model = Distill(c, d, torch.tensor([1.0, 1 / 64] * c))  # every other channel 64x narrower
    proto = _onnx(model, h, w)
    rng = np.random.default_rng(seed)
    frames = rng.random((3, h, w, 3), dtype=np.float32)
    x = rng.random((1, 3, h, w), dtype=np.float32)
    before = _run(proto, x)
    found = {_conv_of(r.producer.name) for r in plan(proto).regions}
    assert found == {"c1", "c2", "c3", "pool_a"}, found  # head, c4, pool_b feed an Add
    eq = equalize(proto, frames)
    assert np.array_equal(_run(proto, x), before)  # powers of two: exact, not merely close
    scales = np.concatenate(list(eq.scales.values()))
    assert np.all(np.log2(scales) == np.round(np.log2(scales))) and scales.min() >= 1 and scales.max() <= MAX_SCALE
    assert scales.max() > 1  # channels 64x apart in range: some must have been scaled


def test_equalization_leaves_a_graph_without_a_safe_conv_output_alone():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 3, 3, padding=1)

        def forward(self, x):
            h = self.a(x)
            return self.b(h) + h.mean(dim=1, keepdim=True)  # h has a reader that is not a conv

    proto = _onnx(Residual(), 8, 8)
    weights = [bytes(t.raw_data) for t in proto.graph.initializer]
    assert equalize(proto, np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32)).regions == []
    assert [bytes(t.raw_data) for t in proto.graph.initializer] == weights


@settings(max_examples=200, deadline=None)
@given(lo=st.lists(st.floats(-50, 0), min_size=1, max_size=16), data=st.data(), alpha=st.sampled_from([0.25, 0.5, 1.0]))
def test_scales_never_widen_the_tensors_min_max(lo, data, alpha):
    hi = data.draw(st.lists(st.floats(0, 50), min_size=len(lo), max_size=len(lo)))
    lo, hi = np.array(lo), np.array(hi)
    s = scales_for(lo, hi, alpha)
    assert np.all(np.log2(s) == np.round(np.log2(s))) and s.min() >= 1 and s.max() <= MAX_SCALE
    assert (s * lo).min() >= lo.min() - 1e-9 and (s * hi).max() <= hi.max() + 1e-9


def test_a_narrow_channel_gets_more_levels_and_the_widest_none():
    lo = np.array([-1.0, -0.05, -0.5])
    hi = np.array([10.0, 0.5, 5.0])
    s = scales_for(lo, hi, 0.5)
    assert list(s) == [1.0, 4.0, 1.0]  # sqrt(20) = 4.5 -> 4; sqrt(2) = 2^0.5 rounds (to even) to 1
    assert list(scales_for(lo, hi, 1.0)) == [1.0, 16.0, 2.0]  # 20x capped by room (20) and MAX_SCALE


class WithAttention(nn.Module):
    """Head conv → IMDN distillation block with its contrast-aware attention (std + mean of the concat →
    1×1 → ReLU → 1×1 → sigmoid, times the concat) → conv. With *eps* the std is sqrt(var + eps), which a
    rescaling does not commute with."""

    def __init__(self, c: int, d: int, eps: float = 0.0):
        super().__init__()
        from srdeploy.models.imdn import DistillationBlock

        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.block = DistillationBlock(c, d, [c, c, 16 - 2 * d], attention=True)  # a 16-channel concat
        self.tail = nn.Conv2d(c, 3, 3, padding=1)
        self.eps = eps
        if eps:
            self.block.cca.forward = self._cca_with_eps

    def _cca_with_eps(self, x):
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = ((x - mean).pow(2).mean(dim=(2, 3), keepdim=True) + self.eps).sqrt()
        return x * self.block.cca.conv_du(std + mean)

    def forward(self, x):
        return self.tail(self.block(self.head(x)))


@settings(max_examples=8, deadline=None)
@given(c=st.sampled_from([8, 16]), d=st.integers(1, 3), h=st.integers(4, 10), w=st.integers(4, 10),
       seed=st.integers(0, 1000))
def test_equalization_follows_channels_through_a_channel_attention(c, d, h, w, seed):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    frames = rng.random((3, h, w, 3), dtype=np.float32)
    x = rng.random((1, 3, h, w), dtype=np.float32)
    proto = _onnx(WithAttention(c, d), h, w)
    before = _run(proto, x)
    eq = equalize(proto, frames)
    assert np.array_equal(_run(proto, x), before)
    found = {r.producer.name for r in eq.regions}
    # c1..c3 feed the concat the attention reads (mean, std, product); the attention's own reduction conv too
    assert all(any(f"/block/c{k}/" in n for n in found) for k in (1, 2, 3)), found
    assert not any("/block/c4/" in n or "/head/" in n for n in found), found  # c4 and head feed an Add
    # sqrt(var + eps) does not scale with the channel: nothing that reaches it may be rescaled
    guarded = _onnx(WithAttention(c, d, eps=1e-3), h, w)
    assert not any(f"/block/c{k}/" in r.producer.name for r in plan(guarded).regions for k in (1, 2, 3))
