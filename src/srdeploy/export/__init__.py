"""Export: fused model → ONNX → TFLite FP32/FP16 via onnx2tf, with a parity gate after every artifact."""
from .exporter import ARTIFACT_FILES, ExportConfig, Exporter, tool_versions

__all__ = ["ARTIFACT_FILES", "ExportConfig", "Exporter", "tool_versions"]
