"""Targets: the phone's own kernels, off-device. One module per target kind; each has a setup step
(cached under the user cache, idempotent) and a runner with the interface of
:class:`srdeploy.runtime.TFLiteRunner`, which :mod:`.check` uses to measure an artifact there.

* ``arm64[:CORE]`` — LiteRT's ARM CPU kernels (XNNPACK) under QEMU user-mode emulation
  (:mod:`.arm64`); CORE e.g. ``cortex-a76`` (default: dot product, fp16) or ``cortex-a53``.
* ``gpu[:fp32]`` — LiteRT's GPU accelerator (:mod:`.gpu`) on the machine's GPU or a software Vulkan GPU, in its FP16
  default or with ``enforce_f32``.
* ``qualcomm:<SoC>`` — LiteRT's AOT compiler for the Snapdragon NPU (:mod:`.qualcomm`): the compiled
  model, what was offloaded, and — fully offloaded — its run on QNN's x86 HTP simulator.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import SrDeployError

__all__ = ["Target", "parse_target", "KINDS", "OK_STATUSES"]

KINDS = ("arm64", "gpu", "qualcomm")
#: statuses of a target row that are not a failure
OK_STATUSES = ("passed", "compiled")


@dataclass(frozen=True)
class Target:
    kind: str
    option: str

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.option}"

    def ready(self) -> bool:
        from . import arm64, gpu, qualcomm

        return bool({"arm64": arm64, "gpu": gpu, "qualcomm": qualcomm}[self.kind].is_ready())

    def runner(self, model, threads: int = 1):
        """A runner of *model* on this target (qualcomm: a compiled model, on the HTP simulator)."""
        if self.kind == "qualcomm":
            from .qualcomm import SimulatorRunner

            return SimulatorRunner(model, self.option)
        if self.kind == "gpu":
            from .gpu import GpuRunner

            return GpuRunner(model, self.option)
        from .arm64 import Arm64Runner

        return Arm64Runner(model, self.option, threads)

    @property
    def computes_fp16(self) -> bool:
        """Float artifacts are computed in fp16 here whatever their weights (the GPU's default; the
        Hexagon NPU computes float in fp16)."""
        return (self.kind == "gpu" and self.option == "fp16") or self.kind == "qualcomm"


def parse_target(text: str) -> Target:
    """``arm64`` / ``arm64:cortex-a53`` → a :class:`Target`; anything else is one clear line."""
    from .arm64 import CORES, DEFAULT_CORE

    kind, _, option = (text or "").strip().partition(":")
    if kind == "arm64":
        option = option or DEFAULT_CORE
        if option not in CORES:
            hint = " (QEMU 7.2's 'max' computes int8 wrongly with SME: not offered)" if option.startswith("max") else ""
            raise SrDeployError(f"unknown arm64 core {option!r}{hint}; known: {', '.join(CORES)}")
        return Target("arm64", option)
    if kind == "qualcomm":
        from .qualcomm import SOCS

        if option.upper() not in SOCS:
            raise SrDeployError(f"unknown Qualcomm SoC {option!r}; known: {', '.join(SOCS)} (e.g. qualcomm:SM8650)")
        return Target("qualcomm", option.upper())
    if kind == "gpu":
        option = option or "fp16"
        if option not in ("fp16", "fp32"):
            raise SrDeployError(f"unknown gpu mode {option!r}; known: gpu (its FP16 default), gpu:fp32")
        return Target("gpu", option)
    raise SrDeployError(f"unknown target {text!r}; known: arm64[:CORE] (CORE one of {', '.join(CORES)}; "
                        f"default {DEFAULT_CORE}), gpu[:fp32], qualcomm:<SoC>")
