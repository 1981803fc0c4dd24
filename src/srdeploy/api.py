"""``srdeploy.export(model, ...)``: the exporter from Python, for a registry name, an ONNX path or an
``nn.Module`` — the same options as ``sr-export``, returning the manifest."""
from __future__ import annotations

from typing import Callable

from .export.rewrites import DEFAULT_REWRITES

__all__ = ["export"]


def export(model, *, scale: int | None = None, size: str | tuple[int, int] | None = None, value_range: int = 1,
           channels: str = "rgb", fuse: bool = False, name: str | None = None, out: str | None = None,
           fp16: bool = False, fp16_arithmetic: bool = False, int8: bool = False, calib: str | None = None, calib_samples: int = 16,
           io: str = "float32", act: str = "int8", ranges: str = "auto", qat_steps: int = 0,
           int8_params: str = "auto", save_int8_params: str | None = None, equalize: str = "auto",
           quality: bool = False, rewrites: tuple[str, ...] = DEFAULT_REWRITES, int8_rewrites: tuple[str, ...] | None = None,
           parity: bool = True, seed: int = 0,
           weights: str | None = None, random_weights: bool = False, bench: bool = False, bench_runs: int = 6,
           targets: tuple[str, ...] = (), bundle: str | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Export *model* to ONNX and TFLite behind the parity gate; return the manifest (also written
    to ``OUT/manifest.json``).

    * *model*: a registry name (``"imdn_rtc"``), a path to an ``.onnx`` file, or an ``nn.Module``
      mapping ``1×C×H×W`` to ``1×C×sH×sW`` in its own convention (*value_range* 1 or 255,
      *channels* ``"rgb"``, ``"bgr"`` or ``"y"``); ONNX files and modules need *scale*, and *size*
      ``"HxW"`` or ``(H, W)`` when their input size is not fixed.
    * *fuse*: fold a module's training form (parallel 3×3 / 1×1 / identity branches, BatchNorms)
      into single convolutions first (:func:`srdeploy.models.fuse.fuse_branches`, exact).
    * *targets*: e.g. ``("arm64", "arm64:cortex-a53")`` — the artifacts are then run on those targets
      and the figures recorded in ``manifest["targets"]`` (see ``sr-target``).
    * The rest as ``sr-export``'s flags of the same names (``sr-export --help``).

    Raises :class:`srdeploy.errors.SrDeployError` on bad input (nothing written) and
    :class:`srdeploy.errors.ParityError` when an artifact fails the gate (the folder is kept for
    inspection)."""
    from pathlib import Path

    from .errors import SrDeployError
    from .export.exporter import ExportConfig, Exporter

    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise SrDeployError(f"size must be 'HxW' or (H, W), got {size!r}")
        size = f"{int(size[0])}x{int(size[1])}"
    onnx = None
    if isinstance(model, (str, Path)) and str(model).lower().endswith(".onnx"):
        onnx, model = str(model), None
    cfg = ExportConfig(model=model, onnx=onnx, scale=scale, size=size, value_range=value_range, channels=channels,
                       fuse=fuse, name=name, out=out, fp16=fp16, fp16_arithmetic=fp16_arithmetic, int8=int8, calib=calib, calib_samples=calib_samples,
                       io=io, act=act, ranges=ranges, qat_steps=qat_steps, int8_params=str(int8_params),
                       save_int8_params=None if save_int8_params is None else str(save_int8_params),
                       equalize=equalize, quality=quality, rewrites=tuple(rewrites),
                       int8_rewrites=None if int8_rewrites is None else tuple(int8_rewrites), parity=parity, seed=seed, weights=weights,
                       random_weights=random_weights)
    parsed = []
    if targets:
        from .targets import parse_target

        parsed = [parse_target(t) for t in targets]
        for t in parsed:
            if not t.ready():
                raise SrDeployError(f"target {t.label} is not set up: run `sudo sr-target setup {t.kind}` once")
    exporter = Exporter(cfg, log=log) if log else Exporter(cfg)
    manifest = exporter.run()
    if parsed:
        import json

        from .targets.check import check_export, record_in_manifest

        results = check_export(exporter.out_dir, parsed, reference=exporter.source.reference()[0], seed=seed,
                               log=log or (lambda m: None))
        record_in_manifest(exporter.out_dir, results)
        manifest = json.loads((exporter.out_dir / "manifest.json").read_text())
    if bench:
        from .export.cli import _bench

        manifest = _bench(exporter.out_dir, manifest, bench_runs)
    if bundle:
        from .export.bundle import bundle as _bundle

        _bundle(exporter.out_dir, bundle, None)
    return manifest
