"""A sweep's plan: the grid (models × sizes × precisions × targets) and what each cell computes,
validated whole before any task starts, so a typo costs one line and no compute.

A *cell* is one model × size × precision × target. Cells of one model × size share one export (an
:class:`ExportGroup`: its precisions are the union of its cells'); the host target is the export's
own parity gate on this host's LiteRT, any other target is a ``sr-target`` check of the artifact.
Each cell carries a config hash: ``--resume`` keeps a finished row whose hash and srdeploy version
match (see :func:`cell_hash`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import SrDeployError

__all__ = ["Plan", "ModelEntry", "Cell", "ExportGroup", "build_plan", "load_plan_file", "PRECISIONS", "HOST"]

PRECISIONS = ("fp32", "fp16", "int8")
#: the target name of the export's own gate, run by this host's LiteRT (XNNPACK, x86)
HOST = "host"
PLAN_KEYS = {"models", "onnx", "scale", "sizes", "precisions", "targets", "calib", "evals", "eval_sizes",
             "qat_steps", "anchor", "budget_gmac", "runs", "threads", "value_range", "channels"}


@dataclass(frozen=True)
class ModelEntry:
    """One model of the grid: a registry name or a user's ONNX file (with its I/O convention)."""
    label: str
    kind: str  # "registry" | "onnx"
    name: str  # registry name, or the ONNX file's absolute path
    scale: int
    random_weights: bool = False
    value_range: int = 1
    channels: str = "rgb"
    #: the ONNX file's sha256 (a changed file is a changed cell), "" for registry models
    digest: str = ""
    #: False for models that map an upscaled image to one of its size (no SR scale to evaluate)
    evaluable: bool = True
    gmac_per_mpix: float | None = None

    def export_kwargs(self) -> dict:
        if self.kind == "onnx":
            return {"onnx": self.name, "value_range": self.value_range, "channels": self.channels}
        return {"model": self.name, "random_weights": self.random_weights}


@dataclass(frozen=True)
class ExportGroup:
    model: ModelEntry
    size: tuple[int, int]
    precisions: tuple[str, ...]
    calib: str | None
    qat_steps: int

    @property
    def key(self) -> str:
        h, w = self.size
        return f"{self.model.label}_x{self.model.scale}_{h}x{w}"

    def config(self) -> dict:
        return {"model": asdict(self.model), "size": list(self.size), "precisions": list(self.precisions),
                "calib": self.calib if "int8" in self.precisions else None,
                "qat_steps": self.qat_steps if "int8" in self.precisions else 0}


@dataclass(frozen=True)
class Cell:
    group: ExportGroup
    precision: str
    target: str
    evals: tuple[str, ...]
    runs: int
    threads: int
    #: a reason the cell is not run (over the compute budget); a row all the same
    skip: str | None = None

    @property
    def artifact(self) -> str:
        return f"model_{self.precision}.tflite"

    @property
    def id(self) -> str:
        return f"{self.group.key}/{self.precision}/{self.target}"

    def config(self) -> dict:
        return {"model": self.group.model.label, "source": self.group.model.kind, "scale": self.group.model.scale,
                "size": list(self.group.size), "precision": self.precision, "target": self.target,
                "evals": list(self.evals), "calib": self.group.calib if self.precision == "int8" else None,
                "qat_steps": self.group.qat_steps if self.precision == "int8" else 0,
                "runs": self.runs, "threads": self.threads}

    @property
    def hash(self) -> str:
        return cell_hash({**self.config(), "group": self.group.config(), "skip": self.skip})


def cell_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Plan:
    models: list[ModelEntry]
    sizes: list[tuple[int, int]]
    precisions: list[str]
    targets: list[str]
    calib: str | None = None
    evals: list[str] = field(default_factory=list)
    #: evaluate only the artifacts of these sizes (default: every size)
    eval_sizes: list[tuple[int, int]] | None = None
    qat_steps: int = 0
    #: a .tflite timed beside every size it fits (the suite's "ratio to anchor")
    anchor: str | None = None
    budget_gmac: float | None = None
    runs: int = 5
    threads: int = 2

    def groups(self) -> list[ExportGroup]:
        return sorted({c.group for c in self.cells() if not c.skip}, key=lambda g: g.key)

    def cells(self) -> list[Cell]:
        out = []
        for m in self.models:
            for size in self.sizes:
                group = ExportGroup(m, size, tuple(p for p in PRECISIONS if p in self.precisions),
                                    self.calib, self.qat_steps)
                gmac = None if m.gmac_per_mpix is None else m.gmac_per_mpix * size[0] * size[1] / 1e6
                skip = (f"{gmac:.0f} GMAC per frame > budget {self.budget_gmac:g}"
                        if gmac is not None and self.budget_gmac is not None and gmac > self.budget_gmac else None)
                evals = () if (not m.evaluable or (self.eval_sizes is not None and size not in self.eval_sizes)) \
                    else tuple(self.evals)
                for prec in self.precisions:
                    for t in self.targets:
                        out.append(Cell(group, prec, t, evals, self.runs, self.threads, skip))
        return out

    def describe(self) -> dict:
        return {"models": [m.label for m in self.models], "sizes": [f"{h}x{w}" for h, w in self.sizes],
                "precisions": self.precisions, "targets": self.targets, "calib": self.calib, "evals": self.evals,
                "eval_sizes": None if self.eval_sizes is None else [f"{h}x{w}" for h, w in self.eval_sizes],
                "qat_steps": self.qat_steps, "anchor": self.anchor, "budget_gmac": self.budget_gmac,
                "runs": self.runs, "threads": self.threads}


