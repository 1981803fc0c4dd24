"""Model sources behind one interface the exporter consumes: a registry entry
(:class:`RegistrySource`), a user's ONNX file (:class:`OnnxSource`) or ``nn.Module``
(:class:`ModuleSource`), each in its own I/O convention (:class:`IOConvention`)."""
from __future__ import annotations

from .base import MAX_EXPORT_PIXELS, ModelSource
from .convention import IOConvention

__all__ = ["IOConvention", "MAX_EXPORT_PIXELS", "ModelSource", "open_source"]


def open_source(model=None, *, onnx: str | None = None, scale: int | None = None, value_range: int = 1,
                channels: str = "rgb", weights: str | None = None, random_weights: bool = False,
                seed: int = 0, fuse: bool = False, name: str | None = None) -> ModelSource:
    """A registry name, an ONNX path (``onnx=`` or a str/Path ending in .onnx) or an ``nn.Module``."""
    from pathlib import Path

    from ..errors import SrDeployError

    conv = IOConvention(value_range, channels)
    if isinstance(model, ModelSource):
        return model
    if isinstance(model, (str, Path)) and str(model).lower().endswith(".onnx"):
        onnx, model = str(model), None
    if onnx is not None:
        if model is not None:
            raise SrDeployError("--onnx and --model exclude each other")
        if weights or random_weights or fuse:
            raise SrDeployError("--weights, --random-weights and fuse apply to registry models and modules, not to --onnx")
        if scale is None:
            raise SrDeployError("--onnx needs --scale S (the model's upscaling factor)")
        from .onnx_file import OnnxSource

        return OnnxSource(onnx, scale, conv, name=name)
    if isinstance(model, str):
        if not conv.is_native or fuse:
            raise SrDeployError("--value-range, --channels and fuse apply to --onnx files and modules; "
                                f"{model!r} is a registry model (RGB in [0, 1])")
        from .registry import RegistrySource

        return RegistrySource(model, scale, weights=weights, random_weights=random_weights, seed=seed)
    if weights or random_weights:
        raise SrDeployError("weights and random_weights apply to registry models; load the module's weights yourself")
    if scale is None:
        raise SrDeployError("an nn.Module needs scale=S (its upscaling factor)")
    from .module import ModuleSource

    return ModuleSource(model, scale, conv, name=name, fuse=fuse)
