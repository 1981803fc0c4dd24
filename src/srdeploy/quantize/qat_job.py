"""QAT as a job file: prepared where the converter runs, fine-tuned where a GPU is, applied anywhere.

``--qat-steps N`` runs on this package's CPU pipeline, where TensorFlow's converter builds the graph
QAT simulates (:mod:`.qat`). Long schedules are GPU work (10⁴–10⁵ steps; a 2-core CPU does 0.2–2 s a
step), and a GPU machine need not have TensorFlow at all. What QAT needs from the converter is
three flatbuffers — the calibrated float graph, the same graph with the chosen (or shipped) ranges,
and the INT8 model made from them (its scales) — and the LR images its crops come from. So the
export writes those into a job file (``sr-export ... --qat-steps N --qat-job FILE``); this module
runs it anywhere PyTorch, NumPy and LiteRT's pure-Python flatbuffer schema are
(``python -m srdeploy.quantize.qat_job FILE --out PARAMS.npz --device cuda``), and writes QAT's result
as an INT8 parameter file (:mod:`.int8_params`), which ``sr-export --int8-params PARAMS.npz`` applies
at any export size — there the converter quantizes it and the quality report measures it.

The job file is a ``.npz`` read with ``allow_pickle=False`` (hostile until parsed): ``meta`` (UTF-8
JSON: format, steps, seed, the recipe's batch/patch/rates, whether QAT resumes from fine-tuned weights,
the metadata the parameter file will carry), ``calibrated`` / ``chosen`` / ``quantized`` (the three
flatbuffers, uint8), ``image<k>`` (uint8 LR images, QAT's training crops come from them) and
``held_out`` (uint8 crops at the export size that QAT never trains on: the simulated fidelity before
and after is measured on them). Written by hand: no library splits a converter-bound QAT from its
converter.
"""
from __future__ import annotations

import argparse
import copy
import io
import json
import math
import os
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SrDeployError
from ..fsutil import atomic_write
from .int8_params import savez_to

__all__ = ["FORMAT", "QATJob", "load", "main", "run"]

FORMAT = "srdeploy-qat-job-v1"
#: a job holds three flatbuffers of a lightweight network and some LR images
MAX_BYTES = 1 << 30
#: at most this many training images, each at most this many pixels (a DIV2K LR at x2 is 0.7 MP)
MAX_IMAGES, MAX_IMAGE_PIXELS = 1000, 1 << 24
_GRAPHS = ("calibrated", "chosen", "quantized")
#: QAT steps of one run, at most (sr-export's --qat-steps has the same bound)
MAX_STEPS = 1_000_000


@dataclass
class QATJob:
    #: the calibrated float graph (its weights are the float model QAT matches)
    calibrated: bytes
    #: the graph QAT starts from: *calibrated* with the chosen ranges, or an INT8 parameter file applied
    chosen: bytes
    #: the converter's INT8 model (float I/O) of *chosen*: the scales the simulation starts from
    quantized: bytes
    #: LR uint8 HWC images (QAT's random crops come from them)
    images: list[np.ndarray]
    #: uint8 NHWC crops at the export size that QAT does not train on
    held_out: np.ndarray
    steps: int
    seed: int = 0
    #: QAT goes on from fine-tuned weights (an INT8 parameter file): the target stays *calibrated*'s
    resumed: bool = False
    batch: int = 8
    patch: int = 64
    lr: float = 3e-4
    range_lr: float = 3e-4
    #: what the INT8 parameter file written from this job says about itself (model, scale, rewrites, ...)
    params_meta: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {"format": FORMAT, "steps": self.steps, "seed": self.seed, "resumed": self.resumed,
                "batch": self.batch, "patch": self.patch, "lr": self.lr, "range_lr": self.range_lr,
                "images": len(self.images), "held_out": list(self.held_out.shape)}

    def save(self, path: str | os.PathLike, params_meta: dict | None = None) -> Path:
        """Write the job to *path* (a temporary name renamed when complete)."""
        path = Path(path)
        meta = {**self.describe(), "params_meta": params_meta if params_meta is not None else self.params_meta}
        arrays = {k: np.frombuffer(getattr(self, k), np.uint8) for k in _GRAPHS}
        arrays.update({f"image{k}": np.ascontiguousarray(im, np.uint8) for k, im in enumerate(self.images)})
        arrays["held_out"] = np.ascontiguousarray(self.held_out, np.uint8)
        arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: savez_to(tmp, arrays, compressed=True))
        return path