def _registry_entry(name: str, scale: int | None) -> ModelEntry:
    from ..benchmark.roofline import count_macs_torch
    from ..models import create_model, get_spec
    from ..models.registry import check_scale

    spec = get_spec(name)  # an unknown name: one line listing the known ones
    s = check_scale(spec, scale)
    # MACs are linear in the pixels (convolutions, shuffles): counted once at 100x100, per megapixel
    macs = count_macs_torch(create_model(name, s, pretrained=False), (100, 100)) / 1e4 * 1e6 / 1e9
    return ModelEntry(name, "registry", name, s, random_weights=not spec.weights, evaluable=spec.scales != (1,),
                      gmac_per_mpix=macs)


def _onnx_entry(path: str, scale: int | None, value_range: int, channels: str) -> ModelEntry:
    from ..models.weights import sha256_file
    from ..sources.convention import IOConvention
    from ..sources.base import export_name

    p = Path(path)
    if not p.is_file():
        raise SrDeployError(f"--onnx {path}: no such file")
    if scale is None:
        raise SrDeployError("--onnx needs --scale S (the model's upscaling factor)")
    IOConvention(value_range, channels)  # a bad convention: one line, here
    return ModelEntry(export_name(None, p.stem), "onnx", str(p.resolve()), scale, value_range=value_range,
                      channels=channels, digest=sha256_file(p))


def build_plan(models: list[str], onnx: list[str], scale: int | None, sizes: list[str], precisions: list[str],
               targets: list[str], calib: str | None = None, evals: list[str] | None = None,
               eval_sizes: list[str] | None = None, qat_steps: int = 0, anchor: str | None = None,
               budget_gmac: float | None = None, runs: int = 5, threads: int = 2, value_range: int = 1,
               channels: str = "rgb") -> Plan:
    """Every check that can fail without compute, before any task: names, sizes, targets, folders."""
    from ..benchmark.evaluate import find_dataset
    from ..cli_util import check_threads, parse_hw
    from ..targets import parse_target

    if not models and not onnx:
        raise SrDeployError("nothing to sweep: give --model NAME and/or --onnx FILE")
    entries = [_registry_entry(n, scale) for n in dict.fromkeys(models)]
    entries += [_onnx_entry(f, scale, value_range, channels) for f in dict.fromkeys(onnx)]
    labels = [e.label for e in entries]
    if len(set(labels)) != len(labels):
        raise SrDeployError(f"two models of the grid share the name {next(x for x in labels if labels.count(x) > 1)!r}")
    if not sizes:
        raise SrDeployError("give at least one --size HxW")
    hw = list(dict.fromkeys(parse_hw(s) for s in sizes))
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise SrDeployError(f"--precision must be one of {', '.join(PRECISIONS)}, got {', '.join(bad) or 'none'}")
    tlabels = []
    for t in dict.fromkeys(targets or [HOST]):
        tlabels.append(HOST if t == HOST else parse_target(t).label)  # an unknown target: one line
    if "int8" in precisions:
        if not calib:
            raise SrDeployError("--precision int8 needs --calib DIR (a folder of HR images, e.g. DIV2K HR)")
        if not Path(calib).is_dir():
            raise SrDeployError(f"--calib {calib}: no such folder")
        calib = str(Path(calib).resolve())
    elif calib or qat_steps:
        raise SrDeployError("--calib and --qat-steps apply to sweeps with --precision int8")
    if qat_steps < 0:
        raise SrDeployError(f"--qat-steps must be >= 0, got {qat_steps}")
    ev = []
    for d in dict.fromkeys(evals or []):
        for e in entries:
            find_dataset(d, e.scale)  # a missing folder or one without images: one line
        ev.append(str(Path(d).resolve()))
    if anchor is not None and not Path(anchor).is_file():
        raise SrDeployError(f"--anchor {anchor}: no such file")
    if not 1 <= runs <= 1000:
        raise SrDeployError(f"--runs must be 1..1000, got {runs}")
    check_threads(threads)
    return Plan(entries, hw, list(dict.fromkeys(precisions)), tlabels, calib, ev,
                None if eval_sizes is None else [parse_hw(s, "eval_sizes") for s in eval_sizes],
                qat_steps, str(Path(anchor).resolve()) if anchor else None, budget_gmac, runs, threads)


def load_plan_file(path: str) -> dict:
    """A plan file: JSON with the flags' names as keys (lists where a flag repeats)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except OSError as exc:
        raise SrDeployError(f"--plan {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SrDeployError(f"--plan {path} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SrDeployError(f"--plan {path}: expected a JSON object of plan keys")
    unknown = sorted(set(doc) - PLAN_KEYS)
    if unknown:
        raise SrDeployError(f"--plan {path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(PLAN_KEYS))}")
    lists = {"models", "onnx", "sizes", "precisions", "targets", "evals", "eval_sizes"}
    for k, v in doc.items():
        if k in lists and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            raise SrDeployError(f"--plan {path}: {k} must be a list of strings")
    return doc
