"""Run any artifact the same way: PyTorch module, ONNX (onnxruntime) or TFLite (LiteRT).

Every runner takes and returns NHWC float32 RGB in [0, 1] (batch 1), whatever the artifact's
own layout, so parity, evaluation and benchmarks compare like with like.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from .errors import SrDeployError

__all__ = ["TorchRunner", "OnnxRunner", "TFLiteRunner", "open_artifact", "check_sr_io", "Deadline",
           "native_stderr_filtered"]

#: lines native code prints on stderr that no user can act on: LiteRT's INFO notices (no switch) and
#: TensorFlow's import-time absl messages (printed before TF_CPP_MIN_LOG_LEVEL is consulted)
_NATIVE_NOISE = (r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.",
                 r"INFO: Initialized TensorFlow Lite runtime\.",
                 r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
                 r"[IW]\d{4} [\d:. ]+\d+ (cudart_stub|port|cuda_\w+|gpu_device)\.cc:\d+\] .*",
                 # the MLIR quantizer's summary of its own settings
                 r"fully_quantize: \d+, inference_type: \d+, input_inference_type: \w+, output_inference_type: \w+")


@contextlib.contextmanager
def native_stderr_filtered(drop: tuple[str, ...] = _NATIVE_NOISE):
    """Capture what native code writes to file descriptor 2 inside the block and pass it on without
    the *drop* lines. (LiteRT logs through C++ straight to fd 2, below Python's sys.stderr, and its
    INFO messages ignore TF_CPP_MIN_LOG_LEVEL, so filtering the descriptor is the only switch.)"""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded use): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as cap:
        os.dup2(cap.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            cap.seek(0)
            import re

            noise = re.compile("|".join(f"(?:{d})" for d in drop))
            kept = [ln for ln in cap.read().decode(errors="replace").splitlines(keepends=True)
                    if not noise.fullmatch(ln.strip())]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class Deadline:
    """A wall-clock limit on one call into a runtime that cannot be interrupted (LiteRT's invoke has
    no cancellation in Python): past *seconds*, one line is printed and the process exits with code
    1, as a hung model must not hang the tool. ``SRDEPLOY_DEADLINE_S`` sets the default (600 s)."""

    def __init__(self, seconds: float | None, what: str) -> None:
        self.seconds = default_deadline() if seconds is None else seconds
        self.what = what
        self._timer: threading.Timer | None = None

    def _expire(self) -> None:
        from . import errors

        try:
            sys.stderr.write(f"{errors.PROGRAM}: error: {self.what} did not finish within {self.seconds:g} s "
                             "(deadline; raise it with SRDEPLOY_DEADLINE_S)\n")
            sys.stderr.flush()
        finally:
            os._exit(1)

    def __enter__(self):
        if self.seconds and self.seconds > 0:
            self._timer = threading.Timer(self.seconds, self._expire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._timer is not None:
            self._timer.cancel()


def default_deadline() -> float:
    try:
        return float(os.environ.get("SRDEPLOY_DEADLINE_S", "600"))
    except ValueError:
        return 600.0


#: bytes per element of each TFLite TensorType (schema order); unknown types count 8
_TFLITE_ELEM_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 5: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8, 15: 4,
                      16: 2, 17: 1, 18: 2, 19: 1, 20: 1, 21: 1, 22: 1}
#: a model whose declared run-time tensors exceed these is refused before any runtime allocates them
MAX_TENSOR_BYTES = 4 << 30


def max_model_memory_bytes() -> int:
    """Limit on the sum of a model's declared run-time tensors (``SRDEPLOY_MAX_MODEL_MEMORY_MB``,
    default 16384 MB): a 1 KB file can declare a 30000x30000 input."""
    try:
        return int(float(os.environ.get("SRDEPLOY_MAX_MODEL_MEMORY_MB", "16384")) * 2**20)
    except ValueError:
        return 16384 * 2**20


def runtime_tensor_bytes(model, subgraph) -> dict[int, int]:
    """``{tensor index: bytes}`` of the non-constant tensors of one subgraph of a parsed flatbuffer
    (``schema.Model.GetRootAs``), from the declared shapes, without building the model."""
    sizes = {}
    n_buf = model.BuffersLength()
    for t in range(subgraph.TensorsLength()):
        ten = subgraph.Tensors(t)
        b = ten.Buffer()
        if 0 < b < n_buf:
            buf = model.Buffers(b)
            if buf.DataLength() > 0 or buf.Offset() > 0:  # a constant: stored in the file itself
                continue
        n = 1
        for d in (ten.ShapeAsNumpy() if ten.ShapeLength() else []):
            n *= max(int(d), 1)
        sizes[t] = n * _TFLITE_ELEM_BYTES.get(ten.Type(), 8)
    return sizes


def tflite_tensor_bytes(data: bytes) -> tuple[int, int]:
    """``(sum, largest)`` bytes of the non-constant tensors a .tflite declares in all its subgraphs
    (what the interpreter would plan its arenas from)."""
    from ai_edge_litert import schema_py_generated as schema

    m = schema.Model.GetRootAs(data, 0)
    sizes = [b for g in range(m.SubgraphsLength()) for b in runtime_tensor_bytes(m, m.Subgraphs(g)).values()]
    return sum(sizes), max(sizes, default=0)


def onnx_tensor_sizes(model) -> dict[str, int]:
    """``{name: bytes}`` of the non-constant tensors an ONNX ``ModelProto`` declares: inputs, outputs and every value
    whose shape ONNX's shape inference fixes (a tensor with an unknown dimension is not counted)."""
    import onnx
    from onnx import helper

    g = onnx.shape_inference.infer_shapes(model).graph
    consts = {t.name for t in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    sizes = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        t = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in t.shape.dim]
        if vi.name in consts or not vi.type.HasField("tensor_type") or not all(d > 0 for d in dims):
            continue
        sizes[vi.name] = int(np.prod(dims, dtype=np.int64)) * helper.tensor_dtype_to_np_dtype(t.elem_type).itemsize
    return sizes


