"""Targets: the phone's own kernels, off-device. One module per target kind; each has a setup step
(cached under the user cache, idempotent) and a runner with the interface of
:class:`srdeploy.runtime.TFLiteRunner`, which :mod:`.check` uses to measure an artifact there.

* ``arm64[:CORE]`` — LiteRT's ARM CPU kernels (XNNPACK) under QEMU user-mode emulation
  (:mod:`.arm64`); CORE e.g. ``cortex-a76`` (default: dot product, fp16) or ``cortex-a53``.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import SrDeployError

__all__ = ["Target", "parse_target", "KINDS"]

KINDS = ("arm64",)


@dataclass(frozen=True)
class Target:
    kind: str
    option: str

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.option}"

    def ready(self) -> bool:
        from . import arm64

        return bool(arm64.is_ready())

    def runner(self, model, threads: int = 1):
        from .arm64 import Arm64Runner

        return Arm64Runner(model, self.option, threads)


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
    raise SrDeployError(f"unknown target {text!r}; known: arm64[:CORE] (CORE one of {', '.join(CORES)}; "
                        f"default {DEFAULT_CORE})")