def held_out_uint8(crops: np.ndarray) -> np.ndarray:
    """Calibration's held-out crops (float32 in [0, 1], each a uint8 value / 255) as the uint8 they were."""
    q = np.round(np.asarray(crops, np.float64) * 255.0)
    if q.size and np.max(np.abs(q / 255.0 - crops)) > 1e-6:
        raise SrDeployError("QAT job: held-out crops are not 8-bit images")
    return np.clip(q, 0, 255).astype(np.uint8)


def load(path: str | os.PathLike) -> QATJob:
    """Read and validate a job file; anything wrong with it is one SrDeployError line."""
    path = Path(path)
    if not path.is_file():
        raise SrDeployError(f"QAT job file not found: {path}")
    if path.stat().st_size > MAX_BYTES:
        raise SrDeployError(f"{path} is {path.stat().st_size:,} bytes: not a QAT job file")
    bad = f"{path} is not a valid QAT job file"
    try:
        with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as z:
            names = list(z.files)
            if "meta" not in names or any(k not in names for k in _GRAPHS + ("held_out",)):
                raise SrDeployError(f"{bad}: it lacks {sorted(set(_GRAPHS + ('meta', 'held_out')) - set(names))}")
            arrays = {k: z[k] for k in names}
        meta = json.loads(bytes(arrays.pop("meta").astype(np.uint8)).decode())
    except SrDeployError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError, EOFError) as exc:
        raise SrDeployError(f"{bad} ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SrDeployError(f"{bad}: format {meta.get('format') if isinstance(meta, dict) else None!r}, expected {FORMAT}")

    def number(key, kind, lo, hi):
        v = meta.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float) if kind is float else int) or not lo <= v <= hi:
            raise SrDeployError(f"{bad}: {key} must be a {kind.__name__} in [{lo}, {hi}], got {v!r}")
        return kind(v)

    graphs = {}
    for k in _GRAPHS:
        a = arrays.pop(k)
        if a.dtype != np.uint8 or a.ndim != 1 or a.size < 16:
            raise SrDeployError(f"{bad}: {k} is not a flatbuffer ({a.dtype}, shape {a.shape})")
        graphs[k] = a.tobytes()
    held = arrays.pop("held_out")
    if held.dtype != np.uint8 or held.ndim != 4 or held.shape[3] != 3 or not 1 <= held.shape[0] <= 64 \
            or held.shape[1] * held.shape[2] > MAX_IMAGE_PIXELS:
        raise SrDeployError(f"{bad}: held_out must be 1..64 uint8 RGB crops, got {held.dtype} {list(held.shape)}")
    images = []
    for k in range(number("images", int, 1, MAX_IMAGES)):
        im = arrays.pop(f"image{k}", None)
        if im is None or im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3 \
                or im.shape[0] * im.shape[1] > MAX_IMAGE_PIXELS:
            raise SrDeployError(f"{bad}: image{k} is missing or not a uint8 RGB image")
        images.append(im)
    if arrays:
        raise SrDeployError(f"{bad}: unexpected arrays {sorted(arrays)[:5]}")
    params_meta = meta.get("params_meta", {})
    if not isinstance(params_meta, dict):
        raise SrDeployError(f"{bad}: params_meta must be an object")
    job = QATJob(graphs["calibrated"], graphs["chosen"], graphs["quantized"], images, held,
                 steps=number("steps", int, 1, MAX_STEPS), seed=number("seed", int, 0, 2 ** 32 - 1),
                 resumed=bool(meta.get("resumed", False)), batch=number("batch", int, 1, 1024),
                 patch=number("patch", int, 8, 1024), lr=number("lr", float, 0.0, 1.0),
                 range_lr=number("range_lr", float, 0.0, 1.0), params_meta=params_meta)
    if min(min(im.shape[:2]) for im in images) < 1:
        raise SrDeployError(f"{bad}: an empty training image")
    return job


