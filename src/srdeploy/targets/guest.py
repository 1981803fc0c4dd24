"""The program that runs *inside* an emulated target (its own Python, numpy and LiteRT; no srdeploy).

It is sent as ``python3 -c SOURCE`` so the target needs nothing of srdeploy installed. Protocol on
stdin/stdout, every message a frame ``<8-byte little-endian length><payload>``:

1. host → guest: JSON ``{"threads": N, "runtime": "interpreter" | "gpu" | "gpu-fp32" | "qnn-htp"}``; host → guest:
   the ``.tflite`` bytes (``gpu``: LiteRT's CompiledModel with the GPU accelerator *alone*, so a GPU
   that does not load fails instead of falling back to the CPU; ``gpu-fp32`` with ``enforce_f32``;
   ``qnn-htp``: an ONNX EPContext model on onnxruntime's QNN provider, run by the host's own Python)
2. guest → host: JSON with the machine, the CPU features the kernel reports (``getauxval``), the
   model's input/output details and the load error if any
3. then, repeatedly, host → guest: an ``.npy`` input tensor (exact dtype); guest → host: ``.npy``
   output tensor (raw, as LiteRT returns it) — or an empty frame from the host to end.

``.npy`` is read with ``allow_pickle=False``: no objects cross the pipe."""
import ctypes
import io
import json
import platform
import struct
import sys
import time

HWCAP = ["fp", "asimd", "evtstrm", "aes", "pmull", "sha1", "sha2", "crc32", "atomics", "fphp", "asimdhp",
         "cpuid", "asimdrdm", "jscvt", "fcma", "lrcpc", "dcpop", "sha3", "sm3", "sm4", "asimddp", "sha512",
         "sve", "asimdfhm", "dit", "uscat", "ilrcpc", "flagm", "ssbs", "sb", "paca", "pacg"]
HWCAP2 = ["dcpodp", "sve2", "sveaes", "svepmull", "svebitperm", "svesha3", "svesm4", "flagm2", "frint",
          "svei8mm", "svef32mm", "svef64mm", "svebf16", "i8mm", "bf16", "dgh", "rng", "bti", "mte"]


def read_frame(stream):
    head = stream.read(8)
    if len(head) < 8:
        return None
    (n,) = struct.unpack("<Q", head)
    data = stream.read(n)
    return data if len(data) == n else None


def write_frame(stream, data: bytes) -> None:
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def features():
    libc = ctypes.CDLL(None)
    libc.getauxval.restype = ctypes.c_ulong
    h1, h2 = libc.getauxval(16), libc.getauxval(26)  # AT_HWCAP, AT_HWCAP2
    return ([n for i, n in enumerate(HWCAP) if h1 >> i & 1] + [n for i, n in enumerate(HWCAP2) if h2 >> i & 1],
            hex(h1), hex(h2))


def details(d):
    scale, zero = d["quantization"]
    return {"shape": [int(v) for v in d["shape"]], "dtype": str(d["dtype"].__name__), "scale": float(scale),
            "zero_point": int(zero)}


def _gpu(model: bytes, fp32: bool, info: dict):
    """LiteRT's GPU accelerator through CompiledModel (the only accelerator asked for)."""
    import numpy as np
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.gpu_options import GpuOptions
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.options import Options

    opts = Options(HardwareAccelerator.GPU, gpu_options=GpuOptions(enforce_f32=True)) if fp32 else \
        Options(HardwareAccelerator.GPU)
    cm = CompiledModel.from_buffer(model, options=opts)
    key = list(cm.get_signature_list())[0]
    ind = list(cm.get_input_tensor_details(key).values())
    outd = list(cm.get_output_tensor_details(key).values())
    if len(ind) != 1 or len(outd) != 1:
        raise ValueError("one input and one output expected")
    ins, outs = cm.create_input_buffers(0), cm.create_output_buffers(0)

    def desc(d):
        return {"shape": [int(v) for v in d["shape"]], "dtype": np.dtype(d["dtype"]).name, "scale": 0.0,
                "zero_point": 0}

    info.update(input=desc(ind[0]), output=desc(outd[0]), fully_accelerated=bool(cm.is_fully_accelerated()))
    oshape, odtype = info["output"]["shape"], np.dtype(info["output"]["dtype"])
    if info["input"]["dtype"] != "float32" or odtype != np.float32:
        raise ValueError("the GPU target runs float-I/O models (float32 in and out)")

    def run(x):
        ins[0].write(np.ascontiguousarray(x))
        cm.run_by_index(0, ins, outs)
        return outs[0].read(int(np.prod(oshape)), odtype).reshape(oshape)

    return run


