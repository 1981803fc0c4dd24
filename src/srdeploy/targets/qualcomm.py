"""``qualcomm:<SoC>``: compile an artifact for the Snapdragon NPU (Hexagon HTP) with LiteRT's AOT
compiler and its Qualcomm plugin, and report what was offloaded.

Setup (``sr-target setup qualcomm``; no root; ~10 s, ~230 MB under the user cache): the QAIRT host
libraries the plugin loads (``libQnnHtp.so``, ``libQnnSystem.so``, ``libQnnIr.so``, ``libQnnSaver.so``,
``libHtpPrepare.so`` and the libc++ they link) are taken out of the PyPI wheel ``onnxruntime-qnn==2.7.0``
(downloaded, unpacked, never installed), with that wheel's QNN execution provider for onnxruntime; the
plugin also asks for
``libQnnLpai.so``, which that wheel lacks — an empty shared library built with the host's C compiler
stands in (the HTP path does not use it). ``ai-edge-litert-sdk-qualcomm`` is not used: it downloads
QAIRT from the vendor's site at install time, which fails offline while pip still says "Successfully
installed".

Compile: ``ai_edge_litert.aot.aot_compile`` in a child process (the libraries on its
``LD_LIBRARY_PATH``); the compiled model is written beside the artifact as ``model_int8.SM8650.tflite``
(what the app loads with LiteRT's NPU accelerator), and the row records the plugin's partition stats
("84 / 87 ops offloaded to 1 partitions") and every op left on the CPU with its tensor shapes. A model
that is not fully offloaded is reported as ``partial``, never as passed.

Run (:class:`SimulatorRunner`): a fully offloaded compiled model is one ``DISPATCH_OP`` whose custom
options name its QNN graph and where its context binary lies in the file. That binary becomes one
ONNX ``com.microsoft.EPContext`` node (embedded, node name = graph name, the TFLite I/O tensors'
names), run by onnxruntime with the QNN execution provider on ``libQnnHtp.so`` — on x86 that is
QNN's HTP simulator — with CPU fallback disabled, in a child process (a crash there is an error row).
The simulator computes what the NPU computes (float in fp16, int8 with the HTP's requantization); it
gives no timing. A model split between NPU and CPU cannot be run this way (reported as partial).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import SrDeployError
from ..fsutil import atomic_copy
from ..paths import cache_dir

__all__ = ["SOCS", "setup", "is_ready", "compile_artifact", "compiled_name", "read_dispatch", "SimulatorRunner"]

#: the SoCs of ai-edge-litert's Qualcomm target (SM8650: Snapdragon 8 Gen 3; SM8350: 888)
SOCS = ("SM8350", "SM8450", "SM8475", "SM8550", "SM8650", "SM8750", "SM8845", "SM8850", "SA8255", "SA8295")
WHEEL = "onnxruntime-qnn==2.7.0"
#: the QNN execution provider of the same wheel: an onnxruntime plugin (it runs next to the installed
#: onnxruntime, loaded only by the simulator's child process) that runs a compiled context on QNN's
#: x86 HTP simulator
SIM_LIB = "libonnxruntime_providers_qnn.so"
LIBS = ("libQnnHtp.so", "libQnnSystem.so", "libQnnIr.so", "libQnnSaver.so", "libHtpPrepare.so", SIM_LIB)
#: TFLite tensor types → ONNX element types, for the simulator's EPContext graph
_ONNX_TYPES = {0: 1, 1: 10, 3: 2, 9: 3, 7: 5, 2: 6}  # float32, float16, uint8, int8, int16, int32


def target_dir() -> Path:
    return cache_dir() / "targets" / "qualcomm"


def is_ready() -> dict | None:
    try:
        info = json.loads((target_dir() / "ready.json").read_text())
    except (OSError, ValueError):
        return None
    return info if all((target_dir() / "lib" / n).is_file() for n in LIBS + ("libQnnLpai.so",)) else None


def _lib_env() -> dict:
    """This process's environment with the QAIRT libraries first on the loader's path."""
    lib = target_dir() / "lib"
    return {**os.environ, "LD_LIBRARY_PATH": f"{lib}:{os.environ.get('LD_LIBRARY_PATH', '')}".rstrip(":")}


def compiled_name(artifact: str, soc: str) -> str:
    """``model_int8.tflite`` → ``model_int8.SM8650.tflite``"""
    stem = artifact[:-len(".tflite")] if artifact.endswith(".tflite") else artifact
    return f"{stem}.{soc}.tflite"


def setup(log=print, force: bool = False) -> dict:
    import zipfile

    from ..progress import heartbeat

    ready = is_ready()
    if ready and not force:
        log(f"qualcomm: already set up in {target_dir()} (QAIRT libraries from {ready['wheel']})")
        return ready
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise SrDeployError("qualcomm setup needs a C compiler (cc/gcc) to build the libQnnLpai.so stand-in "
                            "(Debian: apt-get install gcc)")
    final = target_dir()
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".qualcomm.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "lib").mkdir(parents=True)
    log(f"qualcomm setup into {final} (about 10 s; downloads the {WHEEL} wheel, ~99 MB, from PyPI)")
    try:
        log(f"  [1/3] pip download {WHEEL} (only its QAIRT libraries are kept; nothing is installed)")
        with heartbeat(f"qualcomm setup: pip download {WHEEL}"):
            r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "--disable-pip-version-check",
                                "-d", str(staging / "wheel"), WHEEL], capture_output=True, text=True)
        wheels = list((staging / "wheel").glob("*.whl"))
        if r.returncode != 0 or not wheels:
            raise SrDeployError(f"qualcomm setup: pip could not download {WHEEL} (offline?): "
                                f"{(r.stderr.strip().splitlines() or ['no output'])[-1]}")
        log("  [2/3] unpacking the QAIRT host libraries; building the libQnnLpai.so stand-in")
        with zipfile.ZipFile(wheels[0]) as z:
            for member in z.namelist():
                base = member.rsplit("/", 1)[-1]
                if base in LIBS or member.startswith("onnxruntime_qnn.libs/") and base.endswith(".so.1.0"):
                    (staging / "lib" / base).write_bytes(z.read(member))
        shutil.rmtree(staging / "wheel")
        r = subprocess.run([cc, "-shared", "-o", str(staging / "lib" / "libQnnLpai.so"), "-x", "c", "/dev/null"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise SrDeployError(f"qualcomm setup: the C compiler failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
        info = {"wheel": WHEEL, "lib": str(final / "lib")}
        (staging / "ready.json").write_text(json.dumps(info, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
        staging = None
        log("  [3/3] compiling a one-conv model for SM8650 and running it on the HTP simulator")
        try:
            _probe()
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            raise
        log(f"qualcomm: ready in {final}")
        return info
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _probe() -> None:
    import tempfile

    from ..runtime import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    def f(x):
        return tf.nn.conv2d(x, tf.ones([3, 3, 3, 4]) * 0.1, 1, "SAME")

    blob = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f).convert()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.tflite"
        src.write_bytes(blob)
        res = compile_artifact(src, "SM8650", Path(tmp) / "probe.SM8650.tflite")
        if res.get("status") == "error":
            raise SrDeployError(f"qualcomm setup: the plugin could not compile a one-conv model: {res['error']}")
        import numpy as np

        x = np.random.default_rng(0).random((1, 8, 8, 3), dtype=np.float32)
        with SimulatorRunner(Path(tmp) / "probe.SM8650.tflite", "SM8650") as sim:
            y = sim(x)
        want = f(tf.constant(x)).numpy()
        if not np.allclose(y, want, atol=1e-2):
            raise SrDeployError(f"qualcomm setup: the HTP simulator computed a one-conv model wrongly "
                                f"(max |Δ| {float(np.max(np.abs(y - want))):.3g})")


_COMPILE = r'''
import json, shutil, sys
from ai_edge_litert.aot import aot_compile
from ai_edge_litert.aot.vendors.qualcomm import target as qt
src, soc, out, tmp = sys.argv[1:5]
res = aot_compile.aot_compile(src, output_dir=tmp, target=qt.Target(qt.SocModel(soc)), keep_going=True)
reply = {"report": res.compilation_report(), "failed": [str(e) for _, e in res.failed_backends]}
if res.models_with_backend:
    model = res.models_with_backend[0][1]
    path = getattr(model, "path", None)
    if path is None:
        import os
        path = os.path.join(tmp, sorted(os.listdir(tmp))[0])
    shutil.copyfile(path, out)
    reply["compiled"] = True
print("SRDEPLOY-RESULT " + json.dumps(reply))
'''


def compile_artifact(artifact: Path, soc: str, out: Path) -> dict:
    """Compile *artifact* for *soc* into *out* (temporary name, then renamed); the offload figures."""
    import tempfile

    info = is_ready() if (target_dir() / "ready.json").is_file() else None
    lib = target_dir() / "lib"
    if info is None and not lib.is_dir():
        raise SrDeployError("qualcomm is not set up: run `sr-target setup qualcomm` once (about 10 s)")
    env = _lib_env()
    with tempfile.TemporaryDirectory(prefix="srdeploy-qnn-") as tmp:
        part = Path(tmp) / "compiled.tflite"
        try:
            r = subprocess.run([sys.executable, "-c", _COMPILE, str(artifact), soc, str(part), tmp + "/out"],
                               capture_output=True, text=True, env=env, timeout=1800)
        except subprocess.TimeoutExpired:
            return {"status": "error", "error": "the Qualcomm compiler ran past 30 min"}
        line = next((ln for ln in r.stdout.splitlines() if ln.startswith("SRDEPLOY-RESULT ")), None)
        if line is None:
            tail = [t for t in (r.stderr or "").strip().splitlines() if t.strip()]
            return {"status": "error", "error": f"the Qualcomm compiler died (exit {r.returncode}): "
                                                f"{tail[-1][:300] if tail else 'no output'}"}
        reply = json.loads(line.split(" ", 1)[1])
        if not reply.get("compiled"):
            return {"status": "error", "error": "compilation failed: " + "; ".join(reply["failed"])[:400]}
        figures = _offload(reply["report"], part)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_copy(part, out)
    from ..models.weights import sha256_file

    full = figures["ops_offloaded"] == figures["ops_total"] and not figures["left_on_cpu"]
    return {"status": "compiled" if full else "partial", "compiled_file": out.name, "soc": soc,
            "compiled_sha256": sha256_file(out), **figures}


def _offload(report: str, compiled: Path) -> dict:
    from ai_edge_litert.tools import flatbuffer_utils as fu

    from ..benchmark.profile import op_kind, op_name_map

    m = re.search(r"(\d+)\s*/\s*(\d+) ops offloaded to (\d+) partitions", report)
    offloaded, total, parts = (int(g) for g in m.groups()) if m else (None, None, None)
    model = fu.read_model(str(compiled))
    names = op_name_map()
    sg = model.subgraphs[0]
    left = []
    dispatch = 0
    for op in sg.operators:
        kind = op_kind(model, op, names)
        if kind == "CUSTOM":
            dispatch += 1
            continue
        shapes = [[int(d) for d in sg.tensors[i].shape] for i in op.inputs if i >= 0 and sg.tensors[i].shape is not None]
        rank = max((len(s) for s in shapes), default=0)
        left.append({"op": kind, "inputs": shapes,
                     "reason": f"rank-{rank} tensor (the HTP takes at most rank 5)" if rank > 5 else
                               "not offloaded by the Qualcomm plugin"})
    if offloaded is None:  # a report without stats: count from the compiled graph
        offloaded, total, parts = None, None, dispatch
    return {"ops_offloaded": offloaded, "ops_total": total, "partitions": parts, "left_on_cpu": left,
            "report": report.strip()[-400:]}


def read_dispatch(compiled: Path) -> dict:
    """The QNN graph of a fully offloaded compiled model: its name, the context binary's place in the
    file, and the I/O tensors (name, shape, TFLite type, quantization). A model with anything beside
    its one DISPATCH_OP is split between NPU and CPU: refused here."""
    from ai_edge_litert.tools import flatbuffer_utils as fu
    from flatbuffers import flexbuffers

    compiled = Path(compiled)
    try:
        model = fu.read_model(str(compiled))
        sg = model.subgraphs[0]
        codes = [model.operatorCodes[op.opcodeIndex].customCode for op in sg.operators]
    except Exception as exc:  # not a flatbuffer, or not a model
        raise SrDeployError(f"{compiled.name} is not a readable compiled .tflite ({type(exc).__name__})") from None
    if len(model.subgraphs) != 1 or len(sg.operators) != 1 or codes[0] not in (b"DISPATCH_OP", "DISPATCH_OP"):
        raise SrDeployError(f"{compiled.name} is not one NPU partition ({len(sg.operators)} ops): the simulator runs "
                            "fully offloaded models only")
    op = sg.operators[0]
    try:
        opts = flexbuffers.Loads(bytes(op.customOptions))
        name, offset, size = str(opts["name"]), int(opts["bytecode_offset"]), int(opts["bytecode_size"])
    except Exception:
        raise SrDeployError(f"{compiled.name}: its DISPATCH_OP has no readable bytecode options") from None
    total = compiled.stat().st_size
    if not (0 < size and 0 <= offset and offset + size <= total):
        raise SrDeployError(f"{compiled.name}: its context binary ({offset}+{size}) lies outside the file ({total} B)")
    if len(op.inputs) != 1 or not len(op.outputs):
        raise SrDeployError(f"{compiled.name}: one input and at least one output expected")

    def tensor(i):
        t = sg.tensors[i]
        q = t.quantization
        if t.type not in _ONNX_TYPES:
            raise SrDeployError(f"{compiled.name}: I/O tensor type {t.type} is not supported by the simulator runner")
        scale = float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) else 0.0
        zero = int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None and len(q.zeroPoint) else 0
        return {"name": t.name.decode() if isinstance(t.name, bytes) else str(t.name),
                "shape": [int(d) for d in t.shape], "type": int(t.type), "scale": scale, "zero_point": zero}

    outputs = [tensor(i) for i in op.outputs]
    return {"graph": name, "offset": offset, "size": size, "input": tensor(op.inputs[0]), "output": outputs[0],
            "outputs": outputs}


def epcontext_model(compiled: Path, info: dict) -> bytes:
    """One ONNX EPContext node holding the QNN context binary (embedded), for onnxruntime's QNN EP."""
    from onnx import helper

    with open(compiled, "rb") as fh:
        fh.seek(info["offset"])
        blob = fh.read(info["size"])
    i, outs = info["input"], info["outputs"]
    node = helper.make_node("EPContext", [i["name"]], [o["name"] for o in outs], name=info["graph"],
                            domain="com.microsoft", embed_mode=1, ep_cache_context=blob, main_context=1,
                            source="QNNExecutionProvider")
    graph = helper.make_graph([node], "npu", [helper.make_tensor_value_info(i["name"], _ONNX_TYPES[i["type"]], i["shape"])],
                              [helper.make_tensor_value_info(o["name"], _ONNX_TYPES[o["type"]], o["shape"])
                               for o in outs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    return model.SerializeToString()


_NUMPY = {0: "float32", 1: "float16", 3: "uint8", 9: "int8", 7: "int16", 2: "int32"}


class SimulatorRunner:
    """A fully offloaded compiled model run on QNN's x86 HTP simulator (the interface of
    :class:`srdeploy.runtime.TFLiteRunner`), in a child process of this host's Python."""

    kind = "qnn-htp-simulator"

    def __init__(self, compiled: Path, soc: str, all_outputs: bool = False) -> None:
        """*all_outputs*: return every output of the graph, raw, as one ``{name: array}`` (for
        :func:`localise`); otherwise the first output, decoded like any runner's."""
        from .runner import GuestRunner

        if not is_ready():
            raise SrDeployError("qualcomm is not set up: run `sr-target setup qualcomm` once (about 10 s)")
        info = read_dispatch(compiled)
        lib = target_dir() / "lib"
        env = _lib_env()

        def desc(t):
            return {"shape": t["shape"], "dtype": _NUMPY[t["type"]], "scale": t["scale"], "zero_point": t["zero_point"],
                    "name": t["name"]}

        cfg = {"runtime": "qnn-htp", "provider": str(lib / SIM_LIB), "backend": str(lib / "libQnnHtp.so"),
               "input": desc(info["input"]), "output": desc(info["output"]), "all_outputs": all_outputs}
        self.soc, self.graph, self.outputs, self.all_outputs = soc, info["graph"], info["outputs"], all_outputs
        self._guest = GuestRunner([sys.executable], env, epcontext_model(compiled, info), cfg,
                                  f"qualcomm:{soc} (HTP simulator)")
        self.info, self.input, self.output = self._guest.info, self._guest.input, self._guest.output
        #: the session was made with CPU fallback disabled: if it exists, every node runs on the HTP
        self.applied = "QNNExecutionProvider" in self.info.get("providers", [])

    @property
    def input_shape(self) -> list:
        return list(self.input["shape"])

    def __call__(self, x):
        import numpy as np

        if not self.all_outputs:
            return self._guest(x)
        flat, out, at = self._guest.raw(x), {}, 0
        for o in self.outputs:
            n = int(np.prod(o["shape"]))
            out[o["name"]] = flat[at:at + n].reshape(o["shape"])
            at += n
        if at != flat.size:
            raise SrDeployError(f"{self._guest.label}: the simulator returned {flat.size} values, expected {at}")
        return out

    def close(self) -> None:
        self._guest.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def localise(artifact: Path, soc: str, x, log=lambda m: None) -> list[dict]:
    """Where an artifact's NPU result leaves the host's: every intermediate activation of the graph
    is made an output too (a copy of the artifact), the copy is compiled for *soc* and run on the
    HTP simulator, and each tensor is compared with the same tensor of this host's LiteRT
    (``experimental_preserve_all_tensors``), in the graph's op order. INT8: in LSB of the tensor's
    own quantization step; the first tensor whose drift exceeds 2 LSB is where the NPU's arithmetic
    departs. Float (FP32/FP16 files, which the HTP computes in fp16): max |Δ| and the PSNR of the
    difference against the tensor's own peak |value|; the first tensor below 50 dB (the FP16 gate)
    is where fp16 loses what the output later misses.
    (Extra outputs keep the compiler from fusing across them, so this is a diagnosis of the ops,
    not a bit-exact replay of the shipped model.)"""
    import tempfile

    import numpy as np
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils as fu

    from ..benchmark.profile import op_kind, op_name_map
    from ..runtime import encode_input

    model = fu.read_model(str(artifact))
    sg = model.subgraphs[0]
    names = op_name_map()
    consts = {i for i, t in enumerate(sg.tensors) if model.buffers[t.buffer].data is not None}
    def quantized(t) -> bool:
        return t.type in (3, 9) and t.quantization is not None and t.quantization.scale is not None \
            and len(t.quantization.scale) == 1

    folded = set(consts)  # constants and what ops make of constants alone (the DEQUANTIZE of FP16 weights)
    for op in sg.operators:
        if all(i < 0 or i in folded for i in op.inputs):
            folded.update(o for o in op.outputs if o >= 0)

    def activation(o, op) -> bool:  # a run-time tensor: not a constant, nor computed from constants only
        return o >= 0 and o not in consts and o not in sg.outputs and any(i >= 0 and i not in folded for i in op.inputs)
    is_int8 = any(quantized(sg.tensors[o]) for op in sg.operators for o in op.outputs if activation(o, op))
    order = []  # (tensor index, producing op kind), in op order: the quantized activations, or the float ones
    for op in sg.operators:
        for o in op.outputs:
            t = sg.tensors[o]
            if activation(o, op) and (quantized(t) if is_int8 else t.type == 0):
                order.append((int(o), op_kind(model, op, names)))
    for i, t in enumerate(sg.tensors):  # unique names: the simulator's outputs are matched by name
        t.name = f"t{i}_".encode() + (t.name or b"")[:40]
    from .runner import MAX_FRAME

    values = sum(int(np.prod(sg.tensors[o].shape)) for o, _ in order)
    if values * 8 > MAX_FRAME:  # every tensor travels back at once, as float64
        raise SrDeployError(f"{Path(artifact).name} is too large to localise ({values * 8 / 2**30:.1f} GB of tensors "
                            f"at its input size, {'x'.join(str(int(d)) for d in sg.tensors[sg.inputs[0]].shape[1:3])}; "
                            f"at most {MAX_FRAME / 2**30:.1f} GB): localise an export of the same model at a smaller --size")
    sg.outputs = list(sg.outputs) + [o for o, _ in order]
    import copy

    for sd in model.signatureDefs or []:  # the compiler reads the outputs through the signature too
        for o, _ in order:
            tm = copy.copy(sd.outputs[0])
            tm.name, tm.tensorIndex = f"t{o}".encode(), o
            sd.outputs.append(tm)
    with tempfile.TemporaryDirectory(prefix="srdeploy-localise-") as tmp:
        probe = Path(tmp) / "probe.tflite"
        fu.write_model(model, str(probe))
        res = compile_artifact(probe, soc, Path(tmp) / f"probe.{soc}.tflite")
        if res["status"] != "compiled":
            raise SrDeployError(f"the all-outputs copy of {Path(artifact).name} did not compile as one partition "
                                f"({res['status']}: {res.get('error', '')})")
        log(f"  localise: {len(order)} tensors on the HTP simulator")
        import warnings

        with warnings.catch_warnings():  # LiteRT's "for debugging only" notice: debugging is what this is
            warnings.simplefilter("ignore", UserWarning)
            it = Interpreter(model_path=str(probe), experimental_preserve_all_tensors=True)
        it.allocate_tensors()
        inp = it.get_input_details()[0]
        xin = encode_input(inp, x)
        it.set_tensor(inp["index"], xin)
        it.invoke()
        with SimulatorRunner(Path(tmp) / f"probe.{soc}.tflite", soc, all_outputs=True) as sim:
            got = sim(x)
        rows = []
        for idx, kind in order:
            t = sg.tensors[idx]
            name = t.name.decode()
            if name not in got:
                continue
            row = {"tensor": name.split("_", 1)[1] or name, "op": kind}
            if is_int8:
                host = it.get_tensor(idx).astype(np.int32)
                npu = np.asarray(got[name]).astype(np.int32).reshape(host.shape)
                d = np.abs(npu - host)
                row.update(shape=list(host.shape), max_lsb=int(d.max()), mean_lsb=float(d.mean()),
                           fraction_off=float(np.mean(d > 0)), scale=float(t.quantization.scale[0]))
            else:
                host = it.get_tensor(idx).astype(np.float64)
                npu = np.asarray(got[name]).astype(np.float64).reshape(host.shape)
                d = npu - host
                peak, rms = float(np.abs(host).max()), float(np.sqrt(np.mean(d * d)))
                row.update(shape=list(host.shape), max_abs=float(np.abs(d).max()), peak=peak,
                           psnr_db=float("inf") if rms == 0 else float(20 * np.log10(max(peak, 1e-30) / rms)))
            rows.append(row)
    return rows
