"""The program that runs *inside* an emulated target (its own Python, numpy and LiteRT; no srdeploy).

It is sent as ``python3 -c SOURCE`` so the target needs nothing of srdeploy installed. Protocol on
stdin/stdout, every message a frame ``<8-byte little-endian length><payload>``:

1. host → guest: JSON ``{"threads": N}``; host → guest: the ``.tflite`` bytes
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


def main():
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    cfg = json.loads(read_frame(stdin))
    model = read_frame(stdin)
    feats, h1, h2 = features()
    info = {"machine": platform.machine(), "features": feats, "hwcap": h1, "hwcap2": h2,
            "python": platform.python_version()}
    try:
        import numpy as np
        from importlib.metadata import version

        from ai_edge_litert.interpreter import Interpreter

        info["litert"] = version("ai-edge-litert")
        it = Interpreter(model_content=model, num_threads=int(cfg.get("threads") or 1))
        it.allocate_tensors()
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        info.update(input=details(inp), output=details(out))
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
        it.set_tensor(inp["index"], x)
        it.invoke()
        y = it.get_tensor(out["index"])
        buf = io.BytesIO()
        np.save(buf, y, allow_pickle=False)
        write_frame(stdout, struct.pack("<d", time.perf_counter() - t) + buf.getvalue())


if __name__ == "__main__":  # (python3 -c SOURCE runs as __main__; the host imports the bit names only)
    main()