def _qnn(model: bytes, cfg: dict, info: dict):
    """An ONNX EPContext model (a QNN context binary) on onnxruntime's QNN execution provider, HTP
    backend — on x86 the HTP simulator — with CPU fallback disabled (only the NPU may run it)."""
    import numpy as np
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    ort.register_execution_provider_library("QNNExecutionProvider", cfg["provider"])
    devices = [d for d in ort.get_ep_devices() if d.ep_name == "QNNExecutionProvider"]
    if not devices:
        raise RuntimeError("onnxruntime offers no QNNExecutionProvider device")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    so.add_provider_for_devices(devices[:1], {"backend_path": cfg["backend"]})
    sess = ort.InferenceSession(model, so)
    info.update(input=cfg["input"], output=cfg["output"], onnxruntime=ort.__version__, providers=sess.get_providers())
    name = sess.get_inputs()[0].name
    outs = [o.name for o in sess.get_outputs()]

    def run(x):
        ys = sess.run(None, {name: x})
        if not cfg.get("all_outputs"):
            return np.asarray(ys[0])
        # every output, raw, as one flat float64 array (exact for int8/int16/float32 values); the
        # host splits it by the output shapes it read from the model
        return np.concatenate([np.asarray(y, dtype=np.float64).ravel() for y in ys])

    info["outputs"] = outs
    return run


def main():
    import os

    # the protocol gets its own copy of stdout; fd 1 then points at stderr, so whatever native code
    # prints (LiteRT's GPU registry logs to stdout) cannot corrupt a frame
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    stdin = sys.stdin.buffer
    cfg = json.loads(read_frame(stdin))
    model = read_frame(stdin)
    info = {"machine": platform.machine(), "python": platform.python_version()}
    if platform.machine() == "aarch64":  # (the bit names are ARM's)
        info["features"], info["hwcap"], info["hwcap2"] = features()
    try:
        import numpy as np
        from importlib.metadata import version

        runtime = cfg.get("runtime", "interpreter")
        if runtime == "qnn-htp":
            run = _qnn(model, cfg, info)
        elif runtime == "interpreter":
            from ai_edge_litert.interpreter import Interpreter

            info["litert"] = version("ai-edge-litert")
            it = Interpreter(model_content=model, num_threads=int(cfg.get("threads") or 1))
            it.allocate_tensors()
            inp, out = it.get_input_details()[0], it.get_output_details()[0]
            info.update(input=details(inp), output=details(out))

            def run(x):
                it.set_tensor(inp["index"], x)
                it.invoke()
                return it.get_tensor(out["index"])
        else:
            info["litert"] = version("ai-edge-litert")
            run = _gpu(model, runtime == "gpu-fp32", info)
    except Exception as exc:  # reported to the host, which turns it into an error row
        info["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        write_frame(stdout, json.dumps(info).encode())
        return
    write_frame(stdout, json.dumps(info).encode())
    while True:
        frame = read_frame(stdin)
        if not frame:
            return
        x = np.load(io.BytesIO(frame), allow_pickle=False)
        t = time.perf_counter()
        y = run(x)
        buf = io.BytesIO()
        np.save(buf, y, allow_pickle=False)
        write_frame(stdout, struct.pack("<d", time.perf_counter() - t) + buf.getvalue())


if __name__ == "__main__":  # (python3 -c SOURCE runs as __main__; the host imports the bit names only)
    main()
