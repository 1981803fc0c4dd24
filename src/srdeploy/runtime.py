"""Run any artifact the same way: PyTorch module, ONNX (onnxruntime) or TFLite (LiteRT).

Every runner takes and returns NHWC float32 RGB in [0, 1] (batch 1), whatever the artifact's
own layout, so parity, evaluation and benchmarks compare like with like.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import SrDeployError

__all__ = ["TorchRunner", "OnnxRunner", "TFLiteRunner", "open_artifact"]


def quiet_tensorflow() -> None:
    """Silence TensorFlow/absl start-up chatter before TF is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


class TorchRunner:
    """Eager PyTorch. ``float64=True`` runs a double-precision copy: the exact reference
    against which float32 engines (PyTorch's own included) are judged."""

    kind = "pytorch"

    def __init__(self, model, float64: bool = False) -> None:
        import copy

        import torch

        self.dtype = torch.float64 if float64 else torch.float32
        self.model = (copy.deepcopy(model).double() if float64 else model).eval()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(self.dtype)
            return self.model(t).permute(0, 2, 3, 1).contiguous().numpy()


class OnnxRunner:
    kind = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise SrDeployError(f"cannot load ONNX model {path}: {str(exc).splitlines()[0]}") from exc
        self.input = self.session.get_inputs()[0]
        self.output_name = self.session.get_outputs()[0].name

    @property
    def input_shape(self) -> list:
        n, c, h, w = self.input.shape
        return [n, h, w, c]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)
        if self.input.type == "tensor(uint8)":  # --io uint8 graphs: bytes 0..255 in and out
            from .imaging import to_uint8

            nchw = to_uint8(nchw)
        (y,) = self.session.run([self.output_name], {self.input.name: nchw})
        y = y.astype(np.float32) / 255.0 if y.dtype == np.uint8 else y
        return y.transpose(0, 2, 3, 1)


class TFLiteRunner:
    """LiteRT interpreter; handles float, uint8 and int8 I/O (quantized I/O mapped to [0, 1])."""

    kind = "tflite"

    def __init__(self, path: str | Path | None = None, threads: int | None = None, use_xnnpack: bool = True,
                 model_content: bytes | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        kwargs = {"num_threads": threads} if threads else {}
        if not use_xnnpack:
            kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            source = {"model_content": model_content} if model_content is not None else {"model_path": str(path)}
            self.interpreter = Interpreter(**source, **kwargs)
            self.interpreter.allocate_tensors()
        except Exception as exc:
            raise SrDeployError(f"cannot load TFLite model {path or '(in memory)'}: {str(exc).splitlines()[0]}") from exc
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    @property
    def input_shape(self) -> list:
        return [int(v) for v in self.input["shape"]]

    @property
    def io_dtypes(self) -> tuple[str, str]:
        return np.dtype(self.input["dtype"]).name, np.dtype(self.output["dtype"]).name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input["index"], self._encode(x))
        self.interpreter.invoke()
        return self._decode(self.interpreter.get_tensor(self.output["index"]))

    def _encode(self, x: np.ndarray) -> np.ndarray:
        dtype = self.input["dtype"]
        if dtype == np.float32:
            return np.ascontiguousarray(x, dtype=np.float32)
        scale, zero = self.input["quantization"]
        info = np.iinfo(dtype)
        q = np.round(x / scale + zero) if scale else np.round(x * 255.0)
        return np.clip(q, info.min, info.max).astype(dtype)

    def _decode(self, y: np.ndarray) -> np.ndarray:
        dtype = self.output["dtype"]
        if dtype == np.float32:
            return y
        scale, zero = self.output["quantization"]
        return ((y.astype(np.float32) - zero) * scale) if scale else y.astype(np.float32) / 255.0


def open_artifact(path: str | Path, threads: int | None = None):
    """A runner for an ``.onnx`` or ``.tflite`` file."""
    path = Path(path)
    if not path.is_file():
        raise SrDeployError(f"artifact not found: {path}")
    if path.suffix == ".onnx":
        return OnnxRunner(path, threads)
    if path.suffix == ".tflite":
        quiet_tensorflow()
        return TFLiteRunner(path, threads)
    raise SrDeployError(f"unsupported artifact {path.name}: expected .onnx or .tflite")
