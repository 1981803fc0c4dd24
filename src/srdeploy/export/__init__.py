"""Export: fused model → ONNX → TFLite FP32/FP16 via onnx2tf, with a parity gate after every artifact.

This package is also the function ``srdeploy.export(model, **options)`` (see :func:`srdeploy.api.export`):
a package and a function cannot share the name ``srdeploy.export`` otherwise, so the module is made
callable. Its names load lazily, so ``import srdeploy`` stays light."""
import sys as _sys
import types as _types

__all__ = ["ARTIFACT_FILES", "ExportConfig", "Exporter", "tool_versions"]


def __getattr__(name):
    if name in __all__:
        from . import exporter

        return getattr(exporter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallableModule(_types.ModuleType):
    def __call__(self, model, **options):
        """Export a registry model, an ONNX file or an ``nn.Module``; see :func:`srdeploy.api.export`."""
        from ..api import export

        return export(model, **options)


_sys.modules[__name__].__class__ = _CallableModule
