"""What the exporter consumes: a model *source* — a registry entry, a user's ONNX file or a user's
``nn.Module`` — behind one interface. A source knows its name, scale and size rules, writes the
srdeploy-convention ONNX graph (NCHW RGB in [0, 1], or uint8 bytes) that every artifact is
converted from, and supplies the reference the parity gate and the quality report compare with."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..cli_util import parse_hw
from ..errors import SrDeployError
from .convention import IOConvention

__all__ = ["ModelSource", "TorchSource", "MAX_EXPORT_PIXELS", "Reference", "export_name"]

NAME_PATTERN = r"^[A-Za-z0-9_.+-]{1,64}$"


def export_name(explicit: str | None, fallback: str) -> str:
    """The export's name (manifest ``model``, default folder): an explicit one must be safe as it is;
    a derived one (a file's stem, a class name) is made safe."""
    import re

    if explicit is not None:
        if not re.fullmatch(NAME_PATTERN, explicit) or explicit in (".", ".."):
            raise SrDeployError(f"--name must be 1-64 characters of A-Z a-z 0-9 _ . + -, got {explicit!r}")
        return explicit
    name = re.sub(r"[^A-Za-z0-9_.+-]", "_", fallback)[:64].strip(".") or "model"
    return name

#: the largest LR export (the parity gate's float64 reference of a 64-channel network at this size
#: already takes several GB); bigger frames are tiled at run time
MAX_EXPORT_PIXELS = 1 << 22

#: NHWC float32 RGB [0, 1] → NHWC RGB [0, 1] output
Reference = Callable[[np.ndarray], np.ndarray]


class ModelSource:
    kind: str = "?"
    name: str
    scale: int
    description: str = ""
    convention: IOConvention = IOConvention()
    #: size rules: H and W multiples of this, at least min_size; a fixed input size when the model has one
    size_multiple: int = 1
    min_size: int = 1
    default_size: tuple[int, int] | None = (256, 256)
    fixed_size: tuple[int, int] | None = None
    scale_note: str = ""
    #: the quality report's label for the source's own run
    quality_label: str = "source"

    # ---------------------------------------------------------------- sizes
    def check_size(self, text: str | None) -> tuple[int, int]:
        """``"HxW"`` (or the default) → (H, W), validated against the model's constraints."""
        if text is None:
            size = self.fixed_size or self.default_size
            if size is None:
                raise SrDeployError(f"{self.name} has a dynamic input size: pass --size HxW (e.g. 256x256)")
            h, w = size
        else:
            h, w = parse_hw(text, "--size")
        if h * w > MAX_EXPORT_PIXELS:
            raise SrDeployError(f"--size {h}x{w} is {h * w / 1e6:.1f} MP; exports are at most {MAX_EXPORT_PIXELS / 1e6:.1f} MP "
                                "(e.g. 2048x2048): larger frames are upscaled tile by tile at run time")
        if self.fixed_size and (h, w) != tuple(self.fixed_size):
            fh, fw = self.fixed_size
            raise SrDeployError(f"{self.name} has a fixed {fh}x{fw} input; --size {h}x{w} contradicts it")
        k = self.size_multiple
        if h % k or w % k:
            raise SrDeployError(f"{self.name} needs H and W divisible by {k}, got {h}x{w}")
        if min(h, w) < self.min_size:
            raise SrDeployError(f"{self.name} needs H and W of at least {self.min_size}, got {h}x{w}")
        self.check_output(h, w)
        return h, w

    def check_output(self, h: int, w: int) -> None:
        """Refuse a scale the model's output at this size contradicts (sources that can tell)."""

    # ---------------------------------------------------------------- what the exporter uses
    def write_onnx(self, path: Path, size: tuple[int, int], rewrites: tuple[str, ...], io: str = "float32") -> dict:
        """Write the srdeploy-convention ONNX graph at *size*; return the rewrites applied."""
        raise NotImplementedError

    def reference(self) -> tuple[Reference, Reference | None]:
        """(float32 reference, exact float64 reference or None) in srdeploy's convention."""
        raise NotImplementedError

    def predictor(self, size: tuple[int, int], overlap: int) -> Callable[[np.ndarray], np.ndarray]:
        """uint8 HxWx3 LR image → float HR image in [0, 1]: the source's own run, for the quality report.
        Foreign sources run tile for tile at the export size, as the artifacts do."""
        from ..tiling import upscale_tiled

        ref, _ = self.reference()

        def predict(lr: np.ndarray) -> np.ndarray:
            return upscale_tiled(ref, lr.astype(np.float32) / 255.0, self.scale, size, overlap)

        return predict

    def original(self, size: tuple[int, int], overlap: int) -> tuple[str, Callable[[np.ndarray], np.ndarray]] | None:
        """``(label, predictor)`` of the network this source is a variant of (a registry variant such as
        imdn_rtc_relu), the quality report's second baseline; None for everything else."""
        return None

    @property
    def weights_info(self) -> dict:
        raise NotImplementedError

    @property
    def parameters(self) -> int:
        raise NotImplementedError

    def describe(self) -> dict:
        """The manifest's ``source`` entry: where the model came from, its convention, what was added."""
        return {"kind": self.kind, "convention": self.convention.to_json(),
                "added_to_graph": self.convention.added_ops()}


class TorchSource(ModelSource):
    """A source that is a torch module in srdeploy's convention (``self.model``): the registry's and
    a user's module share its ONNX export and its float32/float64 PyTorch reference."""

    model = None

    def write_onnx(self, path, size, rewrites, io="float32") -> dict:
        from ..export.formats import export_onnx

        return export_onnx(self.model, path, size, rewrites, io)

    def reference(self):
        from ..runtime import TorchRunner

        return TorchRunner(self.model), TorchRunner(self.model, float64=True)
