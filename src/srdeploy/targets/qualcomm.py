"""``qualcomm:<SoC>``: compile an artifact for the Snapdragon NPU (Hexagon HTP) with LiteRT's AOT
compiler and its Qualcomm plugin, and report what was offloaded.

Setup (``sr-target setup qualcomm``; no root; ~10 s, ~230 MB under the user cache): the QAIRT host
libraries the plugin loads (``libQnnHtp.so``, ``libQnnSystem.so``, ``libQnnIr.so``, ``libQnnSaver.so``,
``libHtpPrepare.so`` and the libc++ they link) are taken out of the PyPI wheel ``onnxruntime-qnn==2.7.0``
(downloaded, unpacked, never installed: it would replace onnxruntime); the plugin also asks for
``libQnnLpai.so``, which that wheel lacks — an empty shared library built with the host's C compiler
stands in (the HTP path does not use it). ``ai-edge-litert-sdk-qualcomm`` is not used: it downloads
QAIRT from the vendor's site at install time, which fails offline while pip still says "Successfully
installed".

Compile: ``ai_edge_litert.aot.aot_compile`` in a child process (the libraries on its
``LD_LIBRARY_PATH``); the compiled model is written beside the artifact as ``model_int8.SM8650.tflite``
(what the app loads with LiteRT's NPU accelerator), and the row records the plugin's partition stats
("84 / 87 ops offloaded to 1 partitions") and every op left on the CPU with its tensor shapes. A model
that is not fully offloaded is reported as ``partial``, never as passed. Parity on the NPU (QNN's
x86 HTP simulator) is not run yet.
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
from ..paths import cache_dir

__all__ = ["SOCS", "setup", "is_ready", "compile_artifact", "compiled_name"]

#: the SoCs of ai-edge-litert's Qualcomm target (SM8650: Snapdragon 8 Gen 3; SM8350: 888)
SOCS = ("SM8350", "SM8450", "SM8475", "SM8550", "SM8650", "SM8750", "SM8845", "SM8850", "SA8255", "SA8295")
WHEEL = "onnxruntime-qnn==2.7.0"
LIBS = ("libQnnHtp.so", "libQnnSystem.so", "libQnnIr.so", "libQnnSaver.so", "libHtpPrepare.so")


def target_dir() -> Path:
    return cache_dir() / "targets" / "qualcomm"


def is_ready() -> dict | None:
    try:
        info = json.loads((target_dir() / "ready.json").read_text())
    except (OSError, ValueError):
        return None
    return info if all((target_dir() / "lib" / n).is_file() for n in LIBS + ("libQnnLpai.so",)) else None


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
        log("  [3/3] compiling a one-conv model for SM8650")
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
    env = {**os.environ, "LD_LIBRARY_PATH": f"{lib}:{os.environ.get('LD_LIBRARY_PATH', '')}".rstrip(":")}
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
        tmp_out = out.with_name(out.name + ".partial")
        shutil.copyfile(part, tmp_out)
        os.replace(tmp_out, out)
    full = figures["ops_offloaded"] == figures["ops_total"] and not figures["left_on_cpu"]
    return {"status": "compiled" if full else "partial", "compiled_file": out.name, "soc": soc, **figures,
            "parity": "not run (the NPU simulator is not wired in yet)"}


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
