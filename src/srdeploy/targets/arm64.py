"""``arm64``: a phone's ARM CPU kernels (XNNPACK's NEON / dot-product / fp16 code) run under QEMU's
user-mode emulation, off-device.

Setup (``sr-target setup arm64``, root, network; ~1 min, ~350 MB under the user cache):

* ``debootstrap --foreign`` (first stage only: it downloads and unpacks Debian bookworm arm64's
  minimal base and python3 — nothing is executed, so no binfmt registration is needed) and every
  downloaded package unpacked with ``dpkg-deb -x``: an aarch64 Python 3.11 with its libraries;
* ``pip install --platform manylinux_2_27_aarch64 --only-binary=:all: --target`` the same
  ai-edge-litert version as the host's, and numpy: LiteRT's own aarch64 wheels, the code phones run.

Run: ``qemu-aarch64-static -L ROOT -cpu CORE python3 -c GUEST`` — no chroot and no root: QEMU
resolves the guest's absolute paths under ``-L`` first. Two facts found in probing make it work:
LiteRT's cpuinfo reads ``/proc/cpuinfo``, and QEMU 7.2 passes the host's x86 one through, on which
``allocate_tensors()`` segfaults — so each core gets a view of the root (symlinks) with its own
``proc/cpuinfo``, written from the features the emulated core reports (``getauxval``) and its MIDR
part number (which is also how XNNPACK picks e.g. its Cortex-A53 kernels). Cores: ``cortex-a53``
(ARMv8.0: no dot product, no fp16 arithmetic), ``cortex-a76`` (dot product and fp16), ``neoverse-n1``,
``cortex-a72``, ``cortex-a57``; ``max`` is refused (QEMU 7.2's ``max`` with SME computes int8
wrongly). Emulated time is not phone time: the check reports parity, never speed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from ..errors import SrDeployError
from ..paths import cache_dir
from .runner import GuestRunner

__all__ = ["CORES", "DEFAULT_CORE", "Arm64Runner", "setup", "root_dir", "is_ready"]

#: QEMU 7.2 core name → MIDR part number (what /proc/cpuinfo's "CPU part" says on such a phone)
CORES = {"cortex-a53": "0xd03", "cortex-a57": "0xd07", "cortex-a72": "0xd08", "cortex-a76": "0xd0b",
         "neoverse-n1": "0xd0c"}
DEFAULT_CORE = "cortex-a76"
SUITE, MIRROR = "bookworm", "http://deb.debian.org/debian"
WHEEL_PLATFORMS = ("manylinux_2_27_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")
QEMU = "qemu-aarch64-static"
GUEST_SITE = "/opt/srdeploy"


def target_dir() -> Path:
    return cache_dir() / "targets" / "arm64"


def root_dir() -> Path:
    return target_dir() / "root"


def _host_litert() -> str:
    from importlib import metadata

    return metadata.version("ai-edge-litert")


def is_ready() -> dict | None:
    stamp = target_dir() / "ready.json"
    try:
        info = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None
    return info if info.get("litert") == _host_litert() and shutil.which(QEMU) else None


def _need_tools(log) -> None:
    missing = [t for t in (QEMU, "debootstrap", "dpkg-deb") if not shutil.which(t)]
    if not missing:
        return
    if shutil.which("apt-get"):
        log(f"arm64 setup: installing {', '.join(missing)} (apt-get install qemu-user-static debootstrap)")
        r = subprocess.run(["apt-get", "install", "-y", "-q", "qemu-user-static", "debootstrap"],
                           capture_output=True, text=True)
        if r.returncode == 0 and all(shutil.which(t) for t in missing):
            return
        raise SrDeployError("arm64 setup: apt-get could not install qemu-user-static and debootstrap "
                            f"({(r.stderr.strip().splitlines() or ['no output'])[-1]})")
    raise SrDeployError(f"arm64 setup needs {', '.join(missing)} on the host (Debian/Ubuntu: "
                        "apt-get install qemu-user-static debootstrap)")


def setup(log=print, force: bool = False) -> dict:
    """Prepare the arm64 root under the user cache (idempotent; atomic: a failed setup leaves nothing)."""
    from ..progress import heartbeat

    ready = is_ready()
    if ready and not force:
        log(f"arm64: already set up in {target_dir()} (ai-edge-litert {ready['litert']}, {ready['suite']})")
        return ready
    if os.geteuid() != 0:
        raise SrDeployError("arm64 setup needs root (debootstrap unpacks a Debian root file system); "
                            "run `sudo sr-target setup arm64` once — running the checks afterwards needs no root")
    _need_tools(log)
    final = target_dir()
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".arm64.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    root = staging / "root"
    log(f"arm64 setup into {final} (about 1 minute; downloads ~150 MB from {MIRROR} and PyPI)")
    try:
        log(f"  [1/4] debootstrap --foreign {SUITE} arm64 (minbase + python3: download and unpack, nothing executed)")
        with heartbeat(f"arm64 setup: debootstrap {SUITE} arm64 (download and unpack, ~150 MB)"):
            r = subprocess.run(["debootstrap", "--arch=arm64", "--foreign", "--variant=minbase",
                                "--include=python3", SUITE, str(root), MIRROR], capture_output=True, text=True)
        if r.returncode != 0:
            tail = (r.stdout + r.stderr).strip().splitlines()[-1:] or ["no output"]
            offline = any(w in tail[0].lower() for w in ("resolve", "connect", "download", "retriev", "network",
                                                         "release file"))
            raise SrDeployError(f"arm64 setup: debootstrap failed{' (offline? it downloads from ' + MIRROR + ')' if offline else ''}: {tail[0]}")
        debs = sorted((root / "var" / "cache" / "apt" / "archives").glob("*.deb"))
        log(f"  [2/4] unpacking {len(debs)} packages (dpkg-deb -x)")
        with heartbeat(f"arm64 setup: unpacking {len(debs)} packages"):
            for deb in debs:
                subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, capture_output=True)
            shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        version = _host_litert()
        import sys

        cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile",
               *[a for p in WHEEL_PLATFORMS for a in ("--platform", p)], "--python-version", "3.11",
               "--implementation", "cp", "--abi", "cp311", "--only-binary=:all:",
               "--target", str(root / GUEST_SITE.lstrip("/")), f"ai-edge-litert=={version}", "numpy"]
        log(f"  [3/4] pip install --platform manylinux_2_27_aarch64 ai-edge-litert=={version} numpy")
        with heartbeat(f"arm64 setup: pip install ai-edge-litert=={version} numpy (aarch64 wheels)"):
            r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PIP_CONSTRAINT": ""})
        if r.returncode != 0:
            raise SrDeployError("arm64 setup: pip could not fetch the aarch64 wheels (offline?): "
                                f"{(r.stderr.strip().splitlines() or ['no output'])[-1]}")
        info = {"suite": SUITE, "litert": version, "qemu": _qemu_version(), "root": str(final / "root")}
        (staging / "ready.json").write_text(json.dumps(info, indent=2) + "\n")
        log(f"  [4/4] starting the emulated Python ({QEMU} -cpu {DEFAULT_CORE})")
        probe = _run_guest_probe(staging / "root", DEFAULT_CORE)
        if probe.get("machine") != "aarch64":
            raise SrDeployError(f"arm64 setup: the emulated Python did not run as aarch64 ({probe})")
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
        staging = None
        log(f"arm64: ready in {final} (ai-edge-litert {version}, QEMU {info['qemu']})")
        return info
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _qemu_version() -> str:
    try:
        out = subprocess.run([QEMU, "--version"], capture_output=True, text=True).stdout
        return out.split("version", 1)[1].split()[0] if "version" in out else "?"
    except OSError:
        return "?"


_PROBE = ("import ctypes,json,platform;l=ctypes.CDLL(None);l.getauxval.restype=ctypes.c_ulong;"
          "print(json.dumps({'machine':platform.machine(),'hwcap':l.getauxval(16),'hwcap2':l.getauxval(26)}))")


def _run_guest_probe(root: Path, core: str) -> dict:
    r = subprocess.run([QEMU, "-L", str(root), "-cpu", core, str(root / "usr/bin/python3"), "-c", _PROBE],
                       capture_output=True, text=True, timeout=120)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise SrDeployError(f"arm64: the emulated Python did not start on {core}: "
                            f"{(r.stderr.strip().splitlines() or ['no output'])[-1]}") from None


def core_view(core: str) -> Path:
    """A view of the root for one core: symlinks to the shared root plus its own proc/cpuinfo."""
    if core not in CORES:
        raise SrDeployError(f"unknown arm64 core {core!r}; known: {', '.join(CORES)}")
    if not is_ready():
        raise SrDeployError("arm64 is not set up: run `sudo sr-target setup arm64` once (about 1 minute)")
    root = root_dir()
    view = target_dir() / "cores" / core
    if (view / "proc" / "cpuinfo").is_file():
        return view
    from .guest import HWCAP, HWCAP2  # the same bit names the guest reports

    probe = _run_guest_probe(root, core)
    feats = [n for i, n in enumerate(HWCAP) if probe["hwcap"] >> i & 1] + \
            [n for i, n in enumerate(HWCAP2) if probe["hwcap2"] >> i & 1]
    staging = view.parent / f".{core}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "proc").mkdir(parents=True)
    for entry in root.iterdir():
        if entry.name != "proc":
            (staging / entry.name).symlink_to(entry)
    cpus = []
    for i in range(os.cpu_count() or 1):
        cpus.append(f"processor\t: {i}\nBogoMIPS\t: 50.00\nFeatures\t: {' '.join(feats)}\n"
                    f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\n"
                    f"CPU part\t: {CORES[core]}\nCPU revision\t: 0\n")
    (staging / "proc" / "cpuinfo").write_text("\n".join(cpus))
    try:
        staging.rename(view)
    except OSError:  # another process made it first
        shutil.rmtree(staging, ignore_errors=True)
    return view


class Arm64Runner(GuestRunner):
    """A ``.tflite`` on an emulated ARM core (LiteRT's Interpreter, XNNPACK as apps get it)."""

    kind = "tflite-arm64"

    def __init__(self, model: Path | bytes, core: str = DEFAULT_CORE, threads: int = 1) -> None:
        view = core_view(core)
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": GUEST_SITE, "PYTHONDONTWRITEBYTECODE": "1",
               "LANG": "C.UTF-8", "HOME": "/tmp"}
        self.core = core
        super().__init__([QEMU, "-L", str(view), "-cpu", core, str(view / "usr/bin/python3")], env, model,
                         {"threads": threads, "runtime": "interpreter"}, f"arm64 ({core})")

    @property
    def applied(self) -> bool:
        """Did LiteRT apply its XNNPACK delegate (the kernels phones use)? It says so on stderr."""
        return self.stderr_has(b"XNNPACK delegate")

    xnnpack = applied