def onnx_tensor_bytes(path: str | os.PathLike) -> tuple[int, int]:
    """``(sum, largest)`` of :func:`onnx_tensor_sizes` of an ONNX file. For the graphs sr-export writes this is what
    the FP32 .tflite onnx2tf makes of it declares (:func:`tflite_tensor_bytes`: 1665.5 MB both for imdn x4 at
    256x256, 6312.3 MB both for imdn_rtc x2 at 1080x1920), so it can be checked before the conversion. (A graph the
    converter fuses declares less as a .tflite: 0.71x on imdn x4 with the conv_split rewrite in its float graph;
    :data:`ONNX_MARGIN`.)"""
    import onnx

    sizes = onnx_tensor_sizes(onnx.load(str(path), load_external_data=False))
    return sum(sizes.values()), max(sizes.values(), default=0)


def check_declared_memory(what: str, total: int, largest: int, hint: str = "", margin: float = 1.0) -> None:
    """Refuse run-time tensors of *total* bytes (*largest* the biggest one) above the per-model / per-tensor limits
    (times *margin*, for an estimate); the one line starts with *what* and ends with *hint*."""
    limit = max_model_memory_bytes()
    if largest > MAX_TENSOR_BYTES * margin or total > limit * margin:
        raise SrDeployError(f"{what} {total / 2**20:,.0f} MB of run-time tensors (largest "
                            f"{largest / 2**20:,.0f} MB), above the limit of {limit / 2**20:,.0f} MB per model / "
                            f"{MAX_TENSOR_BYTES >> 20:,} MB per tensor (SRDEPLOY_MAX_MODEL_MEMORY_MB raises the first)"
                            + hint)


def check_model_memory(name: str, data: bytes) -> None:
    """Refuse a .tflite whose declared run-time tensors would take more memory than allowed."""
    try:
        total, largest = tflite_tensor_bytes(data)
    except Exception:  # not a flatbuffer: the loader reports that
        return
    check_declared_memory(f"{name} declares", total, largest)


