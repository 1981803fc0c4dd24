"""The IMDN family as one parametrized network.

IMDN (ACM MM 2019), IMDN_AS, IMDN_RTC, IMDN_RTE and IMDN+ (NTIRE 2022) all chain
*information multi-distillation blocks*: a cascade of 3×3 convs where each step keeps
``d`` "distilled" channels and passes the rest on, a concatenation of the distilled parts,
an optional attention, a 1×1 fusion conv and a residual. They differ only in widths, the
split schedule, the activation, biases, the head, and how block outputs are aggregated —
so one :class:`DistillationBlock` and one :class:`IMDNNet` with those as parameters
build them all (layer sizes from the official checkpoints, see SOURCES.md).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from .layers import CCA, make_act, make_conv

__all__ = ["DistillationBlock", "IMDNNet"]


class DistillationBlock(nn.Module):
    """Information multi-distillation block.

    ``conv_out`` lists the output widths of the cascaded 3×3 convs ``c1..cK``; conv ``i``
    (i > 1) takes the ``conv_out[i-1] - distilled`` channels left after splitting off
    ``distilled`` channels. The last conv's output is kept whole. The concatenation goes
    through an optional CCA attention, then the 1×1 conv ``c{K+1}``, plus the input.

    ``rep`` (a RepConv branch list) turns the C→C 3×3 convs into re-parameterizable ones
    (the IMDN+ training form).
    """

    def __init__(
        self,
        channels: int,
        distilled: int,
        conv_out: Sequence[int],
        act: str = "lrelu",
        act_last: bool = False,
        attention: bool = False,
        bias: bool = True,
        rep: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.distilled = distilled
        self.conv_out = list(conv_out)
        self.act_last = act_last
        in_ch = channels
        for i, out_ch in enumerate(self.conv_out, start=1):
            use_rep = rep if (rep is not None and in_ch == out_ch) else None
            setattr(self, f"c{i}", make_conv(in_ch, out_ch, 3, bias=bias, rep=use_rep))
            in_ch = out_ch - distilled
        concat = distilled * (len(self.conv_out) - 1) + self.conv_out[-1]
        self.n_convs = len(self.conv_out)
        setattr(self, f"c{self.n_convs + 1}", make_conv(concat, channels, 1, bias=bias))
        self.act = make_act(act)
        if attention:
            self.cca = CCA(concat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept = []
        h = x
        for i in range(1, self.n_convs + 1):
            out = getattr(self, f"c{i}")(h)
            last = i == self.n_convs
            if not last or self.act_last:
                out = self.act(out)
            if last:
                kept.append(out)
            else:
                d, h = torch.split(out, (self.distilled, out.shape[1] - self.distilled), dim=1)
                kept.append(d)
        out = torch.cat(kept, dim=1)
        if hasattr(self, "cca"):
            out = self.cca(out)
        return getattr(self, f"c{self.n_convs + 1}")(out) + x


class IMDNNet(nn.Module):
    """Head → distillation blocks → (aggregation) → LR conv + head residual → pixel-shuffle upsampler.

    * ``head_strides``: strides of the head convs (IMDN: ``(1,)``; IMDN_AS: ``(2, 2)``;
      IMDN_RTE: ``(1, 2)``), with ``head_act`` between them.
    * ``aggregate``: IMDN's concat of every block output → 1×1 conv → LeakyReLU before the
      LR conv; otherwise the blocks are simply chained.
    * ``pixel_range``: the pixel scale the checkpoint was trained on; the net still takes and
      returns [0, 1] (IMDN_RTE's official weights expect 0..255: measured on Set5, see registry).
    * The upsampler enlarges by ``scale × prod(head_strides)``, so the net maps an
      ``H×W`` input to ``scale·H × scale·W``.
    """

    def __init__(
        self,
        scale: int,
        channels: int,
        n_blocks: int,
        block: dict,
        head_strides: Sequence[int] = (1,),
        head_bias: Sequence[bool] | None = None,
        head_act: str = "lrelu",
        aggregate: bool = False,
        lr_kernel: int = 3,
        lr_bias: bool = True,
        in_channels: int = 3,
        out_channels: int = 3,
        rep: Sequence[str] | None = None,
        pixel_range: float = 1.0,
    ) -> None:
        super().__init__()
        self.scale = scale
        # I/O is always [0, 1]; a checkpoint trained on 0..255 pixels (IMDN_RTE) sees 0..255 inside.
        self.pixel_range = float(pixel_range)
        self.form = "train" if rep is not None else "deploy"
        head_bias = list(head_bias) if head_bias is not None else [True] * len(head_strides)
        head: list[nn.Module] = []
        c_in = in_channels
        for i, (stride, b) in enumerate(zip(head_strides, head_bias)):
            if i:
                head.append(make_act(head_act))
            head.append(make_conv(c_in, channels, 3, stride=stride, bias=b))
            c_in = channels
        self.fea_conv = head[0] if len(head) == 1 else nn.Sequential(*head)
        self.blocks = nn.ModuleList(
            DistillationBlock(channels, rep=rep, **block) for _ in range(n_blocks)
        )
        self.aggregate = aggregate
        if aggregate:
            self.c = nn.Sequential(nn.Conv2d(channels * n_blocks, channels, 1), make_act("lrelu"))
        lr_rep = rep if (rep is not None and lr_kernel == 3) else None
        self.LR_conv = make_conv(channels, channels, lr_kernel, bias=lr_bias, rep=lr_rep)
        self.stride = 1
        for s in head_strides:
            self.stride *= s
        up = scale * self.stride
        self.upsampler = nn.Sequential(
            nn.Conv2d(channels, out_channels * up * up, 3, padding=1), nn.PixelShuffle(up)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pixel_range != 1.0:
            x = x * self.pixel_range
        fea = self.fea_conv(x)
        h = fea
        outs = []
        for blk in self.blocks:
            h = blk(h)
            outs.append(h)
        if self.aggregate:
            h = self.c(torch.cat(outs, dim=1))
        out = self.upsampler(self.LR_conv(h) + fea)
        return out / self.pixel_range if self.pixel_range != 1.0 else out
