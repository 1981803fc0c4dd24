"""One benchmark subject in its own process, driven over stdin/stdout with JSON lines.

The parent (``sr-bench``) starts one worker per model and setting, so a corrupt or hostile
model can only take its own process down, and it interleaves timed rounds across workers so
that ratios between models hold on a noisy machine. Protocol (one JSON object per line):

    → {"cmd": "load", "model": ..., "size": [h, w], "threads": n, "delegate": ...}
    ← {"ok": true, "init_ms": ..., "first_ms": ..., "input": {...}, "output": {...}}
    → {"cmd": "run", "n": k}            ← {"ok": true, "times_ms": [...]}
    → {"cmd": "profile", "runs": k}     ← {"ok": true, "ops": {...}}
    → {"cmd": "stats"}                  ← {"ok": true, "peak_rss_mb": ..., "model_memory_mb": ...}
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time

import numpy as np

def _random_input(shape: list[int], dtype) -> np.ndarray:
    """The fixed input every run of a subject gets: uniform over the integer range, or [0, 1)."""
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    return rng.random(shape, dtype=np.float32).astype(dtype)


def _check_memory(path: str) -> None:
    from ..runtime import check_model_memory

    with open(path, "rb") as fh:
        check_model_memory(os.path.basename(path), fh.read())


class Subject:
    """Loads one model and runs it on a fixed random input."""

    def __init__(self, model: str, size, threads: int, delegate: str, check_only: bool = False,
                 runtime: str = "interpreter", xnnpack_flags: int | None = None) -> None:
        self.model, self.threads, self.delegate, self.check_only = model, threads, delegate, check_only
        self.runtime, self.xnnpack_flags = runtime, xnnpack_flags
        self.size = tuple(size) if size else None
        t0 = time.perf_counter()
        if model.endswith(".tflite") and (runtime == "compiled" or delegate.startswith("gpu")):
            self._load_compiled()
        elif model.endswith(".tflite"):
            self._load_tflite()
        elif model.endswith(".onnx"):
            self._load_onnx()
        else:
            self._load_torch()
        self.init_ms = (time.perf_counter() - t0) * 1e3

    # ----------------------------------------------------------------- loaders
    def _load_tflite(self) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.base_hwm_mb = peak_rss_mb()  # the runtime is imported: what follows is the model's own
        _check_memory(self.model)
        kwargs = {"model_path": self.model, "num_threads": self.threads}
        if self.delegate == "none":
            kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        it = Interpreter(**kwargs)
        if not it.get_input_details() or not it.get_output_details():
            raise ValueError("the model has no input or no output")
        inp = it.get_input_details()[0]
        sig = [int(v) for v in inp.get("shape_signature", inp["shape"])]
        fixed = [int(v) for v in inp["shape"]]
        if self.size and tuple(fixed[1:3]) != self.size:
            if -1 in sig[1:3]:
                it.resize_tensor_input(inp["index"], [fixed[0], self.size[0], self.size[1], fixed[3]])
            else:
                raise ValueError(f"fixed input shape {fixed[1]}x{fixed[2]}: cannot run at "
                                 f"{self.size[0]}x{self.size[1]} (export at that size)")
        it.allocate_tensors()
        self.it = it
        if self.check_only:  # loads and allocates: enough to tell a loadable model from a broken one
            self.io, self.hw = {}, []
            self.call = lambda: None
            return
        self.inp, self.out = it.get_input_details()[0], it.get_output_details()[0]
        shape = [int(v) for v in self.inp["shape"]]
        dtype = self.inp["dtype"]
        self.x = _random_input(shape, dtype)
        self.hw = shape[1:3] if len(shape) == 4 else []  # H, W of an NHWC image; other ranks have none
        self.io = {"input": {"shape": shape, "dtype": np.dtype(dtype).name},
                   "output": {"shape": [int(v) for v in self.out["shape"]], "dtype": np.dtype(self.out["dtype"]).name}}

        def call():
            it.set_tensor(self.inp["index"], self.x)
            it.invoke()
            return it.get_tensor(self.out["index"])

        self.call = call

    def _load_compiled(self) -> None:
        """LiteRT's CompiledModel: on the CPU (XNNPACK; the API that takes XNNPACK flags), or with the
        GPU accelerator *alone* (``gpu``: its FP16 default, ``gpu:fp32``: ``enforce_f32``) — asked for
        without the CPU, a GPU that does not load fails instead of falling back. Which GPU it ran on
        is Dawn's log line on stderr, read by the parent (bench.py)."""
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.options import CpuOptions, Options

        self.base_hwm_mb = peak_rss_mb()
        _check_memory(self.model)
        if self.size:
            how = "--delegate gpu" if self.delegate.startswith("gpu") else "--runtime compiled"
            raise ValueError(f"--size is not supported with {how} (export at the size you time)")
        if self.delegate.startswith("gpu"):
            from ai_edge_litert.gpu_options import GpuOptions

            opts = Options(HardwareAccelerator.GPU, gpu_options=GpuOptions(enforce_f32=True)) \
                if self.delegate == "gpu:fp32" else Options(HardwareAccelerator.GPU)
        else:
            opts = Options(HardwareAccelerator.CPU,
                           cpu_options=CpuOptions(num_threads=self.threads, xnnpack_flags=self.xnnpack_flags))
        try:
            cm = CompiledModel.from_file(self.model, options=opts)
        except RuntimeError as exc:
            if not self.delegate.startswith("gpu"):
                raise
            raise RuntimeError("LiteRT's GPU accelerator did not load (no usable GPU or Vulkan driver, or an op "
                               f"it cannot run; `sr-bench --gpu-check` lists ops): {str(exc)[:200]}") from None
        if cm.get_num_signatures() < 1:
            raise ValueError("the model has no signature")
        key = list(cm.get_signature_list())[0]
        ins_d = list(cm.get_input_tensor_details(key).values())
        outs_d = list(cm.get_output_tensor_details(key).values())
        if len(ins_d) != 1 or len(outs_d) != 1:
            raise ValueError("--runtime compiled times models with one input and one output")
        ins, outs = cm.create_input_buffers(0), cm.create_output_buffers(0)
        shape, dtype = [int(v) for v in ins_d[0]["shape"]], np.dtype(ins_d[0]["dtype"])
        self.x = _random_input(shape, dtype)
        ins[0].write(self.x)
        self.cm, self.buffers = cm, (ins, outs)
        self.hw = shape[1:3] if len(shape) == 4 else []
        self.io = {"input": {"shape": shape, "dtype": dtype.name},
                   "output": {"shape": [int(v) for v in outs_d[0]["shape"]], "dtype": np.dtype(outs_d[0]["dtype"]).name}}
        if not self.delegate.startswith("gpu"):
            self.call = lambda: cm.run_by_index(0, ins, outs)
            return
        oshape, odtype = self.io["output"]["shape"], np.dtype(self.io["output"]["dtype"])
        n = int(np.prod(oshape))

        def call():  # a GPU run is asynchronous: the frame counts once it can be read back, as in an app
            ins[0].write(self.x)
            cm.run_by_index(0, ins, outs)
            return outs[0].read(n, odtype)

        self.call = call

    def _load_onnx(self) -> None:
        import onnxruntime as ort

        self.base_hwm_mb = peak_rss_mb()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(self.model, opts, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        shape = [d if isinstance(d, int) else None for d in inp.shape]
        if self.size:
            if shape[2:] != list(self.size):
                if shape[2] is None or shape[3] is None:
                    shape[2:] = list(self.size)
                else:
                    raise ValueError(f"fixed input shape {shape[2]}x{shape[3]}: cannot run at "
                                     f"{self.size[0]}x{self.size[1]} (export at that size)")
        shape = [1 if v is None else v for v in shape]
        self.x = np.random.default_rng(0).random(shape, dtype=np.float32)
        out_name = sess.get_outputs()[0].name
        y = sess.run([out_name], {inp.name: self.x})[0]
        self.hw = shape[2:4] if len(shape) == 4 else []
        self.io = {"input": {"shape": shape, "dtype": "float32"},
                   "output": {"shape": list(y.shape), "dtype": str(y.dtype)}}
        self.call = lambda: sess.run([out_name], {inp.name: self.x})

    def _load_torch(self) -> None:
        import torch

        from ..models import create_model, get_spec

        torch.set_num_threads(self.threads)
        self.base_hwm_mb = peak_rss_mb()
        name, _, scale = self.model.partition(":")
        spec = get_spec(name)
        scale_i = int(scale.lstrip("x")) if scale else spec.scales[0]
        net = create_model(name, scale_i, pretrained=bool(spec.weights))
        h, w = self.size or spec.default_size
        self.x = torch.rand(1, 3, h, w)
        self.hw = [h, w]
        self.io = {"input": {"shape": [1, 3, h, w], "dtype": "float32"},
                   "output": {"shape": [1, 3, h * scale_i, w * scale_i], "dtype": "float32"}}

        def call():
            with torch.inference_mode():
                return net(self.x)

        self.call = call

    # ----------------------------------------------------------------- commands
    def first(self) -> float:
        t0 = time.perf_counter()
        self.call()
        return (time.perf_counter() - t0) * 1e3

    def run(self, n: int) -> list[float]:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            self.call()
            times.append((time.perf_counter() - t0) * 1e3)
        return times


def peak_rss_mb() -> float:
    """RSS high-water mark of this process. VmHWM belongs to this process's own address space;
    ru_maxrss is not used because Linux carries it over from the parent across fork+exec (a worker
    started by a big parent would report the parent's peak)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def serve(stdin=sys.stdin, stdout=sys.stdout) -> None:
    subject = None
    for line in stdin:
        try:
            req = json.loads(line)
            cmd = req["cmd"]
            if cmd == "load":
                subject = Subject(req["model"], req.get("size"), int(req.get("threads") or 1),
                                  req.get("delegate", "xnnpack"), bool(req.get("check_only")),
                                  req.get("runtime") or "interpreter", req.get("xnnpack_flags"))
                first = None if subject.check_only else subject.first()
                reply = {"ok": True, "init_ms": subject.init_ms, "first_ms": first, "size": subject.hw,
                         **subject.io}
            elif cmd == "run":
                reply = {"ok": True, "times_ms": subject.run(int(req["n"]))}
            elif cmd == "profile":
                from .profile import profile_tflite

                if not subject or not subject.model.endswith(".tflite"):
                    raise ValueError("--profile needs a .tflite model")
                reply = {"ok": True, **profile_tflite(subject.model, subject.threads, int(req.get("runs", 3)))}
            elif cmd == "stats":
                peak = peak_rss_mb()
                base = getattr(subject, "base_hwm_mb", None)
                # the model's own memory: the high-water mark after load, allocation and every run,
                # minus the one just before loading (a lean process: the runtime and numpy only)
                reply = {"ok": True, "peak_rss_mb": peak, "model_memory_mb": None if base is None else peak - base}
            elif cmd == "quit":
                return
            else:
                raise ValueError(f"unknown command {cmd!r}")
        except Exception as exc:  # reported to the parent as this model's error
            msg = " ".join(str(exc).split()) or type(exc).__name__
            reply = {"ok": False, "error": f"{type(exc).__name__}: {msg}"[:500]}
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()


if __name__ == "__main__":
    # keep stdout for the protocol: library chatter goes to stderr
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(sys.stdin, proto)