#: what a user whose export size declares too much can do instead
TILE_HINT = "; export a smaller --size (sr-upscale tiles any image through it)"
#: an ONNX graph's declared sum is 0.95-1.42x what the FP32 .tflite onnx2tf makes of it declares, measured on 12
#: graphs (onnx2tf fuses ReLUs into convs, and the conv_split pieces: 1.417x; `benchmarks/declared_memory_bounds.py`,
#: benchmarks/results/declared_memory_bounds*.json): an ONNX-side figure refuses only this far above the limit, where
#: the .tflite would be refused too; nearer the limit the check on the .tflite decides, after the conversion
ONNX_MARGIN = 1.5


def check_onnx_memory(name: str, path: str | os.PathLike, margin: float = ONNX_MARGIN) -> None:
    """Refuse, before any conversion, an ONNX graph whose FP32 .tflite :func:`check_model_memory` would refuse
    (sr-export: a 1080x1920 imdn x4 declares 52.7 GB; the conversion would run for minutes or run out of memory
    first), when its declared sum is *margin* times the limit. A graph shape inference cannot read is left to the
    converter."""
    try:
        total, largest = onnx_tensor_bytes(path)
    except Exception:  # noqa: BLE001 -- e.g. a user's custom op: the converter reports what it cannot convert
        return
    check_declared_memory(f"{name} declares", total, largest, TILE_HINT, margin)


def check_sr_io(name: str, in_shape, out_shape, channels_last: bool = True) -> None:
    """An artifact srdeploy's tools can tile: one fixed 4-D RGB input of batch 1 and a 4-D output
    an integer multiple of it. Anything else is a one-line user error before any work."""
    def dims(shape):
        return [d if isinstance(d, (int, np.integer)) and int(d) > 0 else None for d in shape]

    i, o = dims(in_shape), dims(out_shape)
    if len(i) != 4 or len(o) != 4:
        raise SrDeployError(f"{name}: input {list(in_shape)} / output {list(out_shape)} are not 4-D images")
    if None in i or None in o:
        raise SrDeployError(f"{name}: input {list(in_shape)} has a dynamic or empty dimension; srdeploy runs "
                            "fixed-shape artifacts (export at a fixed --size)")
    n, h, w, c = i if channels_last else (i[0], i[2], i[3], i[1])
    on, oh, ow, oc = o if channels_last else (o[0], o[2], o[3], o[1])
    if n != 1 or c != 3 or on != 1 or oc != 3:
        raise SrDeployError(f"{name}: needs a batch-1 RGB image in and out (3 channels), got input "
                            f"{list(in_shape)} and output {list(out_shape)}")
    if oh % h or ow % w or oh // h != ow // w:
        raise SrDeployError(f"{name}: output {oh}x{ow} is not an integer upscale of input {h}x{w}")