def _graphs(job: QATJob):
    """The simulation of the job's graph, and the float teacher when QAT resumes (a flatbuffer that
    does not parse is the file's fault: one line)."""
    from . import int8_params as ip
    from .qat import TFLiteGraph

    try:
        sig = [ip.graph_signature(ip._parse(b)) for b in (job.calibrated, job.chosen)]
        if sig[0] != sig[1]:
            raise SrDeployError("QAT job: its calibrated and chosen graphs are different graphs")
        graph = TFLiteGraph(job.chosen, job.quantized)
        teacher = TFLiteGraph(job.calibrated, job.quantized) if job.resumed else None
    except SrDeployError:
        raise
    except Exception as exc:  # noqa: BLE001 -- a damaged flatbuffer fails anywhere in the parser
        raise SrDeployError(f"QAT job: its graphs do not parse ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:120] if str(exc) else ''})") from None
    return graph, teacher


def simulated_fidelity(graph, teacher, crops: np.ndarray, device) -> float:
    """Worst held-out crop's PSNR (dB) of the fake-quantized graph against the float one: the simulation
    of what ``--ranges auto`` and the exporter's QAT judge with the converter's own INT8 model."""
    import torch

    graph.to(device)
    teacher.to(device)
    worst = math.inf
    with torch.no_grad():
        for c in crops:
            x = torch.from_numpy(c.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(device)
            mse = float(torch.mean((graph(x, quant=True) - teacher(x, quant=False)) ** 2))
            worst = min(worst, 10 * math.log10(1.0 / max(mse, 1e-20)))
    graph.to("cpu")
    teacher.to("cpu")
    return worst


def _steps_for(job: QATJob, graph, teacher, seconds: float, device, log) -> tuple[int, dict]:
    """The number of steps that fits *seconds*, from a timed probe of a copy of *graph* (its first steps,
    which compile the fused quantizers, are not counted)."""
    from .qat import finetune

    marks = {}
    probe = 40

    def mark(step, _graph):
        if step in (10, probe):
            marks[step] = time.perf_counter()

    t0 = time.perf_counter()
    finetune(copy.deepcopy(graph), job.images, probe, lr=job.lr, range_lr=job.range_lr, patch=job.patch,
             batch=job.batch, seed=job.seed, log=lambda m: None, callback=mark, teacher=teacher, device=device)
    per_step = (marks[probe] - marks[10]) / (probe - 10)
    left = seconds - (time.perf_counter() - t0) - 30.0  # 30 s for parsing, judging and writing
    steps = int(left / per_step) // 100 * 100
    if steps < 100:
        raise SrDeployError(f"--seconds {seconds:g}: {per_step:.3f} s a step leaves fewer than 100 steps")
    log(f"  QAT job: {per_step * 1000:.1f} ms a step on {device}: {steps} steps fit {seconds:g} s")
    return steps, {"budget_s": seconds, "probe_s_per_step": round(per_step, 5)}


def run(job: QATJob, out: str | os.PathLike, device: str = "auto", steps: int | None = None,
        seconds: float | None = None, batch: int | None = None, patch: int | None = None,
        lr: float | None = None, log=print, progress: bool = True) -> dict:
    """Fine-tune the job's graph (:func:`.qat.finetune`) and write the result to *out* as an INT8
    parameter file; returns the report (also in the file's ``made_with.qat``). *lr*: the peak rate of the cosine
    schedule for the weights and, in the job's ratio, the learned ranges (default: the job's, 3e-4 -- the rate a
    fresh QAT starts at; a job resumed from fine-tuned weights may want less)."""
    from . import int8_params as ip
    from .qat import finetune, qat_device

    dev = qat_device(device)
    if batch is not None:
        job.batch = batch
    if patch is not None:
        job.patch = patch
    if lr is not None:
        job.range_lr, job.lr = (job.range_lr * lr / job.lr if job.lr > 0 else lr), lr
    if seconds is not None and steps is not None:
        raise SrDeployError("give --steps or --seconds, not both")
    graph, teacher = _graphs(job)
    budget = None
    if seconds is not None:
        steps, budget = _steps_for(job, graph, teacher, seconds, dev, log)
    steps = job.steps if steps is None else steps
    fresh_teacher = teacher if teacher is not None else copy.deepcopy(graph)  # the float graph to judge against
    before = simulated_fidelity(graph, fresh_teacher, job.held_out, dev)
    log(f"  QAT job: {steps} steps on {dev} (batch {job.batch}, {job.patch}x{job.patch} crops), simulated "
        f"INT8-vs-float on the worst held-out crop {before:.2f} dB before")
    result = finetune(graph, job.images, steps, lr=job.lr, range_lr=job.range_lr, patch=job.patch, batch=job.batch,
                      seed=job.seed, progress=progress, log=log, teacher=teacher, device=dev)
    after = simulated_fidelity(graph, fresh_teacher, job.held_out, dev)
    report = {**result.to_json(), "learned_ranges": graph.learn_ranges, "device": str(dev),
              "simulated_fidelity_db_before": round(before, 3), "simulated_fidelity_db_after": round(after, 3),
              "closer": after > before, "resumed": job.resumed, "seed": job.seed}
    if budget:
        report["steps_from_time_budget"] = budget
    log(f"  QAT job: simulated INT8-vs-float {before:.2f} -> {after:.2f} dB"
        + ("" if after > before else " (not closer: the export's own QAT would keep the post-training model)"))
    meta = dict(job.params_meta)
    made_with = dict(meta.get("made_with") or {})
    deferred = made_with.get("qat") if isinstance(made_with.get("qat"), dict) else {}
    if "continued_from" in deferred:  # a resumed job: what it went on from, as the export's own QAT records it
        report["continued_from"] = deferred["continued_from"]
    meta["made_with"] = {**made_with, "qat": report}
    ip.save(ip.extract(graph.calibrated_with_weights(), meta), out)
    log(f"  INT8 weights and ranges written to {out} (apply with sr-export ... --int8 --int8-params {out})")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m srdeploy.quantize.qat_job",
        description="Run a QAT job written by `sr-export ... --int8 --qat-steps N --qat-job FILE` -- on a GPU "
                    "machine, which needs PyTorch, NumPy and ai-edge-litert's flatbuffer schema but no TensorFlow -- "
                    "and write an INT8 parameter file for `sr-export ... --int8 --int8-params OUT`.")
    p.add_argument("job", help="the .npz job file")
    p.add_argument("--out", required=True, help="the INT8 parameter file to write (.npz)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda when there is one)")
    p.add_argument("--steps", type=int, help="QAT steps (default: the job's --qat-steps)")
    p.add_argument("--seconds", type=float, help="instead of --steps: as many steps as fit this many seconds "
                   "(timed on a 40-step probe first), e.g. on a lent GPU with a fixed budget")
    p.add_argument("--batch", type=int, help="crops per step (default: the job's, 8)")
    p.add_argument("--patch", type=int, help="crop side in LR pixels (default: the job's, 64)")
    p.add_argument("--lr", type=float, help="peak learning rate of the cosine schedule (default: the job's, 3e-4, "
                   "what a fresh QAT uses; a job resumed from a shipped file restarts there unless given less); the "
                   "learned ranges' rate keeps its ratio to it")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    args = p.parse_args(argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    try:
        if args.steps is not None and not 1 <= args.steps <= MAX_STEPS:
            raise SrDeployError(f"--steps must be 1..{MAX_STEPS:,}, got {args.steps}")
        if args.seconds is not None and not 60 <= args.seconds <= 7 * 86400:
            raise SrDeployError(f"--seconds must be 60..604800, got {args.seconds:g}")
        for k in ("batch", "patch"):
            v = getattr(args, k)
            if v is not None and not (1 if k == "batch" else 8) <= v <= 1024:
                raise SrDeployError(f"--{k} must be {'1' if k == 'batch' else '8'}..1024, got {v}")
        if args.lr is not None and not 0.0 < args.lr <= 0.1:
            raise SrDeployError(f"--lr must be in (0, 0.1], got {args.lr:g}")
        from .qat import qat_device

        qat_device(args.device)  # (before reading a job of any size)
        job = load(args.job)
        report = run(job, args.out, args.device, args.steps, args.seconds, args.batch, args.patch, args.lr, log=log)
    except SrDeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"job": str(args.job), "out": str(args.out), "qat": report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
