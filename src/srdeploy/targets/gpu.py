"""``gpu[:fp32]``: LiteRT's GPU accelerator, on a real GPU where the machine has one (a Vulkan driver
in the loader's ICD folders), else on a software Vulkan GPU (Mesa's lavapipe) — the GPU delegate's own op set, precision and kernels.

Setup (``sr-target setup gpu``; no root; ~30 s, ~170 MB under the user cache): a private apt
configuration (its own sources list with bookworm and bookworm-backports, its own lists and cache;
nothing installed system-wide) downloads Mesa 25.0.7's Vulkan drivers from bookworm-backports (Dawn,
LiteRT's WebGPU layer, refuses Debian 12's own Mesa 22.3) with the libraries they need, ``dpkg-deb -x``
unpacks them, and an ICD file points the Vulkan loader at the unpacked ``libvulkan_lvp.so``.

Run: a process of this Python with ``VK_ICD_FILENAMES`` / ``LD_LIBRARY_PATH`` set, running LiteRT's
CompiledModel with the GPU accelerator *alone* (asking for GPU without CPU fails loudly instead of
falling back; ``is_fully_accelerated()`` says True for CPU runs too, so it proves nothing). The row
records the adapter Dawn selected (its log line). ``gpu`` is the delegate's FP16 default, ``gpu:fp32``
``enforce_f32``. On Android the same accelerator runs on OpenCL / OpenGL ES backends with the same op
set and FP16 default; this is its WebGPU backend. Correctness only: a software GPU's time is no phone's.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import SrDeployError
from ..paths import cache_dir
from .runner import GuestRunner

__all__ = ["GpuRunner", "setup", "is_ready", "run_env", "hardware_icds", "adapter_from_log", "MODES"]

MODES = ("fp16", "fp32")
MIRROR = "http://deb.debian.org/debian"
#: Mesa 25 from bookworm-backports (Dawn accepts it) and what its lavapipe driver loads
PACKAGES = ("mesa-vulkan-drivers=25.0.7-2~bpo12+1", "libdrm2=2.4.123-1~bpo12+1", "libdrm-amdgpu1=2.4.123-1~bpo12+1",
            "libdrm-common=2.4.123-1~bpo12+1", "libvulkan1=1.3.239.0-1", "libllvm15")


def target_dir() -> Path:
    return cache_dir() / "targets" / "gpu"


def is_ready() -> dict | None:
    try:
        info = json.loads((target_dir() / "ready.json").read_text())
    except (OSError, ValueError):
        return None
    return info if Path(info.get("icd", "")).is_file() else None


#: where Vulkan's loader looks for drivers (ICD files) when no VK_ICD_FILENAMES is set
ICD_DIRS = ("/etc/vulkan/icd.d", "/usr/share/vulkan/icd.d", "/usr/local/share/vulkan/icd.d")


def hardware_icds() -> list[Path]:
    """ICD files of this machine's own GPU drivers (NVIDIA's, Mesa's radv/anv, ...): every installed
    Vulkan driver except the software ones (lavapipe, SwiftShader)."""
    found = []
    for d in ICD_DIRS:
        for f in sorted(Path(d).glob("*.json")) if Path(d).is_dir() else []:
            try:
                lib = str(json.loads(f.read_text())["ICD"]["library_path"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if not any(soft in lib.lower() for soft in ("lvp", "swiftshader")):
                found.append(f)
    return found


def _env(root: Path, icd: Path) -> dict:
    """The environment of a process that runs the GPU accelerator: the Vulkan loader from the setup,
    and the machine's own GPU where it has one, else the setup's software GPU."""
    lib = root / "usr" / "lib" / "x86_64-linux-gnu"
    env = {**os.environ, "LD_LIBRARY_PATH": f"{lib}:{os.environ.get('LD_LIBRARY_PATH', '')}".rstrip(":")}
    drivers = ":".join(str(f) for f in hardware_icds()) or str(icd)
    return {**env, "VK_ICD_FILENAMES": drivers, "VK_DRIVER_FILES": drivers}


def run_env() -> dict:
    """:func:`_env` for the set-up target; a clear error when it is not set up."""
    info = is_ready()
    if info is None:
        raise SrDeployError("gpu is not set up: run `sr-target setup gpu` once (about 30 s)")
    return _env(Path(info["root"]), Path(info["icd"]))


def adapter_from_log(text: str) -> str | None:
    """The adapter Dawn (LiteRT's WebGPU layer) selected, from its log line."""
    for line in text.splitlines():
        if "Selected adapter" in line:
            return line.split("Selected adapter:", 1)[-1].strip() or "?"
    return None


def setup(log=print, force: bool = False) -> dict:
    from ..progress import heartbeat

    ready = is_ready()
    if ready and not force:
        log(f"gpu: already set up in {target_dir()} ({ready['adapter']})")
        return ready
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise SrDeployError("gpu setup needs apt-get and dpkg-deb (a Debian/Ubuntu host) to fetch Mesa's Vulkan drivers")
    final = target_dir()
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".gpu.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    apt = staging / "apt"
    for d in ("lists/partial", "cache/archives/partial", "etc"):
        (apt / d).mkdir(parents=True)
    (apt / "etc" / "sources.list").write_text(f"deb {MIRROR} bookworm main\ndeb {MIRROR} bookworm-backports main\n")
    opts = [f"-oDir::Etc::SourceList={apt / 'etc' / 'sources.list'}", "-oDir::Etc::SourceParts=/dev/null",
            f"-oDir::State::Lists={apt / 'lists'}", f"-oDir::Cache={apt / 'cache'}", "-oDebug::NoLocking=1",
            "-oAPT::Sandbox::User=root" if os.geteuid() == 0 else "-oAPT::Sandbox::User=" + os.environ.get("USER", "")]
    log(f"gpu setup into {final} (about 30 s; downloads ~35 MB from {MIRROR}; nothing installed system-wide)")
    try:
        log("  [1/3] apt-get update (a private sources list: bookworm + bookworm-backports)")
        with heartbeat("gpu setup: apt-get update"):
            r = subprocess.run(["apt-get", *opts, "update", "-q"], capture_output=True, text=True)
        if r.returncode != 0 or "Err:" in r.stdout:
            tail = (r.stdout + r.stderr).strip().splitlines()[-1:] or ["no output"]
            raise SrDeployError(f"gpu setup: apt-get update failed (offline? it reads {MIRROR}): {tail[0]}")
        debs = staging / "debs"
        debs.mkdir()
        log(f"  [2/3] apt-get download {' '.join(p.split('=')[0] for p in PACKAGES)}")
        with heartbeat("gpu setup: downloading Mesa 25 (bookworm-backports)"):
            r = subprocess.run(["apt-get", *opts, "download", *PACKAGES], capture_output=True, text=True, cwd=debs)
        if r.returncode != 0:
            raise SrDeployError(f"gpu setup: apt-get download failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
        root = staging / "root"
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, capture_output=True)
        shutil.rmtree(debs)
        shutil.rmtree(apt)
        lib = final / "root" / "usr" / "lib" / "x86_64-linux-gnu" / "libvulkan_lvp.so"
        icd_src = root / "usr" / "share" / "vulkan" / "icd.d" / "lvp_icd.json"
        if not icd_src.is_file():
            raise SrDeployError("gpu setup: the Mesa package holds no lavapipe ICD (lvp_icd.json)")
        icd = json.loads(icd_src.read_text())
        icd["ICD"]["library_path"] = str(lib)
        (staging / "lvp_icd.json").write_text(json.dumps(icd))
        info = {"mesa": PACKAGES[0].split("=")[1], "icd": str(final / "lvp_icd.json"), "root": str(final / "root")}
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
        staging = None
        log("  [3/3] loading a model on the GPU accelerator alone")
        info["adapter"] = _probe()
        (final / "ready.json").write_text(json.dumps(info, indent=2) + "\n")
        log(f"gpu: ready in {final} ({info['adapter']})")
        return info
    except BaseException:
        if staging is None:  # renamed already: the probe failed, so this is not a working target
            shutil.rmtree(final, ignore_errors=True)
        raise
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _probe() -> str:
    """Run a one-conv model on the GPU accelerator; return the adapter Dawn selected."""
    from ..runtime import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    def f(x):
        return tf.nn.conv2d(x, tf.ones([3, 3, 3, 4]) * 0.1, 1, "SAME")

    blob = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f).convert()
    import numpy as np

    with GpuRunner(blob, "fp32", _check=False) as r:
        r(np.zeros((1, 8, 8, 3), np.float32))
        if not r.applied:
            raise SrDeployError(f"gpu: LiteRT ran, but no GPU adapter was selected ({r._tail()})")
        return r.adapter


class GpuRunner(GuestRunner):
    kind = "tflite-gpu"

    def __init__(self, model: Path | bytes, mode: str = "fp16", threads: int = 1, _check: bool = True) -> None:
        # (_check=False: setup's own probe, before ready.json exists)
        env = run_env() if _check else _env(target_dir() / "root", target_dir() / "lvp_icd.json")
        self.core = f"gpu ({mode})"
        super().__init__([sys.executable], env, model,
                         {"runtime": "gpu-fp32" if mode == "fp32" else "gpu"}, f"gpu:{mode}")

    @property
    def applied(self) -> bool:
        return self.stderr_has(b"Selected adapter")

    @property
    def adapter(self) -> str:
        return adapter_from_log(self.stderr_line(b"Selected adapter") or "") or "?"