def quiet_tensorflow() -> None:
    """Import TensorFlow (once) with its start-up chatter filtered out; call before any TF import."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    if "tensorflow" not in sys.modules:
        with native_stderr_filtered():
            import tensorflow  # noqa: F401


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
        opts.log_severity_level = 3  # errors only: its graph-cleanup warnings are nothing a user can act on
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise SrDeployError(f"cannot load ONNX model {path}: {(str(exc).splitlines() or [type(exc).__name__])[0]}") from exc
        if not self.session.get_inputs() or not self.session.get_outputs():
            raise SrDeployError(f"ONNX model {path} has no input or no output")
        self.input = self.session.get_inputs()[0]
        self.output_name = self.session.get_outputs()[0].name
        self.name = Path(path).name

    @property
    def input_shape(self) -> list:
        n, c, h, w = self.input.shape
        return [n, h, w, c]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)
        if self.input.type == "tensor(uint8)":  # --io uint8 graphs: bytes 0..255 in and out
            from .imaging import to_uint8

            nchw = to_uint8(nchw)
        with Deadline(None, f"one inference of {self.name}"):
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
        name = Path(path).name if path else "(in memory)"
        if model_content is None and path is not None and Path(path).is_file():
            check_model_memory(name, Path(path).read_bytes())
        elif model_content is not None:
            check_model_memory(name, model_content)
        try:
            source = {"model_content": model_content} if model_content is not None else {"model_path": str(path)}
            with native_stderr_filtered():
                self.interpreter = Interpreter(**source, **kwargs)
                self.interpreter.allocate_tensors()
        except Exception as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise SrDeployError(f"cannot load TFLite model {path or '(in memory)'}: {first}") from exc
        if not self.interpreter.get_input_details() or not self.interpreter.get_output_details():
            raise SrDeployError(f"TFLite model {path or '(in memory)'} has no input or no output")
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.name = Path(path).name if path else "(in memory)"

    @property
    def input_shape(self) -> list:
        return [int(v) for v in self.input["shape"]]

    @property
    def io_dtypes(self) -> tuple[str, str]:
        return np.dtype(self.input["dtype"]).name, np.dtype(self.output["dtype"]).name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input["index"], self._encode(x))
        with Deadline(None, f"one inference of {self.name}"):
            self.interpreter.invoke()
        return self._decode(self.interpreter.get_tensor(self.output["index"]))

    def _encode(self, x: np.ndarray) -> np.ndarray:
        return encode_input(self.input, x)

    def _decode(self, y: np.ndarray) -> np.ndarray:
        return decode_output(self.output, y)


def _dtype_and_quant(details: dict) -> tuple[np.dtype, float, int]:
    """(dtype, scale, zero point) of LiteRT tensor details or of the arm64 guest's plain-JSON ones."""
    if "quantization" in details:
        scale, zero = details["quantization"]
    else:
        scale, zero = details["scale"], details["zero_point"]
    return np.dtype(details["dtype"]), float(scale), int(zero)


def encode_input(details: dict, x: np.ndarray) -> np.ndarray:
    """NHWC float [0, 1] → the tensor a model takes (float32, or uint8/int8 by its quantization,
    plain bytes 0..255 for unquantized uint8 I/O)."""
    dtype, scale, zero = _dtype_and_quant(details)
    if dtype == np.float32:
        return np.ascontiguousarray(x, dtype=np.float32)
    info = np.iinfo(dtype)
    q = np.round(x / scale + zero) if scale else np.round(x * 255.0)
    return np.clip(q, info.min, info.max).astype(dtype)


def decode_output(details: dict, y: np.ndarray) -> np.ndarray:
    dtype, scale, zero = _dtype_and_quant(details)
    if dtype == np.float32:
        return y
    return ((y.astype(np.float32) - zero) * scale) if scale else y.astype(np.float32) / 255.0


def open_artifact(path: str | Path, threads: int | None = None):
    """A runner for an ``.onnx`` or ``.tflite`` file."""
    path = Path(path)
    if not path.is_file():
        raise SrDeployError(f"artifact not found: {path}")
    if path.suffix == ".onnx":
        r = OnnxRunner(path, threads)
        if len(r.session.get_inputs()) != 1 or len(r.session.get_outputs()) != 1:
            raise SrDeployError(f"{path.name}: needs exactly one input and one output")
        check_sr_io(path.name, r.input.shape, r.session.get_outputs()[0].shape, channels_last=False)
        return r
    if path.suffix == ".tflite":
        from .benchmark.bench import probe_load

        why = probe_load(path)  # (its worker refuses a model declaring too much memory before allocating)  # a file that crashes or hangs LiteRT does so in a worker, not here
        if why:
            raise SrDeployError(f"cannot load TFLite model {path}: {why.split(': ', 1)[-1]}")
        r = TFLiteRunner(path, threads)
        it = r.interpreter
        if len(it.get_input_details()) != 1 or len(it.get_output_details()) != 1:
            raise SrDeployError(f"{path.name}: needs exactly one input and one output, has "
                                f"{len(it.get_input_details())} and {len(it.get_output_details())}")
        sig = r.input.get("shape_signature", r.input["shape"])
        check_sr_io(path.name, [int(v) for v in sig], [int(v) for v in r.output["shape"]])
        return r
    raise SrDeployError(f"unsupported artifact {path.name}: expected .onnx or .tflite")
